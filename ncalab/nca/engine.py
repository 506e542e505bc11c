"""Rollouts of many rules at once, on the CPU (fused numba kernel) or on a torch device.

A RuleBatch owns rules, their states and step counters. ``frames(n)`` advances and records:
the first call runs the burn-in before its first frame, later calls continue every dT steps,
so scoring can look at the first frames and training keeps going from the same state.
"""

from __future__ import annotations

import numpy as np
import torch

from ncalab.nca import kernels, rng
from ncalab.nca.config import NCAConfig
from ncalab.nca.rules import RuleParams, effective_colour_kernel, make_rules
from ncalab.nca.simulate import _TAG_STEP, Simulator, initial_states, neighbour_index


# Pair tables hold C*C rows per pair of neighbours: worth it while they stay small.
PAIR_MAX_ALPHABET = 16


def _cpu_tables(rules: RuleParams, cfg: NCAConfig):
    """Folded lookup tables (see kernels.fold_tables) and their layout."""
    b, c = len(rules), cfg.alphabet
    paired = c <= PAIR_MAX_ALPHABET
    eff = effective_colour_kernel(rules.conv1, c, cfg.channel_wrap).reshape(b, 9, c, -1)
    table, bias = kernels.fold_tables(
        np.ascontiguousarray(eff.numpy()), rules.w2.numpy(), rules.b1.numpy(), rules.b2.numpy(), paired
    )
    return table, bias, paired


class RuleBatch:
    """A batch of (rule seed, simulation seed) pairs being simulated together."""

    def __init__(self, rule_seeds, sim_seeds, cfg: NCAConfig, device: str | torch.device = "cpu",
                 backend: str | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        # numba: the fused CPU kernel; torch: tensor ops on any device (the path CUDA takes).
        self.backend = backend or ("numba" if self.device.type == "cpu" else "torch")
        if self.backend not in ("numba", "torch") or (self.backend == "numba" and self.device.type != "cpu"):
            raise ValueError(f"backend {self.backend!r} cannot run on {self.device}")
        self.rule_seeds = np.asarray(rule_seeds, dtype=np.int64).reshape(-1)
        self.sim_seeds = np.asarray(sim_seeds, dtype=np.int64).reshape(-1)
        if self.rule_seeds.shape != self.sim_seeds.shape:
            raise ValueError("rule_seeds and sim_seeds must have the same length")
        rules = make_rules(torch.from_numpy(self.rule_seeds), cfg)
        state = initial_states(self.sim_seeds, cfg)
        self.steps_done = 0
        self.frames_done = 0
        if self.backend == "numba":
            self._table, self._bias2, self._paired = _cpu_tables(rules, cfg)
            self._w3 = np.ascontiguousarray(rules.w3.numpy())
            self._b3 = np.ascontiguousarray(rules.b3.numpy())
            self._state = np.ascontiguousarray(state.reshape(len(self), -1).numpy())
            self._all_sim_seeds = self.sim_seeds.copy()
            self._active = np.arange(len(self), dtype=np.int64)
            self._nbr = neighbour_index(cfg.height, cfg.width).numpy().astype(np.uint64)
        else:
            self._sim = Simulator(rules, cfg, torch.from_numpy(self.sim_seeds), self.device)
            self._tstate = state.to(self.device)

    def __len__(self) -> int:
        return int(self.rule_seeds.shape[0])

    def state(self) -> np.ndarray:
        """Current grids, (B, H, W) uint8."""
        cfg = self.cfg
        if self.backend == "numba":
            return self._state[self._active].reshape(-1, cfg.height, cfg.width)
        return self._tstate.cpu().numpy().astype(np.uint8)

    def frames(self, n: int) -> np.ndarray:
        """Advance and record n frames: (B, n, H, W) uint8."""
        cfg = self.cfg
        first_gap = cfg.burn_in if self.frames_done == 0 else cfg.dt
        if n <= 0:
            return np.zeros((len(self), 0, cfg.height, cfg.width), dtype=np.uint8)
        if self.backend == "numba":
            out = np.empty((len(self), n, cfg.cells), dtype=np.uint8)
            kernels.rollout(
                self._table, self._paired, self._bias2, self._w3, self._b3, self._all_sim_seeds,
                self._state, self._nbr, self._active, self.steps_done, first_gap, cfg.dt, n,
                float(cfg.temperature), float(cfg.identity_bias), rng.GUMBEL_SPAN, _TAG_STEP, out,
            )
            frames = out.reshape(len(self), n, cfg.height, cfg.width)
        else:
            recorded = []
            state = self._tstate
            for f in range(n):
                for _ in range(first_gap if f == 0 else cfg.dt):
                    state = self._sim.step(state)
                recorded.append(state)
            self._tstate = state
            frames = torch.stack(recorded, dim=1).cpu().numpy().astype(np.uint8)
        self.steps_done += first_gap + (n - 1) * cfg.dt
        self.frames_done += n
        return frames

    def select(self, keep: np.ndarray) -> None:
        """Keep only the rules at the given indices (the others stop being simulated)."""
        keep = np.asarray(keep, dtype=np.int64)
        self.rule_seeds = self.rule_seeds[keep]
        self.sim_seeds = self.sim_seeds[keep]
        if self.backend == "numba":
            self._active = self._active[keep]  # no copies: the kernel only visits active rules
        else:
            idx = torch.from_numpy(keep).to(self.device)
            self._sim.select(idx)
            self._tstate = self._tstate[idx]
