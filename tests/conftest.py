import os

import numpy as np
import pytest

# Keep thread counts predictable on small CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "2")

from ncalab.nca.config import NCAConfig  # noqa: E402


@pytest.fixture
def cfg() -> NCAConfig:
    return NCAConfig()


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def ks_critical(n: int, m: int, alpha: float = 0.001) -> float:
    """Asymptotic critical value of the two-sample KS statistic at level alpha."""
    c = np.sqrt(-0.5 * np.log(alpha / 2))
    return float(c * np.sqrt((n + m) / (n * m)))
