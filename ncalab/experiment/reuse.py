"""Reuse keys: which runs of different experiments would produce the same result.

A sweep over transfer settings trains the same stage 1 for every setting, and every variant
of a seed is compared with the same scratch baseline (whatever the stage-1 source). Each run
gets a key, a hash of exactly the settings that determine it; a run whose key matches a
completed run takes that run's result instead of training again. Labels (preset, scale,
family, names), settings that do not change numbers (threads) and evaluation-only settings
are left out; the device type, the autocast dtype and the ncalab version are in, so a result
is never borrowed across any of them. Settings added since the first stores were written
count only when they differ from the value that reproduces older runs, so old keys match.
"""

from __future__ import annotations

import hashlib
import json

import ncalab
from ncalab.config import ExperimentConfig
from ncalab.config.stored import without_added
from ncalab.sources.interface import SOURCES, stage1_tokens
from ncalab.train.compiling import compiles

EVALUATION_ONLY = ("icl_sequences",)
# How the work is split (processes, micro-batches) changes floating-point rounding only, like
# threads: a run on one process and the same run on eight share a key.
HOW_SPLIT = ("micro_batch_size",)


def _hash(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def run_keys(cfg: ExperimentConfig, placement) -> dict[str, str]:
    """{"stage1": key, "nca": key, "scratch": key} for this config on this placement."""
    d = cfg.to_dict()
    common = {"version": ncalab.__version__, "device": placement.device.type, "amp": str(placement.amp_dtype),
              "seed": cfg.seed, "model": without_added(d["model"], "model")}
    # runtime.compile as each stage resolves it ("auto": train/compiling.py), so a stage that
    # "auto" leaves uncompiled shares its key with runs stored when the setting was false
    compiled1, compiled2 = (compiles(cfg.runtime.compile, placement, cfg.runtime.world, tokens)
                            for tokens in (stage1_tokens(cfg), cfg.stage2.tokens))
    source = dict(SOURCES[cfg.stage1.source].reuse_settings(cfg))
    d["stage1"]["stream"] = cfg.nca_stream  # "auto" is resolved: the stream decides the data
    if not cfg.spreads_rules:  # one trajectory a rule (or the adjacent layout): reuse changes nothing
        d["stage1"]["reuse"] = "adjacent"
    section = {k: v for k, v in without_added(d["stage1"], "stage1").items()
               if k not in ("band", *EVALUATION_ONLY, *HOW_SPLIT)}
    section.update(source.pop("stage1", {}))  # the band, for NCA
    stage1 = {**common, "compile": compiled1, "kind": "stage1", "stage1": section, **source}
    stage2 = {k: v for k, v in without_added(d["stage2"], "stage2").items() if k not in HOW_SPLIT}
    scratch = {**common, "compile": compiled2, "kind": "scratch", "data": d["data"], "stage2": stage2}
    # the transferred run depends on all of it: its stage 1, the transfer, and the scratch settings
    nca = {**stage1, **scratch, "kind": "nca", "transfer": without_added(d["transfer"], "transfer"),
           **({"stage1_compile": compiled1} if compiled1 != compiled2 else {})}
    return {"stage1": _hash(stage1), "nca": _hash(nca), "scratch": _hash(scratch)}
