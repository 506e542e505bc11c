"""BIG-bench Lite: the paper's 2-shot generation protocol over BIG-bench's own task files.

A task folder holds `task.json` (or `task.json.gz`), or subtask folders that do. Each example
has an `input` and a `target` (generative tasks, scored by exact match) or `target_scores`
(choice tasks: the choices are listed in the prompt and a sample is right when it names a
choice scored 1; the score is normalised for chance, max(0, (p - chance) / (1 - chance))).
The split is BIG-bench's (bbseqio, as in the Hugging Face copy the paper read): shuffle a
subtask's examples with seed 42; the last 20% (rounded down, at least 16 divided among the
task's subtasks) is validation, the rest train. A task's score is the mean over its subtasks;
the BBL score is the mean over tasks.

Chance: pass@k counts an item passed when any of k independently drawn samples is right, so a
uniform guesser among C choices passes with probability 1 - (1 - 1/C)^k. The paper's code
subtracts 1/C at every k, which leaves a guesser above zero at k > 1 (about 0.5 at pass@2 on
two choices); that rule is kept as chance = "paper".
"""

from __future__ import annotations

import gzip
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ncalab.errors import NcalabError

SHOTS = 2

# The paper's BIG-bench Lite: the 18 English tasks of its utils/dataset_utils.py (the 24 of
# BIG-bench Lite less the non-English ones), of which it keeps those with at least 100
# training examples.
PAPER_TASKS = (
    "auto_debugging", "bbq_lite_json", "code_line_description", "conceptual_combinations", "emoji_movie",
    "formal_fallacies_syllogisms_negation", "known_unknowns", "logic_grid_puzzle", "logical_deduction",
    "novel_concepts", "operators", "play_dialog_same_or_different", "repeat_copy_logic", "strange_stories",
    "strategyqa", "symbol_interpretation", "vitaminc_fact_verification", "winowhy",
)
# Prompt formats: paper = "Question:\n<input>\n\nchoice: ...\n\nAnswer:\n<answer>\n\n" (the
# paper's code); bigbench = BIG-bench's own example prefixes, choices as "  choice: ..." lines.
FORMATS = ("paper", "bigbench")
CHANCES = ("correct", "paper")
_LABELS = ("Question:", "Answer:", "Q:", "A:")  # labels the paper format replaces by its own


@dataclass(frozen=True)
class Item:
    task_id: str  # "task/subtask/index"
    task: str  # the top-level task, for the macro average
    prompt: str  # without the in-context examples
    targets: tuple[str, ...]  # right answers (generative: any target; choice: the choices scored 1)
    choices: int = 0  # number of choices (0 for generative items)
    answer: str = ""  # the answer a worked example shows and fine-tuning trains on
    options: tuple[str, ...] = ()  # the choices, in the task's order (empty for generative items)
    end: str = ""  # what follows the answer in fine-tuning text (the paper format: a blank line)


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
        return self.prefix + "".join(s.prompt + s.answer + (s.end or "\n") for s in shots) + item.prompt


