"""Reuse keys: which runs of different experiments would produce the same result.

A sweep over transfer settings trains the same stage 1 for every setting, and every NCA
variant of a seed is compared with the same scratch baseline. Each run gets a key, a hash
of exactly the settings that determine it; a run whose key matches a completed run takes
that run's result instead of training again. Labels (preset, scale, family, names) and
settings that do not change numbers (threads) are left out; the device type, the autocast
dtype and the ncalab version are in, so a result is never borrowed across any of them.
"""

from __future__ import annotations

import hashlib
import json

import ncalab
from ncalab.experiment.config import ExperimentConfig


def _hash(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def run_keys(cfg: ExperimentConfig, placement) -> dict[str, str]:
    """{"stage1": key, "nca": key, "scratch": key} for this config on this placement."""
    d = cfg.to_dict()
    common = {"version": ncalab.__version__, "device": placement.device.type, "amp": str(placement.amp_dtype),
              "compile": cfg.runtime.compile, "seed": cfg.seed, "model": d["model"]}
    band = cfg.band()
    stage1 = {**common, "kind": "stage1", "nca": d["nca"], "stage1": {**d["stage1"], "band": [band.lo, band.hi]}}
    scratch = {**common, "kind": "scratch", "data": d["data"], "stage2": d["stage2"]}
    # the transferred run depends on all of it: its stage 1, the transfer, and the scratch settings
    nca = {**stage1, **scratch, "kind": "nca", "transfer": d["transfer"]}
    return {"stage1": _hash(stage1), "nca": _hash(nca), "scratch": _hash(scratch)}
