"""What a stage of an experiment is, for the runner, the planner and every package that
declares stages (experiment/stages.py, evaluation/stages.py): its kind, the protocol each kind
keeps, and the Plan a training stage builds before it trains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ncalab.planning.compute import ModelCompute
    from ncalab.train.loop import StageSpec


@dataclass
class Plan:
    """Everything a training stage needs, built only when the stage must really train."""

    model: object
    spec: StageSpec
    batches: object
    validation: list
    compute: ModelCompute
    micro_batch_size: int = 0  # sequences per forward pass in each process (0: its whole share)


# How the runner runs a stage (ncalab.experiment.pipeline): a step computes something
# for later stages; a training stage fills its run with a trained model; a measurement fills
# its run with scores. Training stages and measurements each own a run of the store.
STEP, TRAINING, MEASUREMENT = "step", "training", "measurement"


class TrainingStage(Protocol):
    runs_as: str  # TRAINING
    kind: str  # its run in the store
    keeps_model: bool  # its saved model is needed by later stages (a reused twin must have one)

    def total_tokens(self, cfg) -> int: ...
    def budgets(self, cfg) -> list[int]: ...  # shorter budgets, each a cooldown branch (experiment/budgets.py)
    def plan(self, ctx) -> Plan: ...
    def save(self, ctx, model, folder: Path) -> None: ...
    def trained(self, ctx, model) -> None: ...
    def completed(self, ctx, folder: Path) -> None: ...


class Step(Protocol):
    runs_as: str  # STEP
    name: str

    def run(self, ctx) -> None: ...
