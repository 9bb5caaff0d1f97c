"""Learning-rate schedules as per-step multipliers of the base rate (torch's LambdaLR).

Multipliers are pure functions of the step, so a schedule's whole state is its step count
and resuming restores it exactly. "newbob" is driven by dev results instead (see Newbob).
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "warmup_cosine", "warmup_exponential", "onecycle", "newbob")


def multiplier(kind: str, step: int, total: int, warmup: int, final_ratio: float) -> float:
    """Factor applied to the base learning rate at optimiser step ``step`` (0-based)."""
    if kind in ("constant", "newbob"):
        return 1.0 if step >= warmup or warmup == 0 else (step + 1) / warmup
    if kind == "onecycle":  # cosine up over 30% of the run from lr/25, cosine down to lr/1e4
        peak = max(1, int(0.3 * total))
        if step < peak:
            return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * step / peak)) / 2
        progress = min(1.0, (step - peak) / max(1, total - peak))
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * progress)) / 2
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "warmup_cosine":
        return final_ratio + (1 - final_ratio) * (1 + math.cos(math.pi * progress)) / 2
    if kind == "warmup_exponential":
        return final_ratio ** progress
    raise ValueError(f"unknown schedule {kind!r} ({' | '.join(SCHEDULES)})")


class Newbob:
    """Halve the learning rate whenever dev WER improves by less than ``threshold``."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.best: float | None = None
        self.scale = 1.0

    def update(self, dev_wer: float) -> None:
        if self.best is not None and self.best - dev_wer < self.threshold:
            self.scale *= 0.5
        self.best = dev_wer if self.best is None else min(self.best, dev_wer)

    def state_dict(self) -> dict:
        return {"best": self.best, "scale": self.scale}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.scale = state["best"], state["scale"]


def build_scheduler(optimizer: torch.optim.Optimizer, kind: str, total_steps: int, warmup: int,
                    final_ratio: float, newbob: Newbob | None = None
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over :func:`multiplier`, times ``newbob.scale`` when one is given."""
    multiplier(kind, 0, total_steps, warmup, final_ratio)  # validate the name early

    def factor(step: int) -> float:
        scale = newbob.scale if newbob is not None else 1.0
        return scale * multiplier(kind, step, total_steps, warmup, final_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
