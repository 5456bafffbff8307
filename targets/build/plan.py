"""What a build makes: the device targets and the (backend, precision) pairs
they build, `--quant` parsing, the dependency check before any work, and the
`edge-build --list` text.

Precisions and build needs come from the backend objects (targets/backends/),
suffixes and install extras from the client's formats table
(runtime_py/formats.py); this module adds only which backends each device
target uses and which of their pairs it builds by default.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from edge.cliutil import DEFAULT_FAMILY, unknown  # noqa: F401 - DEFAULT_FAMILY: the one default, re-exported
from edge.errors import UserError
from runtime_py import formats

from ..appdeps import runtime_name
from ..backends import BACKENDS, get_backend


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    backends: tuple[str, ...]  # targets.backends names; every precision each one builds may be asked for
    default: tuple[tuple[str, str], ...]  # (backend, precision) built by default
    runtime: str
    # the encoder takes PCM by default (docs/audio-in.md "Which kind a target gets"): a phone app then needs no
    # C++ feature library; the Pi's Python client has its own fbank
    audio_in: bool = False

    @property
    def allowed(self) -> tuple[tuple[str, str], ...]:
        return tuple((b, p) for b in self.backends for p in get_backend(b).precisions)


TARGETS = {
    "rpi": Target("rpi", "Raspberry Pi (64-bit OS): ONNX Runtime, optionally LiteRT",
                  backends=("ort", "tflite", "onnx"),
                  default=(("ort", "fp32"), ("ort", "int8"), ("tflite", "fp32")),
                  runtime="edge-demo BUNDLE --wav FILE (install: pip install -e '.[runtime]', docs/install.md)"),
    "android": Target("android", "Android: LiteRT (TFLite) and ONNX Runtime Mobile",
                      backends=("tflite", "ort", "onnx"),
                      default=(("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"), ("ort", "fp32"),
                               ("ort", "int8")),
                      runtime=f"{runtime_name('android', 'tflite')} / {runtime_name('android', 'ort')}",
                      audio_in=True),
    "ios": Target("ios", "iOS: CoreML ML program and ONNX Runtime Mobile",
                  backends=("coreml", "ort", "onnx"),
                  default=(("coreml", "fp16"), ("coreml", "fp32"), ("ort", "fp32"), ("ort", "int8")),
                  runtime=f"{runtime_name('ios', 'coreml')} / {runtime_name('ios', 'ort')}", audio_in=True),
}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        close = difflib.get_close_matches(name, TARGETS, n=1, cutoff=0.3)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown target {name!r}.{hint} Targets: {', '.join(TARGETS)} (see edge-build --list)")
    return TARGETS[name]


def takes_audio(target: Target, audio_in: bool | None, signature=None, onnx: bool = False) -> bool:
    """--audio-in / --features-in as given (None: neither), else the target's
    default where it applies: a PyTorch model whose frontend can go in the
    graph (fbank or MFCC without dither; `signature` None is a built-in
    family, all of which qualify). A third-party ONNX model and a model that
    already takes samples keep their own input."""
    if audio_in is not None:
        return audio_in
    if not target.audio_in or onnx:
        return False
    if signature is None:
        return True
    fe = signature.frontend
    return fe.kind in ("fbank", "mfcc") and fe.dither == 0 and not (signature.extra or {}).get("audio_in")


def parse_quant(target: Target, quant: str | None) -> tuple[tuple[str, str], ...]:
    """--quant fp32,int8 keeps those precisions of the target's defaults;
    'tflite:fp16' names one backend/precision pair explicitly."""
    if not quant:
        return target.default
    chosen = []
    allowed = target.allowed
    known = sorted({p for _, p in allowed})
    for item in [q.strip() for q in quant.split(",") if q.strip()]:
        backend, _, precision = item.rpartition(":")
        if precision not in known:
            # no "did you mean": int4 is not a typo of int8, and a silent int8 is not what was asked
            raise UserError(f"--quant {item!r}: unknown precision {precision!r}. Known: {', '.join(known)}"
                            + f" (target {target.name}: " + ", ".join(f"{b}:{p}" for b, p in allowed) + ")")
        if backend and backend not in BACKENDS:
            raise UserError(f"--quant {item!r}: " + unknown("backend", backend, BACKENDS))
        if ":" in item:
            pair = tuple(item.split(":", 1))
            if pair not in allowed:
                raise UserError(f"--quant {item!r} is not available for target {target.name}; allowed: "
                                + ", ".join(f"{b}:{p}" for b, p in allowed))
            chosen.append(pair)
        else:
            pairs = [bp for bp in target.default if bp[1] == item]
            if not pairs:
                raise UserError(f"--quant {item!r}: target {target.name} builds precisions "
                                f"{sorted({p for _, p in target.default})} by default; name a pair like "
                                "tflite:fp16 for others")
            chosen += pairs
    return tuple(dict.fromkeys(chosen))


def check_backends(pairs) -> None:
    """Fail before any work when a backend's converter is not installed."""
    from targets.common import ensure_installed

    for backend in dict.fromkeys(b for b, _ in pairs):
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        for module, extra in BACKENDS[backend].build_needs:
            try:
                ensure_installed(module, extra)
            except UserError as e:
                raise UserError(f"cannot build {backend} artifacts: {e.args[0]}") from None


def list_targets() -> str:
    lines = []
    for t in TARGETS.values():
        lines.append(f"{t.name:8s} {t.description}")
        lines.append("         default: " + ", ".join(f"<graph>.{p}{formats.get_format(b).suffix}"
                                                      for b, p in t.default))
        lines.append("         --quant: " + ", ".join(f"{b}:{p}" for b, p in t.allowed))
        lines.append(f"         run with: {t.runtime}")
    lines.append("formats (pip install -e '.[EXTRA]'):")
    for b in BACKENDS.values():
        f = b.client
        build = ",".join(dict.fromkeys(extra for _, extra in b.build_needs)) or "-"
        run = f"run: [{f.extra}]" if f.runs_here else "run: not on this host"
        lines.append(f"  {b.name:8s} {f.suffix:11s} {'/'.join(b.precisions):15s} build: [{build}], {run}")
    lines.append("audio in: " + ", ".join(t.name for t in TARGETS.values() if t.audio_in) + " build an encoder that "
                 "takes PCM (the fbank frontend in the graph; folder dist/<name>-<family>-audio-<target>) unless "
                 "--features-in; " + ", ".join(t.name for t in TARGETS.values() if not t.audio_in) + ": fbank frames "
                 "unless --audio-in (docs/audio-in.md)")
    return "\n".join(lines)
