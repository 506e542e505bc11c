"""Compile the NCA engine's numba kernels into their on-disk cache before the workers start.

In a fresh clone the cache is empty: each xdist worker, and every job or benchmark process a
test starts before the cache is written, compiled the same kernels again (17 s for the rollout
alone on one core; the GPU check's dry run took 127 s instead of 64). tests/conftest.py runs the
two parts below at once, in processes of their own, before the workers exist. Run directly:
`python tests/warm_kernels.py engine` (or `tokens`).
"""

import sys
from pathlib import Path

import numpy as np


def engine() -> None:
    """The rollout and what it calls: rule weights, folded tables, initial grids."""
    from ncalab.nca.config import NCAConfig
    from ncalab.nca.engine import RuleBatch

    seeds = np.arange(2)
    RuleBatch(seeds, seeds, NCAConfig()).frames(2)


def tokens() -> None:
    """Patch tokens, and the reference rules' truncated normals (the torch path)."""
    import torch

    from ncalab.nca.config import NCAConfig
    from ncalab.nca.rules import make_rules
    from ncalab.nca.stream import patch_tokens

    cfg = NCAConfig()
    patch_tokens(np.zeros((1, 2, cfg.height, cfg.width), dtype=np.uint8), cfg)
    make_rules(torch.arange(2), cfg)


PARTS = {"engine": engine, "tokens": tokens}
KERNELS = ("truncated_row", "truncated_normals", "rule_weights", "initial_states", "patch_tokens", "fold_rule",
           "table_rows", "rollout")


def _package() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("ncalab")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def cached() -> bool:
    """Every kernel has a cache index newer than its source (numba's own test of staleness),
    found without importing ncalab (its import costs more than this check saves)."""
    package = _package()
    if package is None:
        return False
    source = package / "nca" / "kernels.py"
    made = source.stat().st_mtime
    folder = source.parent / "__pycache__"
    return all(any(p.stat().st_mtime >= made for p in folder.glob(f"kernels.{k}-*.nbi")) for k in KERNELS)

if __name__ == "__main__":
    PARTS[sys.argv[1]]()
