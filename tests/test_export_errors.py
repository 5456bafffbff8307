"""An exported graph whose I/O differs from the signature: the error names
the difference (which tensor, which dimension, what the signature says, what
to change), and speaks of a dropped input only when an input is missing."""

from __future__ import annotations

import onnx
import pytest
import torch

import edge
from edge.export import ExportError, _check_io, export_onnx

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


def _ctc_like(use_state: bool = True):
    proj = torch.nn.Linear(80, 64)

    def step(x, h):
        y = torch.log_softmax(proj(x), dim=-1)  # [1, 16, 64]
        return y, (h + y.mean() if use_state else torch.zeros(1, 4))
    return edge.declare("ctclike", encoder=edge.Step(step, states=lambda b: torch.zeros(b, 4), names=["h"],
                                                     args=(edge.FEATURES, edge.State("h")),
                                                     returns=("log_probs", edge.State("h"))),
                        head="none", chunk=16)


def test_a_symbolic_dimension_is_named_with_the_reshape_that_pins_it(tmp_path):
    model = _ctc_like()
    path = export_onnx(model, tmp_path)["encoder"]
    proto = onnx.load(str(path))
    out = next(o for o in proto.graph.output if o.name == "log_probs")
    dim = out.type.tensor_type.shape.dim[0]
    dim.ClearField("dim_value")
    dim.dim_param = "LogSoftmaxlog_probs_dim_0"  # what the tracer writes for a size it computed
    with pytest.raises(ExportError) as e:
        _check_io(proto, model.signature().graph("encoder"))
    msg = str(e.value)
    assert ("output 'log_probs' dimension 0 is symbolic ('LogSoftmaxlog_probs_dim_0'), the signature says 1: "
            "pin it with a reshape to (1, 16, 64)") in msg, msg
    assert "missing" not in msg and "drops" not in msg and "dropped" not in msg  # the inputs were identical


def test_a_dropped_input_is_named_as_dropped(tmp_path):
    """The step never reads its state: the exporter drops the input."""
    with pytest.raises(ExportError) as e:
        export_onnx(_ctc_like(use_state=False), tmp_path)
    msg = str(e.value).splitlines()[0]
    assert "input 'h' is missing: the exporter drops an input the step does not use" in msg, msg
    assert "symbolic" not in msg


def test_a_wrong_dtype_and_size_are_named():
    from edge.export import io_differences
    got = [("x", (1, 16, 80), 1), ("offset", (), 6)]
    want = [("x", (1, 8, 80), 1), ("offset", (), 7)]
    diffs = io_differences("input", got, want)
    assert diffs == ["input 'x' dimension 1 is 16, the signature says 8",
                     "input 'offset' is int32, the signature says int64: cast it in the step"]
