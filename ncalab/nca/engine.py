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
from ncalab.nca.rules import make_rules, rule_arrays
from ncalab.nca.simulate import _TAG_STEP, Simulator, initial_states, neighbour_index

# Pair tables hold C*C rows per pair of neighbours: worth it while they stay small.
PAIR_MAX_ALPHABET = 16


class RuleBatch:
    """A batch of (rule seed, simulation seed) pairs being simulated together.

    A rule seed may appear several times (one rule from several initial states): its weights
    are drawn once. ``early_exit`` (numba backend) stops simulating a trajectory whose grid
    provably stays fixed (see kernels.rollout) and copies it instead: the frames are the same
    bits either way; False is there to check exactly that.
    """

    def __init__(self, rule_seeds, sim_seeds, cfg: NCAConfig, device: str | torch.device = "cpu",
                 backend: str | None = None, early_exit: bool = True):
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
        unique, rule_row = np.unique(self.rule_seeds, return_inverse=True)
        if len(unique) == len(self.rule_seeds):  # the usual case: keep the caller's order
            unique, rule_row = self.rule_seeds, np.arange(len(self), dtype=np.int64)
        state = initial_states(self.sim_seeds, cfg)
        self.early_exit = early_exit
        self.steps_done = 0
        self.frames_done = 0
        if self.backend == "numba":
            self._rules = rule_arrays(unique, cfg)
            self._paired = cfg.alphabet <= PAIR_MAX_ALPHABET
            self._rule_row = np.ascontiguousarray(rule_row, dtype=np.int64).reshape(-1)
            self._state = np.ascontiguousarray(state.reshape(len(self), -1).numpy())
            self._all_sim_seeds = self.sim_seeds.copy()
            self._active = np.arange(len(self), dtype=np.int64)
            self._frozen = np.full(len(self), -1, dtype=np.int64)  # steps taken when found fixed
            self._nbr = neighbour_index(cfg.height, cfg.width).numpy().astype(np.int64)
        else:
            rules = make_rules(torch.from_numpy(unique), cfg)
            if len(unique) != len(self.rule_seeds):
                rules = rules.select(torch.from_numpy(np.asarray(rule_row, dtype=np.int64).reshape(-1)))
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
            r = self._rules
            kernels.rollout(
                r["eff"], r["w2"], r["b1"], r["b2"], r["w3"], r["b3"], self._paired, self._rule_row,
                self._all_sim_seeds, self._state, cfg.height, cfg.width, self._nbr, self._active, self._frozen,
                self.steps_done,
                first_gap, cfg.dt, n, float(cfg.temperature), float(cfg.identity_bias), rng.GUMBEL_SPAN,
                _TAG_STEP, self.early_exit, out,
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

    def frozen(self) -> np.ndarray:
        """(B,) bool: trajectories found fixed for good (numba backend with early exit; else all False)."""
        return self.frozen_at() >= 0

    def frozen_at(self) -> np.ndarray:
        """(B,) int64: steps after which each trajectory was found fixed for good and stopped being
        simulated (-1: not found fixed, or not the numba backend with early exit)."""
        if self.backend == "numba":
            return self._frozen[self._active].copy()
        return np.full(len(self), -1, dtype=np.int64)

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
