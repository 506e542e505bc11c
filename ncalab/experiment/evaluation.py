"""Downstream evaluation as stages of an experiment (spec section 7): for each task and each
language model (the warm-started arm and scratch), an optional fine-tuning run, then an
evaluation run that samples every item, scores the samples and stores pass@k.

A task is an entry of TASKS: where its items and fine-tuning examples come from, how a
sample is checked and where it stops. Items are stored as they are scored (store.eval_items,
samples in the run folder), so a cancelled or killed evaluation continues where it was.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ncalab.errors import NcalabError
from ncalab.evals import passk
from ncalab.experiment.reporting import EvaluationProgress
from ncalab.experiment.stages import MEASUREMENT, TRAINING

ARMS = ("nca", "scratch")  # the language models every task evaluates


@dataclass
class Item:
    item_id: str
    subtask: str
    prompt: str
    check: Callable[[str], bool]  # is a sampled completion right
    stop: Callable[[str], bool]  # has a completion ended (the text so far)
    choices: int = 0
    options: tuple[str, ...] = ()  # the choices a log-probability evaluation scores (BBL)
    detail: dict = field(default_factory=dict)  # stored with its result (HumanEval: the sandbox it ran in)


class Task(Protocol):
    name: str
    fine_tunes: bool

    def section(self, cfg): ...
    def check_ready(self, cfg) -> None: ...
    def items(self, cfg, end: str = "<|endoftext|>") -> list[Item]: ...  # end: the tokenizer's end-of-text text
    def examples(self, cfg) -> list[tuple[str, str]]: ...
    def notes(self, cfg) -> list[str]: ...  # what the user should know about the items chosen
    def score(self, per_item: dict[str, float], items: list, k: int = 1, cfg=None) -> float:
        """The task's figure from its items' pass@k (`per_item`) and stored rows (`items`)."""
    def difference(self, nca: dict[str, float], scratch: dict[str, float], items: list, k: int = 1,
                   cfg=None) -> tuple[float, float]:
        """score(nca) - score(scratch) over the items both arms scored, and the half-width of
        its 95% interval."""


class MeanOverItems:
    """A task whose score is the mean of its items' pass@k: the difference between arms is
    the mean paired difference, with a normal interval over items."""

    def notes(self, cfg) -> list[str]:
        return []

    def score(self, per_item, items, k: int = 1, cfg=None) -> float:
        return float(np.mean(list(per_item.values())))

    def difference(self, nca, scratch, items, k: int = 1, cfg=None) -> tuple[float, float]:
        common = sorted(set(nca) & set(scratch))
        if len(common) < 2:
            return float("nan"), float("nan")
        return passk.paired_difference([nca[i] for i in common], [scratch[i] for i in common])


def _limited(items: list, limit: int) -> list:
    return items[:limit] if limit else items


class GSM8K(MeanOverItems):
    name, fine_tunes = "gsm8k", True

    def section(self, cfg):
        return cfg.eval.gsm8k

    def check_ready(self, cfg) -> None:
        if not cfg.eval.gsm8k.data:
            raise NcalabError("GSM8K needs its data: --data PATH (a .jsonl of question/answer records, "
                              "or a folder with train.jsonl and test.jsonl)")
        self._load(cfg)

    def _load(self, cfg):
        from ncalab.evals import gsm8k

        return gsm8k.load(cfg.eval.gsm8k.data)

    def items(self, cfg, end: str = "<|endoftext|>") -> list[Item]:
        """Every test item (up to eval.gsm8k.limit) with its worked examples: drawn, per item and
        seed, from the split eval.gsm8k.shots_from names (never the item itself)."""
        from ncalab.evals import gsm8k

        sec = cfg.eval.gsm8k
        train, test = self._load(cfg)
        pool, fmt = (test if sec.shots_from == "test" else train), sec.format
        out = []
        for p in _limited(test, sec.limit):
            shots = gsm8k.pick_shots(p, pool, sec.shots, random.Random(_seed(cfg.seed, p.task_id)))
            out.append(Item(p.task_id, "gsm8k", gsm8k.prompt(p, shots, fmt, end),
                            lambda text, a=p.answer: gsm8k.is_correct(text, a, fmt),
                            lambda text: gsm8k.stops(text, fmt)))
        return out

    def examples(self, cfg) -> list[tuple[str, str]]:
        from ncalab.evals import gsm8k

        train, _ = self._load(cfg)
        return [gsm8k.example_text(p, cfg.eval.gsm8k.format) for p in _limited(train, cfg.eval.gsm8k.limit * 10)]


class HumanEval(MeanOverItems):
    name, fine_tunes = "humaneval", False

    def section(self, cfg):
        return cfg.eval.humaneval

    def check_ready(self, cfg) -> None:
        if not cfg.eval.allow_code_execution:
            raise NcalabError("HumanEval runs the code the models write; allow it with --allow-code-execution")
        self.sandbox(cfg)  # --require-isolation where there is none: refused before anything is stored
        self._problems(cfg)

    def sandbox(self, cfg) -> str:
        """The operating-system isolation its programs run under (evals/sandbox.resolve)."""
        from ncalab.evals.sandbox import resolve

        sec = cfg.eval.humaneval
        return resolve(sec.isolation, sec.require_isolation)

    def notes(self, cfg) -> list[str]:
        from ncalab.evals.isolation import DESCRIPTIONS

        return [f"each program runs under {DESCRIPTIONS[self.sandbox(cfg)]}"]

    def _problems(self, cfg):
        from ncalab.evals import humaneval

        return humaneval.load_problems(cfg.eval.humaneval.data)

    def items(self, cfg, end: str = "<|endoftext|>") -> list[Item]:
        from ncalab.evals import humaneval

        timeout, way = cfg.eval.humaneval.timeout, self.sandbox(cfg)
        return [Item(p.task_id, "humaneval", p.prompt,
                     lambda text, p=p: humaneval.check(p, text, timeout, way).passed,
                     lambda text: any(s in text for s in humaneval.STOPS), detail={"sandbox": way})
                for p in _limited(self._problems(cfg), cfg.eval.humaneval.limit)]

    def examples(self, cfg):
        return []


class BBL:
    name, fine_tunes = "bbl", True

    def section(self, cfg):
        return cfg.eval.bbl

    def check_ready(self, cfg) -> None:
        if not cfg.eval.bbl.data:
            raise NcalabError("BIG-bench Lite needs its task files: --data FOLDER (BIG-bench task.json files)")
        self._subtasks(cfg)

    def _selection(self, cfg):
        from ncalab.evals import bbl

        sec = cfg.eval.bbl
        return bbl.select(sec.data, sec.tasks, sec.min_train, sec.format)

    def _subtasks(self, cfg):
        return self._selection(cfg)[0]

    def notes(self, cfg) -> list[str]:
        """What the task selection left out (tasks of the list missing from the folder, tasks
        with too few training examples), and the items a log-probability evaluation cannot score."""
        subtasks, notes = self._selection(cfg)
        if cfg.eval.bbl.mode == "logprob":
            free = sorted({s.task for s in subtasks if any(not it.options for it in s.validation)})
            if free:
                counted = "count as passed (eval.bbl.unanswered=paper)" if cfg.eval.bbl.unanswered == "paper" else "are left out"
                notes.append(f"log-probability scoring needs choices: the generative items of {', '.join(free)} {counted}")
        return notes

    def items(self, cfg, end: str = "<|endoftext|>") -> list[Item]:
        from ncalab.evals import bbl

        cap = cfg.eval.bbl.limit or cfg.eval.bbl.max_per_task
        out = []
        for sub in self._subtasks(cfg):
            for it in sub.validation[:cap]:
                out.append(Item(it.task_id, sub.name, sub.prompt(it), lambda text, it=it: bbl.is_correct(it, text),
                                lambda text: "\n" in text.lstrip(), it.choices, it.options))
        return out

    def examples(self, cfg) -> list[tuple[str, str]]:
        """Each task's training items, at most eval.bbl.max_train_per_task of them (the paper: 350)."""
        from ncalab.evals import bbl

        sec = cfg.eval.bbl
        picked = bbl.training_examples(self._subtasks(cfg), sec.max_train_per_task, sec.limit * 10 if sec.limit else None)
        return [(it.prompt, it.answer + it.end) for it in picked]

    def score(self, per_item, items, k: int = 1, cfg=None) -> float:
        """Mean over tasks of the mean over their subtasks (chance-normalised on choice tasks).
        With eval.bbl.unanswered = paper, items with no answer form one more task that passes."""
        from ncalab.evals import bbl

        rule, unanswered = _bbl_rules(cfg)
        by_sub: dict[str, list] = {}
        for it in items:
            if it.item in per_item:
                by_sub.setdefault(it.subtask, []).append((per_item[it.item], it.choices))
        by_task: dict[str, list[float]] = {}
        for sub, vals in by_sub.items():
            by_task.setdefault(sub.split("/")[0], []).append(
                bbl.task_score([v for v, _ in vals], [c for _, c in vals], k, rule))
        figures = [float(np.mean(v)) for v in by_task.values()]
        if unanswered == "paper" and any(getattr(it, "samples", None) == 0 for it in items):
            figures.append(1.0)  # the paper's code files them under one task whose pass@k is 1
        if not figures:
            raise NcalabError("no items were scored: an evaluation with no samples has no score")
        return float(np.mean(figures))

    def difference(self, nca, scratch, items, resamples: int = 2000, k: int = 1, cfg=None) -> tuple[float, float]:
        """The BBL score is chance-normalised and clipped per subtask, then macro-averaged, so it
        is not a mean of item figures: the difference is that of the two scores, and its interval
        comes from a paired bootstrap that resamples items within each subtask (seeded, so the
        figure is the same every time it is shown)."""
        from ncalab.evals import bbl

        rule, unanswered = _bbl_rules(cfg)
        by_sub: dict[str, list] = {}
        for it in items:
            if it.item in nca and it.item in scratch:
                by_sub.setdefault(it.subtask, []).append((nca[it.item], scratch[it.item], it.choices or 0))
        if not by_sub or sum(len(v) for v in by_sub.values()) < 2:
            return float("nan"), float("nan")
        rng = np.random.default_rng(0)
        by_task: dict[str, list[np.ndarray]] = {}
        for sub in sorted(by_sub):
            a, b, c = (np.asarray(col, dtype=float) for col in zip(*by_sub[sub]))
            idx = np.concatenate([np.arange(len(a))[None], rng.integers(0, len(a), size=(resamples, len(a)))])
            # row 0 is the observed items; the others are resamples
            by_task.setdefault(sub.split("/")[0], []).append(
                bbl.subtask_scores(a[idx], c[idx], k, rule) - bbl.subtask_scores(b[idx], c[idx], k, rule))
        per_task = [np.mean(v, axis=0) for v in by_task.values()]
        if unanswered == "paper" and any(getattr(it, "samples", None) == 0 for it in items):
            per_task.append(np.zeros(resamples + 1))  # the unanswered task passes in both arms
        diffs = np.mean(per_task, axis=0)
        low, high = np.percentile(diffs[1:], [2.5, 97.5])
        return float(diffs[0]), float((high - low) / 2)


