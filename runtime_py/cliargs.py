"""The command-line grammar every edge-* command shares, torch-free (the
demo and edge-verify run on a Pi): `--version`, help text that shows only
meaningful defaults, one `error:` line for a usage mistake, `--verbose`, and
the switch that silences library chatter unless it is given."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import warnings


def package_version() -> str:
    try:
        return importlib.metadata.version("edge-speech")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing
        return "0+checkout"

class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and appends "(default: X)" only when X
    says something: not for None, False, empty lists or flags."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text or action.nargs == 0 or not action.option_strings
                or default in (None, False, argparse.SUPPRESS) or default == []):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """A usage mistake is one `error:` line and exit 2, like every other
    user error (argparse's own style prints the whole usage block first)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def make_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    p = Parser(prog=prog, description=description, formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                   help="print the edge-speech version and exit")
    return p


def add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the libraries' own messages (TensorFlow/LiteRT logs, torch tracer warnings)")


def quiet_libraries(verbose: bool = False) -> None:
    """Silence what libraries print on stderr that the user cannot act on:
    TensorFlow's and LiteRT's C++ INFO lines, torch's tracer warnings,
    coremltools' log lines.
    Call before they are imported; `verbose` leaves everything on."""
    if verbose:
        os.environ["EDGE_SPEECH_VERBOSE"] = "1"  # runtime_py.backends leaves native stderr alone too
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", module=r"torch\.")
    warnings.filterwarnings("ignore", message=r".*TracerWarning.*")
    # coremltools logs through Python logging: "Failed to load _MLModelProxy" per native proxy it lacks
    # off macOS, "Torch version ... has not been tested", and conversion errors a ConversionError repeats
    logging.getLogger("coremltools").setLevel(logging.CRITICAL)
