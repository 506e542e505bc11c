"""Shorter stage-2 budgets as cooldown branches of one wsd run (`stage2.budgets`).

A wsd run holds the peak rate until its cooldown, so a shorter wsd run with the same warm-up
is the same run up to its own cooldown (Hägele et al. 2024). The longest budget trains once
and keeps a checkpoint where each shorter budget's cooldown starts; each shorter budget then
continues from there under its own schedule (`Trainer.branch_from`) to its end, and its
held-out metrics are stored in the run as `budget_<metric>` points at its tokens. The
longest budget's point is the run's own final evaluation. The intermediate points of a
cosine run are never used: they are not the loss of a shorter run.

A branch sees the batches the longest run saw, in the same order. A shorter experiment
launched on its own prepares a corpus cut to its own budget and so draws other windows of
the same corpus: the two agree in distribution, not bit for bit.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING

from ncalab.errors import Stopped
from ncalab.train import checkpoint
from ncalab.train.loop import StageSpec, branch_name
from ncalab.train.schedule import decay_start

if TYPE_CHECKING:
    from ncalab.store.interfaces import StoreReader

PREFIX = "budget_"  # budget_val_loss, budget_val_ppl, ... at the budget's tokens
LOSS = PREFIX + "val_loss"


def spec_for(spec: StageSpec, tokens: int) -> StageSpec:
    """The stage's spec at a shorter budget; it evaluates only at its end (eval_every beyond
    its length), since only the end is a result."""
    return dataclasses.replace(spec, total_tokens=tokens, eval_every=2 * tokens)


def branch_points(spec: StageSpec, budgets) -> dict[int, int]:
    """{budget tokens: the step of the longest run where its cooldown starts}."""
    return {d: decay_start(spec_for(spec, d).steps, spec.decay) for d in budgets}


def points_at(values: dict, step: int, tokens: int, wall: float) -> list[dict]:
    """A budget's held-out metrics as `budget_` points at its tokens."""
    return [{"name": PREFIX + k, "step": step, "tokens": tokens, "wall_time": wall, "value": float(v)}
            for k, v in values.items() if k.startswith("val_")]


def stored_budgets(store: StoreReader, run_id: str) -> set[int]:
    """The budgets of a run whose result is stored."""
    tokens, _ = store.curve(run_id, LOSS)
    return set(tokens)


def run_branches(ctx, kind: str, run, spec: StageSpec, budgets, make_branch: Callable, main_step: int,
                 main_wall: float) -> None:
    """Train every shorter budget of the run that has no stored result yet, from its branch
    checkpoint, and store each result; then the longest budget's point from the run's own end.

    ``make_branch(tokens, checkpoint_dir, on_metrics)`` builds a trainer of the shorter budget
    (its model and batches fresh); it is restored from its own checkpoint when an earlier
    attempt left one, else branched from the longest run's checkpoint."""
    store = ctx.store
    folder = store.run_dir(run) / "checkpoints"
    done = stored_budgets(store, run.id)
    for d, step in sorted(branch_points(spec, budgets).items()):
        if d in done:
            continue
        own = folder / f"budget-{d}"
        trainer = make_branch(d, own, lambda pts: None)  # its evaluation is the run's result; the curve is not kept
        found = checkpoint.find(own / "last")
        if found is not None:
            trainer.restore(found)
        else:
            trainer.branch_from(folder / branch_name(step))
        ctx.reporter.note(f"{kind}: budget {d:,} tokens, its cooldown from step {trainer.step}")
        result = trainer.run()
        if trainer.stopped:
            store.finish_run(run.id, "cancelled")
            raise Stopped
        ctx.log(run, points_at(result, trainer.step, d, result["seconds"]))
        if ctx.world.main:  # the result is stored: the branch's own checkpoint is no longer needed
            shutil.rmtree(own, ignore_errors=True)
    if spec.total_tokens not in done:  # the run's own last evaluation (stored as it ran, or before a resume)
        ctx.log(run, points_at(store.latest_metrics(run.id), main_step, spec.total_tokens, main_wall))
