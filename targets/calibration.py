"""The one calibration source of every int8 recipe.

An int8 recipe that calibrates activation ranges (targets/quantize.py's
static Conv step for ONNX Runtime; targets/tflite/quantize.py's full-integer
option) needs, per chunk, the graph's complete feeds: its inputs *and* the
states a real stream has at that chunk, not zeros. `rollout_feeds` gets them
by rolling the fp32 ONNX graph on ONNX Runtime (the client's own runner)
through the one state loop (runtime_py.stateloop.StateLoop), recording each
step's feeds before the step.

The data: `speech_chunks` is targets.golden.parity_stream with
CALIBRATION_SEED (the shipped sample utterances with other gains, noise and
gaps than the parity stream, seed 0): a recipe is never calibrated on the data
its parity check is judged on. Graphs other than a stateful encoder (a
decoder, a joiner) get the inputs the parity check draws for them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime_py.signature import GraphSpec, Signature

CALIBRATION_CHUNKS = 32  # 10 s of the Zipformer's 320 ms chunks; enough for MinMax to settle on speech levels
CALIBRATION_SEED = 1  # the parity stream uses seed 0: calibration is not the data the guard is checked on
CALIBRATION_SOURCE = (f"{CALIBRATION_CHUNKS} chunks of speech features (edge/checkpoints/samples, stream seed "
                      f"{CALIBRATION_SEED}), states carried by the fp32 graph; MinMax ranges")


def speech_chunks(signature: Signature, n: int = CALIBRATION_CHUNKS) -> list[np.ndarray]:
    """n encoder input chunks of calibration speech (not the parity stream)."""
    from .golden import parity_stream

    return parity_stream(signature, n, seed=CALIBRATION_SEED)


def _typed(graph: GraphSpec, feeds: dict) -> dict:
    specs = {t.name: t for t in graph.all_inputs()}
    return {k: np.asarray(v, dtype=specs[k].dtype) for k, v in feeds.items()}


def rollout_feeds(onnx_path: Path | str, graph: GraphSpec, inputs: list[dict]) -> list[dict]:
    """Per chunk of `inputs` (the graph's non-state inputs), its complete
    feeds: the inputs and the states the loop carried to that chunk."""
    from runtime_py.backends import open_runner
    from runtime_py.stateloop import StateLoop

    loop = StateLoop(graph, open_runner(onnx_path, graph, "onnx", threads=1))  # 1 thread: the same ranges twice
    feeds = []
    for chunk in inputs:
        feeds.append(_typed(graph, loop.feeds(chunk)))
        loop.step(chunk)
    return feeds


def calibration_feeds(onnx_path: Path | str, graph: GraphSpec, signature: Signature,
                      n: int = CALIBRATION_CHUNKS) -> list[dict]:
    """Complete feeds (inputs and states) for calibrating one graph."""
    from .parity import graph_chunks

    if graph.name != "encoder" or not graph.states:
        speech = speech_chunks(signature, n) if graph.name == "encoder" else []
        return [_typed(graph, f) for f in graph_chunks(signature, graph, speech, n, seed=CALIBRATION_SEED)]
    x = graph.inputs[0].name
    return rollout_feeds(onnx_path, graph, [{x: c} for c in speech_chunks(signature, n)])
