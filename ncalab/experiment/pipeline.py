"""Running an experiment: the stages of PIPELINE in order, by one function.

`run` owns what every stage shares: claiming each run, taking an identical run's result
instead of training again, resuming from the last checkpoint, heartbeats, the statuses in
the store, and the finish. A stop request (SIGTERM, Ctrl-C in a job, `runs cancel`) ends the
experiment through one exception, `Stopped`, after the running stage has checkpointed.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ncalab.config import ExperimentConfig
from ncalab.data.language import LanguageData
from ncalab.errors import NcalabError, Stopped
from ncalab.evaluation.passk import per_item_pass
from ncalab.evaluation.stages import stages_for
from ncalab.evaluation.tasks import ARMS, TASKS, ks
from ncalab.experiment import tracking
from ncalab.experiment.budgets import branch_points, run_branches, spec_for
from ncalab.experiment.lazy import Lazy
from ncalab.experiment.stages import IN_CONTEXT_METRICS, PIPELINE
from ncalab.experiment.summary import ExperimentSummary, StageCompute, compare, in_context_means
from ncalab.jobs.oom import verdict
from ncalab.jobs.queue import is_dead
from ncalab.jobs.slurm import REQUEUE
from ncalab.lazy import torch
from ncalab.planning import footprint
from ncalab.planning.stage import MEASUREMENT, STEP, TRAINING, Plan, TrainingStage
from ncalab.reporting import Reporter, SilentReporter, TrainingProgress
from ncalab.store.follower import FollowerStore
from ncalab.store.schema import Run
from ncalab.train import cards, checkpoint, memory
from ncalab.train import device as devices
from ncalab.train.batches import Prefetcher
from ncalab.train.compiling import compiles
from ncalab.train.distributed import World, device_of
from ncalab.train.loop import Trainer, TrainerOptions
from ncalab.train.model import blank_like

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store


@dataclass
class Context:
    """What the stages of one running experiment share."""

    cfg: ExperimentConfig
    store: Store  # the RunStore, or a FollowerStore in a distributed run's other processes
    exp_id: str
    runs: dict  # kind -> Run
    placement: devices.Placement
    reporter: Reporter
    should_stop: Callable[[], bool]
    cache: Path
    world: World = field(default_factory=World)  # the processes training together (a world of one by default)
    tracking: tracking.Mirror = field(default_factory=lambda: tracking.Mirror([], None, lambda text: None))
    # What the stages hand on, made when first read:
    language: Lazy[LanguageData] = field(default_factory=lambda: Lazy("the language data"))
    windows: Lazy[list] = field(default_factory=lambda: Lazy("the stage-2 held-out windows"))
    stage1_model: Lazy[Any] = field(default_factory=lambda: Lazy("the stage-1 model"))
    warm_start: Lazy[tuple[Any, list[str]]] = field(default_factory=lambda: Lazy("the warm start"))

    def log(self, run, points: list[dict]) -> None:
        """Store a run's metric points, then mirror them to the trackers (which never blocks)."""
        self.store.log_metrics(run.id, points)
        self.tracking.points(run.kind, points)

    def main_first(self, make: Callable[[], Any]) -> Any:
        """Run `make` on the main process first (it fills caches: tokenizers, token arrays),
        then on the others, which then find them made."""
        if not self.world.main:
            self.world.barrier()
        value = make()
        if self.world.main:
            self.world.barrier()
        return value


def cache_dir(store: Store) -> Path:
    d = Path(store.home) / "cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


