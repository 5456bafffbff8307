"""One loaded configuration per (column, threads): `run(audio)` does one
end-to-end pass from fresh states and returns {"chunk_s": per-chunk seconds,
"frontend_s", "e2e_s"}; `calls` counts graph calls of the last pass.

The same classes run in the round-robin of the main process and in the
fresh child that measures cold start and peak memory (`make_config(spec)`),
so a child never imports torch unless its column is PyTorch.
"""

from __future__ import annotations

import time

import numpy as np

from .pipeline import Pipeline, client_pass


class ClientConfig:
    """Our client: runtime_py's frontend and state loop (Pipeline) on runners of one backend."""

    def __init__(self, signature, runs: dict, search: str = "client", context=None):
        import contextlib

        self.pipe = Pipeline(signature, runs, search)
        self.context = context or contextlib.nullcontext
        self.provider = getattr(runs.get("encoder"), "provider", None)  # the ORT execution provider, if any

    @property
    def calls(self) -> dict:
        return dict(self.pipe.calls)

    def run(self, audio: np.ndarray) -> dict:
        with self.context():
            return client_pass(self.pipe, audio)


class SherpaConfig:
    """sherpa-onnx's C++ recognizer: accept_waveform computes the fbank, each
    decode_stream runs one chunk (encoder + greedy search), timed alone."""

    def __init__(self, paths: dict, threads: int, normalize_samples: bool, tail_samples: int, rate: int = 16000):
        from targets.sherpa.client import sherpa_recognizer

        self.rec = sherpa_recognizer(None, threads, paths=paths, normalize_samples=normalize_samples)
        self.tail = np.zeros(tail_samples, np.float32)  # ours plus one frame shift: the same chunks run
        self.rate = rate
        self.provider = None
        self.calls = {}

    def run(self, audio: np.ndarray) -> dict:
        clock = time.perf_counter
        t0 = clock()
        stream = self.rec.create_stream()
        stream.accept_waveform(self.rate, audio)
        stream.accept_waveform(self.rate, self.tail)
        stream.input_finished()
        t1 = clock()
        times = []
        while self.rec.is_ready(stream):
            ts = clock()
            self.rec.decode_stream(stream)
            times.append(clock() - ts)
        tokens = list(self.rec.get_result_all(stream).tokens)
        self.calls = {"encoder": len(times)}
        return {"chunk_s": np.asarray(times), "frontend_s": t1 - t0, "e2e_s": clock() - t0, "tokens": tokens}


def torch_config(model, signature, threads: int) -> ClientConfig:
    import torch

    from edge.export import torch_runner

    def context():
        torch.set_num_threads(threads)
        return torch.inference_mode()
    return ClientConfig(signature, {g.name: torch_runner(model, g) for g in signature.graphs}, context=context)


def artifact_config(files: dict, signature, backend: str, threads: int, providers=None,
                    search: str = "client") -> ClientConfig:
    from runtime_py.backends import open_runner

    runs = {g.name: open_runner(files[g.name], g, backend, threads, providers=providers) for g in signature.graphs}
    return ClientConfig(signature, runs, search)


def make_config(spec: dict, signature, model=None):
    """A configuration from a JSON-able spec (what the fresh child gets):
    kind pytorch / artifact / client / sherpa."""
    kind, threads = spec["kind"], int(spec["threads"])
    if kind == "pytorch":
        if model is None:
            import torch

            torch.set_num_threads(threads)
            if spec.get("factory"):
                from edge.factory import load_model
                model = load_model(spec["factory"])
            else:
                from edge.checkpoint import load_checkpoint
                model, _ = load_checkpoint(spec["checkpoint"])
        return torch_config(model.eval(), signature, threads)
    if kind == "sherpa":
        return SherpaConfig(spec["files"], threads, spec["normalize_samples"], spec["tail_samples"],
                            signature.frontend.sample_rate)
    return artifact_config(spec["files"], signature, spec["backend"], threads, spec.get("providers"),
                           spec.get("search", "client"))
