#!/usr/bin/env python3
"""Build a bundle from Python, then decode its golden utterance with it.

    python examples/build_bundle.py                          # shipped conformer -> dist/demo-conformer-rpi
    python examples/build_bundle.py --family transducer --target android -o /tmp/bundles
    python examples/build_bundle.py --backends ort:fp32 --parity-chunks 20   # a quick one

`targets.build.build_bundle` is what `edge-build` runs: export to ONNX, convert
for the target, roll every artifact out against PyTorch (parity, written into
manifest.json), golden files, model card. A failed parity raises. The
bundle's own golden check then runs it through the torch-free client.
"""

import argparse
import sys
from pathlib import Path

from runtime_py.audio import read_wav
from runtime_py.manifest import Bundle
from runtime_py.stream import Model
from targets.build import build_bundle


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="conformer", help="lstm, conformer or transducer (default: %(default)s)")
    parser.add_argument("--target", default="rpi", help="rpi, android or ios (default: %(default)s)")
    parser.add_argument("-o", "--output", type=Path, default=Path("dist"), help="parent folder (default: dist)")
    parser.add_argument("--backends", default=None,
                        help="comma-separated backend:precision, e.g. ort:fp32,ort:int8 (default: the target's)")
    parser.add_argument("--parity-chunks", type=int, default=200, help="parity rollout length (default: %(default)s)")
    parser.add_argument("--stream-seconds", type=float, default=None,
                        help="how long the streaming-duration proof runs (default: an hour)")
    args = parser.parse_args(argv)
    backends = [tuple(b.split(":")) for b in args.backends.split(",")] if args.backends else None

    out = args.output / f"demo-{args.family}-{args.target}"
    path = build_bundle(args.family, args.target, out, backends=backends, parity_chunks=args.parity_chunks,
                        stream_seconds=args.stream_seconds, progress=lambda line: print(f"  {line}"))

    bundle = Bundle(path)
    print(f"built {path}:")
    for a in bundle.artifacts:
        print(f"  {a.path:28s} {a.backend}/{a.precision}  {a.bytes / 1e6:6.2f} MB  "
              f"parity {'passed' if a.parity.get('passed') else 'FAILED'}")

    # the golden utterance through the client, on the bundle just built
    model = Model.from_bundle(path)
    samples, rate = read_wav(bundle.path(bundle.manifest["golden"]["audio"]))
    stream = model.create_stream()
    stream.accept_waveform(rate, samples)
    stream.input_finished()
    while model.decode_streams([stream]):
        pass
    expected = bundle.path(bundle.manifest["golden"]["transcript"]).read_text(encoding="utf-8").strip()
    print(f"golden utterance: {stream.text!r} (expected {expected!r})")
    return 0 if stream.text == expected else 1


if __name__ == "__main__":
    sys.exit(main())
