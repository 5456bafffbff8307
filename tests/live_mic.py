"""A real microphone for edge-demo --mic, fed from a WAV file.

The path under test is the one a user gets: sounddevice -> PortAudio -> ALSA
-> an ALSA PCM. The PCM here is ALSA's `pulse` plugin on a private
PulseAudio daemon whose default source is the monitor of a null sink; paplay
plays the WAV into that sink, paced by PulseAudio's clock like a real device.
`unplug()` unloads the sink: the source vanishes mid-stream, as when a USB
microphone is pulled. `stall()` suspends the sink: the stream stays open but
no audio comes, as from a driver that stopped.

Why not ALSA's `file` plugin with `infile` (the first idea): PortAudio opens
any PCM that allows it with mmap access, and the file plugin injects its
infile only on read calls; its `null` slave is also not paced (it "records"
millions of samples a second). No kernel sound modules here, so no snd-aloop.

Used by tests/test_live_mic.py, and standalone inside pi-check's emulated Pi:
    python -m tests.live_mic BUNDLE WAV "expected words"
"""

from __future__ import annotations

import ctypes.util
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

SINK = "wavmic"


def unavailable() -> str | None:
    """Why a live microphone cannot be made here, or None."""
    for exe in ("pulseaudio", "pactl", "paplay"):
        if not shutil.which(exe):
            return f"no {exe} (apt-get install pulseaudio pulseaudio-utils)"
    if not glob.glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so"):
        return "no ALSA pulse plugin (apt-get install libasound2-plugins)"
    if not ctypes.util.find_library("portaudio"):
        return "no PortAudio library (apt-get install libportaudio2)"
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as e:
        return f"sounddevice does not import: {e}"
    return None


class PulseMic:
    """`with PulseMic() as mic:` a private sound server; `mic.env` for the child
    that records, `mic.play(wav)`, `mic.unplug()`, `mic.stall()`."""

    def __init__(self, rate: int = 16000):
        self.rate = rate
        self.dir = Path(tempfile.mkdtemp(prefix="edge-mic-"))
        sock = self.dir / "pulse.sock"
        (self.dir / "run").mkdir()
        (self.dir / ".asoundrc").write_text("pcm.!default { type pulse }\nctl.!default { type pulse }\n")
        (self.dir / "server.pa").write_text(
            f"load-module module-native-protocol-unix socket={sock} auth-anonymous=1\n"
            f"load-module module-null-sink sink_name={SINK} rate={rate} channels=1\n"
            f"set-default-source {SINK}.monitor\n")
        self.env = {**os.environ, "HOME": str(self.dir), "XDG_RUNTIME_DIR": str(self.dir / "run"),
                    "PULSE_SERVER": f"unix:{sock}", "XDG_CONFIG_HOME": str(self.dir / "config")}
        self.env.pop("ALSA_CONFIG_PATH", None)
        self._daemon = None

    def __enter__(self):
        self._daemon = subprocess.Popen(
            ["pulseaudio", "-n", "-F", str(self.dir / "server.pa"), "--daemonize=no", "--exit-idle-time=-1",
             "--use-pid-file=no", "--disable-shm=yes", "--log-target=stderr"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "pulseaudio.log", "w"))
        deadline = time.monotonic() + 60  # slow under emulation
        while self._pactl("info") is None:
            if self._daemon.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "pulseaudio.log").read_text()[-500:]
                self.__exit__()
                raise RuntimeError(f"pulseaudio did not start: {log}")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        if self._daemon is not None and self._daemon.poll() is None:
            self._daemon.terminate()
            try:
                self._daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._daemon.kill()
                self._daemon.wait()
        shutil.rmtree(self.dir, ignore_errors=True)  # made by mkdtemp above
        return False

    def _pactl(self, *args) -> str | None:
        r = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=30)
        return r.stdout if r.returncode == 0 else None

    def recording(self) -> bool:
        """Does a client record from the source now?"""
        return bool((self._pactl("list", "short", "source-outputs") or "").strip())

    def play(self, wav: Path) -> subprocess.Popen:
        return subprocess.Popen(["paplay", "-d", SINK, str(wav)], env=self.env)

    def unplug(self) -> None:
        out = self._pactl("list", "short", "modules") or ""
        ids = [ln.split()[0] for ln in out.splitlines() if "module-null-sink" in ln]
        assert ids, f"no null sink to unplug: {out}"
        self._pactl("unload-module", ids[0])


    def stall(self) -> None:
        assert self._pactl("suspend-sink", SINK, "1") is not None, "could not suspend the sink"


