"""The downstream tasks (spec section 7), TASKS by name: where each task's items and fine-tuning
examples come from, how a sample is checked and where it stops, and how its items' scores
make one number. The stages that run them are in evaluation/stages.py.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ncalab.config.sections import BBLSection
from ncalab.errors import NcalabError
from ncalab.evaluation import bbl, gsm8k, humaneval, passk
from ncalab.evaluation.isolation import DESCRIPTIONS
from ncalab.evaluation.sandbox import resolve

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
        return gsm8k.load(cfg.eval.gsm8k.data)

    def items(self, cfg, end: str = "<|endoftext|>") -> list[Item]:
        """Every test item (up to eval.gsm8k.limit) with its worked examples: drawn, per item and
        seed, from the split eval.gsm8k.shots_from names (never the item itself)."""
        sec = cfg.eval.gsm8k
        train, test = self._load(cfg)
        pool, fmt = (test if sec.shots_from == "test" else train), sec.format
        out = []
        for p in _limited(test, sec.limit):
            shots = gsm8k.pick_shots(p, pool, sec.shots, random.Random(item_seed(cfg.seed, p.task_id)))
            out.append(Item(p.task_id, "gsm8k", gsm8k.prompt(p, shots, fmt, end),
                            lambda text, a=p.answer: gsm8k.is_correct(text, a, fmt),
                            lambda text: gsm8k.stops(text, fmt)))
        return out

    def examples(self, cfg) -> list[tuple[str, str]]:
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
        sec = cfg.eval.humaneval
        return resolve(sec.isolation, sec.require_isolation)

    def notes(self, cfg) -> list[str]:
        return [f"each program runs under {DESCRIPTIONS[self.sandbox(cfg)]}"]

    def _problems(self, cfg):
        return humaneval.load_problems(cfg.eval.humaneval.data)

    def items(self, cfg, end: str = "<|endoftext|>") -> list[Item]:
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
        cap = cfg.eval.bbl.limit or cfg.eval.bbl.max_per_task
        out = []
        for sub in self._subtasks(cfg):
            for it in sub.validation[:cap]:
                out.append(Item(it.task_id, sub.name, sub.prompt(it), lambda text, it=it: bbl.is_correct(it, text),
                                lambda text: "\n" in text.lstrip(), it.choices, it.options))
        return out

    def examples(self, cfg) -> list[tuple[str, str]]:
        """Each task's training items, at most eval.bbl.max_train_per_task of them (the paper: 350)."""
        sec = cfg.eval.bbl
        picked = bbl.training_examples(self._subtasks(cfg), sec.max_train_per_task, sec.limit * 10 if sec.limit else None)
        return [(it.prompt, it.answer + it.end) for it in picked]

    def score(self, per_item, items, k: int = 1, cfg=None) -> float:
        """Mean over tasks of the mean over their subtasks (chance-normalised on choice tasks).
        With eval.bbl.unanswered = paper, items with no answer form one more task that passes."""
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
    sec = cfg.eval.bbl if cfg is not None else BBLSection()
    return sec.chance, sec.unanswered


HUMANEVAL = HumanEval()  # the one task that runs model-written code (its sandbox is asked for by name)
TASKS: dict[str, Task] = {t.name: t for t in (GSM8K(), HUMANEVAL, BBL())}


def item_seed(seed: int, item_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}/{item_id}".encode(), digest_size=8).digest(), "little") >> 1


def ks(cfg, task: Task) -> list[int]:
    sec = task.section(cfg)
    if getattr(sec, "mode", "sample") == "logprob":
        return [1]  # one answer per item (the choice scored highest): its accuracy is pass@1
    return [k for k in sec.k if k <= sec.samples]


