"""Skill probes (PROBES by name): small synthetic held-out tasks scored on any model as it is,
without training it: context recall, copying (induction), bracket matching and addition.

An item is a pure function of (seed, probe, item index, the probe's symbols, its length): a
token sequence with the positions to score marked. A probe's symbols are roles (keys, values,
digits, brackets, marks); a Vocabulary gives them as one model's token ids:

- a language model: one-token strings of its tokenizer (letters, digits, brackets, '+', '=',
  a newline), each checked to encode to exactly one token; symbols that do not are left out;
- a stage-1 model: ids of its source's vocabulary [0, V): content symbols from 0 up, marks
  from V - 1 down (an NCA model's frame start and end tokens), bracket pair j as (j, V/2 + j)
  (Dyck's own opening and closing ids). A vocabulary smaller than a probe's roles give fewer
  symbols to each role, down to the probe's least (chance follows the alphabet); below that the
  probe is not applicable to the model (scored as n/a, never as 0).

Scoring is teacher-forced, one forward pass per batch, no generation: at each answer position
the prediction is the argmax of the logits restricted to the probe's answer alphabet A, so a
guesser is right with probability 1/|A| per token (the per-token chance) and (1/|A|)^n on an
item of n answer tokens (its exact-match chance; a probe's is the mean over its items). The
model is anything that maps input ids (batch, length) to logits (Forward: at the positions asked).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ncalab.errors import NcalabError

LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
DIGITS = tuple("0123456789")
OPENING, CLOSING = tuple("([{<"), tuple(")]}>")
SHOTS = 4  # the addition probe's worked examples before its question (a fixed, stated few-shot prompt)


class NotApplicable(Exception):
    """The probe's symbols do not fit this model's vocabulary (the message says why)."""


@dataclass(frozen=True)
class Item:
    tokens: tuple[int, ...]  # token ids, the prompt and its answers
    answers: tuple[int, ...]  # positions in tokens that are scored, each predicted from the tokens before it


@dataclass(frozen=True)
class Symbols:
    """A probe's symbols as one model's token ids, by role; `answer` is the answer alphabet."""

    roles: dict[str, tuple[int, ...]]
    answer: str

    def __getitem__(self, role: str) -> tuple[int, ...]:
        return self.roles[role]

    @property
    def alphabet(self) -> tuple[int, ...]:
        return self.roles[self.answer]


@dataclass(frozen=True)
class Roles:
    """What a probe needs: content roles (name, texts, fewest it runs with), marks (name, text;
    each one symbol, all required) and bracket pairs (opening texts, closing texts, fewest)."""

    content: tuple[tuple[str, tuple[str, ...], int], ...] = ()
    marks: tuple[tuple[str, str], ...] = ()
    pairs: tuple[tuple[str, ...], tuple[str, ...], int] | None = None


class Vocabulary(Protocol):
    label: str  # a few words for notes and tables

    def assign(self, roles: Roles) -> dict[str, tuple[int, ...]]:
        """Each role's token ids; raises NotApplicable when the vocabulary cannot give the least."""


class TokenizerVocabulary:
    """A language model's symbols: strings its tokenizer encodes as exactly one token."""

    def __init__(self, tokenizer, size: int | None = None):
        self.tok, self.size = tokenizer, size if size is not None else len(tokenizer)
        self.label = f"one-token strings of its tokenizer ({self.size:,} tokens)"
        self._one: dict[str, int | None] = {}

    def one_token(self, text: str) -> int | None:
        if text not in self._one:
            ids = self.tok.encode(text, add_special_tokens=False)
            self._one[text] = int(ids[0]) if len(ids) == 1 and 0 <= ids[0] < self.size else None
        return self._one[text]

    def assign(self, roles: Roles) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for name, text in roles.marks:
            tid = self.one_token(text)
            if tid is None:
                raise NotApplicable(f"{text!r} is not one token of the tokenizer")
            out[name] = (tid,)
        for name, texts, least in roles.content:
            ids = tuple(dict.fromkeys(t for t in map(self.one_token, texts) if t is not None))
            if len(ids) < least:
                raise NotApplicable(f"the tokenizer has {len(ids)} one-token {name}, fewer than {least}")
            out[name] = ids
        if roles.pairs is not None:
            opening, closing, least = roles.pairs
            both = [(a, b) for a, b in zip(map(self.one_token, opening), map(self.one_token, closing))
                    if a is not None and b is not None]
            if len(both) < least:
                raise NotApplicable(f"the tokenizer has {len(both)} bracket pairs of one token each, fewer than {least}")
            out["opening"], out["closing"] = tuple(a for a, _ in both), tuple(b for _, b in both)
        return out


