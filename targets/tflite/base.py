"""Names shared by both sides of the TFLite conversion (the caller and the
converter's child process)."""

from __future__ import annotations

from runtime_py.backends import TFLITE_SIGNATURE

PRECISIONS = ("fp32", "fp16", "int8")
# fp16 files keep constants of at most this many values in float32 (and every
# vector): they save a few KB as fp16 but cost accuracy (see
# fp16._small_constants_back_to_fp32). 4096 covers the conformer's depthwise
# kernels (96 x 15) and position bias, not its 96 x 96 and larger matrices.
FP16_KEEP_FP32_VALUES = 4096
SIGNATURE_KEY = TFLITE_SIGNATURE  # one definition: the client's runner looks for it


class TfliteConversionError(RuntimeError):
    pass
