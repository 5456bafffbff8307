"""edge-train's resumable runs (--state) and its own-model training
(--model FILE.py:FUNCTION, the Zipformer's trainable_small).

The resume checks compare a run stopped mid-epoch and started again with the
same run done in one go: every loss must be *equal* (not close: the state holds
every random generator, the optimiser and the data position, and one thread
computes the same sums in the same order), and the step counter must go on
from where it stopped."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from edge.data.corpus import tokens as corpus_tokens
from edge.rnnt_loss import decoder_contexts
from edge.train import parse_args, train
from edge.training import cli
from edge.training.resume import read_state

ROOT = Path(__file__).resolve().parent.parent
FACTORY = ROOT / "examples" / "zipformer_factory.py"
TEACHER = ROOT / "edge" / "checkpoints" / "conformer" / "model.pt"
TINY_TRANSDUCER = '{"hidden": 48, "num_layers": 2, "chunk_frames": 8, "joiner_dim": 32, "decoder_dim": 16}'
needs_zipformer = pytest.mark.skipif(importlib.util.find_spec("zipformer") is None,
                                     reason="the PyPI zipformer package is not installed (see docs/accuracy.md)")


@pytest.fixture(scope="module")
def corpus8(tmp_path_factory):
    """8 train utterances: 3 batches per epoch at --batch-frames 1000, so 2 epochs are 6 steps
    and a stop after step 4 is in the middle of the second epoch."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed to synthesise the tiny corpus")
    from edge.data.corpus import generate

    out = tmp_path_factory.mktemp("corpus8")
    generate(out, seed=0, n_train=8, n_valid=2, n_test=1, progress=False, workers=1)
    return out


def _args(corpus, tmp, model_args, *extra):
    return parse_args([*model_args, "--corpus", str(corpus), "--epochs", "2", "--batch-frames", "1000",
                       "--threads", "1", "--workers", "1", "--feature-cache", str(tmp / "features"),
                       "--log-every", "1", "--teacher", str(TEACHER), *extra])


def _stop_and_resume(corpus, tmp, model_args, valid_utts="0"):
    """(losses of the run in one go, losses before the stop, losses after the resume, the two
    runs' results, the state after the stop)."""
    quiet = lambda *a, **k: None  # noqa: E731
    whole = train(_args(corpus, tmp, model_args, "-o", str(tmp / "whole.pt"), "--valid-utts", valid_utts), log=quiet)
    state = tmp / "run" / "state.pt"
    split = ["-o", str(tmp / "run" / "best.pt"), "--state", str(state), "--curve", str(tmp / "run" / "curve.tsv"),
             "--valid-utts", valid_utts]
    first = train(_args(corpus, tmp, model_args, *split, "--stop-steps", "4"), log=quiet)
    paused = read_state(state)
    second = train(_args(corpus, tmp, model_args, *split), log=quiet)
    return whole, first, second, paused


def test_transducer_run_resumes_exactly_mid_epoch(corpus8, tmp_path):
    """Stopped after step 4 (epoch 2, batch 2 of 3) and started again: steps 5 and 6 have the
    very losses of the uninterrupted run, with SpecAugment and distillation on."""
    whole, first, second, paused = _stop_and_resume(
        corpus8, tmp_path, ["--family", "transducer", "--config", TINY_TRANSDUCER])
    assert len(paused["batches"]) == 3 and paused["step"] == 4
    assert (paused["epoch"], paused["next_batch"]) == (1, 1)  # in the middle of the second epoch
    assert whole["steps"] == 6 and first["steps"] == 4 and second["steps"] == 6
    assert first["losses"] == whole["losses"][:4]
    assert second["losses"] == whole["losses"][4:]  # exactly: same draws, same optimiser state
    rows = (tmp_path / "run" / "curve.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["step", "epoch", "train_minutes", "loss"]
    assert [int(r.split("\t")[0]) for r in rows[1:]] == [1, 2, 3, 4, 5, 6]  # each step once, in order
    assert [float(r.split("\t")[3]) for r in rows[1:]] == pytest.approx(whole["losses"], rel=1e-5)  # 6 digits


def test_a_resumable_run_refuses_max_minutes(corpus8, tmp_path, capsys):
    """--max-minutes fits the learning-rate schedule to one run's wall time: a run spread over
    several runs must pause with --stop-minutes instead."""
    rc = cli.main(["--family", "transducer", "--corpus", str(corpus8), "-o", str(tmp_path / "m.pt"),
                   "--state", str(tmp_path / "s.pt"), "--max-minutes", "5"])
    assert rc != 0 and "--stop-minutes" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()


def test_decoder_contexts_start_from_the_declared_context():
    """icefall trains (and sherpa-onnx decodes) from [-1, blank]: the RNN-T loss's decoder inputs
    must start there for a model that declares it, and from blanks by default."""
    y = torch.tensor([[5, 7, 9]])
    icefall = decoder_contexts(y, 2, blank=0, start=[-1, 0])
    assert icefall[0].tolist() == [[-1, 0], [0, 5], [5, 7], [7, 9]]
    assert decoder_contexts(y, 2, blank=0)[0, 0].tolist() == [0, 0]
    with pytest.raises(ValueError, match="context_size"):
        decoder_contexts(y, 2, blank=0, start=[0])


def _factory():
    spec = importlib.util.spec_from_file_location("zipformer_factory_under_test", FACTORY)
    zf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zf)
    return zf