class IdVocabulary:
    """A stage-1 model's symbols: ids of its source's vocabulary [0, size)."""

    def __init__(self, size: int):
        self.size = size
        self.label = f"token ids 0..{size - 1} of its source"

    def assign(self, roles: Roles) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for i, (name, _) in enumerate(roles.marks):  # from the top: an NCA model's frame start and end
            out[name] = (self.size - 1 - i,)
        room = self.size - len(roles.marks)
        if roles.pairs is not None:  # pair j is (j, size/2 + j), as Dyck's ids
            opening, _, least = roles.pairs
            n = min(len(opening), room // 2)
            if n < least:
                raise NotApplicable(f"{self.size} token ids hold {n} bracket pairs, fewer than {least}")
            out["opening"], out["closing"] = tuple(range(n)), tuple(range(self.size // 2, self.size // 2 + n))
        if roles.content:
            least = [r[2] for r in roles.content]
            if sum(least) > room:
                raise NotApplicable(f"{self.size} token ids are fewer than the {sum(least) + len(roles.marks)} it needs")
            counts = list(least)
            while sum(counts) < room:  # the rest in turn, up to what each role can use
                grown = False
                for i, (_, texts, _) in enumerate(roles.content):
                    if counts[i] < len(texts) and sum(counts) < room:
                        counts[i] += 1
                        grown = True
                if not grown:
                    break
            start = 0
            for (name, _, _), n in zip(roles.content, counts):
                out[name] = tuple(range(start, start + n))
                start += n
        return out


class Probe(Protocol):
    name: str
    title: str  # what it asks, in a few words
    roles: Roles
    answer: str  # the role whose symbols are the answer alphabet
    least_length: int  # the shortest item it makes

    def default_length(self, context: int) -> int: ...
    def item(self, rng: np.random.Generator, symbols: Symbols, length: int) -> Item: ...


def _draw(rng: np.random.Generator, ids: Sequence[int], n: int) -> list[int]:
    return [int(ids[i]) for i in rng.integers(len(ids), size=n)]


def _in_base(x: int, base: int, width: int = 0) -> list[int]:
    """The digits of x in `base`, most significant first (at least `width` of them)."""
    out = []
    while x or not out or len(out) < width:
        x, d = divmod(x, base)
        out.append(d)
    return out[::-1]


class Recall:
    """Context recall: key-value pairs fill the context (keys of k symbols, each a different key;
    values one symbol), then one of the keys again: its value is the answer."""

    name, title, answer, least_length = "recall", "a key's value from key-value pairs filling the context", "values", 4
    roles = Roles(content=(("values", DIGITS, 2), ("keys", LETTERS, 2)))

    def default_length(self, context: int) -> int:
        return context

    @staticmethod
    def shape(keys: int, length: int) -> tuple[int, int]:
        """(key length k, pairs n): the shortest keys that give each of the n pairs its own key,
        n + 1 blocks of k + 1 symbols filling `length`."""
        k = 1
        while keys ** k < length // (k + 1) - 1:
            k += 1
        return k, length // (k + 1) - 1

    def item(self, rng, symbols, length):
        keys, values = symbols["keys"], symbols["values"]
        k, n = self.shape(len(keys), length)
        codes = rng.choice(len(keys) ** k, size=n, replace=False)
        drawn = _draw(rng, values, n)
        pairs = [([keys[d] for d in _in_base(int(c), len(keys), k)], v) for c, v in zip(codes, drawn)]
        q = int(rng.integers(n))
        tokens = [t for key, v in pairs for t in (*key, v)] + [*pairs[q][0], pairs[q][1]]
        return Item(tuple(tokens), (len(tokens) - 1,))


class Copy:
    """Copying (induction): a random sequence of length // 2 symbols, then the same again; every
    token of the repeat after its first (which nothing predicts) is an answer."""

    name, title, answer, least_length = "copy", "repeat a random sequence seen earlier in the context", "symbols", 4
    roles = Roles(content=(("symbols", LETTERS, 2),))

    def default_length(self, context: int) -> int:
        return min(context, 64)

    def item(self, rng, symbols, length):
        m = length // 2
        seg = _draw(rng, symbols["symbols"], m)
        return Item(tuple(seg + seg), tuple(range(m + 1, 2 * m)))


class Brackets:
    """Bracket matching: a random well-nested prefix of length - 1 brackets (depth at most 8)
    with some left open; the answer is the closing bracket of the innermost open one."""

    name, title, answer, least_length = "brackets", "the closing bracket of a nested prefix", "closing", 2
    roles = Roles(pairs=(OPENING, CLOSING, 2))
    depth = 8

    def default_length(self, context: int) -> int:
        return min(context, 32)

    def item(self, rng, symbols, length):
        opening, closing = symbols["opening"], symbols["closing"]
        n, stack, tokens = length - 1, [], []
        for i in range(n):
            last = i == n - 1
            opens = not stack or (len(stack) < self.depth and (rng.random() < 0.5 or (last and len(stack) == 1)))
            if opens:
                j = int(rng.integers(len(opening)))
                stack.append(j)
                tokens.append(opening[j])
            else:
                tokens.append(closing[stack.pop()])
        tokens.append(closing[stack[-1]])
        return Item(tuple(tokens), (len(tokens) - 1,))


class Addition:
    """Addition: SHOTS worked examples `a+b=c` of d-digit numbers, one a line, then a question
    `a+b=`; the answer is the sum's digits (no leading zeros). With fewer than 10 digit symbols
    (a small stage-1 vocabulary) the numbers are written in that base. d is the most the length
    holds: SHOTS + 1 lines of at most 3d + 3 symbols, and SHOTS newlines (d = 3 by default)."""

    name, title, answer = "addition", f"a + b after {SHOTS} worked examples", "digits"
    roles = Roles(content=(("digits", DIGITS, 2),), marks=(("plus", "+"), ("equals", "="), ("newline", "\n")))

    @staticmethod
    def length_for(d: int) -> int:
        return (SHOTS + 1) * (3 * d + 3) + SHOTS

    least_length = length_for(1)

    def default_length(self, context: int) -> int:
        return min(context, self.length_for(3))

    def item(self, rng, symbols, length):
        digits, base = symbols["digits"], len(symbols["digits"])
        d = 1
        while self.length_for(d + 1) <= length:
            d += 1
        lo, hi = (base ** (d - 1) if d > 1 else 0), base ** d
        tokens: list[int] = []
        start = 0
        for shot in range(SHOTS + 1):
            a, b = (int(x) for x in rng.integers(lo, hi, size=2))
            if shot:
                tokens.append(symbols["newline"][0])
            tokens += [digits[x] for x in _in_base(a, base)] + list(symbols["plus"])
            tokens += [digits[x] for x in _in_base(b, base)] + list(symbols["equals"])
            start = len(tokens)
            tokens += [digits[x] for x in _in_base(a + b, base)]
        return Item(tuple(tokens), tuple(range(start, len(tokens))))


PROBES: dict[str, Probe] = {p.name: p for p in (Recall(), Copy(), Brackets(), Addition())}


def probe_named(name: str) -> Probe:
    if name not in PROBES:
        raise NcalabError(f"unknown probe {name!r}; choose from {', '.join(PROBES)}")
    return PROBES[name]


def items(probe: Probe, symbols: Symbols, seed: int, n: int, length: int) -> list[Item]:
    """The probe's first n items at this seed: item i depends only on (seed, probe, i, symbols, length)."""
    salt = zlib.crc32(probe.name.encode())
    return [probe.item(np.random.default_rng([seed % 2**63, salt, i]), symbols, length) for i in range(n)]


def symbols_for(probe: Probe, vocab: Vocabulary) -> Symbols:
    return Symbols(vocab.assign(probe.roles), probe.answer)


def item_length(probe: Probe, context: int, length: int | None) -> int:
    """The item length to use on a model of this context: the asked one (an error when it does
    not fit), else the probe's own (not applicable when even its shortest item does not fit)."""
    if length is None:
        if probe.least_length > context:
            raise NotApplicable(f"its shortest item ({probe.least_length} tokens) does not fit the model's context "
                                f"of {context}")
        return max(probe.least_length, probe.default_length(context))
    if length > context:
        raise NcalabError(f"probe {probe.name}: an item of {length} tokens does not fit the model's context of "
                          f"{context} tokens")
    if length < probe.least_length:
        raise NcalabError(f"probe {probe.name}: an item needs at least {probe.least_length} tokens, got {length}")
    return length


# ---- scoring ---------------------------------------------------------------------------------

# input ids (batch, length) and the positions wanted (k,) -> the logits there (batch, k, vocab): a
# model's logits at every position, indexed (the tests' oracle and random models), or only those
# (model_forward: the output head, the costliest part at small widths, at the answers alone)
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ItemScore:
    index: int
    correct: int  # answer tokens predicted right
    tokens: int  # answer tokens
    length: int  # the item's tokens

    @property
    def accuracy(self) -> float:
        return self.correct / self.tokens

    @property
    def exact(self) -> bool:
        return self.correct == self.tokens


@dataclass
class ProbeScore:
    """One probe on one model: its items' scores and its chance levels."""

    probe: str
    alphabet: int = 0  # answer symbols (0: not applicable)
    length: int = 0
    items: list[ItemScore] = field(default_factory=list)
    not_applicable: str | None = None

    @property
    def accuracy(self) -> float:
        return float(np.mean([s.accuracy for s in self.items])) if self.items else float("nan")

    @property
    def exact(self) -> float:
        return float(np.mean([s.exact for s in self.items])) if self.items else float("nan")

    @property
    def chance(self) -> float:
        return 1.0 / self.alphabet if self.alphabet else float("nan")

    @property
    def chance_exact(self) -> float:
        if not self.items:
            return float("nan")
        return float(np.mean([self.chance ** s.tokens for s in self.items]))


def score_items(forward: Forward, its: Sequence[Item], alphabet: Sequence[int], batch_size: int = 16) -> list[ItemScore]:
    """Each item scored teacher-forced: its tokens up to its last answer go in (padded on the right
    to the longest item's, which a causal model never reads back), and at each answer position the argmax of the logits
    over `alphabet` is compared with the answer. Batches are fixed by item order, so a score is
    the same every time on the same machine."""
    alpha = torch.tensor(list(alphabet), dtype=torch.long)
    width = max((max(it.answers) for it in its), default=0)  # one shape for every batch (kernels made once)
    out = []
    for start in range(0, len(its), batch_size):
        batch = its[start:start + batch_size]
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        for r, it in enumerate(batch):
            row = it.tokens[:width]
            ids[r, :len(row)] = torch.tensor(row, dtype=torch.long)
        wanted = sorted({p - 1 for it in batch for p in it.answers})  # the positions whose logits are read
        logits = forward(ids, torch.tensor(wanted, dtype=torch.long))
        column = {p: i for i, p in enumerate(wanted)}
        rows = torch.tensor([r for r, it in enumerate(batch) for _ in it.answers], dtype=torch.long)
        cols = torch.tensor([column[p - 1] for it in batch for p in it.answers], dtype=torch.long)
        truth = torch.tensor([it.tokens[p] for it in batch for p in it.answers], dtype=torch.long)
        right = (alpha[logits[rows, cols][:, alpha].float().argmax(-1).cpu()] == truth).tolist()
        at = 0
        for r, it in enumerate(batch):
            n = len(it.answers)
            out.append(ItemScore(start + r, int(sum(right[at:at + n])), n, len(it.tokens)))
            at += n
    return out


def run_probe(forward: Forward, probe: Probe, vocab: Vocabulary, context: int, seed: int, n: int,
              length: int | None = None, batch_size: int = 16) -> ProbeScore:
    """A probe's n items on one model (of this context length and vocabulary)."""
    try:
        size = item_length(probe, context, length)
        symbols = symbols_for(probe, vocab)
    except NotApplicable as e:
        return ProbeScore(probe.name, not_applicable=str(e))
    its = items(probe, symbols, seed, n, size)
    return ProbeScore(probe.name, len(symbols.alphabet), size, score_items(forward, its, symbols.alphabet, batch_size))


def model_forward(model, device) -> Forward:
    """A causal language model (transformers) as a Forward on `device`, in float32 (no autocast:
    the same logits every time, and small models run faster so on a CPU), without gradients:
    its body on the whole input, its output head at the wanted positions only."""
    def forward(ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            hidden = model.base_model(input_ids=ids.to(device)).last_hidden_state
            return model.get_output_embeddings()(hidden[:, positions.to(device)])
    return forward


def batch_for(context: int, vocab: int, budget_bytes: int = 1 << 27) -> int:
    """Items per forward pass: a batch's logits (float32, at most every position) within `budget_bytes` (128 MiB)."""
    return int(max(1, min(64, budget_bytes // max(1, 4 * context * vocab))))