def run(cfg: ExperimentConfig, store: Store, exp_id: str, reporter: Reporter | None = None,
        should_stop: Callable[[], bool] | None = None, world: World | None = None) -> ExperimentSummary | None:
    """Run (or continue) a claimed experiment with its typed config: completed stages are
    skipped, an interrupted one continues from its checkpoint. Returns the summary, or None
    if it was stopped (status cancelled).

    Under torchrun every process runs this with its `world`: all train together, and only the
    main process writes to the store, the run folders and the trackers."""
    ctx = _context(cfg, store, exp_id, reporter, should_stop, world or World())
    stage, outcome = None, "failed"
    try:
        for stage in stages(cfg):
            _run_stage(ctx, stage)
        stage = None  # a failure from here on belongs to no stage's run
        summary = _finish(ctx)
        outcome = "completed"
        return summary
    except Stopped:
        ctx.store.finish_experiment(exp_id, "cancelled")
        outcome = "cancelled"
        return None
    except BaseException as e:
        try:
            outcome = _record_end(ctx, stage, e)
        except NcalabError as unrecorded:  # the store failed too (a full disk, a server gone): the cause goes on
            ctx.reporter.note(f"the end of the run was not stored: {unrecorded}")
        raise
    finally:
        ctx.tracking.close(outcome)


def _run_stage(ctx: Context, stage) -> None:
    """One stage, by its kind (planning/stage.py): a training stage fills its run with a trained
    model (_train), a measurement fills its run with scores (_measure), a step computes what
    later stages read (its own run method)."""
    if stage.runs_as == TRAINING:
        _train(ctx, stage)
    elif stage.runs_as == MEASUREMENT:
        _measure(ctx, stage)
    else:
        stage.run(ctx)


def _context(cfg: ExperimentConfig, store: Store, exp_id: str, reporter: Reporter | None,
             should_stop: Callable[[], bool] | None, world: World) -> Context:
    """The device, threads and trackers of this process, and what its stages share; a process
    other than the main one gets a store that writes nothing."""
    placement = devices.choose(device_of(world, cfg.runtime.device), cfg.runtime.dtype)
    devices.tune_glibc_malloc()
    devices.set_threads(cfg.runtime.threads)
    if not world.main:
        store = FollowerStore(store)
    ctx = Context(cfg, store, exp_id, {r.kind: r for r in store.runs_of(exp_id)}, placement,
                  reporter or SilentReporter(), should_stop or (lambda: False), cache_dir(store), world)
    if world.main:
        ctx.tracking = tracking.start(cfg, store, exp_id, ctx.reporter.note)
    ctx.tracking.config(cfg.to_dict())
    return ctx


def _finish(ctx: Context) -> ExperimentSummary:
    """Every stage ran: the summary goes to the store, the trackers and the model cards."""
    summary = summarise(ctx.store, ctx.exp_id, ctx.placement.label, ctx.cfg)
    ctx.store.set_summary(ctx.exp_id, summary.to_dict())
    ctx.tracking.summary(summary.to_dict())
    if ctx.world.main:
        cards.update_after_summary(ctx, summary)
    ctx.store.finish_experiment(ctx.exp_id, "completed")
    return summary


def _record_end(ctx: Context, stage, e: BaseException) -> str:
    """The status an experiment ended by `e` (during `stage`, if one ran) gets in the store;
    returns it for the trackers. The caller raises `e` again."""
    store, exp_id = ctx.store, ctx.exp_id
    # Slurm's time limit or a preemption: the requeued job continues it (submitit's signal
    # exits, or surfaces as another error when it lands inside compiled code)
    if REQUEUE.is_set():
        store.requeue_experiment(exp_id)
        ctx.reporter.note("requeued (time limit or preemption): the next job continues from the last checkpoint")
        return "requeued"
    if isinstance(e, SystemExit):
        store.finish_experiment(exp_id, "cancelled", error="the process was told to exit")
        return "cancelled"
    error = str(e) if isinstance(e, NcalabError) else f"{type(e).__name__}: {e}"
    status = "cancelled" if isinstance(e, KeyboardInterrupt) else "failed"
    if _peer_lost(ctx, e):  # torchrun ends the others when one process dies: resumable, like a kill

        killed = verdict(store, exp_id)  # the one that died was killed for memory
        status, error = ("failed", killed) if killed else ("lost", f"a process of the job died ({error.splitlines()[0][:200]})")
    if getattr(stage, "kind", None):
        store.finish_run(ctx.runs[stage.kind].id, status, error=error)
    store.finish_experiment(exp_id, status, error=error)
    return status


