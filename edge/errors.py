"""How every command reports a user error: one clear line on stderr, exit 2."""

from __future__ import annotations

import sys


class UserError(Exception):
    """Something the user can fix; the message says what."""


def install_hint(extra: str) -> str:
    """The install command that works: edge-speech is not on any package index,
    so from the checkout (or a wheel built there with `pip wheel`)."""
    return f"pip install -e '.[{extra}]' in the edge-speech checkout (or pip install 'WHEEL[{extra}]'; docs/install.md)"


def missing_extra(module: str, extra: str) -> UserError:
    return UserError(f"{module} is not installed; it comes with the [{extra}] extra: {install_hint(extra)}")


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
