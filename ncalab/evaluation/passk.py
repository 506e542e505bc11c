"""pass@k (the unbiased estimator of Chen et al. 2021) and intervals over items."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ncalab.errors import NcalabError

Z95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n, c of
    them correct, is correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n:
        raise NcalabError(f"pass@k needs 0 <= correct <= samples, got {c} of {n}")
    if k < 1 or k > n:
        raise NcalabError(f"pass@{k} needs 1 <= k <= samples ({n})")
    if n - c < k:
        return 1.0
    # the product form avoids huge binomials: prod_{i=n-c+1}^{n} (1 - k/i)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% normal interval over items."""
    if not values:
        raise NcalabError("no items were scored: an evaluation with no samples has no score")
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, float("nan")
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, Z95 * math.sqrt(var / len(values))


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of a - b over the same items, and the half-width of its 95% interval."""
    if len(a) != len(b):
        raise NcalabError(f"paired scores need the same items ({len(a)} and {len(b)})")
    return mean_interval([x - y for x, y in zip(a, b)])


def per_item_pass(rows, k: int) -> dict[str, float]:
    return {r.item: pass_at_k(r.samples, r.correct, k) for r in rows if r.samples >= k}
