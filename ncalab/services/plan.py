"""`ncalab run --plan`: what each stage of an experiment costs on a given GPU (parameters, FLOPs,
memory, time), and a refusal with the nearest configuration that fits when it does not."""

from __future__ import annotations

from ncalab.errors import NcalabError
from ncalab.planning.plan import nearest_fit, stage_plans


def plan_stages(cfg, gpu: str, mfu: float) -> list:
    """One plan per training stage (ncalab.planning.plan.StagePlan) for `gpu` at model FLOPs
    utilisation `mfu`."""
    return stage_plans(cfg, gpu, mfu)


def refuse_unfit(cfg, plans: list, gpu: str, mfu: float) -> None:
    """One line when a stage does not fit: on a CPU, what it needs; on a GPU, also the nearest
    configuration that fits (smaller micro-batches, then FSDP, then more processes)."""
    bad = [p for p in plans if not p.fits]
    if bad and gpu == "cpu":
        raise NcalabError(f"{bad[0].stage} needs {bad[0].memory_total / 2**30:,.1f} GiB resident per process, more than "
                          "this machine has; a smaller micro_batch_size or model fits")
    if bad:
        near = nearest_fit(cfg, gpu, mfu)
        raise NcalabError(f"{bad[0].stage} needs {bad[0].memory_total / 2**30:,.1f} GiB per GPU, more than a {gpu} has"
                          + (f"; nearest that fits: {near}" if near else "; nothing up to 64 GPUs fits"))
