"""ONNX Runtime execution providers: an ordered list, a one-line notice for
each one this build lacks (the PyPI wheel has no XNNPACK/NNAPI/CoreML), CPU
as the fallback, and the provider actually used reported by the demo
summary and edge-bench."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from demo import cli
from targets.bench import run_bench
from runtime_py.backends import (BackendError, ProviderFallback, open_runner, provider_names,
                                 usable_providers)
from runtime_py.manifest import Bundle
from runtime_py.stateloop import initial_states
from tests.bundle_fixtures import cached_bundle

CPU, XNN = "CPUExecutionProvider", "XnnpackExecutionProvider"


def test_short_and_full_names_in_order():
    assert provider_names("xnnpack, NNAPI,cpu") == [XNN, "NnapiExecutionProvider", CPU]
    assert provider_names(["CoreMLExecutionProvider", "cpu", "cpu"]) == ["CoreMLExecutionProvider", CPU]
    with pytest.raises(BackendError, match="unknown execution provider 'xnnpak'"):
        provider_names("xnnpak,cpu")


def test_available_providers_keep_their_order_without_a_notice():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any notice would fail the test
        assert usable_providers("xnnpack,cpu", [XNN, CPU]) == [XNN, CPU]
        assert usable_providers("xnnpack", [XNN, CPU]) == [XNN, CPU]  # CPU always last, for unsupported nodes


def test_missing_providers_fall_back_to_cpu_with_one_notice():
    with pytest.warns(ProviderFallback) as caught:
        assert usable_providers("xnnpack,nnapi,cpu", ["AzureExecutionProvider", CPU]) == [CPU]
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert XNN in msg and "NnapiExecutionProvider" in msg and msg.endswith(f"using {CPU}")


def test_a_real_session_falls_back_and_says_which_provider_runs():
    import onnxruntime as ort
    if XNN in ort.get_available_providers():
        pytest.skip("this onnxruntime build has XNNPACK: nothing to fall back from")
    bundle, _ = cached_bundle("conformer")
    b = Bundle(bundle)
    enc = b.signature.graph("encoder")
    path = b.path(b.find("encoder", "ort", "fp32").path)
    feeds = {enc.inputs[0].name: np.random.default_rng(0).standard_normal(enc.inputs[0].shape).astype(np.float32),
             **initial_states(enc)}
    with pytest.warns(ProviderFallback, match="XnnpackExecutionProvider"):
        run = open_runner(path, enc, "ort", providers=["xnnpack", "cpu"])
    assert run.provider == CPU and run.session.get_providers() == [CPU]
    plain = open_runner(path, enc, "ort")
    for name, value in plain(feeds).items():
        np.testing.assert_array_equal(run(feeds)[name], value)


def test_demo_prints_the_notice_once_and_the_provider_in_the_summary():
    bundle, _ = cached_bundle("transducer")  # three graphs: the notice must still be one line
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([str(bundle), "--wav", str(bundle / "golden" / "audio.wav"), "--backend", "ort:fp32",
                     "--providers", "xnnpack,cpu"], out=out, err=err)
    assert code == 0, err.getvalue()
    notices = [ln for ln in err.getvalue().splitlines() if ln.startswith("notice:")]
    import onnxruntime as ort
    if XNN not in ort.get_available_providers():
        assert len(notices) == 1 and "XnnpackExecutionProvider" in notices[0], err.getvalue()
    assert f"(ort/fp32 on {CPU}, 1 thread)" in out.getvalue()


def test_bench_reports_the_provider_per_row():
    bundle, _ = cached_bundle("conformer")
    res = run_bench(bundle=bundle, backends=["ort:fp32"], seconds=1, repeats=1, subprocesses=False,
                    providers=["xnnpack", "cpu"], progress=None)
    row, = res["rows"]
    assert row["status"] == "ok" and row["provider"] == CPU


def test_every_ort_session_takes_the_clients_options(monkeypatch):
    """open_runner (the client, edge-bench's columns, the parity rollouts) gets its
    SessionOptions from the one place, runners.ort_session_options: the threads
    asked for and one inter-op thread (XNNPACK: ORT's pool at 1, the provider gets
    the threads), ONNX Runtime's spinning left on; a transducer's decoder and joiner
    one thread whatever the client runs (runners.graph_threads); a change made
    there reaches the session."""
    import onnxruntime as ort

    from runtime_py import runners

    bundle, _ = cached_bundle("conformer")
    b = Bundle(bundle)
    enc = b.signature.graph("encoder")
    path = b.path(b.find("encoder", "ort", "fp32").path)
    opts = open_runner(path, enc, "ort", threads=2).session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (2, 1)
    with pytest.raises(RuntimeError, match="allow_spinning"):  # no entry: ORT's default, spinning on
        opts.get_session_config_entry("session.intra_op.allow_spinning")
    tb, _ = cached_bundle("transducer")
    t = Bundle(tb)
    for name in ("decoder", "joiner"):  # one row per call: no pool, whatever the client's count
        g = t.signature.graph(name)
        run = open_runner(t.path(t.find(name, "ort", "fp32").path), g, "ort", threads=2)
        assert run.session.get_session_options().intra_op_num_threads == 1, name
    assert runners.graph_threads("encoder", 3) == 3
    assert runners.ort_session_options(ort, 3, xnnpack=True).intra_op_num_threads == 1
    base, seen = runners.ort_session_options, []

    def changed(ort_, threads, xnnpack=False):
        seen.append(threads)
        so = base(ort_, threads, xnnpack)
        so.add_session_config_entry("session.disable_prepacking", "1")
        return so
    monkeypatch.setattr(runners, "ort_session_options", changed)
    opts = open_runner(path, enc, "ort", threads=1).session.get_session_options()
    assert seen == [1] and opts.get_session_config_entry("session.disable_prepacking") == "1"
