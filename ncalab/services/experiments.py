"""Experiments before and while they run: validate and record them (submit), claim and run
one in this process (run_here), or continue a stored one (execute, for the job worker).
services.launch puts these together for every front end; the work itself is
ncalab.experiment.pipeline.

The typed config goes straight to the pipeline; the store keeps a copy for detached jobs and
for browsing, read back only by a process that did not make it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import TYPE_CHECKING

from ncalab.config import ExperimentConfig
from ncalab.config.stored import stored_config
from ncalab.data.corpora import open_corpus
from ncalab.errors import NcalabError
from ncalab.evaluation.tasks import TASKS
from ncalab.experiment import pipeline
from ncalab.experiment.probing import check as check_probes
from ncalab.experiment.probing import contexts
from ncalab.experiment.reuse import run_keys
from ncalab.experiment.summary import ExperimentSummary
from ncalab.jobs import allocation, machine, slurm
from ncalab.jobs.allocation import ThreadGovernor
from ncalab.reporting import Reporter, SilentReporter
from ncalab.train import device as devices

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store

__all__ = ["Reporter", "SilentReporter", "check", "config_of", "execute", "run_here", "submit"]


def submit(cfg: ExperimentConfig, store: Store, name: str | None = None, sweep_id: str | None = None):
    """Validate and record an experiment and its runs, all queued; returns the experiment.
    Nothing is stored when anything about it cannot work."""
    placement = check(cfg)
    check_store_for(cfg, store)
    keys = run_keys(cfg, placement)
    runs = pipeline.run_stages(cfg)
    totals = {s.kind: s.total_tokens(cfg) for s in runs}
    exp = store.create_experiment(cfg.preset, cfg.scale, cfg.seed, cfg.to_dict(), name=name, sweep_id=sweep_id)
    for s in runs:
        store.create_run(exp.id, s.kind, cfg.to_dict(), totals[s.kind], keys.get(s.kind))
    return exp


def check_store_for(cfg: ExperimentConfig, store: Store) -> None:
    """A Slurm job needs a store every node can lock: refused before anything is stored or submitted."""
    if cfg.runtime.executor == "slurm":
        slurm.check_store(store)


def check(cfg: ExperimentConfig):
    """What `submit` checks before it stores anything; returns the placement."""
    cfg.validate()
    cfg.stage1.stream = cfg.nca_stream  # fixed now: a resumed run reads the same stream on any number of processes
    check_processes(cfg)
    placement = devices.choose(cfg.runtime.device, cfg.runtime.dtype)  # an impossible device fails now, not in the job

    open_corpus(cfg.data.corpus)  # a missing or unreachable corpus fails before anything is stored
    if cfg.stage1.source == "text" and cfg.stage1.corpus:  # validate has refused the text source without one
        open_corpus(cfg.stage1.corpus)
    check_evaluations(cfg)
    return placement


def check_processes(cfg: ExperimentConfig) -> None:
    """Processes this machine can run (one per GPU, or CPU processes up to the cores), or a
    cluster this machine can submit to."""
    r = cfg.runtime
    if r.executor != "local":
        slurm.check_available(r.executor)
        return
    if r.nproc > 1:
        gpus = allocation.gpus()
        have, what = (gpus, "GPUs") if gpus and r.device != "cpu" else (allocation.cores(), "CPU cores")
        if r.nproc > have:
            raise NcalabError(f"--nproc {r.nproc} needs {r.nproc} {what}; this machine has {have}")


def check_evaluations(cfg: ExperimentConfig) -> None:
    """Every evaluation the config asks for can run: its data is there, its code may run."""
    for name in cfg.eval.tasks:
        if name in TASKS:
            TASKS[name].check_ready(cfg)
    if cfg.eval.probes.names:  # an asked item length fits both stages' contexts
        check_probes(cfg.eval.probes.names, cfg.eval.probes.length or None, contexts(cfg))


def run_here(cfg: ExperimentConfig, store: Store, exp_id: str, reporter: Reporter | None = None) -> ExperimentSummary:
    """Claim a stored experiment and run it in this process, sharing the cores with the
    detached jobs beside it; a stop is an error that says how to continue."""
    if not store.claim_experiment(exp_id, os.getpid(), socket.gethostname()):
        raise NcalabError(f"experiment {exp_id} was taken by another process")
    stop = threading.Event()
    machine.register()  # computing on this machine: jobs of every store share the cores with it
    if not cfg.runtime.threads:
        governor = ThreadGovernor(store.home)
        governor.adjust(store)
        governor.follow(stop)
    try:
        summary = pipeline.run(cfg, store, exp_id, reporter)
    finally:
        stop.set()
        machine.unregister()
    if summary is None:
        raise NcalabError(f"experiment {exp_id} was stopped; `ncalab runs resume {exp_id}` continues it")
    return summary


def config_of(exp) -> ExperimentConfig:
    """The typed config a stored experiment was submitted with."""
    return stored_config(json.loads(exp.config_json))


def execute(store: Store, exp_id: str, reporter: Reporter | None = None, should_stop=None,
            world=None) -> ExperimentSummary | None:
    """Run (or continue) a stored, claimed experiment: what a background job does (each of
    its processes, under torchrun)."""
    cfg = config_of(store.get_experiment(exp_id)).validate()
    return pipeline.run(cfg, store, exp_id, reporter, should_stop, world=world)
