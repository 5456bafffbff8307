"""sherpa-onnx target: a transducer exported in a form sherpa-onnx's
`OnlineRecognizer.from_transducer(...)` loads, and our client on the same files.

    paths = export_sherpa(model, "dist/sherpa", tokens)   # encoder/decoder/joiner.onnx + tokens.txt
    rec = sherpa_recognizer("dist/sherpa")                 # from_transducer with the right options
    ours = OurTransducerClient("dist/sherpa")              # our client on the very same files

    python -m targets.sherpa export --out dist/sherpa
    python -m targets.sherpa export --model examples/zipformer_factory.py:build --int8 --out dist/zf-sherpa
    python -m targets.sherpa compare --utterances 50

Modules: export (our one exporter + sherpa metadata + file names), rewrite
(the .ort route's graph rewrites and their check on these files), lstm and
zipformer2 (the two sherpa-onnx model types, each its metadata contract),
client (sherpa's recognizer and ours on the same files), package (the
zipformer package's own export, the baseline edge-bench compares with),
compare (agreement / WER / RTF CLI).

Features: kaldi-native-fbank with our FrontendSpec's options. With its
default `normalize_samples=True` sherpa feeds [-1, 1] samples; with False it
multiplies them by 32768, which our built-in families were trained on. Hence
two flavours of the built-in transducer: input_range="int16" (needs
normalize_samples=False) and "unit" (stock sherpa defaults; the encoder adds
ln(32768^2) = 20.79 to its input first). A model trained on [-1, 1] samples
(sample_scale 1, the Zipformer recipe) is "unit" with no offset.
tokens.txt: "symbol id" per line; "▁" becomes a space in sherpa's text.
"""

from .client import (SHERPA_MAX_SYMBOLS, OurTransducerClient, _sherpa_ids, decode_sherpa, decode_sherpa_scored,
                     files, read_sherpa_dir, sherpa_recognizer, sherpa_tail_padding, tail_padding)
from .export import (FILES, INPUT_RANGES, INT8_FILES, SherpaExportError, export_sherpa, model_type,
                     quantize_sherpa, sherpa_signature)

__all__ = ["FILES", "INPUT_RANGES", "INT8_FILES", "SHERPA_MAX_SYMBOLS", "OurTransducerClient", "SherpaExportError",
           "_sherpa_ids", "decode_sherpa", "decode_sherpa_scored", "export_sherpa", "files", "model_type",
           "quantize_sherpa", "read_sherpa_dir", "sherpa_recognizer", "sherpa_signature", "sherpa_tail_padding",
           "tail_padding"]
