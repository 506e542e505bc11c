"""Counter-based random numbers: every draw is a pure function of (seed, purpose, counters).

Why not torch.Generator: a trajectory must not depend on which other rules share its batch,
nor on the device it runs on. Hashing integer counters gives the same bits on CPU and CUDA
and lets us draw noise for only the few cells that need it.
"""

from __future__ import annotations

import torch


def _signed(x: int) -> int:
    """A 64-bit unsigned constant as the int64 torch stores."""
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= (1 << 63) else x


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)


def _shr(z: torch.Tensor, k: int) -> torch.Tensor:
    # Logical shift right on int64 (torch's >> is arithmetic).
    return (z >> k) & ((1 << (64 - k)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser: a bijection on 64-bit integers (int64 wraps on overflow)."""
    z = z + _GOLDEN
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def hash_keys(*parts: torch.Tensor | int) -> torch.Tensor:
    """Chain-hash broadcastable int64 tensors (or ints) into one key per element."""
    h: torch.Tensor | None = None
    for p in parts:
        t = p if isinstance(p, torch.Tensor) else torch.tensor(_signed(int(p)), dtype=torch.int64)
        h = mix64(t if h is None else h ^ t)
    assert h is not None
    return h


def uniform_open(keys: torch.Tensor) -> torch.Tensor:
    """float64 uniforms strictly inside (0, 1), from 53 bits of each key."""
    bits = _shr(mix64(keys), 11)
    return (bits.to(torch.float64) + 0.5) * (2.0**-53)


def gumbel(keys: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise, float64; bounded to about [-3.6, 36.8] by the 53-bit uniforms."""
    return -torch.log(-torch.log(uniform_open(keys)))


# The largest possible difference of two gumbel draws above; a logit gap (divided by the
# temperature) wider than this can never be overturned by the noise.
GUMBEL_SPAN = 41.0
