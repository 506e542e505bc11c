"""Skill probes (ncalab/evaluation/probes.py, ncalab/experiment/probing.py): items are pure
functions of the seed and their answers are right; a model handed the answers scores 1.0 and a
uniform random one scores chance; a stored experiment's probes run again give the same scores;
bad requests fail in one line and store nothing."""

import json
import math

import pytest
import torch
from conftest import cli, cli_fails, cli_json

from ncalab.config.sections import PROBE_NAMES
from ncalab.evaluation.probes import (
    PROBES,
    Addition,
    IdVocabulary,
    Recall,
    TokenizerVocabulary,
    items,
    run_probe,
    symbols_for,
)

VOCAB = 1000  # the models' vocabulary: far more ids than any answer alphabet


def oracle(its):
    """A model handed the answers: at each position, logits one-hot on the item's next token."""
    def forward(ids, positions):
        out = torch.zeros(ids.shape[0], len(positions), VOCAB)
        for r in range(ids.shape[0]):
            row = ids[r].tolist()
            it = next(it for it in its if list(it.tokens[:max(it.answers)]) == row[:max(it.answers)])
            for j, p in enumerate(positions.tolist()):
                if p + 1 < len(it.tokens):
                    out[r, j, it.tokens[p + 1]] = 1.0
        return out
    return forward


def uniform(seed=0):
    """A model whose logits are independent uniform draws: its argmax over any alphabet is uniform."""
    g = torch.Generator().manual_seed(seed)
    return lambda ids, positions: torch.rand(ids.shape[0], len(positions), VOCAB, generator=g)


def test_the_config_names_every_probe():
    assert tuple(PROBES) == PROBE_NAMES


@pytest.mark.parametrize("name", list(PROBES))
def test_items_are_pure_functions_of_the_seed_and_their_answers_are_right(name):
    probe = PROBES[name]
    sym = symbols_for(probe, IdVocabulary(VOCAB))
    length = probe.default_length(128)
    first = items(probe, sym, 7, 12, length)
    assert first == items(probe, sym, 7, 12, length)  # the same again
    assert first[:5] == items(probe, sym, 7, 5, length)  # item i does not depend on how many are drawn
    assert first != items(probe, sym, 8, 12, length)  # another seed, other items
    for it in first:
        assert len(it.tokens) <= length and it.answers and all(0 < p < len(it.tokens) for p in it.answers)
        answers = [it.tokens[p] for p in it.answers]
        assert set(answers) <= set(sym.alphabet)
        assert _solve(name, sym, it, length) == answers


def _solve(name, sym, it, length):
    """Each probe's answers worked out from its prompt alone."""
    t = list(it.tokens)
    if name == "recall":
        k = Recall.shape(len(sym["keys"]), length)[0]
        block = k + 1
        query = t[-block:-1]
        found = [t[i + k] for i in range(0, len(t) - block, block) if t[i:i + k] == query]
        assert len(found) == 1  # every key once
        return found
    if name == "copy":
        m = len(t) // 2
        assert t[:m] == t[m:]
        return t[m + 1:]
    if name == "brackets":
        stack = []
        for tok in t[:-1]:
            if tok in sym["opening"]:
                stack.append(sym["opening"].index(tok))
            else:
                assert sym["closing"].index(tok) == stack.pop()  # the prefix is well nested
        return [sym["closing"][stack[-1]]]
    if name == "addition":
        digit = {d: i for i, d in enumerate(sym["digits"])}
        base = len(sym["digits"])
        question = t[max(i for i, x in enumerate(t) if x == sym["newline"][0]) + 1:it.answers[0]]
        plus, eq = question.index(sym["plus"][0]), question.index(sym["equals"][0])

        def value(ds):
            return sum(digit[d] * base ** i for i, d in enumerate(reversed(ds)))

        total = value(question[:plus]) + value(question[plus + 1:eq])
        out = []
        while total or not out:
            total, d = divmod(total, base)
            out.append(sym["digits"][d])
        assert t.count(sym["newline"][0]) == 4  # the stated few-shot prompt: 4 worked examples
        return out[::-1]
    raise AssertionError(name)


@pytest.mark.parametrize("name", list(PROBES))
def test_a_model_handed_the_answers_scores_one(name):
    probe = PROBES[name]
    vocab = IdVocabulary(VOCAB)
    sym = symbols_for(probe, vocab)
    its = items(probe, sym, 0, 40, probe.default_length(256))
    score = run_probe(oracle(its), probe, vocab, 256, 0, 40, batch_size=16)
    assert score.accuracy == 1.0 and score.exact == 1.0 and len(score.items) == 40


@pytest.mark.parametrize("name", list(PROBES))
def test_a_uniform_random_model_scores_chance(name):
    """Each answer token is right with probability 1/|alphabet|, independently: the count right
    over N answer tokens is Binomial(N, p); it must lie within 4 standard deviations of N p (a
    correct scorer fails this about once in 16,000 seeds; an argmax over the whole vocabulary,
    or a chance level of the wrong alphabet, fails it every time)."""
    probe = PROBES[name]
    score = run_probe(uniform(), probe, IdVocabulary(VOCAB), 128, 0, 600)
    p = score.chance
    assert p == 1 / len(symbols_for(probe, IdVocabulary(VOCAB)).alphabet)
    n = sum(s.tokens for s in score.items)
    right = sum(s.correct for s in score.items)
    assert abs(right - n * p) <= 4 * math.sqrt(n * p * (1 - p)), (right, n, p)
    # exact match: items all of whose tokens are right, each with probability p ** tokens
    expected = sum(p ** s.tokens for s in score.items)
    exact = sum(s.exact for s in score.items)
    assert abs(exact - expected) <= 4 * math.sqrt(expected) + 1, (exact, expected)
    assert score.chance_exact == pytest.approx(expected / len(score.items))