def _peer_lost(ctx: Context, e: BaseException) -> bool:
    """A multi-process job that failed because another of its processes died: a collective
    broke, or one did while the job was being stopped (torchrun signals the survivors)."""
    if not ctx.world.distributed or isinstance(e, NcalabError):
        return False
    # gloo reports a dead peer as a plain RuntimeError from its transport
    broken = isinstance(e, RuntimeError) and any(s in str(e) for s in _BROKEN_LINK)
    return isinstance(e, torch.distributed.DistError) or broken or bool(ctx.should_stop())


_BROKEN_LINK = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL communicator was aborted")


def stages(cfg: ExperimentConfig) -> list:
    """Every stage of an experiment with this config: the fixed PIPELINE, then the downstream
    evaluations it asks for."""
    return [*PIPELINE, *stages_for(cfg)]


def _measure(ctx: Context, stage) -> None:
    """A stage that measures (an evaluation): its run is started, the stage works (it may stop
    between items), and the run is finished."""
    store, run = ctx.store, ctx.runs[stage.kind]
    if run.status == "completed" or not ctx.world.main:  # evaluations run on the main process
        return
    store.start_run(run.id, os.getpid(), socket.gethostname(), ctx.placement.label)
    _fresh_peak(ctx)

    def stopped() -> None:
        if ctx.should_stop():
            store.finish_run(run.id, "cancelled")
            raise Stopped

    stage.measure(ctx, store.get_run(run.id), stopped)
    peaks = [{"name": k, "step": 0, "tokens": 0, "wall_time": 0.0, "value": v}
             for k, v in memory.peak_points(ctx.placement.device).items()]
    store.log_metrics(run.id, peaks)
    _remember_peak(ctx, peaks)
    ctx.tracking.points(stage.kind, store.metrics(run.id))
    store.finish_run(run.id, "completed")
    ctx.reporter.done(stage.kind, {})


def _train(ctx: Context, stage: TrainingStage) -> None:
    """Claim, reuse or train one run, continuing from its checkpoint; save and finish it."""
    store, run = ctx.store, ctx.runs[stage.kind]
    folder = store.run_dir(run) / "model"
    if run.status == "completed":
        stage.completed(ctx, folder)
        return
    twin = _claim(ctx, run, stage)
    if twin is not None:
        src = store.run_dir(twin) / "model"
        if src.is_dir() and ctx.world.main:
            _link_tree(src, folder)
        ctx.world.barrier()
        store.adopt_run(run.id, twin)
        ctx.tracking.restart(stage.kind, -1)
        ctx.tracking.points(stage.kind, store.metrics(run.id))
        ctx.reporter.note(f"{stage.kind}: identical to run {twin.id} of experiment {twin.experiment_id}; its result is reused")
        ctx.reporter.done(stage.kind, {})
        stage.completed(ctx, folder)
        return
    _fresh_peak(ctx)  # the stage's peak includes building its model and data
    plan = stage.plan(ctx)
    budgets = stage.budgets(ctx.cfg)
    trainer = _trainer(ctx, stage.kind, run, plan, budgets)
    ctx.reporter.stage(stage.kind, plan.spec.steps * plan.spec.tokens_per_step)
    store.start_run(run.id, os.getpid(), socket.gethostname(), ctx.placement.label)
    result = trainer.run()
    store.heartbeat(run.id, step=trainer.step, tokens=trainer.tokens)
    if trainer.stopped:
        store.finish_run(run.id, "cancelled")
        raise Stopped
    full = trainer.full_model()  # a collective when the weights are sharded
    if ctx.world.main:
        stage.save(ctx, full, folder)
    ctx.world.barrier()
    if budgets:  # the shorter budgets' cooldowns, each from its branch checkpoint of this run

        run_branches(ctx, stage.kind, run, plan.spec, budgets,
                     lambda tokens, where, ends: _branch_trainer(ctx, run, plan, tokens, where, ends,
                                                                 (trainer.step, trainer.tokens)),
                     trainer.step, result["seconds"])
    points = _end_points(trainer, result, plan)
    ctx.log(run, points)
    _remember_peak(ctx, points)
    store.finish_run(run.id, "completed")
    ctx.reporter.done(stage.kind, {})
    stage.trained(ctx, trainer.model)


