"""edge.declare(): a user's model as it is, through export, parity, bundle and client."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edge
from byom_models import CACHE, CHUNK, POSITIONS, declare_time_major, declare_vad
from edge.export import check_onnx_parity, export_onnx, torch_runner
from runtime_py.stateloop import StateLoop

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


def test_signature_is_derived_from_the_users_objects():
    sig = declare_time_major().signature()
    enc = sig.graph("encoder")
    assert [t.name for t in enc.inputs] == ["x"] and enc.inputs[0].shape == (1, CHUNK, 20)
    names = [s.name for s in enc.states]
    assert names == ["conv_0", "attn_keys", "attn_values", "valid", "offset"]
    by = {s.name: s for s in enc.states}
    assert by["attn_keys"].shape == (1, CACHE, 16) and by["attn_keys"].batch_axis == 0  # from states(1) vs (2)
    assert by["valid"].dtype == "int64" and by["valid"].shape == (1,)
    assert by["offset"].shape == () and by["offset"].batch_axis is None  # a rank-0 counter
    assert enc.outputs[0].name == "log_probs" and enc.outputs[0].shape == (1, CHUNK, 12)  # made batch-major
    assert sig.decoder == "ctc" and sig.vocab_size == 12 and sig.subsampling == 1


def test_time_major_model_exports_with_parity_over_200_chunks(tmp_path):
    model = declare_time_major()
    paths = export_onnx(model, tmp_path)
    report = check_onnx_parity(model, paths, chunks=200)
    assert report["encoder"]["passed"], report
    assert report["encoder"]["max_abs_diff"] < 1e-4


def test_counter_advances_in_the_graph_and_saturates():
    model = declare_time_major()
    enc = model.signature().graph("encoder")
    loop = StateLoop(enc, torch_runner(model, enc))
    x = np.random.default_rng(0).standard_normal((1, CHUNK, 20)).astype(np.float32)
    seen = []
    for _ in range(12):
        loop.step({"x": x})
        seen.append(int(loop.states["offset"]))
    assert seen[:3] == [8, 16, 24]
    assert max(seen) == POSITIONS - CHUNK and seen[-1] == POSITIONS - CHUNK
    assert int(loop.states["valid"][0]) == CACHE  # the user's own validity state, returned by the step


def test_the_step_is_called_as_the_user_wrote_it():
    """The graph module feeds the user's step its own layout and nested structure:
    compare with calling the user's code by hand."""
    from byom_models import TimeMajorChunkModel
    torch.manual_seed(0)
    m = TimeMajorChunkModel().eval()
    model = declare_time_major()
    model_m = [mod for mod in model.modules_of("encoder")][0]
    m.load_state_dict(model_m.state_dict())
    x = torch.randn(1, CHUNK, 20)
    st = m.init_states(1)
    mask = torch.zeros(1, CACHE, dtype=torch.bool)
    with torch.no_grad():
        y_user, _ = m.forward_chunk(x.transpose(0, 1), torch.tensor([CHUNK]), torch.tensor(0), CACHE, st, mask)
        enc = model.signature().graph("encoder")
        feeds = {"x": x.numpy(), **{s.name: np.zeros(s.shape, s.dtype) for s in enc.states}}
        y_ours = torch_runner(model, enc)(feeds)["log_probs"]
    np.testing.assert_allclose(y_ours, y_user.transpose(0, 1).numpy(), atol=1e-6)


def test_declared_mismatch_names_the_state():
    bad = edge.Step(lambda x, s: (x.sum(-1, keepdim=True).repeat(1, 1, 3), [s[0][:, :2]]),
                    states=lambda b: [torch.zeros(b, 4)], names=["h"], returns=("logits", edge.STATES))
    with pytest.raises(edge.DeclarationError, match=r"h: got \[1, 2\], want \[1, 4\]"):
        edge.declare("bad", encoder=bad, head="ctc", chunk=4, tokens=["a", "b", "c"])


def test_hidden_state_is_not_taken_for_ctc_logits():
    step = edge.Step(lambda x, s: (x[..., :144] if x.shape[-1] >= 144 else x.repeat(1, 1, 2), s),
                     states=lambda b: [torch.zeros(b, 2)], names=["h"], returns=("hidden", edge.STATES))
    with pytest.raises(edge.DeclarationError, match="Is it a hidden state"):
        edge.declare("enc", encoder=step, head="ctc", chunk=4, tokens=[str(i) for i in range(5)])


def test_a_state_the_step_does_not_return_is_refused():
    step = edge.Step(lambda x, h, c: (x, h), states={"h": torch.zeros(1, 2), "c": torch.zeros(1, 2)},
                     args=(edge.FEATURES, edge.State("h"), edge.State("c")), returns=("y", edge.State("h")))
    with pytest.raises(edge.DeclarationError, match="state 'c' is not returned"):
        edge.declare("m", encoder=step, head="none", chunk=4)


def test_a_crashing_step_is_one_line_with_the_shapes():
    def step(x, s):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(edge.DeclarationError, match=r"x \[1, 4, 80\].*RuntimeError: mat1 and mat2"):
        edge.declare("m", encoder=edge.Step(step, states=[torch.zeros(1, 2)]), head="none", chunk=4)


def test_non_constant_initial_state_is_refused():
    step = edge.Step(lambda x, s: (x, s), states=[torch.arange(4.0)[None]], returns=("y", edge.STATES))
    with pytest.raises(edge.DeclarationError, match="not one constant"):
        edge.declare("m", encoder=step, head="none", chunk=4)


def test_initial_values_are_used_in_the_probe():
    """A model whose offset must start at 64 (it indexes a table from 64 on)
    works: the probe and every rollout start from the declared initial value."""
    table = torch.randn(200, 3)

    def step(x, offset):
        return table[offset - 64 + torch.arange(4)][None] + x[..., :3], offset + 4
    decl = edge.Step(step, states=[torch.full((), 64, dtype=torch.int64)], names=["offset"],
                     args=(edge.FEATURES, edge.State("offset")), returns=("y", edge.State("offset")), batch_axis=None, counters={"offset": 190})
    model = edge.declare("offset64", encoder=decl, head="none", chunk=4)
    assert model.signature().graph("encoder").states[0].initial == 64.0


def test_vad_on_raw_samples_is_first_class(tmp_path):
    model = declare_vad()
    sig = model.signature()
    assert sig.decoder == "none" and sig.frontend.kind == "raw" and sig.frontend.left_pad == 64
    enc = sig.graph("encoder")
    assert enc.inputs[0].shape == (1, 576, 1) and enc.outputs[0].shape == (1, 1)
    paths = export_onnx(model, tmp_path)
    assert check_onnx_parity(model, paths, chunks=200)["encoder"]["passed"]


def test_a_bool_state_exports_and_runs(tmp_path):
    """A validity flag kept as bool: declared, exported, and rolled out on ONNX Runtime."""
    def step(x, seen):
        y = x.mean(-1) * seen.float()
        return y, torch.ones_like(seen)
    decl = edge.Step(step, states=lambda b: torch.zeros(b, 1, dtype=torch.bool), names=["seen"],
                     returns=("y", edge.State("seen")))
    model = edge.declare("flag", encoder=decl, head="none", chunk=4)
    assert model.signature().graph("encoder").states[0].dtype == "bool"
    assert check_onnx_parity(model, export_onnx(model, tmp_path), chunks=20)["encoder"]["passed"]
