"""sherpa-onnx's streaming `zipformer2` transducer type
(OnlineZipformer2TransducerModel), for an icefall Zipformer2 declared with
the package's own wrapper (examples/zipformer_factory.py).

Read from sherpa-onnx's online-zipformer2-transducer-model.cc: the encoder's
`model_type` = "zipformer2"; comma-separated integer lists per encoder stack
`encoder_dims`, `num_encoder_layers`, `cnn_module_kernels`,
`left_context_len` (left context frames // the stack's downsampling),
`query_head_dims`, `value_head_dims`, `num_heads`; integers `T` (frames per
call) and `decode_chunk_len` (frames advanced); decoder `context_size`,
`vocab_size`; joiner `joiner_dim`. States are fed by position: x, then per
layer cached_key, cached_nonlin_attn, cached_val1, cached_val2,
cached_conv1, cached_conv2, then embed_states and processed_lens (int64)
— the order of the wrapper's get_init_states(), which the factory keeps.
Checked against sherpa-onnx 2.0.1 by tests/test_sherpa.py (batch-1 graphs,
one stream per decode call, until the exporter's dynamic batch lands).
"""

from __future__ import annotations

MODEL_TYPE = "zipformer2"
DYNAMIC_BATCH = False  # the declared Zipformer traces at batch 1; decode_stream runs one stream


def matches(sig) -> bool:
    names = [s.name for s in sig.graph("encoder").states]
    return len(names) > 2 and names[0] == "cached_key_0" and names[-2:] == ["embed_states", "processed_lens"]


def check(sig) -> None:
    from .contract import SherpaExportError

    names = [s.name for s in sig.graph("encoder").states]
    if (len(names) - 2) % 6:
        raise SherpaExportError(f"a zipformer2 encoder has 6 states per layer plus embed_states and "
                                f"processed_lens; got {len(names)} states")


def wrap(model, graph: str, sig, offset: float):
    from .contract import SherpaExportError

    if offset:
        raise SherpaExportError("a zipformer2 model trained on int16-scaled features has no sherpa flavour here")
    return model.graph_module(graph)  # the model's own graph, as the bundle exports it


def streaming_wrapper(model):
    """The package's OnnxStreamingEncoderWrapper inside the declared encoder."""
    from .contract import SherpaExportError

    for m in model.modules_of("encoder"):
        if hasattr(m, "left_context_len") and hasattr(getattr(m, "encoder", None), "encoder_dim"):
            return m
    raise SherpaExportError("no Zipformer2 streaming wrapper (with .encoder and .left_context_len) in the "
                            "declared encoder step")


def _join(values) -> str:
    return ",".join(str(int(v)) for v in values)


def metadata(model, sig, graph: str) -> dict:
    if graph == "encoder":
        w = streaming_wrapper(model)
        z = w.encoder
        return {"model_type": MODEL_TYPE, "version": "1", "model_author": "edge-speech",
                "comment": "edge-speech export of a streaming Zipformer2 transducer (sherpa-onnx zipformer2)",
                "decode_chunk_len": sig.shift_frames, "T": sig.chunk_frames,
                "num_encoder_layers": _join(z.num_encoder_layers), "encoder_dims": _join(z.encoder_dim),
                "cnn_module_kernels": _join(z.cnn_module_kernel),
                "left_context_len": _join(w.left_context_len // k for k in z.downsampling_factor),
                "query_head_dims": _join(z.query_head_dim), "value_head_dims": _join(z.value_head_dim),
                "num_heads": _join(z.num_heads)}
    if graph == "decoder":
        return {"context_size": sig.context_size, "vocab_size": sig.vocab_size,
                "blank_id": sig.blank_id, "unk_id": sig.blank_id}
    return {"joiner_dim": sig.graph("joiner").inputs[0].shape[-1]}
