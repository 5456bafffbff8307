"""How every command reports a user error: one clear line on stderr, exit 2."""

from __future__ import annotations

import sys


class UserError(Exception):
    """Something the user can fix; the message says what."""


def missing_extra(module: str, extra: str) -> UserError:
    return UserError(f"{module} is not installed; install it with: pip install 'edge-speech[{extra}]' "
                     f"(from a checkout: .venv/bin/pip install -e '.[{extra}]')")


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
