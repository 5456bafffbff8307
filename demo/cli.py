"""edge-demo: live (or file) transcription with a bundle, torch-free.

    edge-demo dist/demo-conformer-rpi --mic
    edge-demo dist/demo-conformer-rpi --wav speech.wav --realtime --threads 2

Prints the partial text on one updating line, one line per finished
utterance, overrun warnings, and on exit (end of file or Ctrl-C) a summary:
RTF, per-chunk latency percentiles, overruns, dropped audio, utterances.
A bad bundle, WAV or audio device is one `error:` line and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import warnings

from runtime_py import formats
from runtime_py.cliargs import add_verbose, make_parser, quiet_libraries
from runtime_py.audio import NARROWBAND_HZ, WavError, is_narrowband
from runtime_py.decoding import SEARCHES, word_vocabulary
from runtime_py.backends import BackendError
from runtime_py.manifest import ManifestError
from runtime_py.recognizer import Final, Partial, StreamingRecognizer
from runtime_py.session import ModelSession, SessionError
from runtime_py.signature import SignatureError
from runtime_py.vad import EnergyVad

from .sources import GeneratedSource, MicSource, SourceError, WavSource  # noqa: F401 (re-exported for tests)

EXIT_USER_ERROR = 2


def backend_choice(text: str) -> tuple[str, str | None]:
    """'ort' or 'ort:int8' -> (backend, precision or None): the backend:precision
    syntax of edge-build --quant and edge-bench --backends, parsed by the
    formats table's one parser (runtime_py.formats.split_artifact, which
    Model.from_bundle uses too)."""
    try:
        return formats.split_artifact(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("edge-demo", "Streaming speech recognition from a microphone or a WAV file with an "
                    "edge-build bundle (no PyTorch needed).")
    add_verbose(p)
    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder made by edge-build (holds manifest.json)")
    src = p.add_argument_group("input")
    which = src.add_mutually_exclusive_group(required=True)
    which.add_argument("--mic", action="store_true", help="record from the microphone (needs sounddevice)")
    which.add_argument("--wav", metavar="FILE", help="transcribe a WAV file")
    pace = src.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true",
                      help="feed the WAV at its real speed, like a microphone")
    pace.add_argument("--fast", dest="realtime", action="store_false",
                      help="feed the WAV as fast as the model runs")
    p.set_defaults(realtime=False)
    src.add_argument("--device", type=int, default=None,
                     help="input device index (list them with: python -m sounddevice); default device if unset")
    src.add_argument("--mic-rate", type=int, default=None,
                     help="microphone sample rate in Hz (resampled to the model's); default: the model's rate")
    model = p.add_argument_group("model")
    model.add_argument("--backend", type=backend_choice, default=None, metavar="BACKEND[:PRECISION]",
                       help="artifact to run, e.g. ort:fp32, ort:int8, tflite:fp16 (or "
                            f"{', '.join(formats.runnable())} with --precision); default: the best one in the "
                            "bundle (" + " > ".join(f"{b}:{p}" for b, p in formats.preference_order()[:3])
                            + " ...)")
    model.add_argument("--precision", choices=formats.PRECISIONS, default=None,
                       help="artifact precision; default: fp32 if present")
    model.add_argument("--providers", default=None, metavar="LIST",
                       help="ONNX Runtime execution providers in order, e.g. xnnpack,nnapi,cpu or coreml,cpu; "
                            "one missing from this onnxruntime build is skipped with a notice; default: cpu")
    model.add_argument("--threads", type=int, default=1, help="intra-op threads of the runtime")
    model.add_argument("--decoding", choices=SEARCHES, default="greedy",
                       help="a transducer's search (CTC and head-none models ignore it)")
    model.add_argument("--beam", type=int, default=4, help="hypotheses kept by modified_beam_search")
    ep = p.add_argument_group("endpointing and live input")
    ep.add_argument("--endpoint-ms", type=float, default=600.0,
                    help="trailing silence that ends an utterance")
    ep.add_argument("--max-utterance-s", type=float, default=20.0, help="cut longer utterances")
    ep.add_argument("--vad-threshold-db", type=float, default=-40.0, help="energy VAD speech threshold (dBFS)")
    ep.add_argument("--max-backlog-s", type=float, default=2.0,
                    help="live input: drop the oldest audio when this much is waiting")
    p.add_argument("--partials", choices=("auto", "on", "off"), default="auto",
                   help="partial text on one updating line; auto: only when the output is a terminal, "
                        "so a log or a pipe gets finals and the summary only")
    return p


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Printer:
    """Partial text on one updating line ("\r", when `partials`), finals on
    their own lines."""

    def __init__(self, out, err, show_rtf: bool = True, partials: bool = True):
        self.out, self.err = out, err
        self.show_rtf = show_rtf
        self.partials = partials
        self.width = max(40, shutil.get_terminal_size((100, 20)).columns - 1)
        self._open = False  # a partial line is on screen

    def _line(self, text: str) -> str:
        if len(text) > self.width:
            text = "…" + text[-(self.width - 1):]
        return text.ljust(self.width)

    def partial(self, text: str, rtf: float) -> None:
        if not self.partials:
            return
        tail = f"  [RTF {rtf:.2f}]" if self.show_rtf else ""
        self.out.write("\r" + self._line(text + tail))
        self.out.flush()
        self._open = True

    def final(self, ev: Final) -> None:
        line = f"[{ev.start_s:7.2f} - {ev.end_s:7.2f}] {ev.text or '(nothing recognised)'}"
        self.out.write(("\r" + self._line(line) + "\n") if self._open else line + "\n")
        self.out.flush()
        self._open = False

    def warn(self, message: str) -> None:
        if self._open:
            self.out.write("\n")
            self._open = False
        self.err.write(f"warning: {message}\n")
        self.err.flush()


def run_stream(rec: StreamingRecognizer, source, printer: Printer) -> dict:
    """The main loop: blocks from `source` into `rec`, events to `printer`.
    Ctrl-C stops recording and still finalises the last utterance."""
    warned = dropped = 0
    interrupted = False
    lost = None
    with source:
        try:
            for block in source:
                backlog = source.backlog() if source.live else None
                for ev in rec.accept_audio(block, source.sample_rate, backlog=backlog):
                    if isinstance(ev, Partial):
                        printer.partial(ev.text, rec.rtf.rtf)
                    elif isinstance(ev, Final):
                        printer.final(ev)
                g = rec.guard
                if g.warnings > warned:
                    warned = g.warnings
                    printer.warn(f"the recogniser is falling behind: {g.max_backlog_seen / g.sample_rate:.2f} s "
                                 f"of audio waiting (RTF {rec.rtf.rtf:.2f}); try --threads or a smaller model")
                if rec.dropped_samples > dropped:
                    printer.warn(f"overrun: dropped {(rec.dropped_samples - dropped) / rec.sample_rate:.2f} s "
                                 "of the oldest audio to catch up")
                    dropped = rec.dropped_samples
        except KeyboardInterrupt:
            interrupted = True
        except SourceError as e:  # the device went away mid-stream: keep what was heard, then say so
            lost = str(e)
    for ev in rec.finish():
        if isinstance(ev, Final):
            printer.final(ev)
    summary = rec.summary()
    summary["interrupted"] = interrupted
    summary["source_error"] = lost
    summary["input_overflows"] = getattr(source, "overflows", None)  # the audio driver's count (microphone)
    return summary


def format_summary(s: dict, session) -> str:
    lat = s["latency_ms"]
    chunk_ms = session.shift_frames * session.signature.frontend.frame_shift / session.sample_rate * 1000

    def ms(v):
        return "n/a" if v is None else f"{v:.2f} ms"
    return "\n".join([
        "--- summary" + (" (interrupted)" if s.get("interrupted") else "") + " ---",
        f"audio {s['audio_s']:.2f} s, compute {s['compute_s']:.3f} s, RTF {s['rtf']:.4f} "
        f"({s['backend']}{' on ' + session.provider if getattr(session, 'provider', None) else ''}, "
        f"{session.threads} thread{'s' if session.threads != 1 else ''})",
        f"latency per {chunk_ms:.0f} ms chunk: p50 {ms(lat['p50'])}, p90 {ms(lat['p90'])}, "
        f"p99 {ms(lat['p99'])}, max {ms(lat['max'])}",
        f"utterances {s['utterances']}; overruns {s['overrun_warnings']} (drops {s['overrun_drops']}, "
        f"{s['dropped_s']:.2f} s of audio dropped); NaN/Inf samples replaced {s['nan_count']}"
        + ("" if s.get("input_overflows") is None else f"; input overflows {s['input_overflows']}"),
    ])


VOCABULARY_SHOWN = 100  # list a word vocabulary in the banner up to this size


def banner(session, source, args) -> str:
    """What runs, on what input, and what the model can recognise at all:
    a command-word model turns any other speech into its nearest words."""
    rate, model_rate = source.sample_rate, session.sample_rate
    where = "microphone" if args.mic else args.wav
    how = f"{rate} Hz" if rate == model_rate else f"resampled from {rate} to {model_rate} Hz"
    lines = [f"{session.describe()}; input: {where} ({how}). Ctrl-C ends."]
    words = word_vocabulary(session.tokens, session.signature.blank_id)
    if words and len(words) <= VOCABULARY_SHOWN:
        lines.append(f"This model knows {len(words)} words and nothing else (other speech comes out as the "
                     f"nearest of them): {' '.join(words)}")
    samples = getattr(source, "samples", None)  # a WAV file: judge its content, not just its rate
    if rate < model_rate and rate <= 2 * NARROWBAND_HZ or samples is not None and is_narrowband(samples, rate):
        lines.append(f"warning: this audio is narrowband (nothing above {NARROWBAND_HZ // 1000} kHz, e.g. 8 kHz "
                     f"telephone audio resampled up); the model was trained on {model_rate // 1000} kHz "
                     "wideband speech, so expect more errors")
    return "\n".join(lines) + "\n"


def make_source(args, model_rate: int):
    """The audio source the arguments ask for (tests replace this)."""
    if args.mic:
        return MicSource(sample_rate=args.mic_rate or model_rate, device=args.device)
    return WavSource(args.wav, realtime=args.realtime)


def main(argv=None, *, source_factory=None, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    quiet_libraries(args.verbose)
    logging.getLogger("runtime_py.rtf").setLevel(logging.ERROR)  # printed by the loop instead
    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        backend, precision = args.backend or (None, args.precision)
        if args.backend:  # a precision named by both flags must agree
            backend, precision = formats.split_artifact(":".join(filter(None, args.backend)), args.precision,
                                                        labels=("--backend", "--precision"))
        with warnings.catch_warnings(record=True) as caught:  # a missing execution provider: one line
            warnings.simplefilter("always")
            session = ModelSession(args.bundle, backend=backend, precision=precision,
                                   threads=args.threads, providers=args.providers, search=args.decoding,
                                   beam=args.beam)
        for message in dict.fromkeys(str(w.message) for w in caught):  # once, not once per graph
            err.write(f"notice: {message}\n")
        with warnings.catch_warnings(record=True) as caught:  # e.g. a truncated WAV: one plain line each
            warnings.simplefilter("always")
            source = (source_factory or make_source)(args, session.sample_rate)
        for w in caught:
            err.write(f"warning: {w.message}\n")
        vad = EnergyVad(session.sample_rate, threshold_db=args.vad_threshold_db)
        rec = StreamingRecognizer(session, endpoint_silence_ms=args.endpoint_ms, vad=vad,
                                  max_utterance_s=args.max_utterance_s, max_backlog_s=args.max_backlog_s,
                                  warn_backlog_s=min(0.5, args.max_backlog_s))
        err.write(banner(session, source, args))
        partials = {"on": True, "off": False}.get(args.partials, is_terminal(out))
        summary = run_stream(rec, source, Printer(out, err, partials=partials))
    except (ManifestError, SessionError, SignatureError, BackendError, WavError, SourceError,
            ImportError, ValueError) as e:
        err.write(f"error: {e}\n")
        return EXIT_USER_ERROR
    except OSError as e:  # a missing or unreadable file
        name = e.filename or args.wav or args.bundle
        err.write(f"error: {name}: {e.strerror or e}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # Ctrl-C while opening: nothing to summarise
        err.write("interrupted\n")
        return 130
    out.write(format_summary(summary, session) + "\n")
    if summary["source_error"]:
        err.write(f"error: {summary['source_error']}\n")
        return EXIT_USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