def _bbl_rules(cfg) -> tuple[str, str]:
    """(chance rule, treatment of unanswered items) of an evaluation's config (its defaults without one)."""
    from ncalab.config.sections import BBLSection

    sec = cfg.eval.bbl if cfg is not None else BBLSection()
    return sec.chance, sec.unanswered


TASKS: dict[str, Task] = {t.name: t for t in (GSM8K(), HumanEval(), BBL())}


def _seed(seed: int, item_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}/{item_id}".encode(), digest_size=8).digest(), "little") >> 1


def ks(cfg, task: Task) -> list[int]:
    sec = task.section(cfg)
    if getattr(sec, "mode", "sample") == "logprob":
        return [1]  # one answer per item (the choice scored highest): its accuracy is pass@1
    return [k for k in sec.k if k <= sec.samples]


# ---- the stages --------------------------------------------------------------------------------


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
    from ncalab.train.batches import pack_examples, pack_groups

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
    from ncalab.train.loop import StageSpec

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
        from transformers import AutoTokenizer

        from ncalab.experiment.compute import model_compute
        from ncalab.experiment.stages import Plan
        from ncalab.train import checkpoint
        from ncalab.train.batches import RowBatches

        cfg, sec = ctx.cfg, self.task.section(ctx.cfg)
        folder = arm_model_folder(ctx, self.arm)
        model = checkpoint.load_model(folder)
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
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
        from transformers import AutoTokenizer

        from ncalab.experiment.cards import save_card
        from ncalab.train import checkpoint

        checkpoint.save(folder, model)
        AutoTokenizer.from_pretrained(arm_model_folder(ctx, self.arm), local_files_only=True).save_pretrained(folder)
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
        from transformers import AutoTokenizer

        from ncalab.train import checkpoint

        cfg, store, sec = ctx.cfg, ctx.store, self.task.section(ctx.cfg)
        folder = self.model_folder(ctx)
        model = checkpoint.load_model(folder, ctx.placement.device)
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
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
                texts = sample(model, tok, item, sec, _seed(cfg.seed, item.item_id), ctx.placement)
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


