"""The procedural tasks of Jiang, Shinnick, van den Hengel, Saratchandran and Teney 2026,
"Procedural Pretraining: Warming Up Language Models with Abstract Data" (docs/method.md,
section 13, has their code, file and line for each choice below).

An example is an input of `length` tokens drawn uniformly from 1..V-1 (V = the paper's
`vocab_size`), the separator V, and the task's output; the pad token V + 1 fills the output to
the example's fixed size. The model's vocabulary is V + 2 (token 0 appears only as stack's pop).

  identity  x SEP x                                                   2L + 1 tokens
  reverse   x SEP reversed(x)                                         2L + 1
  sort      x SEP sorted(x) (ascending)                               2L + 1
  set       x SEP the distinct tokens of x in order of first occurrence, padded to L   2L + 1
  union     a SEP b SEP the distinct tokens of a then b in order of first occurrence,
            padded to L (a, b: L // 2 tokens each)                    2(L // 2) + L + 2
  delete    x SEP d SEP x without the first occurrence of d (x itself when d is absent),
            padded to L (d uniform in 1..V-1)                         2L + 3
  stack     L operations (push t: t; pop: 0) SEP what they leave on the stack, top first,
            padded to L - 1                                           2L

stack's operations: while at most one token is on the stack it pushes; otherwise it pushes with
probability 3/4 during the first int(2L/3) steps and 1/4 after them, and the last step pops
when more than one token is on the stack. A pushed token is drawn uniformly among the tokens
not on the stack (a push with none left pops).

The paper trains one example per sequence of the example's size. Here a sequence of the
model's length is such examples one after another, each in its fixed-size block (the last
block may be cut); the loss is on the output tokens only, as the paper's (output_keep).

Randomness is counter-based, as the Dyck streams' (ncalab.data.dyck): draw n of sequence i of a
split is splitmix64(key_i + n * golden), key_i = sequence_keys(seed, split, i), so a sequence
is a pure function of (seed, split, i).
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

from ncalab.data.dyck import GOLDEN, mix64, sequence_keys
from ncalab.errors import NcalabError

TASKS = ("identity", "reverse", "sort", "set", "union", "delete", "stack")
MIN_LENGTH = {"union": 2, "stack": 3}  # union's halves hold a token each; stack's output fits its block from 3
_TAGS = {t: np.uint64(0x50524F43_00000000 + i) for i, t in enumerate(TASKS)}  # "PROC" + the task
_S32 = np.uint64(32)
_MASK32 = np.uint64(0xFFFFFFFF)
_P_MAJOR = np.uint64(3 << 30)  # 3/4 of 2**32: stack's more likely operation


def block_size(task: str, length: int) -> int:
    """Tokens of one example of `task` with inputs of `length` tokens."""
    return {"union": 2 * (length // 2) + length + 2, "delete": 2 * length + 3, "stack": 2 * length}.get(
        task, 2 * length + 1)


def output_start(task: str, length: int) -> int:
    """Where an example's output begins in its block (after its last separator)."""
    return {"union": 2 * (length // 2) + 2, "delete": length + 3}.get(task, length + 1)


def procedural_sequences(task: str, length: int, vocab: int, seed: int, split: str, start: int, count: int,
                         size: int) -> np.ndarray:
    """(count, size) int64 tokens in [0, vocab + 2): examples of `task` with inputs of `length`
    tokens over 1..vocab-1, one after another (module docstring)."""
    if task not in TASKS:
        raise NcalabError(f"unknown procedural task {task!r}; use one of {', '.join(TASKS)}")
    if vocab < 3 or length < MIN_LENGTH.get(task, 1):
        raise NcalabError(f"{task} needs vocab_size >= 3 and length >= {MIN_LENGTH.get(task, 1)}, "
                          f"got {vocab} and {length}")
    keys = sequence_keys(seed, split, start, count).astype(np.uint64) ^ _TAGS[task]
    blocks = -(-size // block_size(task, length))
    out = _KERNELS[task](keys, blocks, length, vocab)
    return np.ascontiguousarray(out[:, :size])


def output_keep(task: str, length: int, vocab: int, seqs: np.ndarray) -> np.ndarray:
    """(n, size) sequences -> (n, size - 1) booleans: whether next-token target t (token t + 1)
    is trained, i.e. an output token of its example (not a pad)."""
    seqs = np.asarray(seqs)
    pos = np.arange(1, seqs.shape[1]) % block_size(task, length)
    return (pos >= output_start(task, length))[None, :] & (seqs[:, 1:] != vocab + 1)


@njit(cache=True)
def _token(state, n, vocab):
    """Draw n of a stream as a token uniform in 1..vocab-1."""
    return 1 + np.int64(((mix64(state + n * GOLDEN) & _MASK32) * uint64(vocab - 1)) >> _S32)


@njit(cache=True)
def _inputs(keys, blocks, length, vocab, block, draws):
    """(count, blocks * block) with each block's first `length` tokens drawn and the rest empty;
    block k takes draws k * draws .. k * draws + length - 1 (so a longer sequence begins with
    the blocks of a shorter one)."""
    out = np.empty((keys.shape[0], blocks * block), dtype=np.int64)
    for b in range(keys.shape[0]):
        for k in range(blocks):
            base = k * block
            for j in range(length):
                out[b, base + j] = _token(keys[b], uint64(k * draws + j), vocab)
    return out


@njit(cache=True)
def _identity(keys, blocks, length, vocab):
    block = 2 * length + 1
    out = _inputs(keys, blocks, length, vocab, block, length)
    for b in range(keys.shape[0]):
        for k in range(blocks):
            base = k * block
            out[b, base + length] = vocab
            out[b, base + length + 1 : base + block] = out[b, base : base + length]
    return out


@njit(cache=True)
def _reverse(keys, blocks, length, vocab):
    block = 2 * length + 1
    out = _inputs(keys, blocks, length, vocab, block, length)
    for b in range(keys.shape[0]):
        for k in range(blocks):
            base = k * block
            out[b, base + length] = vocab
            for j in range(length):
                out[b, base + length + 1 + j] = out[b, base + length - 1 - j]
    return out


@njit(cache=True)
def _sort(keys, blocks, length, vocab):
    block = 2 * length + 1
    out = _inputs(keys, blocks, length, vocab, block, length)
    counts = np.zeros(vocab, dtype=np.int64)
    for b in range(keys.shape[0]):
        for k in range(blocks):
            base = k * block
            out[b, base + length] = vocab
            for j in range(length):  # a counting sort: the tokens are below vocab
                counts[out[b, base + j]] += 1
            pos = base + length + 1
            for t in range(1, vocab):
                for _ in range(counts[t]):
                    out[b, pos] = t
                    pos += 1
                counts[t] = 0
    return out


@njit(cache=True)
def _distinct(out, b, src, stop, dst, seen, stamp):
    """Writes the tokens of out[b, src:stop] not seen (seen[t] != stamp) at dst on; returns the end."""
    for j in range(src, stop):
        t = out[b, j]
        if seen[t] != stamp:
            seen[t] = stamp
            out[b, dst] = t
            dst += 1
    return dst


@njit(cache=True)
def _set(keys, blocks, length, vocab):
    block = 2 * length + 1
    out = _inputs(keys, blocks, length, vocab, block, length)
    seen = np.zeros(vocab, dtype=np.int64)
    stamp = 0
    for b in range(keys.shape[0]):
        for k in range(blocks):
            base = k * block
            stamp += 1
            out[b, base + length] = vocab
            end = _distinct(out, b, base, base + length, base + length + 1, seen, stamp)
            out[b, end : base + block] = vocab + 1
    return out


@njit(cache=True)
def _union(keys, blocks, length, vocab):
    half = length // 2
    block = 2 * half + length + 2
    out = np.empty((keys.shape[0], blocks * block), dtype=np.int64)
    seen = np.zeros(vocab, dtype=np.int64)
    stamp = 0
    for b in range(keys.shape[0]):
        n = uint64(0)
        for k in range(blocks):
            base = k * block
            stamp += 1
            for j in range(2 * half):  # a, then b one place later (after the separator)
                out[b, base + j + (1 if j >= half else 0)] = _token(keys[b], n, vocab)
                n += uint64(1)
            out[b, base + half] = vocab
            out[b, base + 2 * half + 1] = vocab
            end = _distinct(out, b, base, base + half, base + 2 * half + 2, seen, stamp)
            end = _distinct(out, b, base + half + 1, base + 2 * half + 1, end, seen, stamp)
            out[b, end : base + block] = vocab + 1
    return out


@njit(cache=True)
def _delete(keys, blocks, length, vocab):
    block = 2 * length + 3
    out = _inputs(keys, blocks, length, vocab, block, length + 1)
    for b in range(keys.shape[0]):
        for k in range(blocks):
            base = k * block
            d = _token(keys[b], uint64(k * (length + 1) + length), vocab)  # the draw after the block's input
            out[b, base + length] = vocab
            out[b, base + length + 1] = d
            out[b, base + length + 2] = vocab
            pos = base + length + 3
            removed = False
            for j in range(length):
                t = out[b, base + j]
                if t == d and not removed:
                    removed = True
                else:
                    out[b, pos] = t
                    pos += 1
            out[b, pos : base + block] = vocab + 1
    return out


@njit(cache=True)
def _stack(keys, blocks, length, vocab):
    block = 2 * length
    out = np.empty((keys.shape[0], blocks * block), dtype=np.int64)
    stack = np.empty(length, dtype=np.int64)
    on = np.zeros(vocab, dtype=np.bool_)  # tokens on the stack
    major = (2 * length) // 3  # the steps in which a push is the likelier operation
    for b in range(keys.shape[0]):
        state = keys[b]
        n = uint64(0)
        for k in range(blocks):
            base = k * block
            depth = 0
            for step in range(length):
                if depth <= 1:
                    push = True
                elif step == length - 1:
                    push = False
                else:
                    likelier = (mix64(state + n * GOLDEN) >> _S32) < _P_MAJOR
                    n += uint64(1)
                    push = likelier if step < major else not likelier
                if push and depth == vocab - 1:  # every token is on the stack
                    push = False
                if push:
                    t = _token(state, n, vocab)
                    n += uint64(1)
                    while on[t]:  # uniform among the tokens not on the stack
                        t = _token(state, n, vocab)
                        n += uint64(1)
                    on[t] = True
                    stack[depth] = t
                    depth += 1
                    out[b, base + step] = t
                else:
                    depth -= 1
                    on[stack[depth]] = False
                    out[b, base + step] = 0
            out[b, base + length] = vocab
            for j in range(depth):  # top first
                out[b, base + length + 1 + j] = stack[depth - 1 - j]
                on[stack[depth - 1 - j]] = False
            out[b, base + length + 1 + depth : base + block] = vocab + 1
    return out


_KERNELS = {"identity": _identity, "reverse": _reverse, "sort": _sort, "set": _set, "union": _union,
            "delete": _delete, "stack": _stack}