def _trainer(ctx: Context, kind: str, run, plan: Plan, budgets=()) -> Trainer:
    """A trainer whose metrics and heartbeats go to the store, continued from the run's last
    checkpoint when there is one (points logged after it are dropped: they are logged again).
    It keeps a checkpoint where each shorter budget's cooldown starts."""
    store, last_beat = ctx.store, [0.0]

    def progress(tokens: int, m: dict) -> None:
        now = time.time()
        if now - last_beat[0] > 5:
            store.heartbeat(run.id, step=0, tokens=tokens)
            last_beat[0] = now
        ctx.reporter.progress(TrainingProgress.of(kind, tokens, m))

    ckpt = store.run_dir(run) / "checkpoints"
    trainer = Trainer(plan.model, plan.spec, ctx.placement, _batches(ctx, plan.batches), plan.validation,
                      _options(ctx, plan, on_metrics=lambda pts: ctx.log(run, pts), on_progress=progress,
                               checkpoint_dir=ckpt, branch_steps=frozenset(branch_points(plan.spec, budgets).values())))
    if ctx.cfg.runtime.compile == "auto" and _compiles(ctx, plan):
        ctx.reporter.note(f"{kind}: compiled (runtime.compile=auto); its first steps wait for the compiler")
    found = checkpoint.find(ckpt / "last")  # where an interrupted save may have left it, too
    if found is not None:
        trainer.restore(found)
        store.delete_metrics_after(run.id, trainer.tokens)
        ctx.tracking.restart(kind, trainer.tokens)  # TensorBoard hides what it had after the checkpoint
        earlier = "; an earlier ncalab's checkpoint, read without running code" if checkpoint.is_legacy(found) else ""
        ctx.reporter.note(f"{kind}: resuming from step {trainer.step} ({trainer.tokens:,} tokens{earlier})")
    else:
        store.delete_metrics_after(run.id, -1)  # no checkpoint: the stage starts over, and so does its curve
        ctx.tracking.restart(kind, -1)
    return trainer


def _branch_trainer(ctx: Context, run, plan: Plan, tokens: int, where: Path, ends: Callable,
                    main: tuple[int, int]) -> Trainer:
    """A trainer of a shorter budget of this run (experiment/budgets.py): a model of the same
    shape (its weights come from the branch checkpoint), fresh batches of the same stream, its
    checkpoints in its own folder, and its evaluations handed to ``ends`` instead of the run's curve.
    Its heartbeats keep the run alive at the longest run's ``main`` (step, tokens), its progress."""
    store, last_beat = ctx.store, [0.0]

    def progress(done: int, m: dict) -> None:
        if time.time() - last_beat[0] > 5:
            store.heartbeat(run.id, step=main[0], tokens=main[1])
            last_beat[0] = time.time()

    return Trainer(blank_like(plan.model), spec_for(plan.spec, tokens), ctx.placement,
                   _batches(ctx, copy.copy(plan.batches)), plan.validation,  # its own position in the stream
                   _options(ctx, plan, on_metrics=ends, on_progress=progress, checkpoint_dir=where))


def _batches(ctx: Context, batches):
    if ctx.placement.device.type == "cuda":  # make the next batches while the GPU works

        return Prefetcher(batches)
    return batches


