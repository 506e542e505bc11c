"""The kernel's early exit (grids that provably stay fixed) and the other exact savings of the
numba path give the same bits as simulating every step."""

import hashlib
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from ncalab.nca.config import NCAConfig
from ncalab.nca.engine import RuleBatch
from ncalab.nca.reference import reference_rollout
from ncalab.nca.rules import effective_colour_kernel, make_rules, rule_arrays
from ncalab.nca.seeds import rule_seeds
from ncalab.nca.simulate import initial_states


def _frames_both_ways(cfg: NCAConfig, seeds: np.ndarray, first: int = 10, rest: int = 17):
    """(frames with early exit, frames without, frozen flags): a scoring window, a selection of
    every other rule (as the stream does), then the rest of the trajectory."""
    out = []
    for early_exit in (True, False):
        rb = RuleBatch(seeds, seeds[::-1], cfg, early_exit=early_exit)
        a = rb.frames(first)
        frozen = rb.frozen()
        rb.select(np.arange(0, len(seeds), 2))
        out.append((a, rb.frames(rest), frozen))
    return out


# (config, rules, least number that must freeze, least number of "traps": trajectories with an
# unchanged step followed by a change, which only the no-near-tie condition tells apart)
CASES = [
    (NCAConfig(), 1500, 100, 0),
    (NCAConfig(temperature=0.0), 1500, 100, 0),
    (NCAConfig(temperature=0.003, burn_in=1), 2000, 100, 1),
    (NCAConfig(temperature=0.01, burn_in=1), 2000, 15, 10),
    (NCAConfig(temperature=0.01, height=4, width=4, burn_in=1), 2000, 15, 20),
    (NCAConfig(temperature=0.0, identity_bias=0.5, burn_in=3, dt=2), 600, 20, 0),
    (NCAConfig(temperature=1e-4, alphabet=20, height=6, width=10, patch=1), 400, 5, 0),  # unpaired tables
]


@pytest.mark.parametrize("cfg,n,min_frozen,min_traps", CASES)
def test_early_exit_gives_the_same_frames(cfg, n, min_frozen, min_traps):
    seeds = rule_seeds(3, "train", 0, n)
    (a1, b1, frozen), (a0, b0, never) = _frames_both_ways(cfg, seeds, 20, 20)
    assert np.array_equal(a1, a0) and np.array_equal(b1, b0)
    assert not never.any()
    # the exit did run: enough rules froze, and each of them really is fixed from then on
    assert frozen.sum() >= min_frozen, frozen.sum()
    assert (a0[frozen][:, -1:] == a0[frozen][:, -2:-1]).all()
    # and the set includes trajectories that repeat a grid and then change again (near ties)
    same = (a0[:, 1:] == a0[:, :-1]).all(axis=(2, 3))
    traps = sum(1 for row in same if row.any() and not row[np.argmax(row):].all())
    assert traps >= min_traps, traps


def test_frozen_rules_stay_fixed_from_the_step_they_were_found_fixed():
    cfg = NCAConfig()
    seeds = rule_seeds(8, "train", 0, 800)
    rb = RuleBatch(seeds, seeds, cfg)
    rb.frames(10)
    at = rb.frozen_at()
    idx = np.flatnonzero(at >= 0)
    assert len(idx) > 40 and (at[idx] >= 1).all() and (at[idx] <= rb.steps_done).all()
    assert len(np.unique(at[idx])) > 5  # found fixed at many different steps, burn-in included
    # every step recorded, no early exit: plain[:, k] is the grid after step k + 1
    plain = RuleBatch(seeds[idx], seeds[idx], cfg.replace(burn_in=1), early_exit=False).frames(60)
    for row, s in zip(plain, at[idx]):
        assert (row[s - 1 :] == row[s - 1]).all()  # fixed from step s on ...
        assert s == 1 or (row[s - 2] == row[s - 1]).all()  # ... and step s changed nothing