def test_a_small_vocabulary_gives_fewer_symbols_or_none():
    """Dyck with 2 bracket pairs (4 ids): brackets are Dyck's own (opening j, closing 2 + j),
    recall keeps 2 values (chance 1/2) with longer keys, addition needs 5 ids: not applicable."""
    vocab = IdVocabulary(4)
    b = symbols_for(PROBES["brackets"], vocab)
    assert b["opening"] == (0, 1) and b["closing"] == (2, 3)
    recall = run_probe(uniform(), PROBES["recall"], vocab, 64, 0, 8)
    assert recall.alphabet == 2 and recall.chance == 0.5 and len(recall.items) == 8
    addition = run_probe(uniform(), PROBES["addition"], vocab, 64, 0, 8)
    assert addition.not_applicable and not addition.items and math.isnan(addition.accuracy)
    base5 = symbols_for(Addition(), IdVocabulary(8))  # 3 marks from the top, 5 digits: addition in base 5
    assert base5["digits"] == (0, 1, 2, 3, 4) and base5["plus"] == (7,)


class CharTokenizer:
    """A tokenizer of one token per character, except for the characters in `merged` (two tokens)."""

    def __init__(self, merged=""):
        self.merged = merged

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text for _ in range(2 if c in self.merged else 1)]

    def __len__(self):
        return 256


def test_a_tokenizer_vocabulary_uses_one_token_strings_only():
    vocab = TokenizerVocabulary(CharTokenizer(merged="abc"), 256)
    recall = symbols_for(PROBES["recall"], vocab)
    assert recall["values"] == tuple(map(ord, "0123456789")) and recall["keys"] == tuple(map(ord, "defghijklmnopqrstuvwxyz"))
    score = run_probe(uniform(), PROBES["addition"], TokenizerVocabulary(CharTokenizer(merged="+"), 256), 64, 0, 4)
    assert score.not_applicable and "'+'" in score.not_applicable


# ---- on a stored experiment (the micro experiment of conftest: tiny runs every probe) -----------

def _probe_state(home):
    from ncalab.store import RunStore

    with RunStore(home) as store:
        (exp,) = store.list_experiments()
        runs = store.runs_of(exp.id)
        metrics = {r.kind: {k: v for k, v in store.latest_metrics(r.id).items() if k.startswith("probe:")} for r in runs}
        rows = {r.kind: [(i.item, i.subtask, i.samples, i.correct, i.choices, i.detail_json) for i in store.eval_items(r.id)]
                for r in runs}
    return exp.id, metrics, rows


def test_probes_of_a_stored_experiment_run_again_give_identical_scores(micro_home, capsys):
    home = micro_home
    exp_id, before, rows = _probe_state(home)
    # the pipeline probed the five models (tiny runs every probe by default), each item stored
    for kind, whens in (("stage1", ("end",)), ("nca", ("start", "end")), ("scratch", ("start", "end"))):
        for name in PROBES:
            for when in whens:
                for m in ("acc", "exact", "chance", "chance_exact"):
                    assert f"probe:{name}:{when}:{m}" in before[kind]
                assert sum(r[1] == f"probe:{name}:{when}" for r in rows[kind]) == 64
    res = cli_json(capsys, "eval", exp_id, "--probes", "--home", home, stderr="")
    assert [(m["kind"], m["when"]) for m in res["models"]] == [("stage1", "end"), ("nca", "start"), ("nca", "end"),
                                                              ("scratch", "start"), ("scratch", "end")]
    _, after, rows_after = _probe_state(home)
    assert after == before and rows_after == rows  # the start models made again are the ones stage 2 started from
    for m in res["models"]:
        for name, s in m["scores"].items():
            assert s["acc"] == before[m["kind"]][f"probe:{name}:{m['when']}:acc"]
    # runs show puts each score beside its chance level
    code, out, _ = cli(capsys, "runs", "show", exp_id, "--home", home)
    assert code == 0 and "skill probes" in out and "chance" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("brackets"))
    assert "0.250" in line  # 4 bracket pairs: chance 1/4


def test_bad_probe_requests_fail_in_one_line_and_store_nothing(micro_home, capsys):
    home = micro_home
    exp_id, before, rows = _probe_state(home)
    for args, words in (((("--probe", "nope")), "unknown probe 'nope'"),
                        (("--probes", "--length", "5000"), "does not fit the")):
        err = cli_fails(capsys, "eval", exp_id, *args, "--home", home)
        assert words in err and len(err.strip().splitlines()) == 1, err
    assert _probe_state(home) == (exp_id, before, rows)
    # an experiment asking for them: refused before anything is stored
    for setting, words in (("eval.probes.names=nope", "unknown probe"), ("eval.probes.length=5000", "does not fit")):
        err = cli_fails(capsys, "run", "--home", home / "other", "--set", setting)
        assert words in err and len(err.strip().splitlines()) == 1, err
    assert not (home / "other").exists() or json.loads(cli(capsys, "runs", "list", "--home", home / "other",
                                                           "--json")[1])["experiments"] == []
