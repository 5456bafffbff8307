"""edge-build's step lines, with a live elapsed-time bar while a long step
(a conversion: a TFLite one is 40-60 s) runs.

Each message is printed as a line, as before. A message ending in "..."
starts a step: on a terminal a tqdm bar on stderr then shows "[i/n] step"
and the elapsed time, refreshed twice a second, until the next message
(the step's result line, with its seconds) replaces it. Logs and pipes get
the plain lines only."""

from __future__ import annotations

import sys
import threading

REFRESH_S = 0.5


class StepProgress:
    def __init__(self, steps: int, out=None, live: bool | None = None):
        self.out = out or sys.stdout
        self.steps = steps
        self.step = 0
        if live is None:
            live = _isatty(sys.stderr) and _isatty(self.out)
        self.live = live
        self._bar = None
        self._stop = threading.Event()
        self._thread = None

    def __call__(self, message: str) -> None:
        self.close()
        self.out.write(f"  {message}\n")
        self.out.flush()
        if message.endswith("..."):
            self.step += 1
            if self.live:
                self._start(f"  [{self.step}/{self.steps}] {message[:-3]}")

    def _start(self, desc: str) -> None:
        try:
            from tqdm import tqdm
        except ImportError:  # no bar, the lines still tell the story
            return
        self._bar = tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed} elapsed", file=sys.stderr,
                         leave=False)
        self._stop.clear()
        self._thread = threading.Thread(target=self._tick, name="edge-build-progress", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(REFRESH_S):
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is None:
            return
        self._stop.set()
        self._thread.join()
        self._bar.close()
        self._bar = None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
