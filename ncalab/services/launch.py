"""One way to start an experiment, whoever asks: `ncalab run`, `ncalab eval`, the TUI's
Launch, sweeps and `runs resume` all call `launch`. It records the experiment (or takes
the stored one), then runs it in this process or hands it to the job queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from ncalab.config import ExperimentConfig
from ncalab.experiment.summary import ExperimentSummary
from ncalab.jobs import control, queue
from ncalab.reporting import Reporter
from ncalab.services.experiments import config_of, run_here, submit

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store


class How(str, Enum):
    """Where an experiment runs once it is recorded."""

    HERE = "here"  # claimed and run in this process, until its summary
    BACKGROUND = "background"  # a detached job now if the queue has a free slot, else queued
    QUEUED = "queued"  # queued only: the caller starts the queue once for many (a sweep's members)


@dataclass(frozen=True)
class Launched:
    experiment_id: str
    status: str  # running, queued or completed
    summary: ExperimentSummary | None = None  # when it ran here


def launch(cfg: ExperimentConfig, store: Store, how: How = How.BACKGROUND, *, name: str | None = None,
           sweep_id: str | None = None, experiment_id: str | None = None,
           reporter: Reporter | None = None) -> Launched:
    """Record `cfg` as a new experiment (nothing is stored if it cannot run), or take the stored
    `experiment_id` (an evaluation added to one, a resume), and start it as `how` says."""
    exp_id = experiment_id or submit(cfg, store, name, sweep_id).id
    if how is How.HERE:
        return Launched(exp_id, "completed", run_here(cfg, store, exp_id, reporter))
    if how is How.QUEUED:
        return Launched(exp_id, "queued")
    return Launched(exp_id, queue.start(store, exp_id))


def resume(store: Store, exp_id: str, how: How = How.BACKGROUND) -> Launched:
    """Continue a cancelled, failed or lost experiment from its last checkpoints, with the
    config it was stored with."""
    cfg = config_of(store.get_experiment(exp_id)).validate()  # e.g. its source plugin uninstalled: one line, nothing changed
    control.requeue(store, exp_id)
    return launch(cfg, store, how, experiment_id=exp_id)