def items_of(store, run):
    return store.eval_items(run.id)


def per_item_pass(rows, k: int) -> dict[str, float]:
    return {r.item: passk.pass_at_k(r.samples, r.correct, k) for r in rows if r.samples >= k}


def log_pass_at_k(store, run, task: Task, rows, k_values: list[int], cfg=None) -> dict[int, float]:
    """pass@k of the task from its stored items, as metric points (step = k) of the run."""
    if not rows:
        raise NcalabError(f"{run.kind}: no items were scored; a run with no samples has no pass@k")
    scores = {k: task.score(per_item_pass(rows, k), rows, k=k, cfg=cfg) for k in k_values}
    store.delete_metrics_named(run.id, ("pass@",))
    store.log_metrics(run.id, [{"name": "pass@k", "step": k, "tokens": 0, "wall_time": 0.0, "value": v}
                               for k, v in scores.items()])
    return scores


@torch.no_grad()
def sample(model, tok, item: Item, sec, seed: int, placement, batch: int = 64) -> list[str]:
    """`sec.samples` completions of one item (temperature and top-p of the task's protocol), the
    prompt cut from the left to leave room for `sec.max_tokens` within the model's context."""
    from ncalab.train.generate import Sampling, generate

    ids = tok(item.prompt, add_special_tokens=False)["input_ids"]
    context = model.config.max_position_embeddings
    new = min(sec.max_tokens, max(1, context // 2))
    ids = ids[-(context - new):]
    sampling = Sampling(sec.temperature, sec.top_p, torch.Generator().manual_seed(seed))
    out: list[str] = []
    while len(out) < sec.samples:
        n = min(batch, sec.samples - len(out))
        got = generate(model, [ids] * n, min(new, context - len(ids)), sampling=sampling,
                       stop_ids=[tok.eos_token_id], pad_id=tok.eos_token_id,
                       autocast=placement.autocast, done=lambda row, toks: item.stop(tok.decode(toks[-24:])))
        out += [tok.decode(g) for g in got]
    return out


def _logits_argument(model) -> str | None:
    """How the model's forward pass is told to compute the last positions' logits only
    (transformers 4.50 on: logits_to_keep; 4.45 to 4.49: num_logits_to_keep)."""
    params = inspect.signature(model.forward).parameters
    return next((a for a in ("logits_to_keep", "num_logits_to_keep") if a in params), None)


@torch.no_grad()
def choice_logprobs(model, tok, prompt: str, options: Sequence[str], placement=None, batch: int = 16) -> list[float]:
    """The model's log-probability of each option after the prompt: the sum over the option's
    tokens of log p(token | prompt and the option so far), from the model's own forward pass.
    Options go through in batches of rows prompt + option, left-padded (attention mask and
    positions as in decoding) so that every row ends at the last column and only the last
    columns' logits are needed. Prompt and option are tokenized apart, as fine-tuning reads
    them; the prompt is cut from the left to leave room for the longest option."""
    from ncalab.train.generate import _pad_left

    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    opts = [list(tok(o, add_special_tokens=False)["input_ids"]) for o in options]
    pad = tok.eos_token_id if tok.eos_token_id is not None else 0
    context = model.config.max_position_embeddings
    room = max(1, context - max((len(o) for o in opts), default=0))
    ids = (list(ids) or [pad])[-room:]
    opts = [o[: context - len(ids)] for o in opts]
    device = next(model.parameters()).device
    keep = _logits_argument(model)
    out: list[float] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(opts), batch):
            chunk = opts[start:start + batch]
            x, mask = _pad_left([ids + o for o in chunk], pad)
            positions = (mask.cumsum(dim=-1) - 1).clamp_min(0)
            tail = max(len(o) for o in chunk) + 1  # the logits before each option token
            with placement.autocast() if placement is not None else nullcontext():
                logits = model(input_ids=x.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                               use_cache=False, **({keep: tail} if keep else {})).logits
            logp = torch.log_softmax(logits[:, -tail:].float(), dim=-1)
            for i, o in enumerate(chunk):
                if not o:
                    out.append(float("-inf"))  # an empty option says nothing
                    continue
                # the row's last len(o) tokens are the option; column j predicts column j + 1
                rows = logp[i, tail - 1 - len(o): tail - 1]
                out.append(float(rows.gather(-1, torch.as_tensor(o, device=rows.device)[:, None]).sum()))
    finally:
        model.train(was_training)
    return out


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
