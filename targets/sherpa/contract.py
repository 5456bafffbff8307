"""What every sherpa-onnx model type shares: input ranges, file names, the
blank id sherpa hard-codes, and the export error (a module of its own so the
model types and the exporter import it without importing each other)."""

from __future__ import annotations

import math

INPUT_RANGES = ("int16", "unit")
INT16_SCALE = 32768.0
# the feature offset of the unit flavour: log-power of [-1, 1] samples -> of int16-range samples
UNIT_OFFSET = 2.0 * math.log(INT16_SCALE)
SHERPA_MAX_SYMBOLS = 1  # sherpa-onnx greedy search: one symbol per encoder frame
SHERPA_BLANK_ID = 0  # hard-coded in sherpa-onnx's transducer decoders
# sherpa-onnx's greedy search reports each token's log_softmax(logits / 2) (ys_probs; its
# temperature_scale default), checked against our logits by tests/test_sherpa.py
SHERPA_TEMPERATURE = 2.0
INPUT_RANGE_KEY = "edge.sherpa.input_range"
FILES = {"encoder": "encoder.onnx", "decoder": "decoder.onnx", "joiner": "joiner.onnx", "tokens": "tokens.txt"}
INT8_FILES = {"encoder": "encoder.int8.onnx", "decoder": "decoder.onnx", "joiner": "joiner.int8.onnx"}


class SherpaExportError(ValueError):
    pass


def sherpa_start(decoder) -> None:
    """sherpa-onnx starts a transducer's decoder context at [-1, ..., blank]
    whatever the model declares: our client on sherpa's files (client.py) and
    the bench's sherpa columns (targets/bench/pipeline.py) start there too."""
    if not hasattr(decoder, "context_size"):  # a CTC decoder has no context
        return
    decoder.start = [-1] * (decoder.context_size - 1) + [decoder.blank_id]
    decoder.reset()
