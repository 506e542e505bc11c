"""GSM8K (Cobbe et al. 2021): grade-school maths word problems. Fine-tune on worked
solutions, then sample with a few worked examples in the prompt and check the final number.

Records are JSON lines with `question` and `answer`; the answer is a worked solution whose
last line is `#### N`. A folder with train.jsonl and test.jsonl gives both splits; a single
file is split by a hash of each question (held-out items are then not the official test set).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ncalab.errors import NcalabError

FINAL = "####"
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class Problem:
    task_id: str
    question: str
    solution: str  # the worked solution without its final line
    answer: str  # the final number as written after ####


def parse_record(i: int, rec: dict) -> Problem:
    question, answer = rec.get("question"), rec.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str) or FINAL not in answer:
        raise NcalabError(f"GSM8K record {i} needs a question and an answer ending in '#### N'")
    solution, final = answer.rsplit(FINAL, 1)
    return Problem(f"gsm8k/{i}", question.strip(), solution.strip(), final.strip())


def _read(path: Path) -> list[Problem]:
    try:
        with open(path) as f:
            return [parse_record(i, json.loads(line)) for i, line in enumerate(f) if line.strip()]
    except (OSError, ValueError) as e:
        raise NcalabError(f"cannot read GSM8K records from {path}: {e}") from None


def load(path: str | Path, test_fraction: float = 0.1) -> tuple[list[Problem], list[Problem]]:
    """(train, test) problems: train.jsonl and test.jsonl of a folder, or one file split by hash."""
    p = Path(path)
    if p.is_dir():
        if not (p / "train.jsonl").is_file() or not (p / "test.jsonl").is_file():
            raise NcalabError(f"GSM8K folder {p} needs train.jsonl and test.jsonl")
        return _read(p / "train.jsonl"), _read(p / "test.jsonl")
    if not p.is_file():
        raise NcalabError(f"GSM8K data {p} does not exist (a .jsonl file, or a folder with train.jsonl and test.jsonl)")
    rows = _read(p)
    held = [_held_out(r.question, test_fraction) for r in rows]
    return [r for r, h in zip(rows, held) if not h], [r for r, h in zip(rows, held) if h]


def _held_out(question: str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.blake2b(question.encode(), digest_size=8).digest(), "little")
    return h < fraction * 2**64


def example_text(p: Problem) -> tuple[str, str]:
    """(question part, answer part) of a worked example; the loss covers the answer part only."""
    return f"Question:\n{p.question}\nAnswer:\n", f"{p.solution}\n{FINAL} {p.answer}\n\n"


def prompt(p: Problem, shots: list[Problem]) -> str:
    """Worked examples, then the question."""
    return "".join("".join(example_text(s)) for s in shots) + example_text(p)[0]


def extract(completion: str) -> str | None:
    """The model's final answer: the number after its first ####, else its last number."""
    text = completion.split("\n\nQuestion:")[0]
    if FINAL in text:
        after = _NUMBER.findall(text.split(FINAL, 1)[1])
        return after[0] if after else None
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def is_correct(completion: str, answer: str) -> bool:
    """Numeric equality of the extracted answer and the reference, through math-verify
    (commas, units and surrounding words do not matter)."""
    got = extract(completion)
    if got is None:
        return False
    try:
        from math_verify import parse, verify
    except ImportError:  # the check without math-verify: equal as numbers
        return _as_number(got) == _as_number(answer)
    return bool(verify(parse(answer.replace(",", "")), parse(got.replace(",", ""))))


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None
