#!/usr/bin/env python3
"""Decode one WAV file with a bundle made by edge-build.

    python examples/decode_file.py dist/demo-conformer-rpi edge/checkpoints/samples/one_two_three.wav

One loaded model, one stream: the samples go in, the end of input is marked
(tail padding, the frontend's last frames), and every ready chunk is
decoded. Prints the text and the real-time factor (RTF: compute seconds per
second of audio). Torch-free: only runtime_py is used.
"""

import argparse
import sys
import time

from runtime_py.audio import read_wav, resample
from runtime_py.manifest import ManifestError
from runtime_py.session import SessionError
from runtime_py.stream import Model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="bundle folder made by edge-build")
    parser.add_argument("wav", help="a WAV file (any rate: it is resampled to the model's)")
    parser.add_argument("--backend", default=None, help="ort, onnx or tflite, or with a precision: ort:int8 (default: the best one here)")
    parser.add_argument("--threads", type=int, default=1, help="threads for the model (default: %(default)s)")
    args = parser.parse_args(argv)

    try:
        model = Model.from_bundle(args.bundle, backend=args.backend, threads=args.threads)
        samples, rate = read_wav(args.wav)
    except (ManifestError, SessionError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    # the model's sample rate comes from the bundle's signature
    model_rate = model.signature.frontend.sample_rate
    if rate != model_rate:
        samples = resample(samples, rate, model_rate)

    start = time.perf_counter()
    stream = model.create_stream()
    stream.accept_waveform(model_rate, samples)
    stream.input_finished()  # tail padding, so the last words reach a full chunk
    while model.decode_streams([stream]):  # one chunk per call, until none is ready
        pass
    elapsed = time.perf_counter() - start

    duration = len(samples) / model_rate
    print(f"{args.wav}: {stream.text}")
    print(f"{duration:.2f} s of audio, {stream.chunks} chunks, {model.backend}/{model.precision}, "
          f"RTF {elapsed / duration:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