def test_frozen_trajectories_match_the_reference_implementation():
    """Rules the kernel stops simulating, against conv2d + argmax for every step (temperature 0)."""
    cfg = NCAConfig(temperature=0.0)
    seeds = rule_seeds(4, "train", 0, 600)
    rb = RuleBatch(seeds, seeds, cfg)
    fast = rb.frames(27)
    idx = np.flatnonzero(rb.frozen())[:25]
    assert len(idx) == 25
    rules = make_rules(torch.from_numpy(seeds[idx]), cfg)
    start = initial_states(seeds[idx], cfg)
    same = sum(np.array_equal(reference_rollout(rules, i, start[i].long(), cfg, 27), fast[j]) for i, j in enumerate(idx))
    assert same >= 24


def test_rule_arrays_are_the_weights_of_make_rules():
    for cfg in (NCAConfig(), NCAConfig(channel_wrap=False), NCAConfig(alphabet=2), NCAConfig(alphabet=37, patch=1)):
        seeds = np.arange(300, dtype=np.int64) * 7919 + 11
        rules = make_rules(torch.from_numpy(seeds), cfg)
        arr = rule_arrays(seeds, cfg)
        eff = effective_colour_kernel(rules.conv1, cfg.alphabet, cfg.channel_wrap).reshape(len(seeds), 9, cfg.alphabet, -1)
        for name, want in (("eff", eff), ("w2", rules.w2), ("w3", rules.w3), ("b1", rules.b1), ("b2", rules.b2), ("b3", rules.b3)):
            assert np.array_equal(arr[name], want.numpy()), (cfg, name)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_a_rule_repeated_in_a_batch_is_drawn_once_and_simulated_from_each_start(backend):
    cfg = NCAConfig()
    together = RuleBatch([5, 9, 5, 5], [1, 2, 3, 1], cfg, backend=backend).frames(14)
    for i, (r, s) in enumerate(((5, 1), (9, 2), (5, 3), (5, 1))):
        assert np.array_equal(together[i], RuleBatch([r], [s], cfg, backend=backend).frames(14)[0])
    assert not np.array_equal(together[0], together[2])


def _has_fma() -> bool:
    try:
        return platform.machine() in ("x86_64", "AMD64") and " fma " in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


# sha256 (first 16 hex digits) of RuleBatch frames as computed by the engine before the early
# exit and the other savings (commit 1dab310): 300 rules rule_seeds(5, "train", 0, 300) with sim
# seeds in reverse order, frames(10), then select every third rule and frames(7). Float results
# depend on fused multiply-adds, hence x86-64 with FMA only.
GOLDEN = {
    "default": (NCAConfig(), "5471d9cdf082a22b", "edfdd34ebdafaf06"),
    "t0": (NCAConfig(temperature=0.0), "abdd4a066eac1f44", "8c34fedee1415761"),
    "ib": (NCAConfig(identity_bias=0.5), "f2171961588bdc53", "2f16b2b5fb286166"),
    "plain": (NCAConfig(channel_wrap=False), "299d5f7545cf3168", "1bfef6c39e6de65a"),
    "small": (NCAConfig(alphabet=2, height=8, width=16, patch=4, burn_in=3, dt=2), "d186476174eeb440", "b4709fbf99585059"),
    "c40": (NCAConfig(alphabet=40, height=6, width=10, patch=1, temperature=0.0), "b246b53412522aef", "4040b1b8e5a77652"),
    "c20t": (NCAConfig(alphabet=20, height=10, width=10, patch=1), "c82571e8e67bc5d1", "9c5f005222f68e0c"),
    "hot": (NCAConfig(temperature=0.05), "bab24d56677722f8", "7d0024ca4e499427"),
}


@pytest.mark.skipif(not _has_fma(), reason="golden frames were computed on x86-64 with FMA")
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_frames_are_bit_identical_to_the_engine_before_the_savings(name):
    cfg, want_a, want_b = GOLDEN[name]
    seeds = rule_seeds(5, "train", 0, 300)
    rb = RuleBatch(seeds, seeds[::-1], cfg)
    a = rb.frames(10)
    rb.select(np.arange(0, 300, 3))
    b = rb.frames(7)
    digest = lambda x: hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]  # noqa: E731
    assert (digest(a), digest(b)) == (want_a, want_b)
