"""Rule seeds for streams: distinct by construction, disjoint between train and validation.

Stream seed s gives rule i of split k the seed mix63(base(s) + 2*i + k) where mix63 is a
bijection on [0, 2**63): different (i, k) can never give the same rule.

Simulation seeds (the initial state of a trajectory): trajectory j of rule r starts from sim
seed r for j = 0 (the trajectory the rule was scored on) and mix63(mix63(r) + j) for j >= 1.
For a given j this is a bijection of r, and for a given r different j give different seeds.
"""

from __future__ import annotations

import numpy as np

SPLITS = {"train": 0, "val": 1}
_MASK = np.uint64((1 << 63) - 1)


def mix63(x: np.ndarray) -> np.ndarray:
    """A bijection on 63-bit integers (splitmix64's steps taken modulo 2**63)."""
    with np.errstate(over="ignore"):
        z = (np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def _base(stream_seed: int) -> np.uint64:
    return mix63(np.uint64(int(stream_seed) % (1 << 63)))


def rule_seeds(stream_seed: int, split: str, start: int, count: int) -> np.ndarray:
    """Seeds of rules start .. start+count-1 of a split, as non-negative int64."""
    k = SPLITS[split]
    idx = np.arange(start, start + count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        v = (_base(stream_seed) + np.uint64(2) * idx + np.uint64(k)) & _MASK
    return mix63(v).astype(np.int64)


def sim_seeds(rule_seeds: np.ndarray, sim: int | np.ndarray) -> np.ndarray:
    """Sim seeds of trajectory ``sim`` (broadcast against ``rule_seeds``) of each rule, as int64."""
    r = np.asarray(rule_seeds, dtype=np.int64)
    j = np.asarray(sim, dtype=np.int64)
    if (r < 0).any() or (j < 0).any():
        raise ValueError("rule seeds and trajectory indices must not be negative")
    with np.errstate(over="ignore"):
        v = mix63((mix63(r.astype(np.uint64)) + j.astype(np.uint64)) & _MASK).astype(np.int64)
    return np.where(j == 0, r, v)
