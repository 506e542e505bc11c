"""Learning-rate schedules (config SCHEDULES), as LambdaLR multipliers of the peak rate."""

from __future__ import annotations

import math


def warmup_steps(total_steps: int, warmup: float) -> int:
    """Warm-up length: a fraction of the steps, or (a value >= 1) a number of steps, as in the
    paper's code (its code stage 2 warms up for 750 steps)."""
    if warmup <= 0:
        return 0
    steps = int(warmup) if warmup >= 1 else int(round(total_steps * warmup))
    return min(total_steps, max(1, steps))


def decay_start(total_steps: int, decay: float) -> int:
    """wsd: the first step of the cooldown, the last ``decay`` fraction of the steps (at least one).
    Until then the rate is the stable peak, so a run of any length that starts its cooldown
    later took exactly the same steps up to here: its checkpoint at this step is where a
    shorter run's cooldown branches off (Hägele et al. 2024)."""
    return total_steps - max(1, int(round(total_steps * decay)))


def lr_factor(schedule: str, total_steps: int, warmup: float, min_ratio: float, decay: float = 0.2):
    """paper: a linear rise over the whole stage to the peak at its last step (the paper's
    stage-1 checkpoint is the last step of its warm-up); cosine: warm-up, then a cosine to
    min_ratio; constant: warm-up, then the peak; wsd (warmup-stable-decay): warm-up, the peak,
    then a linear cooldown over the last ``decay`` of the steps to min_ratio at the last step."""
    if schedule == "paper":
        return lambda step: min(1.0, (step + 1) / max(1, total_steps))
    warm = warmup_steps(total_steps, warmup)
    cool = decay_start(total_steps, decay)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if schedule == "constant":
            return 1.0
        if schedule == "wsd":
            if step <= cool:  # the cooldown's first step is still at the peak: branches agree on it
                return 1.0
            return 1.0 - (1.0 - min_ratio) * min(1.0, (step - cool) / max(1, total_steps - 1 - cool))
        progress = (step - warm) / max(1, total_steps - warm)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