def _options(ctx: Context, plan: Plan, **given) -> TrainerOptions:
    rt = ctx.cfg.runtime
    return TrainerOptions(checkpoint_every_s=rt.checkpoint_minutes * 60, should_stop=ctx.should_stop,
                          compile=_compiles(ctx, plan), compile_fallback=_uncompiled(ctx) if rt.compile == "auto" else None,
                          world=ctx.world, parallel=rt.parallel, micro_batch_size=plan.micro_batch_size, **given)


def _uncompiled(ctx: Context) -> Callable[[str], None]:
    return lambda why: ctx.reporter.note(f"compiling failed, training uncompiled (runtime.compile=auto): {why}")


def _compiles(ctx: Context, plan: Plan) -> bool:
    """runtime.compile for this stage: true, false, or "auto" resolved (train/compiling.py)."""
    return compiles(ctx.cfg.runtime.compile, ctx.placement, ctx.world.size, plan.spec.total_tokens)


def _end_points(trainer: Trainer, result: dict, plan: Plan) -> list[dict]:
    """The stage's speed and compute, stored with its run."""
    c = plan.compute
    values = {"params": c.params, "params_no_embeddings": c.params_no_embeddings, "flops_per_token": c.flops_per_token,
              "stage_tokens": trainer.tokens, "stage_flops": float(c.flops_per_token) * trainer.tokens,
              "stage_wall_s": result["seconds"], "stage_device_s": trainer.train_seconds}
    if trainer.train_seconds:
        values["stage_tokens_per_s"] = result["tokens_per_s"]
    values.update(memory.peak_points(trainer.placement.device, trainer.world))  # summed over the job's processes
    return [{"name": k, "step": trainer.step, "tokens": trainer.tokens, "wall_time": result["seconds"], "value": v}
            for k, v in values.items()]


def _fresh_peak(ctx: Context) -> None:
    """A stage starts: the heap the last one freed goes back to the system (the allocator
    tuning would keep it for the rest of the process), and its peak memory is measured anew."""
    memory.release()
    memory.reset_peak(ctx.placement.device)


def _remember_peak(ctx: Context, points: list[dict]) -> None:
    """The queue's guess for later jobs of this shape: the most this job held so far (the
    stage's peak over its processes, or this process's since it started, steps included)."""
    stage = max((p["value"] for p in points if p["name"] == "stage_peak_rss_bytes"), default=0.0)
    footprint.remember(ctx.store, ctx.cfg, max(stage, memory.lifetime_peak()))


def _claim(ctx: Context, run, stage: TrainingStage):
    """None when this run must be trained (it is now marked running), or a completed identical
    run to take the result from; waits while another live job trains an identical run."""
    if ctx.world.distributed:  # the main process decides; every process follows
        decision = _claim_here(ctx, run, stage) if ctx.world.main else None
        twin_id = ctx.world.broadcast(None if decision is None else decision.id)
        return None if twin_id is None else ctx.store.get_run(twin_id)
    return _claim_here(ctx, run, stage)


def _claim_here(ctx: Context, run, stage: TrainingStage):
    store, waited, pause = ctx.store, False, 0.5
    while True:
        got = store.claim_run(run.id, os.getpid(), socket.gethostname(), ctx.placement.label, lambda r: not is_dead(r))
        if isinstance(got, Run):  # a completed twin: its result is taken
            if stage.keeps_model and not (store.run_dir(got) / "model").is_dir():
                store.start_run(run.id, os.getpid(), socket.gethostname(), ctx.placement.label)  # its model is gone
                return None
            return got
        if got == "train":
            return None
        if got == "wait":
            if not waited:
                ctx.reporter.note(f"{stage.kind}: an identical run is being trained by another job; waiting for its result")
                waited = True
            if ctx.should_stop():
                raise Stopped
            time.sleep(pause)  # soon at first (a sweep's twins often end within seconds), then every 5 s
            pause = min(pause * 1.5, 5.0)


