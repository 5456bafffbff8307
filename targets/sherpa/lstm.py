"""sherpa-onnx's streaming `lstm` transducer type (OnlineLstmTransducerModel),
for the built-in transducer family.

Read from sherpa-onnx's online-lstm-transducer-model.cc: the encoder's
`model_type` = "lstm"; as integers, from the encoder `num_encoder_layers`, `T`
(frames per call), `decode_chunk_len` (frames advanced), `d_model` (last dim
of h), `rnn_hidden_size` (last dim of c); from the decoder `vocab_size` and
`context_size`. I/O by position: encoder (x [N, T, F], h [L, N, d], c [L, N,
r]) -> (encoder_out, h_next, c_next). decode_streams stacks h, c on axis 1,
so these graphs have a dynamic batch axis. sherpa's first decoder context
is [-1, ..., 0]: the decoder maps negative ids to blank.
"""

from __future__ import annotations

MODEL_TYPE = "lstm"
DYNAMIC_BATCH = True  # tests/test_sherpa.py decodes streams together


def matches(sig) -> bool:
    enc = sig.graph("encoder")
    return [s.name for s in enc.states] == ["h", "c"]


def check(sig) -> None:
    from .contract import SherpaExportError

    enc = sig.graph("encoder")
    if any(len(s.shape) != 3 or s.batch_axis != 1 for s in enc.states):
        raise SherpaExportError(f"sherpa-onnx's LSTM transducer needs encoder states h, c of shape "
                                f"[layers, batch, dim]; got {[(s.name, s.shape) for s in enc.states]}")


def wrap(model, graph: str, sig, offset: float):
    """The family's own step function as a module (batch-agnostic, unlike the
    batch-1 graph module a bundle exports), with the unit flavour's feature
    offset on the encoder and the negative-id guard on the decoder."""
    import torch
    from torch import nn

    step = model.step_fns()[graph]
    blank = sig.blank_id

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model  # registered: the tracer sees the weights as parameters

        def forward(self, *args):
            if graph == "encoder" and offset:
                args = (args[0] + offset,) + args[1:]
            if graph == "decoder":  # sherpa-onnx starts the context with -1 (no token yet): treat as blank
                args = (torch.where(args[0] < 0, torch.full_like(args[0], blank), args[0]),)
            return step(*args)
    return Step().eval()


def metadata(model, sig, graph: str) -> dict:
    h, c = sig.graph("encoder").states
    common = {"model_type": MODEL_TYPE, "comment": "edge-speech transducer, sherpa-onnx LSTM transducer flavour"}
    if graph == "encoder":
        return common | {
            "num_encoder_layers": h.shape[0], "T": sig.chunk_frames, "decode_chunk_len": sig.shift_frames,
            "d_model": h.shape[2], "rnn_hidden_size": c.shape[2],
            "feature_dim": sig.frontend.feature_dim, "sample_rate": sig.frontend.sample_rate,
            "subsampling_factor": sig.subsampling,
            "normalize_samples": int(sig.frontend.sample_scale == 1.0),
        }
    if graph == "decoder":
        return common | {"vocab_size": sig.vocab_size, "context_size": sig.context_size}
    return common | {"vocab_size": sig.vocab_size, "joiner_dim": sig.graph("joiner").inputs[0].shape[-1]}
