"""Running a sherpa-form export: sherpa-onnx's recognizer with the options
the files need, and our client (runtime_py's Model and Stream: the one state
loop) on the very same files.

Chunking: sherpa-onnx's IsReady is `processed + T < frames_ready` (strict),
so it runs a chunk only once one more feature frame exists: it gets one
frame shift of zeros more tail padding than our client (`sherpa_tail_padding`)
and both run exactly the same chunks. Greedy search: sherpa emits at most
one symbol per encoder frame (SHERPA_MAX_SYMBOLS) and starts the decoder
context at [-1, ..., blank]; the client follows both (contract.sherpa_start).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime_py.decoding import tokens_to_text
from runtime_py.recognizer import TAIL_PADDING_S, tail_padding_samples
from runtime_py.signature import Signature

from . import contract
from .contract import SHERPA_MAX_SYMBOLS, SHERPA_TEMPERATURE
from .export import FILES, INPUT_RANGE_KEY, INT8_FILES, SherpaExportError



def files(model_dir: Path | str, precision: str = "fp32") -> dict[str, Path]:
    model_dir = Path(model_dir)
    names = dict(FILES) if precision == "fp32" else dict(FILES, **INT8_FILES)
    return {k: model_dir / v for k, v in names.items()}


def read_sherpa_dir(model_dir: Path | str) -> tuple[Signature, list[str], str]:
    """(signature, tokens, input_range) of an export, torch- and onnx-free."""
    import onnxruntime as ort

    model_dir = Path(model_dir)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(model_dir / FILES["encoder"]), opts, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    if "edge.signature" not in meta:
        raise SherpaExportError(f"{model_dir / FILES['encoder']}: no edge.signature metadata; "
                                "not written by targets.sherpa.export_sherpa")
    sig = Signature.from_json(meta["edge.signature"])
    tokens = []
    for line in (model_dir / FILES["tokens"]).read_text(encoding="utf-8").splitlines():
        if line.strip():
            sym, idx = line.rsplit(None, 1)
            if int(idx) != len(tokens):
                raise SherpaExportError(f"tokens.txt: id {idx} out of order")
            tokens.append(sym)
    return sig, tokens, meta.get(INPUT_RANGE_KEY, "int16")


def sherpa_recognizer(model_dir: Path | str, threads: int = 1, decoding_method: str = "greedy_search",
                      precision: str = "fp32", paths: dict | None = None, normalize_samples: bool | None = None):
    """`OnlineRecognizer.from_transducer` with the options this export needs
    (normalize_samples=False for the int16 flavour). `paths` (encoder,
    decoder, joiner, tokens) and `normalize_samples` name files not written
    here, e.g. the zipformer package's own export (16 kHz, 80 bins)."""
    import sherpa_onnx

    rate, dim = 16000, 80
    if paths is None:
        paths = files(model_dir, precision)
        sig, _, input_range = read_sherpa_dir(model_dir)
        rate, dim = sig.frontend.sample_rate, sig.frontend.feature_dim
        normalize_samples = input_range == "unit" if normalize_samples is None else normalize_samples
    return sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(paths["tokens"]), encoder=str(paths["encoder"]), decoder=str(paths["decoder"]),
        joiner=str(paths["joiner"]), num_threads=threads, sample_rate=rate, feature_dim=dim,
        normalize_samples=bool(normalize_samples), decoding_method=decoding_method)


def tail_padding(num_samples: int, sig: Signature) -> int:
    """Zeros our client appends at the end of an utterance (as the streaming recognizer does)."""
    return tail_padding_samples(num_samples, sig.frontend, sig.chunk_frames, sig.shift_frames, TAIL_PADDING_S)


def sherpa_tail_padding(num_samples: int, sig: Signature) -> int:
    """sherpa-onnx runs a chunk only once one more frame exists: one frame
    shift more zeros than ours makes it run the same chunks."""
    return tail_padding(num_samples, sig) + sig.frontend.frame_shift


def _sherpa_ids(result_tokens: list[str], tokens: list[str]) -> list[int]:
    index = {t.replace("\u2581", " "): i for i, t in enumerate(tokens)}
    index.update({t: i for i, t in enumerate(tokens)})
    return [index[s] for s in result_tokens]


