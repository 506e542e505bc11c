"""The procedural sources of Jiang et al. 2026 (identity, reverse, sort, set, union, delete,
stack): each example read back from its separator layout and checked against the task's
definition, computed here independently; purity in the seed; the loss on outputs only; bad
settings as one line through the CLI; and one micro experiment end to end."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import MICRO, cli, cli_json
from hypothesis import given, settings
from hypothesis import strategies as st

from ncalab.config import ExperimentConfig, apply_overrides
from ncalab.config.keys import help_of
from ncalab.data.procedural import TASKS, procedural_sequences
from ncalab.sources.interface import SOURCES
from ncalab.store import RunStore

MIN = {"union": 2, "stack": 3}


def _layout(task: str, length: int) -> tuple[list[int], int, int]:
    """(separator positions, where the output begins, block size) of one example, by the paper's formats."""
    h = length // 2
    if task == "union":
        return [h, 2 * h + 1], 2 * h + 2, 2 * h + 2 + length
    if task == "delete":
        return [length, length + 2], length + 3, 2 * length + 3
    return [length], length + 1, 2 * length if task == "stack" else 2 * length + 1


def examples(task: str, length: int, vocab: int, seq: np.ndarray) -> list[dict]:
    """The whole examples of a sequence, each parsed from its block: its input part(s), output
    (up to the first pad) and trailing pads; asserts the separators and pads are where they belong."""
    seps, out_at, block = _layout(task, length)
    sep, pad, found = vocab, vocab + 1, []
    for k in range(len(seq) // block):
        ex = seq[k * block:(k + 1) * block].tolist()
        assert [i for i, t in enumerate(ex[:out_at]) if t == sep] == seps, ex
        tail = ex[out_at:]
        assert sep not in tail
        cut = tail.index(pad) if pad in tail else len(tail)
        assert set(tail[cut:]) <= {pad}, ex  # pads only after the output
        out = tail[:cut]
        if task == "union":
            found.append({"a": ex[:seps[0]], "b": ex[seps[0] + 1:seps[1]], "out": out})
        elif task == "delete":
            found.append({"x": ex[:length], "d": ex[length + 1], "out": out})
        else:
            found.append({"x": ex[:length], "out": out})
    return found


def first_occurrences(tokens: list[int]) -> list[int]:
    seen, out = set(), []
    for t in tokens:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def check(task: str, ex: dict, length: int, vocab: int) -> None:
    """An example against its task's definition."""
    inputs = ex["a"] + ex["b"] if task == "union" else ex["x"]
    if task == "stack":  # operations: pop 0, push a token 1..vocab-1
        assert all(0 <= t < vocab for t in inputs)
    else:
        assert all(1 <= t < vocab for t in inputs)
    x, out = ex.get("x"), ex["out"]
    if task == "identity":
        assert out == x
    elif task == "reverse":
        assert out[::-1] == x
    elif task == "sort":
        assert out == sorted(out) and Counter(out) == Counter(x)
    elif task == "set":
        assert out == first_occurrences(x) and len(set(out)) == len(out) and set(out) == set(x)
    elif task == "union":
        assert out == first_occurrences(ex["a"] + ex["b"]) and len(set(out)) == len(out)
        assert len(ex["a"]) == len(ex["b"]) == length // 2
    elif task == "delete":
        d = ex["d"]
        assert 1 <= d < vocab
        removed = Counter(x) - Counter(out)
        assert removed == (Counter({d: 1}) if d in x else Counter()) and not Counter(out) - Counter(x)
        if d in x:  # the first occurrence goes, the rest keep their order
            i = x.index(d)
            assert out == x[:i] + x[i + 1:]
        else:
            assert out == x
    elif task == "stack":
        stack = []
        for step, op in enumerate(x):
            if op == 0:
                assert len(stack) >= 2  # the paper pops only with more than one token on the stack
                stack.pop()
            else:
                assert op not in stack  # a push draws among the tokens not on the stack
                stack.append(op)
            if step == length - 1 and op != 0:
                assert len(stack) <= 2  # the last step pops unless at most one token was on the stack
        assert out == stack[::-1] and stack  # what the operations leave, top first


@st.composite
def task_settings(draw, task=None):
    task = task or draw(st.sampled_from(TASKS))
    length = draw(st.integers(MIN.get(task, 1), 40))
    vocab = draw(st.sampled_from([3, 4, 5, 10, 100, 1000]))
    return task, length, vocab


@settings(max_examples=150, deadline=None)
@given(task_settings(), st.integers(0, 2**31), st.sampled_from(["train", "val"]), st.integers(0, 1000),
       st.integers(1, 3), st.integers(0, 200))
def test_every_example_is_its_tasks_output_in_the_papers_layout(setting, seed, split, start, count, extra):
    task, length, vocab = setting
    size = 3 * _layout(task, length)[2] + extra  # whole examples, then a cut one
    seqs = procedural_sequences(task, length, vocab, seed, split, start, count, size)
    assert seqs.shape == (count, size) and seqs.dtype == np.int64
    assert seqs.min() >= 0 and seqs.max() < vocab + 2 == SOURCES[task].vocab_size(cfg_of(task, length, vocab))
    for seq in seqs:
        found = examples(task, length, vocab, seq)
        assert len(found) >= 3
        for ex in found:
            check(task, ex, length, vocab)


@pytest.mark.parametrize("task", TASKS)
def test_the_papers_defaults_make_its_examples(task):
    """vocab_size 100 and seq_length 64 of the paper's configs; examples of 129-131 tokens (128 for stack)."""
    cfg = cfg_of(task)
    s = cfg.source_section(task)
    assert (s.vocab_size, s.length) == (100, 64) and SOURCES[task].vocab_size(cfg) == 102
    seqs = SOURCES[task].sequences(cfg, "train", 0, 8, cfg.stage1_seq_len + 1)
    found = [ex for seq in seqs for ex in examples(task, 64, 100, seq)]
    assert len(found) == 8 * ((cfg.stage1_seq_len + 1) // _layout(task, 64)[2])
    for ex in found:
        check(task, ex, 64, 100)
    assert all(help_of(cfg, f"{task}.{key}") for key in ("vocab_size", "length"))


@settings(max_examples=40, deadline=None)
@given(task_settings(), st.integers(0, 2**31), st.integers(0, 500))
def test_a_sequence_is_a_pure_function_of_seed_split_and_index(setting, seed, start):
    task, length, vocab = setting
    size = 2 * _layout(task, length)[2] + 5

    def make(seed=seed, split="train", start=start, count=4, size=size):
        return procedural_sequences(task, length, vocab, seed, split, start, count, size)

    a = make()
    assert np.array_equal(a, make())
    assert np.array_equal(a[2:], make(start=start + 2, count=2))  # whichever batch makes it
    assert np.array_equal(a[:, :size - 7], make(size=size - 7))  # a shorter sequence is a prefix
    if vocab >= 10 and length >= 4:  # enough randomness that a collision is out of the question
        assert not np.array_equal(a, make(seed=seed + 1))
        assert not np.array_equal(a, make(split="val"))


def cfg_of(task: str, length: int | None = None, vocab: int | None = None, **stage1) -> ExperimentConfig:
    section = {k: v for k, v in (("length", length), ("vocab_size", vocab)) if v is not None}
    return apply_overrides(ExperimentConfig(), {"stage1": {"source": task, **stage1}, task: section}).validate()


@pytest.mark.parametrize("task", TASKS)
def test_the_loss_is_on_the_output_tokens_only_and_the_stream_resumes(task):
    cfg = cfg_of(task, 12, 20, batch_size=4, val_sequences=4)
    source = SOURCES[task]
    data = source.open(cfg, Path("/nonexistent"), lambda _: None)
    assert data.vocab_size == 22
    seqs = source.sequences(cfg, "train", 0, 4, cfg.stage1_seq_len + 1)
    inputs, targets = (t.numpy() for t in data.batches.next())
    assert np.array_equal(inputs, seqs[:, :-1])
    _, out_at, block = _layout(task, 12)
    pos = np.arange(1, seqs.shape[1]) % block
    output = (pos >= out_at)[None, :] & (seqs[:, 1:] != 21)  # output tokens, not pads
    assert np.array_equal(targets != -100, output)
    assert np.array_equal(targets[output], seqs[:, 1:][output]) and output.any()
    val_inputs, val_targets = data.validation[0]
    assert np.array_equal(val_inputs.numpy(), source.sequences(cfg, "val", 0, 4, cfg.stage1_seq_len + 1)[:, :-1])
    assert ((val_targets.numpy() == -100) | (val_targets.numpy() < 22)).all() and (val_targets.numpy() == -100).any()
    state = data.batches.state_dict()
    after = data.batches.next()
    data.batches.load_state_dict(state)
    assert all(np.array_equal(p.numpy(), q.numpy()) for p, q in zip(after, data.batches.next(), strict=True))


@pytest.mark.parametrize("sets, message", [
    (["stage1.source=sort", "sort.length=0"], "sort: length must be in [1, 4096], got 0"),
    (["stage1.source=stack", "stack.length=2"], "stack: length must be in [3, 4096], got 2"),
    (["stage1.source=union", "union.length=1"], "union: length must be in [2, 4096], got 1"),
    (["stage1.source=set", "set.vocab_size=2"], "set: vocab_size must be in [3, 65536], got 2"),
    (["stage1.source=identity", "identity.vocab_size=100000"], "identity: vocab_size must be in [3, 65536]"),
    (["stage1.source=delete", "delete.length=200"], "delete: an example of length 200 has its output from token 204"),
    (["stage1.source=reverse", "reverse.length=ten"], "--set reverse.length: expected an integer, got 'ten'"),
])
def test_bad_settings_are_one_line_and_store_nothing(tmp_path, capsys, code_corpus, sets, message):
    home = tmp_path / "h"
    args = [a for s in sets for a in ("--set", s)]
    code, _, err = cli(capsys, "run", "--corpus", str(code_corpus), "--home", str(home), *MICRO, *args)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and not home.exists()


def test_a_procedural_source_pre_pre_trains_and_transfers(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    s = cli_json(capsys, "run", "--corpus", str(code_corpus), "--home", str(home), *MICRO,
                 "--set", "stage1.source=sort", "--set", "sort.length=16", "--set", "sort.vocab_size=30",
                 "--set", "stage2.tokens=8192")
    assert s["source"] == "sort" and s["ppl_nca"] > 0
    c = s["compute"]["stage1"]
    assert (c["params"] - c["params_no_embeddings"]) // (2 * 32) == 32  # embedding and head of 30 + 2 tokens
    store = RunStore(home)
    exp = store.get_experiment(s["experiment_id"])
    assert exp.status == "completed"
    import json

    assert json.loads(exp.config_json)["sort"] == {"vocab_size": 30, "length": 16}
    runs = {r.kind: r for r in store.runs_of(exp.id)}
    _, loss = store.curve(runs["stage1"].id, "val_loss")
    assert np.isfinite(loss).all() and loss[-1] < loss[0]
