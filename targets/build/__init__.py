"""edge-build: one command from a model to a verified bundle for a device.

One module per question:
  plan.py      which targets exist, what each builds (--quant), --list
  source.py    what a bundle is built from (model / third-party ONNX), its graphs and tokens
  artifacts.py convert and check every (backend, precision), against the parity plan
  convert.py   conversion dispatch through the backend objects (targets/backends/)
  records.py   the int8 check and the one-line parity description
  prove.py     the streaming proofs (targets/proofs.py)
  write.py     golden files, tokens, manifest (runtime_py/manifest.py's fields), card
  assemble.py  the build itself: the steps above, in order
  cli.py       the edge-build command line

`targets.build.build_bundle` and `targets.build.main` are the entry points.
"""

from ..conversion_errors import ConversionError, conversion_error, failed_operation
from .assemble import PARITY_CHUNKS, build_bundle
from .cli import build_parser, main
from .plan import DEFAULT_FAMILY, TARGETS, Target, check_backends, get_target, list_targets, parse_quant
from .source import Source

__all__ = ["build_bundle", "main", "build_parser", "get_target", "parse_quant", "list_targets", "check_backends",
           "Target", "TARGETS", "DEFAULT_FAMILY", "PARITY_CHUNKS", "Source", "ConversionError",
           "conversion_error", "failed_operation"]
