"""The fast engine against a straightforward implementation of the spec."""

import numpy as np
import pytest
import torch

from conftest import ks_critical, ks_statistic
from ncalab.nca import rng
from ncalab.nca.complexity import gzip_ratio, score_tokens
from ncalab.nca.config import NCAConfig
from ncalab.nca.engine import RuleBatch
from ncalab.nca.reference import (
    reference_initial_state, reference_logits, reference_rollout, reference_rule, reference_score,
)
from ncalab.nca.rules import make_rules
from ncalab.nca.simulate import _TAG_STEP, initial_states
from ncalab.nca.stream import patch_tokens, score_window


def _compare_with_reference(cfg: NCAConfig, seeds: np.ndarray, shared_noise: bool) -> tuple[int, list[int]]:
    fast = RuleBatch(seeds, seeds, cfg).frames(12)
    start = initial_states(seeds, cfg)
    rules = make_rules(torch.from_numpy(seeds), cfg)
    identical, differing = 0, []
    for i, s in enumerate(seeds):
        def noise(t, s=int(s)):
            cells = torch.arange(cfg.cells)[:, None]
            colours = torch.arange(cfg.alphabet)[None, :]
            return rng.gumbel(rng.hash_keys(s, _TAG_STEP, t, cells, colours)).reshape(cfg.height, cfg.width, -1)

        ref = reference_rollout(rules, i, start[i].long(), cfg, 12, noise_fn=noise if shared_noise else None)
        if np.array_equal(ref, fast[i]):
            identical += 1
        else:
            differing.append(i)
    return identical, differing


def test_argmax_trajectories_identical_to_reference():
    cfg = NCAConfig(temperature=0.0)
    seeds = np.arange(1000, 1150)
    identical, differing = _compare_with_reference(cfg, seeds, shared_noise=False)
    assert identical >= len(seeds) - 1, differing


def test_low_temperature_sampling_equals_full_gumbel_max_draw():
    """Drawing noise only near ties gives exactly the full categorical (gumbel-max) sample."""
    cfg = NCAConfig()  # temperature 1e-4
    seeds = np.arange(2000, 2100)
    identical, differing = _compare_with_reference(cfg, seeds, shared_noise=True)
    assert identical >= len(seeds) - 1, differing


def test_identity_bias_and_plain_channels_also_match_reference():
    for cfg in (NCAConfig(temperature=0.0, identity_bias=0.5), NCAConfig(temperature=0.0, channel_wrap=False),
                NCAConfig(temperature=0.0, alphabet=2, height=8, width=16, patch=4, burn_in=3, dt=2),
                NCAConfig(temperature=0.0, alphabet=40, height=6, width=10, patch=1)):
        identical, differing = _compare_with_reference(cfg, np.arange(60), shared_noise=False)
        assert identical >= 59, (cfg, differing)


def test_fast_score_is_the_spec_definition():
    cfg = NCAConfig()
    seeds = np.arange(64)
    frames = RuleBatch(seeds, seeds, cfg).frames(10)
    fast = score_window(frames, cfg)
    ref = np.array([reference_score(f, cfg) for f in frames])
    assert np.array_equal(fast, ref)


def test_reference_points_of_the_scale():
    cfg = NCAConfig()
    constant = np.zeros((1, 10, 12, 12), dtype=np.uint8)
    assert abs(score_window(constant, cfg)[0] - 0.022) < 0.003
    noise = np.random.default_rng(0).integers(0, 10, size=(200, 10, 12, 12)).astype(np.uint8)
    mean_noise = score_window(noise, cfg).mean()
    assert abs(mean_noise - 0.67) < 0.015
    # the byte width matters: int64 halves the score
    toks = patch_tokens(noise[:1], cfg)
    raw64 = len(__import__("zlib").compress(toks.astype("<i8").tobytes(), 9, 31)) / (toks.size * 8)
    assert raw64 < 0.5 * gzip_ratio(toks) * 1.2


def _reference_scores(n: int, cfg: NCAConfig) -> np.ndarray:
    out = []
    for s in range(n):
        g = torch.Generator().manual_seed(10_000 + s)
        rule = reference_rule(s, cfg)
        frames = reference_rollout(rule, 0, reference_initial_state(cfg, g), cfg, cfg.score_frames, g=g)
        out.append(reference_score(frames, cfg))
    return np.array(out)


# slow (end to end); the fast suite keeps the rule-by-rule fidelity tests against the reference
# implementation
@pytest.mark.slow
def test_score_distribution_matches_reference_implementation():
    """Independent rules, torch's own samplers: the score distributions are indistinguishable."""
    cfg = NCAConfig()
    n = 1200
    ref = _reference_scores(n, cfg)
    fast = score_window(RuleBatch(np.arange(n) + 77_000, np.arange(n) + 77_000, cfg).frames(10), cfg)
    assert ks_statistic(fast, ref) < ks_critical(n, n)
    # and the band fractions agree within sampling error
    for lo, hi in ((0.3, 0.4), (0.5, 1.0)):
        pf, pr = ((fast > lo) & (fast < hi)).mean(), ((ref > lo) & (ref < hi)).mean()
        se = np.sqrt(pr * (1 - pr) * 2 / n)
        assert abs(pf - pr) < 4 * se + 1e-9


def test_score_tokens_parallel_equals_serial():
    toks = np.random.default_rng(1).integers(0, 10_000, size=(300, 360))
    assert np.array_equal(score_tokens(toks, threads=1), score_tokens(toks, threads=2))


def test_reference_logits_follow_the_channel_wrap_rule():
    """Colours 0 and C-1 see the sum of two weight vectors, the others one."""
    cfg = NCAConfig(temperature=0.0)
    rule = make_rules([3], cfg)
    state = torch.zeros(12, 12, dtype=torch.long)
    state[5, 5] = cfg.alphabet - 1
    lg = reference_logits(rule, 0, state, cfg)
    k = rule.conv1[0].double()
    # cell (5,5) itself sees colour C-1 at the centre: padded channels C (itself) and 0 (wrap copy)
    eff_centre = k[1, 1, cfg.alphabet] + k[1, 1, 0]
    eff_zero = k[:, :, 1].sum((0, 1)) + k[:, :, cfg.alphabet + 1].sum((0, 1)) - k[1, 1, 1] - k[1, 1, cfg.alphabet + 1]
    h1 = eff_centre + eff_zero
    h2 = torch.relu(h1 @ rule.w2[0].double())
    expected = h2 @ rule.w3[0].double()
    assert torch.allclose(lg[5, 5], expected, atol=1e-9)
