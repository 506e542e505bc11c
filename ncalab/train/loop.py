"""The training loop of one stage (nanoGPT-style): AdamW, a warm-up schedule, clipping,
bf16 autocast where supported, evaluations at token intervals, metrics to a callback."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ncalab.errors import NcalabError
from ncalab.nca.tokens import IGNORE_INDEX
from ncalab.train import checkpoint, sharded
from ncalab.train.device import Placement, apply_requested_threads
from ncalab.train.distributed import Parallel, World
from ncalab.train.evaluate import evaluate, loss_sum
from ncalab.train.headloss import compiled_chunk_fn, splits_head
from ncalab.train.model import blank_like
from ncalab.train.schedule import lr_factor, warmup_steps


@dataclass
class StageSpec:
    name: str
    total_tokens: int
    tokens_per_step: int
    lr: float
    warmup: float
    min_lr_ratio: float
    weight_decay: float
    grad_clip: float
    eval_every: int  # tokens; 0 = n_evals evenly spaced
    n_evals: int = 10
    transferred: frozenset[str] = frozenset()  # parameter names that came from stage 1
    transferred_lr_scale: float = 1.0
    freeze_steps: int = 0  # transferred parameters do not move for this many steps
    schedule: str = "cosine"  # one of the config's SCHEDULES
    beta2: float = 0.95
    decay: float = 0.2  # wsd: the cooldown's share of the steps

    @classmethod
    def from_section(cls, name: str, section, tokens_per_step: int, n_evals: int, total_tokens: int | None = None,
                     **extra) -> StageSpec:
        """From a config section with tokens, lr, warmup, min_lr_ratio, weight_decay, grad_clip
        and eval_every (stage1, stage2); ``total_tokens`` overrides the section's budget."""
        return cls(name, section.tokens if total_tokens is None else total_tokens, tokens_per_step, section.lr,
                   section.warmup, section.min_lr_ratio, section.weight_decay, section.grad_clip, section.eval_every,
                   n_evals, schedule=section.schedule, beta2=section.beta2, decay=section.decay, **extra)

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.total_tokens / self.tokens_per_step))

    def eval_steps(self) -> set[int]:
        """Steps after which to evaluate (0 = before training); always includes the last."""
        if self.eval_every > 0:
            every = max(1, round(self.eval_every / self.tokens_per_step))
            marks = set(range(0, self.steps, every))
        else:
            marks = {round(i * self.steps / self.n_evals) for i in range(self.n_evals)}
        return marks | {self.steps}


def make_optimizer(model, spec: StageSpec, placement: Placement, fused: bool | None = None):
    """AdamW (Adam when weight decay is 0, as in the paper's stage 1) and the stage's schedule.

    Weight decay on matrices only; norms and (none here) biases are left alone. Parameters
    named in ``spec.transferred`` form their own groups so they can learn at
    ``spec.transferred_lr_scale`` times the rate, and stay frozen (rate 0) for the first
    ``spec.freeze_steps`` steps, then warm up again over the stage's warm-up length.
    ``fused``: torch's fused AdamW kernel (None: on CUDA only).
    """
    base = lr_factor(spec.schedule, spec.steps, spec.warmup, spec.min_lr_ratio, spec.decay)
    warm = max(1, warmup_steps(spec.steps, spec.warmup))
    scale, frozen = spec.transferred_lr_scale, spec.freeze_steps

    def transferred(step: int) -> float:
        if step < frozen:
            return 0.0
        rewarm = min(1.0, (step - frozen + 1) / warm) if frozen else 1.0
        return scale * rewarm * base(step)

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups, lambdas = [], []
    for is_transferred in (False, True):
        members = [(n, p) for n, p in named if (n in spec.transferred) == is_transferred]
        for decays in (True, False):
            params = [p for n, p in members if (p.dim() >= 2) == decays]
            if params:
                groups.append({"params": params, "weight_decay": spec.weight_decay if decays else 0.0})
                lambdas.append(transferred if is_transferred else base)
    if fused is None:
        fused = placement.device.type == "cuda"
    optimizer = torch.optim.AdamW(groups, lr=spec.lr, betas=(0.9, spec.beta2), eps=1e-8, fused=fused)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def train_attention(choice: str, placement: Placement) -> str | None:
    """The attention implementation of the training forward pass; None: the model's own.

    Measured at the tiny shape (benchmarks/train_throughput.py, docs/benchmarks.md#training):
    under bf16 autocast on a CPU, transformers' eager attention (bf16 matrix products) beat
    torch's sdpa kernel, whose bf16 backward pass is slower than its fp32 one; in fp32 sdpa
    is as fast or faster, and keeps no T x T scores."""
    if choice != "auto":
        return choice
    return "eager" if placement.device.type == "cpu" and placement.amp_dtype is not None else None


