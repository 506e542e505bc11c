"""The fast batched NCA simulator: many different rules stepped at once (spec section 2).

Where the time goes, and what we do about it:
- The 3x3 convolution of a one-hot state is a table lookup: each cell adds up one row per
  neighbour, indexed by (offset, neighbour colour). The following 1x1 convolution is linear,
  so it is folded into the table, and one ``embedding_bag`` gathers and sums nine rows of 16.
- At temperature 1e-4 the categorical draw equals the argmax unless the two largest logits
  nearly tie, so noise is drawn (from counter-based hashes) only for those cells. The result is
  exactly the gumbel-max sample with that noise.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ncalab.nca import kernels, rng
from ncalab.nca.config import HIDDEN_2, NCAConfig
from ncalab.nca.rules import RuleParams, effective_colour_kernel

_TAG_INIT_Z = 0x494E495A  # "INIZ"
_TAG_INIT_CELL = 0x494E4943  # "INIC"
_TAG_STEP = 0x53544550  # "STEP"


def neighbour_index(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H*W, 9) flat indices of each cell's 3x3 wrap-around neighbourhood, row-major offsets."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    cols = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            cols.append((((ys + dy) % height) * width + (xs + dx) % width).reshape(-1))
    return torch.stack(cols, dim=1).to(device)


def initial_states(sim_seeds, cfg: NCAConfig) -> torch.Tensor:
    """One random grid per seed, (B, H, W) uint8: colour distribution softmax(z), z ~ N(0, I),
    then i.i.d. cells (spec section 2). Always drawn on the CPU, so every device starts alike."""
    seeds = np.asarray(sim_seeds, dtype=np.int64).reshape(-1)
    grids = kernels.initial_states(seeds, cfg.alphabet, cfg.cells, _TAG_INIT_Z, _TAG_INIT_CELL)
    return torch.from_numpy(grids.reshape(-1, cfg.height, cfg.width))


class Simulator:
    """Steps a batch of rules; ``state`` is (B, H, W) of colour indices."""

    def __init__(self, rules: RuleParams, cfg: NCAConfig, sim_seeds: torch.Tensor, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.sim_seeds = torch.as_tensor(sim_seeds, dtype=torch.int64).reshape(-1)
        b, c = len(rules), cfg.alphabet
        eff = effective_colour_kernel(rules.conv1, c, cfg.channel_wrap).reshape(b, 9 * c, -1)
        # Fold the (linear) 1x1 conv into the lookup table: rows of 16 per (offset, colour).
        table = torch.bmm(eff.double(), rules.w2.double())
        # Bias of layer 1 passes through layer 2; it is added once per cell, so put it in row 0 / 9.
        bias = (rules.b1.double()[:, None, :] @ rules.w2.double())[:, 0] + rules.b2.double()
        self.table = table.to(torch.float32).reshape(b * 9 * c, HIDDEN_2).contiguous().to(self.device)
        self.bias2 = bias.to(torch.float32)[:, None, :].to(self.device)  # (B, 1, 16)
        self.w3 = rules.w3.to(self.device)
        self.b3 = rules.b3[:, None, :].to(self.device)
        self.nbr = neighbour_index(cfg.height, cfg.width, self.device)  # (N, 9)
        offsets = torch.arange(9, device=self.device) * c
        self.row_base = (torch.arange(b, device=self.device)[:, None, None] * (9 * c) + offsets).to(torch.int64)
        self.sim_seeds_dev = self.sim_seeds.to(self.device)
        self.t = 0  # steps taken since the initial state (the noise counter)

    def __len__(self) -> int:
        return int(self.sim_seeds.shape[0])

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the rules at ``keep`` (indices), e.g. those that passed the band filter."""
        c = self.cfg.alphabet
        b = len(self)
        keep = keep.to(self.device)
        self.table = self.table.view(b, 9 * c, HIDDEN_2)[keep].reshape(-1, HIDDEN_2).contiguous()
        self.bias2, self.w3, self.b3 = self.bias2[keep], self.w3[keep], self.b3[keep]
        self.sim_seeds = self.sim_seeds[keep.cpu()]
        self.sim_seeds_dev = self.sim_seeds_dev[keep]
        nb = int(keep.shape[0])
        offsets = torch.arange(9, device=self.device) * c
        self.row_base = (torch.arange(nb, device=self.device)[:, None, None] * (9 * c) + offsets).to(torch.int64)

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """(B, N, C) next-state logits of every cell (identity bias not included)."""
        b = state.shape[0]
        flat = state.reshape(b, -1)
        nb = flat[:, self.nbr].to(torch.int64)  # (B, N, 9) neighbour colours
        idx = (nb + self.row_base).reshape(-1, 9)
        h = F.embedding_bag(idx, self.table, mode="sum").view(b, -1, HIDDEN_2)
        h = torch.relu_(h + self.bias2)
        return torch.baddbmm(self.b3, h, self.w3)

    def step(self, state: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b = state.shape[0]
        logits = self.logits(state)
        flat = state.reshape(b, -1, 1).to(torch.int64)
        if cfg.identity_bias:
            logits.scatter_add_(2, flat, torch.full_like(flat, cfg.identity_bias, dtype=logits.dtype))
        top, arg = logits.max(dim=2)
        if cfg.temperature > 0:
            second = logits.scatter(2, arg[..., None], float("-inf")).amax(dim=2)
            near = (top - second) < rng.GUMBEL_SPAN * cfg.temperature
            if bool(near.any()):
                arg = self._sample_near_ties(logits, arg, near)
        self.t += 1
        return arg.to(state.dtype).view_as(state)

    def _sample_near_ties(self, logits: torch.Tensor, arg: torch.Tensor, near: torch.Tensor) -> torch.Tensor:
        """Gumbel-max draws for the cells whose top logits nearly tie; elsewhere the argmax stands."""
        bi, ci = near.nonzero(as_tuple=True)
        colours = torch.arange(self.cfg.alphabet, device=logits.device)
        keys = rng.hash_keys(self.sim_seeds_dev[bi][:, None], _TAG_STEP, self.t, ci[:, None], colours[None, :])
        scores = logits[bi, ci].double() / self.cfg.temperature + rng.gumbel(keys)
        arg = arg.clone()
        arg[bi, ci] = scores.argmax(dim=1)
        return arg

    def run(self, state: torch.Tensor, steps: int) -> torch.Tensor:
        for _ in range(steps):
            state = self.step(state)
        return state