def run_stages(cfg: ExperimentConfig) -> list:
    """The stages of this config that own a run in the store (trainings and measurements)."""
    return [s for s in stages(cfg) if s.runs_as != STEP]


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links where the file system allows (no extra space, and deleting either side
    leaves the other whole), copies elsewhere."""
    if dst.exists():
        shutil.rmtree(dst)

    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


def summarise(store: Store, exp_id: str, device: str, cfg: ExperimentConfig) -> ExperimentSummary:
    exp = store.get_experiment(exp_id)
    runs = {r.kind: r for r in store.runs_of(exp_id)}
    cmp = compare(store.curve(runs["scratch"].id, "val_ppl"), store.curve(runs["nca"].id, "val_ppl"))
    latest = {k: store.latest_metrics(r.id) for k, r in runs.items()}
    in_context: dict[str, list[float]] = {}
    for p in store.metrics(runs["stage1"].id):
        if p.name.startswith(IN_CONTEXT_METRICS) and p.value is not None:
            in_context.setdefault(p.name, []).append(p.value)
    return ExperimentSummary(
        experiment_id=exp_id, preset=exp.preset, scale=exp.scale, seed=exp.seed, source=cfg.stage1.source,
        wall_s=time.time() - (exp.started_at or exp.created_at), device=device,
        tokens_per_s={k: m.get("stage_tokens_per_s") for k, m in latest.items()},
        stage1_val_loss=latest["stage1"].get("val_loss"), runs={k: r.id for k, r in runs.items()},
        compute={k: c for k, m in latest.items() if (c := StageCompute.from_metrics(m)) is not None},
        in_context=in_context_means(in_context), downstream=downstream(store, runs, cfg), **cmp)


def downstream(store: Store, runs: dict, cfg: ExperimentConfig) -> dict:
    """{task: {k: {nca, scratch, diff, ci, items}}} of the evaluations that have finished;
    diff = score(nca) - score(scratch) over the items both scored, with the half-width of its 95%
    interval (the task's own: over items for a mean, a bootstrap for BBL's normalised score)."""
    out: dict = {}
    for name in cfg.eval.tasks:
        if name == "lm_eval":
            rows = {arm: store.latest_metrics(runs[f"lm_eval-{arm}"].id) for arm in ARMS if f"lm_eval-{arm}" in runs}
            metrics = sorted(set().union(*rows.values())) if rows else []
            out["lm_eval"] = {m: {arm: rows[arm].get(m) for arm in rows} for m in metrics if m.startswith("lm_eval:")}
            continue
        task = TASKS[name]
        arms = {arm: r for arm in ARMS if (r := runs.get(f"{name}-{arm}")) is not None and r.status == "completed"}
        if len(arms) < len(ARMS):
            continue
        items = {arm: store.eval_items(r.id) for arm, r in arms.items()}
        # HumanEval: what the model-written programs ran under (stored with every item)
        sandboxes = sorted({json.loads(r.detail_json or "{}").get("sandbox") for arm in ARMS for r in items[arm]} - {None})
        table: dict[str, dict[str, Any]] = {}
        for k in ks(cfg, task):
            per = {arm: per_item_pass(items[arm], k) for arm in ARMS}
            common = set(per["nca"]) & set(per["scratch"])
            diff, ci = task.difference(per["nca"], per["scratch"], items["nca"], k=k, cfg=cfg)
            table[str(k)] = {"nca": task.score(per["nca"], items["nca"], k=k, cfg=cfg),
                             "scratch": task.score(per["scratch"], items["scratch"], k=k, cfg=cfg),
                             "diff": diff, "ci": ci, "items": len(common)}
            if sandboxes:
                table[str(k)]["sandbox"] = ", ".join(sandboxes)
        out[name] = table
    return out