def decode_sherpa(recognizer, samples: np.ndarray, sig: Signature, tokens: list[str]) -> list[int]:
    """Token ids sherpa-onnx decodes from one utterance (float samples in [-1, 1])."""
    return decode_sherpa_scored(recognizer, samples, sig, tokens)[0]


def decode_sherpa_scored(recognizer, samples: np.ndarray, sig: Signature,
                         tokens: list[str]) -> tuple[list[int], list[float]]:
    """(token ids, sherpa's ys_probs: each token's log_softmax(logits / SHERPA_TEMPERATURE))."""
    samples = np.asarray(samples, dtype=np.float32)
    stream = recognizer.create_stream()
    stream.accept_waveform(sig.frontend.sample_rate, samples)
    stream.accept_waveform(sig.frontend.sample_rate,
                           np.zeros(sherpa_tail_padding(len(samples), sig), dtype=np.float32))
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    result = recognizer.get_result_all(stream)
    return _sherpa_ids(list(result.tokens), tokens), [float(p) for p in result.ys_probs]


class OurTransducerClient:
    """Our torch-free client on a sherpa export: runtime_py's runners, state
    loop, frontend and greedy search, with sherpa-onnx's two rules (at most
    SHERPA_MAX_SYMBOLS per frame, the decoder context from [-1, ..., blank]).
    `signature`: decode with another one than the files say (a test of the
    declared decoder start). declared_start: start from the signature's
    decoder_start instead of sherpa's (what a model declares is what is
    judged). search/beam: the client's "greedy" or "modified_beam_search"."""

    def __init__(self, model_dir: Path | str, threads: int = 1, precision: str = "fp32",
                 signature: Signature | None = None, declared_start: bool = False, search: str = "greedy",
                 beam: int = 4):
        from runtime_py.backends import open_runner
        from runtime_py.stream import Model

        self.signature, self.tokens, self.input_range = read_sherpa_dir(model_dir)
        self.signature = signature or self.signature
        self.declared_start = declared_start
        f = files(model_dir, precision)
        runs = {g.name: open_runner(f[g.name], g, "onnx", threads) for g in self.signature.graphs}
        self._logits: list[np.ndarray] = []
        joiner = runs["joiner"]

        def recorded(feeds):  # each call's logits, for decode_scored
            out = joiner(feeds)
            self._logits.append(np.asarray(next(iter(out.values()))).reshape(-1))
            return out
        runs["joiner"] = recorded
        self.model = Model(self.signature, runs, batch=False, max_symbols_per_frame=SHERPA_MAX_SYMBOLS,
                           search=search, beam=beam)

    def decode(self, samples: np.ndarray) -> list[int]:
        """Token ids of one utterance (float samples in [-1, 1]), from a fresh stream."""
        stream = self.model.create_stream()
        if not self.declared_start:
            contract.sherpa_start(stream.decoder)
        stream.accept_waveform(self.signature.frontend.sample_rate, np.asarray(samples, dtype=np.float32))
        stream.input_finished()  # the client's tail padding (runtime_py.stream's one rule)
        while stream.is_ready():
            self.model.decode_streams([stream])
        return list(stream.tokens)

    def decode_scored(self, samples: np.ndarray) -> tuple[list[int], list[float]]:
        """(token ids, each token's log-probability as sherpa-onnx's ys_probs
        reports it). Greedy with one symbol per frame calls the joiner once a
        frame, so the calls whose argmax is not blank are the emissions. The
        first token's score depends on the decoder start even where the token
        does not: a wrong start shows there on a trained model."""
        if self.model.search != "greedy":
            raise ValueError("decode_scored follows sherpa-onnx's greedy search; this client runs "
                             f"{self.model.search}")
        self._logits.clear()
        ids = self.decode(samples)
        blank = self.signature.blank_id
        scores = []
        for logits in self._logits:
            label = int(logits.argmax())
            if label != blank:
                z = logits.astype(np.float64) / SHERPA_TEMPERATURE
                z -= z.max()
                scores.append(float(z[label] - np.log(np.exp(z).sum())))
        if len(scores) != len(ids):
            raise RuntimeError(f"{len(scores)} emissions among the joiner calls for {len(ids)} tokens")
        return ids, scores

    def text(self, ids: list[int]) -> str:
        return tokens_to_text(ids, self.tokens)
