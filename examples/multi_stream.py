#!/usr/bin/env python3
"""Four streams sharing one loaded model, decoded together with decode_streams.

    python examples/multi_stream.py                              # shipped conformer, exported with a batch axis
    python examples/multi_stream.py --family transducer a.wav b.wav c.wav d.wav
    python examples/multi_stream.py --bundle dist/demo-conformer-rpi   # a batch-1 bundle: one by one

The model is loaded once; each stream owns only its states, decoder and
features. `decode_streams` runs one chunk of every ready stream per call:
as one batch when the graph was exported with a dynamic batch axis
(`export_onnx(..., dynamic_batch=True)`, ONNX Runtime), else one after the
other. Prints each stream's text and the cost per stream-chunk, batched
against one by one (interleaved rounds, paired median ratio).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from runtime_py.audio import read_wav
from runtime_py.backends import open_runner
from runtime_py.stream import Model

SAMPLES = Path(__file__).resolve().parent.parent / "edge" / "checkpoints" / "samples"


def load_model(args, workdir: str) -> tuple[Model, Model]:
    """(batched, one-by-one): two views of the same loaded runners."""
    if args.bundle:
        model = Model.from_bundle(args.bundle)
    else:  # export the shipped PyTorch model with a batch axis (needs the export extra: torch, onnx)
        try:
            import torch  # noqa: F401  (only to say what is missing before anything starts)
        except ImportError:
            print("error: without --bundle this example exports the shipped model, which needs the export "
                  "extra (pip install -e '.[export]'); with the runtime only, pass --bundle dist/demo-conformer-rpi",
                  file=sys.stderr)
            raise SystemExit(2) from None
        from edge.checkpoint import load_or_init
        from edge.export import export_onnx, read_signature

        torch_model, info = load_or_init(args.family)
        paths = export_onnx(torch_model, workdir, dynamic_batch=True)
        sig = read_signature(paths["encoder"])
        runs = {g.name: open_runner(paths[g.name], g, "onnx") for g in sig.graphs}
        model = Model(sig, runs, info.get("tokens"), backend="onnx", precision="fp32")
    return model, Model(model.signature, model.runs, model.tokens, batch=False)


def decode_all(model: Model, audios: list) -> tuple[list, float, int]:
    """Texts, decoding seconds (the model's steps, not the frontend) and
    chunks of one pass over every audio, one stream each."""
    rate = model.signature.frontend.sample_rate
    streams = [model.create_stream() for _ in audios]
    for stream, samples in zip(streams, audios):
        stream.accept_waveform(rate, samples)
        stream.input_finished()
    start = time.perf_counter()
    while model.decode_streams(streams):
        pass
    return [s.text for s in streams], time.perf_counter() - start, sum(s.chunks for s in streams)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wavs", nargs="*", help="WAV files at the model's rate (default: 4 shipped samples)")
    parser.add_argument("--family", default="conformer", help="shipped model to export (default: %(default)s)")
    parser.add_argument("--bundle", help="use a bundle made by edge-build instead")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (default: %(default)s)")
    args = parser.parse_args(argv)
    for w in args.wavs:
        if Path(w).is_dir():
            hint = f"; a bundle goes after --bundle: --bundle {w}" if (Path(w) / "manifest.json").exists() else ""
            print(f"error: {w} is a folder, not a WAV file{hint}", file=sys.stderr)
            return 2
        if not Path(w).is_file():
            print(f"error: {w} does not exist", file=sys.stderr)
            return 2
    wavs = args.wavs or sorted(SAMPLES.glob("*.wav"))[:4]
    audios = [read_wav(w)[0] for w in wavs]

    with tempfile.TemporaryDirectory() as workdir:
        batched, one_by_one = load_model(args, workdir)
        print(f"{len(audios)} streams on one {batched.signature.family} model; "
              f"batched: {'yes' if batched.batch else 'no (batch-1 graph: one by one)'}")
        texts, _, _ = decode_all(batched, audios)
        for wav, text in zip(wavs, texts):
            print(f"  {Path(wav).name}: {text}")
        if decode_all(one_by_one, audios)[0] != texts:
            print("error: batched and one-by-one texts differ", file=sys.stderr)
            return 1
        pairs = []
        for _ in range(args.rounds):  # interleaved: both see the same machine load
            _, tb, chunks = decode_all(batched, audios)
            _, t1, _ = decode_all(one_by_one, audios)
            pairs.append((tb / chunks, t1 / chunks))
    b = statistics.median(p[0] for p in pairs) * 1e3
    s = statistics.median(p[1] for p in pairs) * 1e3
    ratio = statistics.median(p[1] / p[0] for p in pairs)
    print(f"per stream-chunk: batched {b:.3f} ms, one by one {s:.3f} ms; "
          f"one-by-one / batched {ratio:.2f}x (median of {args.rounds} paired rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