def _ctrl_c_reaches_the_child() -> None:
    """A shell that runs the tests in the background (`cmd &`, nohup) starts them with SIGINT ignored,
    and an ignored signal stays ignored across exec: the demo would never see the Ctrl-C this harness
    sends and would be reported as hung. The child gets the default disposition, as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_demo(bundle: Path, wav: Path, end: str = "ctrl-c", hang_s: float = 60.0, extra=()) -> dict:
    """edge-demo BUNDLE --mic while `wav` plays into the microphone; once the demo
    has printed the utterance (or after hang_s), `end` it: "ctrl-c", "unplug"
    (the device is pulled) or "stall" (no more audio). Returns exit code,
    stdout, stderr, seconds recorded, seconds from the end to the exit, and
    whether it hung."""
    demo = Path(sys.executable).with_name("edge-demo")
    cmd = [str(demo)] if demo.exists() else [sys.executable, "-m", "demo.cli"]
    with PulseMic() as mic, tempfile.TemporaryFile("w+") as err:
        env = {**mic.env, "PYTHONFAULTHANDLER": "1"}  # a hang killed with SIGABRT shows every thread's stack
        p = subprocess.Popen([*cmd, str(bundle), "--mic", "--partials", "off", *extra], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True,
                             preexec_fn=_ctrl_c_reaches_the_child)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(p.stdout), daemon=True)  # the demo flushes finals
        reader.start()
        deadline = time.monotonic() + hang_s
        while not mic.recording() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        time.sleep(0.3)  # some silence before the speech
        mic.play(wav).wait(timeout=hang_s)
        while not finals("".join(lines)) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the device's latency: wait for the utterance, not a fixed time
        if end == "unplug":
            mic.unplug()
        elif end == "stall":
            mic.stall()
        elif p.poll() is None:
            p.send_signal(signal.SIGINT)  # Ctrl-C: the demo finishes and prints its summary
        t_end = time.monotonic()
        recorded = t_end - t0
        try:
            p.wait(timeout=hang_s)
            hung = False
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            hung = True
        ended = time.monotonic() - t_end
        reader.join(timeout=10)
        err.seek(0)
        return {"code": p.returncode, "out": "".join(lines), "err": err.read(), "recorded_s": recorded,
                "ended_s": ended, "hung": hung}


def wav_seconds(wav: Path) -> float:
    with wave.open(str(wav)) as w:
        return w.getnframes() / w.getframerate()


def finals(out: str) -> str:
    """The utterances edge-demo printed, joined: "[ 0.25 - 1.12] one two" -> "one two"."""
    return " ".join(m.group(1) for m in re.finditer(r"^\[ *[\d.]+ - *[\d.]+\] (.*)$", out, re.M))


def summary(out: str) -> dict:
    """The numbers of edge-demo's summary block."""
    def num(pattern):
        m = re.search(pattern, out)
        return float(m.group(1)) if m else None
    return {"audio_s": num(r"audio ([\d.]+) s"), "compute_s": num(r"compute ([\d.]+) s"),
            "rtf": num(r"RTF ([\d.]+) \("), "overruns": num(r"overruns (\d+)"), "drops": num(r"drops (\d+)"),
            "dropped_s": num(r"([\d.]+) s of audio dropped"), "input_overflows": num(r"input overflows (\d+)")}


def check(bundle: Path, wav: Path, words: str) -> list[str]:
    """Both scenarios; the list of what went wrong (empty: passed)."""
    bad = []
    r = run_demo(bundle, wav)
    s = summary(r["out"])
    if r["hung"] or r["code"] != 0:
        bad.append(f"live run: exit {r['code']}{' (hung)' if r['hung'] else ''}: {r['err'].strip()[-3000:]}")
    if finals(r["out"]) != words:
        bad.append(f"live run heard {finals(r['out'])!r}, want {words!r}")
    if None in s.values():
        bad.append(f"live run: incomplete summary: {r['out'][-400:]}")
    else:
        if not wav_seconds(wav) <= s["audio_s"] <= r["recorded_s"] + 0.1:
            bad.append(f"live run counted {s['audio_s']} s of audio, want between the {wav_seconds(wav):.2f} s "
                       f"played and the {r['recorded_s']:.2f} s recorded")
        if s["audio_s"] and abs(s["rtf"] - s["compute_s"] / s["audio_s"]) > 0.002:
            bad.append(f"RTF {s['rtf']} is not compute/audio = {s['compute_s']}/{s['audio_s']}")
        if (s["overruns"], s["drops"], s["dropped_s"], s["input_overflows"]) != (0, 0, 0.0, 0):
            bad.append(f"overrun counters not zero on a live run that keeps up: {s}")
    for end, says in (("unplug", "microphone went away"), ("stall", "no audio from the microphone")):
        u = run_demo(bundle, wav, end=end)
        errors = [ln for ln in u["err"].splitlines() if ln.startswith("error:")]
        if u["hung"]:
            bad.append(f"{end}: edge-demo hung: {u['err'][-3000:]}")
        elif u["code"] != 2 or len(errors) != 1 or says not in errors[0] or "Traceback" in u["err"]:
            bad.append(f"{end}: exit {u['code']}, want 2 and one 'error: {says} ...' line: {u['err'][-400:]}")
        if finals(u["out"]) != words or "--- summary" not in u["out"]:
            bad.append(f"{end}: the words heard before ({finals(u['out'])!r}) and the summary should still print")
    return bad


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m tests.live_mic BUNDLE WAV 'expected words'")
    why = unavailable()
    if why:
        print(f"SKIP live microphone: {why}")
        sys.exit(0)
    problems = check(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
    for line in problems:
        print(f"FAIL live microphone: {line}")
    if not problems:
        print(f"PASS live microphone through PortAudio: {sys.argv[3]!r}, counters right, unplug and stall -> one error line")
    sys.exit(1 if problems else 0)
