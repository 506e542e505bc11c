"""A straightforward implementation of the spec, written for clarity, not speed.

It is the yardstick the fast engine is tested against: plain conv2d over the wrap-padded
one-hot state (all three axes, as the authors' code does), torch's own samplers, a Python loop
for the patch tokens and the gzip module for the score.
"""

from __future__ import annotations

import gzip
import math

import numpy as np
import torch
import torch.nn.functional as F

from ncalab.nca.config import HIDDEN_1, HIDDEN_2, NCAConfig
from ncalab.nca.rules import RuleParams

_TRUNC_SD = 0.87962566103423978


def reference_rule(seed: int, cfg: NCAConfig) -> RuleParams:
    """A rule drawn with torch.nn.init.trunc_normal_ (LeCun scaling, zero biases)."""
    g = torch.Generator().manual_seed(seed)
    c_in = cfg.conv_in_channels

    def kernel(shape, fan_in):
        w = torch.empty(shape, dtype=torch.float64)
        torch.nn.init.trunc_normal_(w, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=g)
        return (w * math.sqrt(1.0 / fan_in) / _TRUNC_SD).float()[None]

    z = lambda n: torch.zeros(1, n)  # noqa: E731
    return RuleParams(
        torch.tensor([seed]),
        kernel((3, 3, c_in, HIDDEN_1), 9 * c_in), z(HIDDEN_1),
        kernel((HIDDEN_1, HIDDEN_2), HIDDEN_1), z(HIDDEN_2),
        kernel((HIDDEN_2, cfg.alphabet), HIDDEN_2), z(cfg.alphabet),
    )


def reference_initial_state(cfg: NCAConfig, g: torch.Generator) -> torch.Tensor:
    z = torch.randn(cfg.alphabet, generator=g, dtype=torch.float64)
    probs = torch.softmax(z, dim=0)
    cells = torch.multinomial(probs, cfg.cells, replacement=True, generator=g)
    return cells.reshape(cfg.height, cfg.width)


def reference_logits(rule: RuleParams, i: int, state: torch.Tensor, cfg: NCAConfig, dtype=torch.float64) -> torch.Tensor:
    """(H, W, C) logits of rule i for a (H, W) state, via conv2d on the wrap-padded one-hot."""
    x = F.one_hot(state.long(), cfg.alphabet).to(dtype)  # (H, W, C)
    if cfg.channel_wrap:
        x = torch.cat([x[..., -1:], x, x[..., :1]], dim=-1)  # wrap the colour axis too
    x = x.permute(2, 0, 1)[None]  # (1, C_in, H, W)
    x = F.pad(x, (1, 1, 1, 1), mode="circular")
    w1 = rule.conv1[i].to(dtype).permute(3, 2, 0, 1)  # (4, C_in, 3, 3)
    h = F.conv2d(x, w1, rule.b1[i].to(dtype))
    h = F.conv2d(h, rule.w2[i].to(dtype).T[:, :, None, None], rule.b2[i].to(dtype))
    h = torch.relu(h)
    out = F.conv2d(h, rule.w3[i].to(dtype).T[:, :, None, None], rule.b3[i].to(dtype))
    return out[0].permute(1, 2, 0)


def reference_step(rule, i, state, cfg: NCAConfig, g: torch.Generator | None = None, noise=None):
    """One step. temperature 0: argmax; otherwise a categorical draw at that temperature
    (from torch.multinomial, or gumbel-max when ``noise`` (H, W, C) is given)."""
    logits = reference_logits(rule, i, state, cfg)
    logits = logits + cfg.identity_bias * F.one_hot(state.long(), cfg.alphabet).to(logits.dtype)
    if cfg.temperature == 0:
        return logits.argmax(-1)
    if noise is not None:
        return (logits / cfg.temperature + noise).argmax(-1)
    probs = torch.softmax(logits / cfg.temperature, dim=-1).reshape(-1, cfg.alphabet)
    return torch.multinomial(probs, 1, generator=g).reshape(state.shape)


def reference_rollout(rule, i, state, cfg: NCAConfig, n_frames: int, g=None, noise_fn=None) -> np.ndarray:
    """(n_frames, H, W): burn-in, then a frame every dT steps. noise_fn(t) gives step t's noise."""
    frames, t = [], 0
    for f in range(n_frames):
        for _ in range(cfg.burn_in if f == 0 else cfg.dt):
            state = reference_step(rule, i, state, cfg, g, noise_fn(t) if noise_fn else None)
            t += 1
        frames.append(state.numpy().astype(np.uint8))
    return np.stack(frames)


def reference_tokens(grid: np.ndarray, cfg: NCAConfig) -> list[int]:
    """Patch tokens of one (H, W) grid, one patch at a time."""
    p, c = cfg.patch, cfg.alphabet
    out = []
    for py in range(0, cfg.height, p):
        for px in range(0, cfg.width, p):
            tok, i = 0, 0
            for dy in range(p):
                for dx in range(p):
                    tok += int(grid[py + dy, px + dx]) * c**i
                    i += 1
            out.append(tok)
    return out


def reference_score(frames: np.ndarray, cfg: NCAConfig) -> float:
    toks = [t for fr in frames[: cfg.score_frames] for t in reference_tokens(fr, cfg)]
    raw = np.asarray(toks, dtype="<i4").tobytes()
    return len(gzip.compress(raw, compresslevel=9)) / len(raw)
