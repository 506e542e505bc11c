"""A plan before spending money: what each training stage of an experiment will cost on the
chosen hardware (parameters, FLOPs, memory per GPU from planning/memory.py or resident memory
on a CPU from planning/footprint.py, time at a stated MFU), and whether it fits.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

from ncalab.config import ExperimentConfig
from ncalab.errors import NcalabError
from ncalab.planning import footprint
from ncalab.planning.compute import model_compute
from ncalab.planning.memory import (
    GIB,
    HEADROOM,
    cpu_micro_batch,
    language_vocab,
    largest_micro_batch,
    memory,
    stage_shapes,
)
from ncalab.sources.interface import SOURCES
from ncalab.train.device import measured_matmul_flops

# Dense bf16 peak (FLOP/s) and memory (GiB) of known GPUs; "cpu" is measured when asked for.
GPUS = {
    "h100": (989e12, 80), "h200": (989e12, 141), "a100": (312e12, 80), "a100-40gb": (312e12, 40),
    "l40s": (362e12, 48), "a10": (125e12, 24), "rtx4090": (165e12, 24), "v100": (125e12, 32),
}


@dataclass
class StagePlan:
    stage: str
    params: int
    params_no_embeddings: int
    flops_per_token: int
    tokens: int
    flops: float
    micro_batch: int
    memory: dict  # component -> bytes per GPU
    fits: bool
    hours: float  # at the stated MFU

    @property
    def memory_total(self) -> float:
        return float(sum(self.memory.values()))

    def to_dict(self) -> dict:
        return {**asdict(self), "memory_total": self.memory_total}


def peak_flops(gpu: str) -> float:
    if gpu == "cpu":
        return measured_matmul_flops()
    if gpu not in GPUS:
        raise NcalabError(f"unknown GPU {gpu!r}; choose one of {', '.join(GPUS)} or cpu")
    return GPUS[gpu][0]


def stage_plans(cfg: ExperimentConfig, gpu: str, mfu: float) -> list[StagePlan]:
    """One plan per training stage of stage 1 and stage 2 (each arm of stage 2 costs the same)."""
    if not 0 < mfu <= 1:
        raise NcalabError(f"--mfu must be in (0, 1], got {mfu}")
    peak = peak_flops(gpu)
    capacity = GPUS[gpu][1] * GIB * HEADROOM if gpu in GPUS else footprint.machine_memory()
    n = cfg.runtime.nproc
    plans = []
    for name, section, vocab, length, tokens in stage_shapes(cfg):
        c = model_compute(cfg.model, vocab, length)
        key = name.split()[0]
        if gpu == "cpu":
            micro = section.micro_batch_size or cpu_micro_batch(cfg, key, length)
            mem = footprint.resident(cfg, vocab, length, micro)
        else:
            micro = section.micro_batch_size or (largest_micro_batch(cfg, key, vocab, length, capacity) or 1)
            mem = memory(cfg, vocab, length, micro)
        flops = float(c.flops_per_token) * tokens
        plans.append(StagePlan(name, c.params, c.params_no_embeddings, c.flops_per_token, tokens, flops, micro, mem,
                               sum(mem.values()) <= capacity, flops / (n * peak * mfu) / 3600))
    return plans


def nearest_fit(cfg: ExperimentConfig, gpu: str, mfu: float) -> str | None:
    """The nearest configuration that fits, in the order a user would try: smaller
    micro-batches, then FSDP, then more processes. None when nothing up to 64 GPUs fits."""
    capacity = GPUS[gpu][1] * GIB * HEADROOM if gpu in GPUS else float("inf")
    text = language_vocab(cfg)
    vocab1 = text if cfg.stage1.source == "text" else SOURCES[cfg.stage1.source].vocab_size(cfg)
    shapes = {"stage1": (vocab1, cfg.stage1_seq_len), "stage2": (text, cfg.stage2.seq_len)}

    def micro_sets(c: ExperimentConfig) -> list[str] | None:
        out = []
        for name, (vocab, length) in shapes.items():
            micro = largest_micro_batch(c, name, vocab, length, capacity)
            if micro is None:
                return None
            if micro != (getattr(c, name).micro_batch_size or getattr(c, name).batch_size // c.runtime.nproc):
                out.append(f"--set {name}.micro_batch_size={micro}")
        return out

    for parallel in dict.fromkeys([cfg.runtime.parallel, "fsdp"]):
        for n in (cfg.runtime.nproc, *(k for k in (2, 4, 8, 16, 32, 64) if k > cfg.runtime.nproc)):
            c = copy.deepcopy(cfg)
            c.runtime.nproc, c.runtime.parallel = n, parallel if n > 1 else cfg.runtime.parallel
            if any(getattr(c, s).batch_size % n for s in shapes):
                continue
            sets = micro_sets(c)
            if sets is not None:
                extra = ([f"--nproc {n}"] if n != cfg.runtime.nproc else []) + \
                        ([f"--set runtime.parallel={parallel}"] if c.runtime.parallel != cfg.runtime.parallel else [])
                return " ".join(extra + sets) or None
    return None
