"""A small ONNX VAD shaped like the ones shipped as files (Silero's): the
problems of a real one without a download.

- input `input` [batch, samples] (dynamic), a scalar int64 `sr`, a state
  `state` [2, batch, H] (h and c stacked), outputs `output` [batch, 1] and
  `stateN`;
- an `If` on `sr == 16000` with one branch per sample rate, each reading the
  outer graph's `input` and `state`; inside, an STFT done as a Conv with a
  fixed basis (real and imaginary halves sliced apart, magnitude), a Conv
  encoder, an LSTM whose h/c come from the state by Gather, and a nested `If`
  on the input's rank (shape arithmetic that is static at batch 1);
- seeded random weights (perturbed per layer, so no two are equal).

`build(path)` writes it; `SPEC` is the spec that takes it through
`edge-build --onnx`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 16  # LSTM size
WINDOWS = {16000: (32, 16), 8000: (16, 8)}  # STFT window and hop (samples) per sample rate
CONTEXT, NEW = 64, 512
SPEC = {"name": "tiny_vad", "head": "none", "chunk": CONTEXT + NEW, "shift": NEW, "trained": False,
        "frontend": {"kind": "raw", "sample_rate": 16000, "left_pad": CONTEXT},
        "states": {"state": "stateN"}, "batch_axis": {"state": 1},
        "inputs": {"sr": {"role": "const", "value": 16000}}}


def _basis(window: int) -> np.ndarray:
    """[2 * bins, 1, window]: cos rows then sin rows of a Hann-windowed DFT."""
    bins = window // 2 + 1
    n, k = np.arange(window), np.arange(bins)[:, None]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / window)
    ang = 2 * np.pi * k * n / window
    return np.concatenate([np.cos(ang) * hann, -np.sin(ang) * hann])[:, None, :].astype(np.float32)


def _branch(tag: str, rate: int, rng) -> onnx.GraphProto:
    window, hop = WINDOWS[rate]
    bins = window // 2 + 1
    p = f"{tag}_"

    def const(name, value, dtype=np.int64):
        return helper.make_node("Constant", [], [p + name], value=numpy_helper.from_array(np.asarray(value, dtype)))

    def w(name, *shape, scale=0.3):
        return numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32), p + name)

    inits = [numpy_helper.from_array(_basis(window), p + "basis"), w("enc_w", HIDDEN, bins, 3),
             w("enc_b", HIDDEN, scale=0.1), w("W", 1, 4 * HIDDEN, HIDDEN), w("R", 1, 4 * HIDDEN, HIDDEN),
             w("B", 1, 8 * HIDDEN, scale=0.1), w("out_w", HIDDEN, 1)]
    rank_if = helper.make_node(  # the input's rank decides whether a batch axis is added (static here)
        "If", [p + "is_2d"], [p + "x3"],
        then_branch=helper.make_graph([helper.make_node("Unsqueeze", ["input", p + "ax1"], [p + "x3_then"])],
                                      p + "rank2", [], [helper.make_tensor_value_info(p + "x3_then", 1, None)]),
        else_branch=helper.make_graph([helper.make_node("Unsqueeze", ["input", p + "ax01"], [p + "x3_else"])],
                                      p + "rank1", [], [helper.make_tensor_value_info(p + "x3_else", 1, None)]))
    nodes = [
        const("ax1", [1]), const("ax01", [0, 1]), const("ax0", [0]), const("two", 2), const("i0", 0),
        const("i1", 1), const("start_re", [0]), const("end_re", [bins]), const("end_im", [2 * bins]),
        const("half", 0.5, np.float32), const("sq", 2.0, np.float32),
        helper.make_node("Shape", ["input"], [p + "shape"]),
        helper.make_node("Size", [p + "shape"], [p + "rank"]),
        helper.make_node("Equal", [p + "rank", p + "two"], [p + "is_2d"]),
        rank_if,
        helper.make_node("Conv", [p + "x3", p + "basis"], [p + "spec"], strides=[hop]),
        helper.make_node("Slice", [p + "spec", p + "start_re", p + "end_re", p + "ax1"], [p + "re"]),
        helper.make_node("Slice", [p + "spec", p + "end_re", p + "end_im", p + "ax1"], [p + "im"]),
        helper.make_node("Pow", [p + "re", p + "sq"], [p + "re2"]),
        helper.make_node("Pow", [p + "im", p + "sq"], [p + "im2"]),
        helper.make_node("Add", [p + "re2", p + "im2"], [p + "pow"]),
        helper.make_node("Pow", [p + "pow", p + "half"], [p + "mag"]),
        helper.make_node("Conv", [p + "mag", p + "enc_w", p + "enc_b"], [p + "enc"], pads=[1, 1]),
        helper.make_node("Relu", [p + "enc"], [p + "act"]),
        helper.make_node("ReduceMean", [p + "act"], [p + "pooled"], axes=[2], keepdims=0),
        helper.make_node("Unsqueeze", [p + "pooled", p + "ax0"], [p + "X"]),
        helper.make_node("Gather", ["state", p + "i0"], [p + "h"], axis=0),
        helper.make_node("Gather", ["state", p + "i1"], [p + "c"], axis=0),
        helper.make_node("Unsqueeze", [p + "h", p + "ax0"], [p + "h0"]),
        helper.make_node("Unsqueeze", [p + "c", p + "ax0"], [p + "c0"]),
        helper.make_node("LSTM", [p + "X", p + "W", p + "R", p + "B", "", p + "h0", p + "c0"],
                         [p + "Y", p + "Yh", p + "Yc"], hidden_size=HIDDEN),
        helper.make_node("Concat", [p + "Yh", p + "Yc"], [p + "stateN"], axis=0),
        helper.make_node("Squeeze", [p + "Yh", p + "ax0"], [p + "hn"]),
        helper.make_node("MatMul", [p + "hn", p + "out_w"], [p + "logit"]),
        helper.make_node("Sigmoid", [p + "logit"], [p + "prob"]),
    ]
    graph = helper.make_graph(nodes, f"vad_{rate}", [], [helper.make_tensor_value_info(p + "prob", 1, None),
                                                        helper.make_tensor_value_info(p + "stateN", 1, None)],
                              initializer=inits)
    return graph


def build(path: Path | str, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    then_g, else_g = _branch("sr16k", 16000, rng), _branch("sr8k", 8000, rng)
    nodes = [helper.make_node("Constant", [], ["rate16k"], value=numpy_helper.from_array(np.asarray(16000, np.int64))),
             helper.make_node("Equal", ["sr", "rate16k"], ["is16k"]),
             helper.make_node("If", ["is16k"], ["prob", "state_out"], then_branch=then_g, else_branch=else_g),
             helper.make_node("Identity", ["prob"], ["output"]),
             helper.make_node("Identity", ["state_out"], ["stateN"])]
    graph = helper.make_graph(
        nodes, "tiny_vad",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "samples"]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", HIDDEN]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", HIDDEN])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def run_source(path: Path | str, audio: np.ndarray, rate: int = 16000) -> np.ndarray:
    """The way a VAD shipped as ONNX is run by its users: 64 samples of
    context + 512 new ones per call, the state carried; one probability per
    512 samples."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, sess.get_inputs()[1].shape[2]), np.float32)
    context = np.zeros(CONTEXT, np.float32)
    probs = []
    for i in range(0, len(audio) - NEW + 1, NEW):
        x = np.concatenate([context, audio[i:i + NEW]]).astype(np.float32)[None, :]
        prob, state = sess.run(None, {"input": x, "state": state, "sr": np.asarray(rate, np.int64)})
        probs.append(float(prob.reshape(-1)[0]))
        context = x[0, -CONTEXT:]
    return np.asarray(probs)
