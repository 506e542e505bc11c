"""GSM8K (Cobbe et al. 2021): grade-school maths word problems. Fine-tune on worked
solutions, then sample with a few worked examples in the prompt and check the final number.

Records are JSON lines with `question` and `answer`; the answer is a worked solution whose
last line is `#### N`. A folder with train.jsonl and test.jsonl gives both splits; a single
file is split by a hash of each question (held-out items are then not the official test set).

Two ways of writing an example (`eval.gsm8k.format`):
- paper: as the paper's code does, "Question:\n{question}\nAnswer:\n{solution}\nFinal Answer: N"
  with the end-of-text token after each example (the ####-line of GSM8K becomes the last line);
  the loss covers "Answer:..." and the end token, a prompt ends after the question's line, and
  the model's answer is the last word of what it writes before its end token (after a "####",
  if it wrote one).
- gsm8k: GSM8K's own "#### N" line, examples separated by a blank line, a prompt ending with
  "Answer:\n", and the answer read after the first "####" (else the last number).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ncalab.errors import NcalabError
from ncalab.lazy import math_verify

FINAL = "####"
PAPER_FINAL = "Final Answer:"
FORMATS = ("paper", "gsm8k")
END = "<|endoftext|>"  # the end-of-text token's text (ncalab's tokenizers and GPT-2's)
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


def example_text(p: Problem, fmt: str = "paper") -> tuple[str, str]:
    """(question part, answer part) of a worked example; the loss covers the answer part only
    (in the paper format, the end-of-text token that follows it too: the packer adds it)."""
    if fmt == "paper":
        return f"Question:\n{p.question}\n", f"Answer:\n{p.solution}\n{PAPER_FINAL} {p.answer}"
    return f"Question:\n{p.question}\nAnswer:\n", f"{p.solution}\n{FINAL} {p.answer}\n\n"


def prompt(p: Problem, shots: list[Problem], fmt: str = "paper", end: str = END) -> str:
    """Worked examples, then the question (paper: each example closed by `end`, the
    tokenizer's end-of-text token, and the prompt stops before "Answer:")."""
    if fmt == "paper":
        return "".join("".join(example_text(s, fmt)) + end for s in shots) + example_text(p, fmt)[0]
    return "".join("".join(example_text(s, fmt)) for s in shots) + example_text(p, fmt)[0]


def pick_shots(p: Problem, pool: list[Problem], k: int, rng) -> list[Problem]:
    """k worked examples for `p` drawn from `pool` (`rng`: a random.Random), never `p` itself nor
    another record of the same question."""
    others = [s for s in pool if s.question != p.question]
    return rng.sample(others, min(k, len(others)))


def stops(completion: str, fmt: str = "paper") -> bool:
    """Has a completion ended (besides the end-of-text token, which always ends it)? The paper
    format stops only there (or at the token limit), as the paper's sampling does."""
    if fmt == "paper":
        return False
    return "\nQuestion:" in completion or (
        FINAL in completion and "\n" in completion.split(FINAL, 1)[1].lstrip(" "))


def extract(completion: str, fmt: str = "paper") -> str | None:
    """The model's final answer. paper: the last space-separated word of the text before the
    end token, after its last #### if any (the paper's reading, with "Final Answer: N" last);
    gsm8k: the number after its first ####, else its last number."""
    if fmt == "paper":
        word = completion.split(END)[0].strip().split(FINAL)[-1].strip().split(" ")[-1]
        return word or None
    text = completion.split("\n\nQuestion:")[0]
    if FINAL in text:
        after = _NUMBER.findall(text.split(FINAL, 1)[1])
        return after[0] if after else None
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def is_correct(completion: str, answer: str, fmt: str = "paper") -> bool:
    """Numeric equality of the answer `extract` reads and the reference, through math-verify
    (commas and a unit or currency sign on the number do not matter)."""
    got = extract(completion, fmt)
    if got is None:
        return False
    try:
        parse, verify = math_verify.parse, math_verify.verify
    except ImportError:  # the check without math-verify: equal as numbers
        return _as_number(got) == _as_number(answer)
    return bool(verify(parse(answer.replace(",", "")), parse(got.replace(",", ""))))


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None