@contextlib.contextmanager
def attention_as(model, implementation: str | None):
    """The model's attention implementation set to ``implementation`` inside (None: unchanged)."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    if implementation is None or config is None or implementation == before:
        yield
        return
    config._attn_implementation = implementation
    try:
        yield
    finally:
        config._attn_implementation = before


def branch_name(step: int) -> str:
    """The folder of a branch checkpoint taken after ``step`` steps."""
    return f"branch-{step}"


@dataclass
class TrainerOptions:
    """How a stage runs around its loop: where metrics and progress go, checkpoints, stopping,
    compilation and how the work is split over processes."""

    on_metrics: Callable[[list[dict]], None] = lambda points: None
    on_progress: Callable[[int, dict], None] = lambda tokens, metrics: None
    checkpoint_dir: Path | None = None
    checkpoint_every_s: float = 0.0  # also checkpoint this often (a cluster may end the job); 0: at evaluations only
    should_stop: Callable[[], bool] = lambda: False
    # torch.compile: one process on a CPU compiles the model's body and the head loss's chunks
    # (the loss stays chunked); elsewhere the whole model as the loop calls it (full logits)
    compile: bool = False
    # where compiling fails at the first step: train uncompiled and tell this callback why
    # (runtime.compile=auto, which must never cost a run); None: the failure ends the stage
    compile_fallback: Callable[[str], None] | None = None
    # the attention kernel of the training forward pass (evaluation and generation keep the
    # model's own): "auto" (eager under bf16 autocast on a CPU, where it measured faster than
    # sdpa, else the model's own), or a transformers attention implementation ("sdpa", "eager")
    attention: str = "auto"
    # torch's fused AdamW kernel; None: on CUDA, and on a CPU in one process (measured a little
    # faster than the per-tensor loop there; within 1e-6 of it after 20 steps)
    fused_optimizer: bool | None = None
    world: World = field(default_factory=World)
    parallel: str = "ddp"  # ddp | fsdp across the world's processes
    micro_batch_size: int = 0  # sequences per forward pass; 0 = the process's whole share
    chunked_loss: bool = True  # the loss without the full logits where the model allows (train/headloss.py)
    # steps after which to keep a checkpoint of its own (checkpoint_dir / branch_name(step)): where
    # the cooldowns of shorter wsd runs branch off the stable phase (Trainer.branch_from)
    branch_steps: frozenset[int] = frozenset()

    def __post_init__(self) -> None:  # None for a callback means: nothing to call
        self.on_metrics = self.on_metrics or (lambda points: None)
        self.on_progress = self.on_progress or (lambda tokens, metrics: None)
        self.should_stop = self.should_stop or (lambda: False)


class Trainer:
    """Runs one stage. ``batches`` has next() -> (inputs, targets) and state_dict()."""

    def __init__(self, model, spec: StageSpec, placement: Placement, batches, val_batches,
                 options: TrainerOptions | None = None):
        opts = options or TrainerOptions()
        self.spec, self.placement = spec, placement
        self.world = opts.world
        self.model = model.to(placement.device)
        self.model.train()
        # the model as the loop runs it: itself, or wrapped for DDP / FSDP2 across processes
        self.parallel = Parallel(self.model, self.world, opts.parallel, placement.amp_dtype)
        self.micro_batch_size, self.chunked_loss = opts.micro_batch_size, opts.chunked_loss
        self.forward_model, self.body, self.chunk_fn = self.parallel.module, None, None
        if opts.compile and self._compiles_parts():
            self.body, self.chunk_fn = torch.compile(self.model.model, dynamic=False), compiled_chunk_fn()
        elif opts.compile:
            self.forward_model = torch.compile(self.parallel.module)
        self.compile_fallback = opts.compile_fallback if opts.compile else None
        self.attention = train_attention(opts.attention, placement)
        self.data_seconds = 0.0  # time spent waiting for batches
        self.checkpoint_every_s = opts.checkpoint_every_s
        self.batches, self.val_batches = batches, val_batches
        self.on_metrics, self.on_progress = opts.on_metrics, opts.on_progress
        self.checkpoint_dir = opts.checkpoint_dir
        self.should_stop = opts.should_stop
        self.branch_steps = opts.branch_steps
        fused = opts.fused_optimizer
        if fused is None:
            fused = placement.device.type == "cuda" or (placement.device.type == "cpu" and not self.world.distributed)
        self.optimizer, self.scheduler = make_optimizer(self.model, spec, placement, fused)
        self.step = 0
        self.tokens = 0
        self.train_seconds = 0.0
        self.wall_offset = 0.0  # wall time of the runs before a resume, so time curves continue
        self.stopped = False

    def _compiles_parts(self) -> bool:
        """Whether torch.compile takes the body and the head loss's chunks apart (one process on
        a CPU, chunked loss, a model that splits its head) instead of the whole model."""
        return (self.placement.device.type == "cpu" and self.parallel.module is self.model and self.chunked_loss
                and splits_head(self.model))

    def _eval(self, wall: float) -> dict:
        # every process evaluates every held-out batch (FSDP's forward needs them all in step)
        model = self.parallel.module if self.parallel.kind == "fsdp" else self.model
        res = evaluate(model, self.val_batches, self.placement, self.chunked_loss)
        pts = [{"name": k, "step": self.step, "tokens": self.tokens, "wall_time": wall, "value": v} for k, v in res.items()]
        self.on_metrics(pts)
        return res

    def _step(self, inputs: torch.Tensor, targets: torch.Tensor, dev) -> float:
        """Forward and backward of one step in micro-batches; returns the step's mean loss.

        The loss is normalised by the target tokens of the whole global batch, so one process
        with 8 micro-steps and 8 processes with one each compute the same gradient."""
        micro = self.micro_batch_size or len(inputs)
        count = self.world.sum(int((targets != IGNORE_INDEX).sum()))
        scale = self.parallel.loss_scale
        starts = range(0, len(inputs), micro)
        total = None
        for j, i in enumerate(starts):
            with self.parallel.sync(last_micro_step=j == len(starts) - 1):
                mi = inputs[i : i + micro].to(dev, non_blocking=True)
                mt = targets[i : i + micro].to(dev, non_blocking=True)
                with self.placement.autocast(), attention_as(self.model, self.attention):
                    loss_total, _ = loss_sum(self.forward_model, mi, mt, self.chunked_loss, self.body, self.chunk_fn)
                loss = loss_total / max(count, 1)
                (loss * scale if scale != 1.0 else loss).backward()
            total = loss.detach() if total is None else total + loss.detach()
        return self.world.sum(float(total))

    def _first_step(self, inputs: torch.Tensor, targets: torch.Tensor, dev) -> float:
        """The first step of a loop compiled by "auto": where the compiler fails (no toolchain
        it can use, an unsupported platform), the step is taken again uncompiled, and so are
        the rest."""
        fallback, self.compile_fallback = self.compile_fallback, None
        try:
            return self._step(inputs, targets, dev)
        except (NcalabError, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - torch.compile's failures have no common public type
            self.optimizer.zero_grad(set_to_none=True)
            self.forward_model, self.body, self.chunk_fn = self.parallel.module, None, None
            assert fallback is not None
            fallback(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200])
            return self._step(inputs, targets, dev)

    def save(self, path: Path) -> None:
        extra = {"step": self.step, "tokens": self.tokens, "data": self.batches.state_dict(),
                 "train_seconds": self.train_seconds, "wall": self._wall()}
        if self.world.distributed:  # every process writes its shard (DCP); the main one the rest
            sharded.save(path, self.model, self.optimizer, self.scheduler, self.world, self._plain_model, **extra)
        else:
            checkpoint.save(path, self.model, self.optimizer, self.scheduler, **extra)

    def _plain_model(self):
        """An unwrapped model of the same shape, on the CPU (for the full save_pretrained copy)."""
        return blank_like(self.model)

    def full_model(self):
        """The trained model, whole and unwrapped, on the main process (a collective when the
        weights are sharded); None on the other processes."""
        if not self.world.distributed:
            return self.model

        state = sharded.full_model_state(self.model)
        if not self.world.main:
            return None
        plain = self._plain_model()
        plain.load_state_dict(state)
        return plain

    def _wall(self) -> float:
        return time.perf_counter() - self._t_start if hasattr(self, "_t_start") else self.wall_offset

    def restore(self, path: Path) -> None:
        """Continue exactly from a checkpoint written by ``save``: weights, optimiser,
        schedule, counters, data position and RNG. `path` may be where an interrupted save
        left it: the newest complete copy is used."""
        found = checkpoint.find(path)
        if found is None:
            raise NcalabError(f"no complete checkpoint at {path}")

        if self.world.distributed or sharded.is_sharded(found):  # resharded to this run's processes
            state = sharded.restore(found, self.model, self.optimizer, self.world)
        else:
            state = checkpoint.load_state(found)
            weights = checkpoint.load_model(found).state_dict()
            self.model.load_state_dict(weights)
            self.optimizer.load_state_dict(state["optimizer"])
            checkpoint.restore_rng(state)
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.tokens = int(state["step"]), int(state["tokens"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.wall_offset = float(state.get("wall", 0.0))
        self.batches.load_state_dict(state["data"])

    def branch_from(self, path: Path) -> None:
        """Start this run at a branch checkpoint of a longer one (``branch_steps``): the same
        weights, optimiser state, data position and RNG, under this run's own schedule from the
        next step on. For a wsd run whose cooldown starts at the branch's step, the result is
        the run trained alone (tests/test_trainer.py checks it bit for bit)."""
        self.restore(path)
        start = self.scheduler.last_epoch
        if start != self.step:
            raise NcalabError(f"the branch checkpoint {path} is at step {self.step} but its schedule at {start}")
        # the schedule's position is the checkpoint's; the rate from here on is this run's own
        # (a LambdaLR saves no lambda that is a function: this run's are the ones in use)
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas):
            group["lr"] = base * factor(start)

    def run(self) -> dict:
        spec, dev = self.spec, self.placement.device
        evals = spec.eval_steps()
        self._t_start = t_start = time.perf_counter() - self.wall_offset
        self._saved_at = time.perf_counter()
        last = {}
        if self.step == 0 and 0 in evals:
            last = self._eval(0.0)
        pending: list[dict] = []
        while self.step < spec.steps:
            if self.world.any(self.should_stop()):  # every process stops at the same step
                self.stopped = True  # stop gracefully: checkpoint first, so a resume loses nothing
                if self.checkpoint_dir is not None:
                    self.save(self.checkpoint_dir / "last")
                break
            apply_requested_threads()  # the job's share of the cores, as other jobs start and end
            t0 = time.perf_counter()
            inputs, targets = self.batches.next()  # this process's share of the global batch
            self.data_seconds += time.perf_counter() - t0
            loss_v = self._first_step(inputs, targets, dev) if self.compile_fallback else self._step(inputs, targets, dev)
            if spec.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), spec.grad_clip)
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            step_tokens = inputs.numel() * self.world.size
            self.tokens += step_tokens
            step_s = time.perf_counter() - t0
            self.train_seconds += step_s
            wall = time.perf_counter() - t_start
            tps = step_tokens / step_s if step_s > 0 else 0.0
            pending += [
                {"name": "train_loss", "step": self.step, "tokens": self.tokens, "wall_time": wall, "value": loss_v},
                {"name": "lr", "step": self.step, "tokens": self.tokens, "wall_time": wall, "value": lr},
                {"name": "tokens_per_s", "step": self.step, "tokens": self.tokens, "wall_time": wall, "value": tps},
            ]
            if self.step in evals or len(pending) >= 300:
                self.on_metrics(pending)
                pending = []
            if self.step in evals:
                last = self._eval(wall)
            due = self.checkpoint_every_s > 0 and time.perf_counter() - self._saved_at >= self.checkpoint_every_s
            if self.checkpoint_dir is not None and (self.step in evals or self.world.any(due)):
                self.save(self.checkpoint_dir / "last")
                self._saved_at = time.perf_counter()
            if self.checkpoint_dir is not None and self.step in self.branch_steps:
                self.save(self.checkpoint_dir / branch_name(self.step))
            self.on_progress(self.tokens, {"train_loss": loss_v, "tokens_per_s": tps, **last})
        if pending:
            self.on_metrics(pending)
        return {"tokens": self.tokens, "steps": self.step, "seconds": self._wall(),
                "data_wait_fraction": self.data_seconds / self.train_seconds if self.train_seconds else 0.0,
                "train_seconds": self.train_seconds,
                "tokens_per_s": self.tokens / self.train_seconds if self.train_seconds else 0.0, **last}