def split(examples: list, seed: int = 42, min_val: int = 16) -> tuple[list, list]:
    """BIG-bench's train/validation split of a (sub)task's examples: `min_val` is 16 for a task
    without subtasks, and 16 // (number of subtasks) for each subtask of one."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(min_val, int(0.2 * len(examples)))
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


def _item(task_meta: dict, ex: dict, task: str, task_id: str, fmt: str = "paper") -> Item:
    if "target_scores" in ex:
        scores = ex["target_scores"]
        options = tuple(str(o) for o in scores)
        right = tuple(str(o) for o, s in scores.items() if s == max(scores.values()))
    else:
        options = ()
        right = tuple(str(t) for t in (ex["target"] if isinstance(ex["target"], list) else [ex["target"]]))
    q = task_meta.get("example_input_prefix", "\nQ: ")
    if fmt == "paper":
        # the task's instruction and input prefix stay (as in the inputs the paper read), its
        # Q:/A: labels give way to the format's own; choices one per line after a blank line
        for label in _LABELS:
            q = q.replace(label, "")
        body = (task_meta.get("task_prefix", "") + q + str(ex["input"])).strip()
        listed = "\n" + "".join(f"\nchoice: {o}" for o in options) if options else ""
        return Item(task_id, task, f"Question:\n{body}{listed}\n\nAnswer:\n", right, len(options), right[0],
                    options, "\n\n")
    text = q + str(ex["input"]).strip() + "".join(f"\n  choice: {o}" for o in options)
    return Item(task_id, task, text + task_meta.get("example_output_prefix", "\nA: "), right, len(options), right[0],
                options)


def load(folder: str | Path, tasks: list[str] | tuple[str, ...] | None = None, fmt: str = "paper") -> list[Subtask]:
    """Every (sub)task under a BIG-bench Lite folder (or those of `tasks`), split into train and
    validation, its prompts in format `fmt`."""
    root = Path(folder)
    if not root.is_dir():
        raise NcalabError(f"BIG-bench Lite folder {root} does not exist")
    if fmt not in FORMATS:
        raise NcalabError(f"BIG-bench prompt format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    found = []
    for f in sorted(root.glob("**/task.json*")):
        rel = f.parent.relative_to(root)
        if tasks and rel.parts[0] not in tasks:
            continue
        meta = _read(f)
        if "examples" in meta:  # else a parent of subtasks
            found.append((rel, meta))
    subtasks_of = Counter(rel.parts[0] for rel, _ in found)
    out = []
    for rel, meta in found:
        task = rel.parts[0]
        items = [_item(meta, ex, task, f"{rel.as_posix()}/{i}", fmt) for i, ex in enumerate(meta["examples"])]
        # BIG-bench's 16 validation examples at least are shared among a task's subtasks
        train, val = split(items, min_val=16 // subtasks_of[task] if len(rel.parts) > 1 else 16)
        out.append(Subtask(rel.as_posix(), task, meta.get("task_prefix", "") if fmt == "bigbench" else "", train, val))
    if not out:
        which = f"none of the {len(tasks)} selected tasks" if tasks else "no BIG-bench task.json"
        raise NcalabError(f"{which} under {root}")
    return out


def select(folder: str | Path, tasks: list[str] | tuple[str, ...] = ("paper",), min_train: int = 100,
           fmt: str = "paper") -> tuple[list[Subtask], list[str]]:
    """The subtasks an evaluation scores, and notes on what it leaves out. `tasks` is ["paper"]
    (PAPER_TASKS), ["all"] (every task in the folder) or task names; a task whose training split
    (all its subtasks together) has fewer than `min_train` examples is left out, as the paper's
    code does with 100."""
    wanted = list(tasks)
    names = PAPER_TASKS if wanted == ["paper"] else None if wanted == ["all"] else tuple(wanted)
    subtasks = load(folder, names, fmt)
    notes = []
    if names is not None:
        present = {s.task for s in subtasks}
        missing = [t for t in names if t not in present]
        if missing:
            whose = "the paper's " if wanted == ["paper"] else "the selected "
            notes.append(f"{len(missing)} of {whose}{len(names)} BIG-bench Lite tasks are not in {folder}: "
                         + ", ".join(missing))
    sizes: Counter = Counter()
    for s in subtasks:
        sizes[s.task] += len(s.train)
    small = sorted(t for t in sizes if sizes[t] < min_train)
    if small:
        notes.append(f"left out for fewer than {min_train} training examples (eval.bbl.min_train): "
                     + ", ".join(f"{t} ({sizes[t]})" for t in small))
    kept = [s for s in subtasks if s.task not in small]
    if not kept:
        raise NcalabError(f"no BIG-bench task under {folder} has {min_train} training examples "
                          f"(eval.bbl.min_train); the largest has {max(sizes.values())}")
    return kept, notes


def training_examples(subtasks: list[Subtask], per_task: int = 0, per_subtask: int | None = None,
                      seed: int = 42) -> list[Item]:
    """The fine-tuning examples: each task's training items (at most `per_subtask` of each
    subtask), at most `per_task` of them (0: all) drawn at random, seeded, from all its subtasks,
    as the paper takes the first of each task's shuffled training split."""
    pooled: dict[str, list[Item]] = {}
    for s in subtasks:
        pooled.setdefault(s.task, []).extend(s.train[:per_subtask])
    out = []
    for items in pooled.values():
        out += random.Random(seed).sample(items, per_task) if 0 < per_task < len(items) else items
    return out


def normalise(text: str) -> str:
    return " ".join(text.strip().split("\n")[0].strip().lower().rstrip(".").split())


def is_correct(item: Item, completion: str) -> bool:
    return normalise(completion) in {normalise(t) for t in item.targets}


def chance(choices: np.ndarray, k: int = 1, rule: str = "correct") -> np.ndarray:
    """pass@k of a uniform random guesser on items of C choices: each of k independent samples
    is right with probability 1/C, so 1 - (1 - 1/C)^k (rule "correct"); the paper's code uses
    1/C at every k (rule "paper")."""
    if rule not in CHANCES:
        raise NcalabError(f"the chance rule must be one of {', '.join(CHANCES)}, got {rule!r}")
    p = 1.0 / np.maximum(np.asarray(choices, dtype=float), 1.0)
    return p if rule == "paper" else 1.0 - (1.0 - p) ** k


def task_score(pass_rates: list[float], choices: list[int], k: int = 1, rule: str = "correct") -> float:
    """Mean pass@k of a subtask's items; normalised for chance on choice tasks."""
    if not pass_rates:
        raise NcalabError("no items were scored: an evaluation with no samples has no score")
    return float(subtask_scores(np.asarray(pass_rates, dtype=float), np.asarray(choices, dtype=float), k, rule))


def subtask_scores(pass_rates: np.ndarray, choices: np.ndarray, k: int = 1, rule: str = "correct") -> np.ndarray:
    """task_score along the last axis, for many rows of items at once (bootstrap resamples):
    the mean pass@k, normalised for chance max(0, (p - chance) / (1 - chance)) on choice
    subtasks, where chance is the mean over the row's choice items of a guesser's pass@k (see
    `chance`). Where chance is 1 (a single choice) nothing is above it: 0."""
    p = pass_rates.mean(-1)
    is_choice = choices > 0
    if not is_choice.any():
        return p
    base = np.where(is_choice, chance(choices, k, rule), 0.0)
    level = base.sum(-1) / np.maximum(is_choice.sum(-1), 1)
    room = 1.0 - level
    return np.where(room > 0, np.maximum(0.0, (p - level) / np.where(room > 0, room, 1.0)), 0.0)
