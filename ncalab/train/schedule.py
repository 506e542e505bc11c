"""Linear warm-up then cosine decay, as a LambdaLR multiplier."""

from __future__ import annotations

import math


def warmup_cosine(total_steps: int, warmup_frac: float, min_ratio: float):
    warm = max(1, int(round(total_steps * warmup_frac))) if warmup_frac > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
