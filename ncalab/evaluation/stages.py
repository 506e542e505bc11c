"""Downstream evaluation as stages of an experiment (spec section 7): for each task and each
language model (the warm-started arm and scratch), an optional fine-tuning run, then an
evaluation run that samples every item, scores the samples and stores pass@k.

A task is an entry of TASKS (evaluation/tasks.py). Items are stored as they are scored
(store.eval_items, samples in the run folder), so a cancelled or killed evaluation continues
where it was.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ncalab.errors import NcalabError
from ncalab.evaluation.passk import per_item_pass
from ncalab.evaluation.sampling import choice_logprobs, sample
from ncalab.evaluation.tasks import ARMS, TASKS, Item, Task, item_seed, ks
from ncalab.lazy import transformers
from ncalab.planning.compute import model_compute
from ncalab.planning.stage import MEASUREMENT, TRAINING, Plan
from ncalab.reporting import EvaluationProgress
from ncalab.train import checkpoint
from ncalab.train.batches import RowBatches, pack_examples, pack_groups
from ncalab.train.cards import save_card
from ncalab.train.loop import StageSpec

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store, StoreReader

def arm_model_folder(ctx, arm: str) -> Path:
    folder = ctx.store.run_dir(ctx.runs[arm]) / "model"
    if not (folder / "config.json").exists():
        raise NcalabError(f"the {arm} language model of {ctx.exp_id} is not there ({folder}); it must finish stage 2 first")
    return folder


def example_groups(prompts: list[str], per_row: int, seed: int) -> list[list[int]]:
    """One group of example indices per example, as the paper's fine-tuning sequences: per_row - 1
    other examples drawn at random (seeded; never one with the same prompt), then the example
    itself last. Each example leads one sequence an epoch and fills others as a worked example."""
    rng = random.Random(seed)
    n = len(prompts)
    k = max(0, min(per_row - 1, n - 1))
    out = []
    for i in range(n):
        for _ in range(20):  # drawn again when a pick repeats the example's question (rare)
            others = [j + (j >= i) for j in rng.sample(range(n - 1), k)]
            if all(prompts[j] != prompts[i] for j in others):
                break
        else:
            pool = [j for j in range(n) if prompts[j] != prompts[i]]
            others = rng.sample(pool, min(k, len(pool)))
        out.append(others + [i])
    return out


def fine_tune_rows(pairs: list[tuple[str, str]], tok, length: int, pack: int, seed: int):
    """(inputs, targets, rows cut at `length`) of the fine-tuning sequences of (prompt, answer)
    texts, the loss on answer tokens and their end tokens only. pack > 0: one sequence per
    example, with pack - 1 others before it (example_groups); pack 0: as many whole examples
    as fit in each sequence, each example once."""
    if not pairs:
        raise NcalabError("no fine-tuning examples")
    eos = tok.eos_token_id
    encoded = tok([p for p, _ in pairs] + [a for _, a in pairs], add_special_tokens=False)["input_ids"]
    examples = list(zip(encoded[: len(pairs)], encoded[len(pairs):]))
    if not pack:
        inputs, targets = pack_examples(examples, length, eos, pad=eos)
        return inputs, targets, sum(len(p) + len(a) + 1 > length + 1 for p, a in examples)
    groups = example_groups([p for p, _ in pairs], pack, seed)
    cut = sum(sum(len(examples[j][0]) + len(examples[j][1]) + 1 for j in g) > length + 1 for g in groups)
    inputs, targets = pack_groups([[examples[j] for j in g] for g in groups], length, eos, pad=eos)
    return inputs, targets, cut


def fine_tune_spec(kind: str, sec, rows: int, length: int, world: int = 1):
    """The fine-tuning stage over `rows` sequences of `length`: sec.epochs passes, sec.batch_size
    sequences a step (no more than there are rows, a whole number per process), so
    ceil(epochs * rows / batch) steps; the paper's GSM8K: 7,473 rows, 512 a step, 10 epochs: 146."""
    batch = max(world, min(sec.batch_size, rows) // world * world)
    return StageSpec(kind, max(1, round(sec.epochs * rows * length)), batch * length, sec.lr, sec.warmup,
                     0.0, 0.0, 1.0, 0, 4)


class FineTune:
    """A task's fine-tuning of one arm (GSM8K: worked solutions; BBL: the train split), with
    the loss on answer tokens only, several examples packed per sequence."""

    keeps_model, runs_as = True, TRAINING

    def __init__(self, task: Task, arm: str):
        self.task, self.arm = task, arm
        self.kind = f"{task.name}-ft-{arm}"

    def total_tokens(self, cfg) -> int:
        return 0  # known once the examples are tokenized (when the stage starts)

    def budgets(self, cfg) -> list[int]:
        return []

    def plan(self, ctx):
        cfg, sec = ctx.cfg, self.task.section(ctx.cfg)
        folder = arm_model_folder(ctx, self.arm)
        model = checkpoint.load_model(folder)
        tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        length = min(sec.seq_len, model.config.max_position_embeddings)
        pairs = self.task.examples(cfg)
        pack = getattr(sec, "pack", 0)
        inputs, targets, cut = fine_tune_rows(pairs, tok, length, pack, cfg.seed)
        spec = fine_tune_spec(self.kind, sec, len(inputs), length, ctx.world.size)
        batch = spec.tokens_per_step // length
        layout = (f"{pack} examples each (the example last, after {pack - 1} others drawn at random)" if pack
                  else "as many examples as fit in each")
        ctx.reporter.note(f"{self.kind}: {len(pairs):,} examples in {len(inputs):,} sequences of {length} tokens, "
                          f"{layout}; {cut:,} sequences cut at {length}; {batch} sequences a step, {spec.steps:,} steps "
                          f"for {sec.epochs:g} epochs at lr {sec.lr:g}")
        micro = getattr(sec, "micro_batch_size", 0) or batch
        val = [(torch.from_numpy(inputs[i : min(i + micro, batch)]), torch.from_numpy(targets[i : min(i + micro, batch)]))
               for i in range(0, batch, micro)]
        ctx.store.set_run_total(ctx.runs[self.kind].id, spec.steps * spec.tokens_per_step)
        batches = RowBatches(inputs, targets, batch, seed=cfg.seed, rank=ctx.world.rank, world=ctx.world.size)
        return Plan(model, spec, batches, val,
                    model_compute(cfg.model, len(tok), length), getattr(sec, "micro_batch_size", 0))

    def save(self, ctx, model, folder: Path) -> None:
        checkpoint.save(folder, model)
        transformers.AutoTokenizer.from_pretrained(arm_model_folder(ctx, self.arm), local_files_only=True).save_pretrained(folder)
        save_card(ctx, self.kind, folder)

    def trained(self, ctx, model) -> None:
        pass

    def completed(self, ctx, folder: Path) -> None:
        pass


class Evaluate:
    """Sample every item of a task with one arm's model, check the samples, store per-item
    results and pass@k. Items already stored are not sampled again. In BBL's log-probability
    mode (eval.bbl.mode = logprob) an item's one answer is the choice the model scores highest;
    an item without choices is stored with no answer (0 samples)."""

    runs_as = MEASUREMENT

    def __init__(self, task: Task, arm: str):
        self.task, self.arm = task, arm
        self.kind = f"{task.name}-{arm}"
        self.name = f"{task.name} evaluation of {arm}"

    def total_tokens(self, cfg) -> int:
        return 0

    def model_folder(self, ctx) -> Path:
        if self.task.fine_tunes:
            return ctx.store.run_dir(ctx.runs[f"{self.task.name}-ft-{self.arm}"]) / "model"
        return arm_model_folder(ctx, self.arm)

    def measure(self, ctx, run, stopped: Callable[[], None]) -> None:
        cfg, store, sec = ctx.cfg, ctx.store, self.task.section(ctx.cfg)
        folder = self.model_folder(ctx)
        model = checkpoint.load_model(folder, ctx.placement.device)
        tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        items = self.task.items(cfg, end=tok.eos_token or "<|endoftext|>")
        for note in self.task.notes(cfg):
            ctx.reporter.note(f"{self.kind}: {note}")
        logprob = getattr(sec, "mode", "sample") == "logprob"
        scored = store.eval_items(run.id)  # a resumed evaluation skips these, and counts them
        done = {e.item for e in scored}
        todo = [it for it in items if it.item_id not in done]
        ctx.reporter.stage(self.kind, len(items), unit="items")
        n_samples, n_correct = sum(r.samples for r in scored), sum(r.correct for r in scored)
        samples_file = store.run_dir(run) / "samples.jsonl"
        for i, item in enumerate(todo):
            stopped()
            extra: dict = {}
            if not logprob:
                texts = sample(model, tok, item, sec, item_seed(cfg.seed, item.item_id), ctx.placement)
            elif item.options:
                extra["logprobs"] = choice_logprobs(model, tok, item.prompt, item.options, ctx.placement)
                texts = [item.options[int(np.argmax(extra["logprobs"]))]]  # the first of equals, as the paper
            else:
                texts, extra["unanswered"] = [], "no choices to score"
            right = _checked(item, texts)
            with open(samples_file, "a") as f:  # the samples first: the stored row marks the item done
                f.write(json.dumps({"item": item.item_id, "samples": texts, "correct": right, **extra}) + "\n")
            store.add_eval_item(run.id, item.item_id, item.subtask, len(texts), sum(right), item.choices,
                                {"correct": right, **item.detail, **extra})
            n_samples, n_correct = n_samples + len(texts), n_correct + sum(right)
            ctx.reporter.progress(EvaluationProgress(self.kind, len(done) + i + 1, n_samples, n_correct))
        log_pass_at_k(store, run, self.task, items_of(store, run), ks(cfg, self.task), cfg)


def _checked(item: Item, texts: list[str]) -> list[bool]:
    """Each sample checked; several at once over the cores this job holds (a HumanEval check is
    a sandboxed process of its own, so threads only wait for them)."""
    workers = min(len(texts), max(1, torch.get_num_threads()))
    if workers <= 1:
        return [bool(item.check(t)) for t in texts]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return [bool(r) for r in pool.map(item.check, texts)]


def items_of(store: StoreReader, run):
    return store.eval_items(run.id)


def log_pass_at_k(store: Store, run, task: Task, rows, k_values: list[int], cfg=None) -> dict[int, float]:
    """pass@k of the task from its stored items, as metric points (step = k) of the run."""
    if not rows:
        raise NcalabError(f"{run.kind}: no items were scored; a run with no samples has no pass@k")
    scores = {k: task.score(per_item_pass(rows, k), rows, k=k, cfg=cfg) for k in k_values}
    store.delete_metrics_named(run.id, ("pass@",))
    store.log_metrics(run.id, [{"name": "pass@k", "step": k, "tokens": 0, "wall_time": 0.0, "value": v}
                               for k, v in scores.items()])
    return scores


def stages_for(cfg) -> list:
    """The evaluation stages an experiment's config asks for, in order."""
    out: list = []
    for name in cfg.eval.tasks:
        if name == "lm_eval":
            out += [LmEval(arm) for arm in ARMS]
            continue
        task = TASKS[name]
        if task.fine_tunes:
            out += [FineTune(task, arm) for arm in ARMS]
        out += [Evaluate(task, arm) for arm in ARMS]
    return out


class LmEval:
    """lm-evaluation-harness tasks (the `lm-eval[hf]` extra) on one arm's checkpoint, through its
    Python API; every numeric metric is stored as `lm_eval:<task>:<metric>`."""

    runs_as = MEASUREMENT

    def __init__(self, arm: str):
        self.arm, self.kind, self.name = arm, f"lm_eval-{arm}", f"lm-eval of {arm}"

    def total_tokens(self, cfg) -> int:
        return 0

    def measure(self, ctx, run, stopped) -> None:
        try:
            import lm_eval
        except ImportError:
            raise NcalabError("--lm-eval needs lm-evaluation-harness: pip install 'ncalab[lm-eval]'") from None
        stopped()
        folder = arm_model_folder(ctx, self.arm)
        device = str(ctx.placement.device)
        try:
            res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={folder},tokenizer={folder}",
                                          tasks=list(ctx.cfg.eval.lm_eval), limit=ctx.cfg.eval.lm_eval_limit or None,
                                          device=device, batch_size=8, random_seed=ctx.cfg.seed,
                                          numpy_random_seed=ctx.cfg.seed, torch_random_seed=ctx.cfg.seed)
        except Exception as e:  # noqa: BLE001 - the harness raises many kinds (missing data offline, bad names)
            raise NcalabError(f"lm-eval failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        points = []
        for task, metrics in (res or {}).get("results", {}).items():
            for metric, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and "stderr" not in metric:
                    points.append({"name": f"lm_eval:{task}:{metric}", "step": 0, "tokens": 0, "wall_time": 0.0,
                                   "value": float(value)})
        if not points:
            raise NcalabError("lm-eval returned no metrics")
        ctx.store.delete_metrics_named(run.id, ("lm_eval:",))
        ctx.store.log_metrics(run.id, points)
