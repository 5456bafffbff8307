#!/usr/bin/env python3
"""Live speech recognition from a microphone with a bundle made by edge-build.

    python examples/live_microphone.py dist/demo-conformer-rpi
    python examples/live_microphone.py dist/demo-conformer-rpi --device 2   # see --list-devices

Reads 100 ms blocks from sounddevice, feeds them to a StreamingRecognizer (one
stream of the loaded model, with endpointing: an utterance ends after
--endpoint-ms of silence and its states are reset), and prints the partial
text as it changes and each final result. Ctrl-C stops. Needs
`pip install sounddevice` and PortAudio (`sudo apt-get install libportaudio2`).
"""

import argparse
import sys

from runtime_py.manifest import ManifestError
from runtime_py.recognizer import Final, Partial, StreamingRecognizer
from runtime_py.session import SessionError
from runtime_py.stream import Model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", nargs="?", help="bundle folder made by edge-build")
    parser.add_argument("--device", default=None, help="input device index or name (default: the system's)")
    parser.add_argument("--list-devices", action="store_true", help="print the audio devices and exit")
    parser.add_argument("--endpoint-ms", type=float, default=600.0, help="silence that ends an utterance")
    args = parser.parse_args(argv)

    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:  # OSError: the package is there, PortAudio is not
        print(f"error: sounddevice is not usable ({e}); install it with: pip install sounddevice "
              "(and sudo apt-get install libportaudio2)", file=sys.stderr)
        return 2
    if args.list_devices:
        print(sd.query_devices())
        return 0
    if args.bundle is None:
        parser.error("the bundle is required")
    device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    try:
        sd.check_input_settings(device=device, channels=1, dtype="float32")
        model = Model.from_bundle(args.bundle)
    except (ManifestError, SessionError, ValueError, sd.PortAudioError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    rate = model.signature.frontend.sample_rate
    recognizer = StreamingRecognizer(model, endpoint_silence_ms=args.endpoint_ms)
    block = rate // 10  # 100 ms
    print(f"listening ({model.backend}/{model.precision}, {rate} Hz); Ctrl-C stops", file=sys.stderr)
    try:
        with sd.InputStream(device=device, channels=1, dtype="float32", samplerate=rate, blocksize=block) as mic:
            while True:
                samples, _ = mic.read(block)
                # backlog: audio still queued at the device, so a slow machine drops instead of lagging
                for event in recognizer.accept_audio(samples[:, 0], rate, backlog=mic.read_available):
                    if isinstance(event, Partial):
                        print(f"\r{event.text}", end="", flush=True)
                    elif isinstance(event, Final):
                        print(f"\r[{event.start_s:6.1f}-{event.end_s:6.1f} s] {event.text}")
    except KeyboardInterrupt:
        for event in recognizer.finish():
            if isinstance(event, Final) and event.text:
                print(f"\r[{event.start_s:6.1f}-{event.end_s:6.1f} s] {event.text}")
    print(f"RTF {recognizer.summary()['rtf']:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
