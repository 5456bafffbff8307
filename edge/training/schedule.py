"""Learning rate: linear warm-up, then cosine decay over the run's progress
(steps, or wall time when `--max-minutes` is the tighter bound)."""

from __future__ import annotations

import math
import time


class Schedule:
    def __init__(self, args, total_steps: int, t_start: float):
        self.args = args
        self.total_steps = total_steps
        self.t_start = t_start
        self.budget_s = args.max_minutes * 60 if args.max_minutes else None

    def progress(self, step: int) -> float:
        """Fraction of the run done, by steps or by the wall-time budget."""
        p = step / self.total_steps
        if self.budget_s:
            p = max(p, (time.monotonic() - self.t_start) / self.budget_s)
        return min(p, 1.0)

    def lr_at(self, step: int) -> float:
        a = self.args
        warm = min(1.0, (step + 1) / max(a.warmup, 1))
        p = self.progress(step)
        return a.lr * warm * (a.final_lr_frac + (1 - a.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    def distill_weight(self, step: int) -> float:
        """The KL term's weight, annealed linearly to 0 at --distill-until."""
        return self.args.distill_weight * max(0.0, 1.0 - self.progress(step) / self.args.distill_until)

    def out_of_time(self) -> bool:
        return bool(self.budget_s) and time.monotonic() - self.t_start >= self.budget_s