@pytest.mark.slow  # about 60 s here: three Zipformer runs of 4-6 steps with the teacher
@needs_zipformer
def test_zipformer_trains_and_resumes_exactly(corpus8, tmp_path):
    """The package's Zipformer through edge-train: finite losses and an exact resume (its own
    layer skipping draws from Python's random, which the state carries too); the checkpoint
    holds our tokens and names the factory it came from."""
    model_args = ["--model", f"{FACTORY}:trainable_small"]
    whole, first, second, paused = _stop_and_resume(corpus8, tmp_path, model_args, valid_utts="1")
    assert all(torch.isfinite(torch.tensor(whole["losses"])))
    assert first["losses"] == whole["losses"][:4]
    assert second["losses"] == whole["losses"][4:] and second["steps"] == 6
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["tokens"] == corpus_tokens() and best["meta"]["config_overrides"]["model"].endswith(":trainable_small")
    assert (tmp_path / "run" / "tokens.txt").is_file()


@needs_zipformer
def test_build_small_loads_the_shipped_zipformer_checkpoint(tmp_path, monkeypatch):
    """build_small takes edge/checkpoints/zipformer (as edge-train's save_weights writes it) by
    default, with our tokens (46 words and blank) and the [-1, blank] decoder start it is trained from; without it
    the weights are random and the bundle says UNTRAINED (and build_small_untrained always is);
    ZIPFORMER_CHECKPOINT still wins."""
    from edge.training.external import save_weights

    zf = _factory()
    monkeypatch.delenv("ZIPFORMER_CHECKPOINT", raising=False)
    monkeypatch.delenv("ZIPFORMER_TOKENS", raising=False)
    monkeypatch.setattr(zf, "SHIPPED", tmp_path / "none")
    assert zf.build_small().trained is False
    trainable = zf.trainable_small(corpus_tokens())
    with torch.no_grad():  # weights no seeded factory makes, so loading them is what is checked
        for p in trainable.parameters():
            p.add_(0.01)
    save_weights(trainable, tmp_path / "shipped" / "model.pt", corpus_tokens(), {"trained": True})
    (tmp_path / "shipped" / "tokens.txt").write_text("".join(f"{t} {i}\n" for i, t in enumerate(corpus_tokens())))
    monkeypatch.setattr(zf, "SHIPPED", tmp_path / "shipped")
    model = zf.build_small()
    assert model.trained is True and list(model.tokens) == corpus_tokens()
    assert model.vocab_size == len(corpus_tokens()) == 47  # 46 words and blank
    assert model.signature().start_context() == [-1, 0]
    params = list(model.parameters())
    saved = torch.load(tmp_path / "shipped" / "model.pt", weights_only=True)["model"]
    for name in ("encoder_embed.conv.0.weight", "joiner.output_linear.weight", "decoder.embedding.weight"):
        assert any(p.shape == saved[name].shape and torch.equal(p, saved[name]) for p in params), name
    untrained = zf.build_small_untrained()  # what checks that need tokens on most frames build
    assert untrained.trained is False and len(untrained.tokens) == 500
    monkeypatch.setenv("ZIPFORMER_CHECKPOINT", str(tmp_path / "none.pt"))  # the override is used, not the demo
    with pytest.raises(FileNotFoundError):
        zf.build_small()


@needs_zipformer
def test_zipformer_checkpoint_override_takes_the_checkpoints_own_tokens(tmp_path, monkeypatch):
    """ZIPFORMER_CHECKPOINT naming an edge-train checkpoint (47 tokens) without ZIPFORMER_TOKENS
    loads with the tokens saved in it, not the 500 placeholders (a size mismatch before)."""
    from edge.training.external import save_weights

    zf = _factory()
    monkeypatch.delenv("ZIPFORMER_TOKENS", raising=False)
    save_weights(zf.trainable_small(corpus_tokens()), tmp_path / "run.pt", corpus_tokens(), {"trained": True})
    monkeypatch.setenv("ZIPFORMER_CHECKPOINT", str(tmp_path / "run.pt"))
    model = zf.build_small()
    assert model.trained is True and list(model.tokens) == corpus_tokens() and model.vocab_size == 47


def test_shipped_checkpoints_name_no_machine_path():
    """A shipped checkpoint's meta (the command that reproduces it, the corpus,
    the teacher) names paths relative to the repository: an absolute path is
    the training machine's and means nothing in a clone."""
    import torch

    shipped = sorted(Path(__file__).resolve().parents[1].glob("edge/checkpoints/*/model.pt"))
    assert len(shipped) >= 4  # conformer, lstm, transducer, zipformer

    def strings(x):
        if isinstance(x, str):
            yield x
        elif isinstance(x, dict):
            for v in x.values():
                yield from strings(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                yield from strings(v)

    for path in shipped:
        meta = torch.load(path, map_location="cpu", weights_only=True).get("meta", {})
        bad = [s for s in strings(meta) for word in s.split() if word.startswith(("/", "'/")) and len(word) > 1]
        assert not bad, (path.parent.name, bad[:2])
