"""BIG-bench Lite: the paper's 2-shot generation protocol over BIG-bench's own task files.

A task folder holds `task.json` (or `task.json.gz`), or subtask folders that do. Each example
has an `input` and a `target` (generative tasks, scored by exact match) or `target_scores`
(choice tasks: the choices are listed in the prompt and a sample is right when it names a
choice scored 1; the score is normalised for chance, max(0, (p - 1/C) / (1 - 1/C))).
The split is BIG-bench's (bbseqio): shuffle a task's examples with seed 42; the last 20%
(at least 16) is validation, the rest train. A task's score is the mean over its subtasks;
the BBL score is the mean over tasks.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ncalab.errors import NcalabError

SHOTS = 2


@dataclass(frozen=True)
class Item:
    task_id: str  # "task/subtask/index"
    task: str  # the top-level task, for the macro average
    prompt: str  # without the in-context examples
    targets: tuple[str, ...]  # right answers (generative: any target; choice: the choices scored 1)
    choices: int = 0  # number of choices (0 for generative items)
    answer: str = ""  # the text fine-tuning trains on


@dataclass
class Subtask:
    name: str
    task: str
    prefix: str = ""  # the task's own instruction, before the examples
    train: list[Item] = field(default_factory=list)
    validation: list[Item] = field(default_factory=list)

    def prompt(self, item: Item) -> str:
        """2-shot: the first train examples of the subtask with their answers, then the item."""
        shots = [s for s in self.train if s.task_id != item.task_id][:SHOTS]
        return self.prefix + "".join(f"{s.prompt}{s.answer}\n" for s in shots) + item.prompt


def split(examples: list, seed: int = 42) -> tuple[list, list]:
    """BIG-bench's train/validation split of a task's examples."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(16, round(0.2 * len(examples)))
    n_val = min(n_val, len(examples))
    shuffled = [examples[i] for i in order]
    return shuffled[: len(examples) - n_val], shuffled[len(examples) - n_val:]


def _read(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise NcalabError(f"cannot read BIG-bench task {path}: {e}") from None


def _item(task_meta: dict, ex: dict, task: str, task_id: str) -> Item:
    q = task_meta.get("example_input_prefix", "\nQ: ")
    a = task_meta.get("example_output_prefix", "\nA: ")
    text = q + str(ex["input"]).strip()
    if "target_scores" in ex:
        options = list(ex["target_scores"])
        text += "".join(f"\n  choice: {o}" for o in options)
        right = tuple(o for o, s in ex["target_scores"].items() if s == max(ex["target_scores"].values()))
        return Item(task_id, task, text + a, right, len(options), right[0])
    targets = ex["target"] if isinstance(ex["target"], list) else [ex["target"]]
    return Item(task_id, task, text + a, tuple(str(t) for t in targets), 0, str(targets[0]))


def load(folder: str | Path, tasks: list[str] | None = None) -> list[Subtask]:
    """Every (sub)task under a BIG-bench Lite folder, split into train and validation."""
    root = Path(folder)
    if not root.is_dir():
        raise NcalabError(f"BIG-bench Lite folder {root} does not exist")
    out = []
    for f in sorted(root.glob("**/task.json*")):
        meta = _read(f)
        if "examples" not in meta:
            continue  # a parent of subtasks
        rel = f.parent.relative_to(root)
        task = rel.parts[0]
        if tasks and task not in tasks:
            continue
        items = [_item(meta, ex, task, f"{rel.as_posix()}/{i}") for i, ex in enumerate(meta["examples"])]
        train, val = split(items)
        out.append(Subtask(rel.as_posix(), task, meta.get("task_prefix", ""), train, val))
    if not out:
        raise NcalabError(f"no BIG-bench task.json under {root}")
    return out


def normalise(text: str) -> str:
    return " ".join(text.strip().split("\n")[0].strip().lower().rstrip(".").split())


def is_correct(item: Item, completion: str) -> bool:
    return normalise(completion) in {normalise(t) for t in item.targets}


def task_score(pass_rates: list[float], choices: list[int]) -> float:
    """Mean pass@k of a subtask's items; normalised for chance on choice tasks."""
    if not pass_rates:
        raise NcalabError("no items were scored: an evaluation with no samples has no score")
    return float(subtask_scores(np.asarray(pass_rates, dtype=float), np.asarray(choices, dtype=float)))


def subtask_scores(pass_rates: np.ndarray, choices: np.ndarray) -> np.ndarray:
    """task_score along the last axis, for many rows of items at once (bootstrap resamples):
    the mean, normalised for chance max(0, (p - chance) / (1 - chance)) on choice subtasks,
    where chance is the mean of 1/C over the row's choice items."""
    p = pass_rates.mean(-1)
    is_choice = choices > 0
    if not is_choice.any():
        return p
    inverse = np.where(is_choice, 1.0 / np.maximum(choices, 1.0), 0.0)
    chance = inverse.sum(-1) / np.maximum(is_choice.sum(-1), 1)
    return np.maximum(0.0, (p - chance) / (1.0 - chance))
