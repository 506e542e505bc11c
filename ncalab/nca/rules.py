"""Random NCA rules, each rebuilt exactly from its integer seed (spec section 1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ncalab.nca import kernels
from ncalab.nca.config import HIDDEN_1, HIDDEN_2, NCAConfig

_TAG_RULE = 0x52554C45  # "RULE"
# Flax's lecun_normal divides by the sd of a unit normal truncated at +-2.
_TRUNC_SD = 0.87962566103423978


@dataclass
class RuleParams:
    """Weights of a batch of rules, in the spec's layout (HWIO kernels, zero biases)."""

    seeds: torch.Tensor  # (B,) int64
    conv1: torch.Tensor  # (B, 3, 3, C_in, 4)
    b1: torch.Tensor  # (B, 4)
    w2: torch.Tensor  # (B, 4, 16)
    b2: torch.Tensor  # (B, 16)
    w3: torch.Tensor  # (B, 16, C)
    b3: torch.Tensor  # (B, C)

    def __len__(self) -> int:
        return int(self.seeds.shape[0])

    def to(self, device: torch.device | str) -> "RuleParams":
        return RuleParams(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    def select(self, index: torch.Tensor) -> "RuleParams":
        return RuleParams(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def _lecun_scale(fan_in: int) -> float:
    return math.sqrt(1.0 / fan_in) / _TRUNC_SD


def make_rules(seeds: torch.Tensor | list[int], cfg: NCAConfig) -> RuleParams:
    """Build the rules for the given seeds (on the CPU, so every device sees the same weights)."""
    seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
    c_in, c = cfg.conv_in_channels, cfg.alphabet
    shapes = [(3, 3, c_in, HIDDEN_1), (HIDDEN_1, HIDDEN_2), (HIDDEN_2, c)]
    fan_ins = [9 * c_in, HIDDEN_1, HIDDEN_2]
    sizes = [math.prod(s) for s in shapes]
    draws = torch.from_numpy(kernels.truncated_normals(seeds.numpy(), _TAG_RULE, sum(sizes)))
    parts = torch.split(draws, sizes, dim=1)
    b = seeds.shape[0]
    weights = [
        (p * _lecun_scale(f)).to(torch.float32).reshape(b, *s)
        for p, f, s in zip(parts, fan_ins, shapes)
    ]
    zeros = lambda n: torch.zeros(b, n, dtype=torch.float32)  # noqa: E731
    return RuleParams(seeds, weights[0], zeros(HIDDEN_1), weights[1], zeros(HIDDEN_2), weights[2], zeros(c))


def rule_arrays(seeds, cfg: NCAConfig) -> dict[str, np.ndarray]:
    """What the numba engine reads for each rule, as contiguous float32 numpy arrays: eff (B, 9, C, 4)
    (``effective_colour_kernel`` per offset), w2, b1, b2, w3, b3. Bit for bit the values of
    ``make_rules`` and ``effective_colour_kernel``, computed in one pass (tested)."""
    seeds = np.ascontiguousarray(np.asarray(seeds, dtype=np.int64).reshape(-1))
    c_in, c, b = cfg.conv_in_channels, cfg.alphabet, seeds.shape[0]
    eff, w2, w3 = kernels.rule_weights(seeds, _TAG_RULE, c_in, c, HIDDEN_1, HIDDEN_2, _lecun_scale(9 * c_in),
                                       _lecun_scale(HIDDEN_1), _lecun_scale(HIDDEN_2), cfg.channel_wrap)
    zeros = lambda n: np.zeros((b, n), dtype=np.float32)  # noqa: E731
    return {"eff": eff, "w2": w2, "b1": zeros(HIDDEN_1), "b2": zeros(HIDDEN_2), "w3": w3, "b3": zeros(c)}


def effective_colour_kernel(conv1: torch.Tensor, alphabet: int, channel_wrap: bool) -> torch.Tensor:
    """The 3x3 kernel as seen by each colour of the one-hot state: (B, 3, 3, C, 4).

    With the authors' wrap-padding of the colour axis, padded channel 0 copies colour C-1
    and channel C+1 copies colour 0, so those colours get the sum of two weight vectors.
    """
    if not channel_wrap:
        return conv1
    eff = conv1[:, :, :, 1 : alphabet + 1, :].clone()
    eff[:, :, :, alphabet - 1, :] += conv1[:, :, :, 0, :]
    eff[:, :, :, 0, :] += conv1[:, :, :, alphabet + 1, :]
    return eff
