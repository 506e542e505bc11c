"""Complexity bands and the domain presets of the paper (spec section 4)."""

from __future__ import annotations

from dataclasses import dataclass

from ncalab.errors import NcalabError
from ncalab.lazy import np


@dataclass(frozen=True)
class Band:
    """Keeps rules with lo < score < hi."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.lo <= 1.0 and 0.0 <= self.hi <= 1.0):
            raise NcalabError(f"band {self.lo}:{self.hi} must lie within [0, 1]")
        if self.lo >= self.hi:
            raise NcalabError(f"band {self.lo}:{self.hi} needs lo < hi")

    def contains(self, scores):
        return (scores > self.lo) & (scores < self.hi)

    def label(self) -> str:
        return f"{self.lo:g}-{self.hi:g}"


# Authors' defaults: web text and math favour the 50%+ band, code an intermediate one.
DOMAIN_BANDS: dict[str, Band] = {
    "code": Band(0.3, 0.4),
    "math": Band(0.5, 1.0),
    "web": Band(0.5, 1.0),
}

# The bins `ncalab nca complexity` reports: [0,0.3) [0.3,0.4) [0.4,0.5) [0.5,1].
REPORT_BINS: list[tuple[str, float, float]] = [
    ("0.0-0.3", 0.0, 0.3),
    ("0.3-0.4", 0.3, 0.4),
    ("0.4-0.5", 0.4, 0.5),
    ("0.5-1.0", 0.5, 1.0),
]


def parse_band(text: str) -> Band:
    """'LO:HI' -> Band, with a one-line error for anything else."""
    parts = text.split(":")
    if len(parts) != 2:
        raise NcalabError(f"band must be written LO:HI (e.g. 0.3:0.4), got {text!r}")
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise NcalabError(f"band must be two numbers LO:HI, got {text!r}") from None
    return Band(lo, hi)


def domain_band(domain: str) -> Band:
    try:
        return DOMAIN_BANDS[domain]
    except KeyError:
        raise NcalabError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAIN_BANDS)}") from None


def bin_fractions(scores) -> dict[str, float]:
    """Fraction of scores in each report bin; the last bin includes 1.0."""
    s = np.asarray(scores, dtype=np.float64)
    n = max(len(s), 1)
    out = {}
    for i, (name, lo, hi) in enumerate(REPORT_BINS):
        upper = (s <= hi) if i == len(REPORT_BINS) - 1 else (s < hi)
        out[name] = float(((s >= lo) & upper).sum() / n)
    return out
