"""Dyck and shuffle-Dyck streams, checked against a plain-Python reading of the languages."""

import math

import numpy as np
import pytest

from ncalab.data.dyck import (
    DyckConfig,
    continuation_validity,
    dyck_sequences,
    is_valid_prefix,
    sequence_keys,
)
from ncalab.errors import NcalabError

SIGMAS = 5.0


def py_valid(seq, k: int, shuffle: bool, depth_max: int) -> bool:
    """Straightforward checker: a list of open types; Dyck closes the last one, shuffle any one."""
    open_types: list[int] = []
    for tok in map(int, seq):
        if not 0 <= tok < 2 * k:
            return False
        if tok < k:
            if len(open_types) == depth_max:
                return False
            open_types.append(tok)
        elif shuffle:
            if tok - k not in open_types:
                return False
            open_types.remove(tok - k)
        else:
            if not open_types or open_types[-1] != tok - k:
                return False
            open_types.pop()
    return True


def py_words(seq, k: int, max_words: int | None = None) -> list[dict]:
    """Split a stream at its returns to depth 0. Each word: start, depths (before each token),
    opens (bool per token), peak (max depth), complete (returned to 0 inside the sequence)."""
    words, depth = [], 0
    for t, tok in enumerate(map(int, seq)):
        if depth == 0:
            if len(words) == max_words:
                break
            words.append({"start": t, "depths": [], "opens": [], "peak": 0, "complete": False})
        w = words[-1]
        w["depths"].append(depth)
        w["opens"].append(tok < k)
        depth += 1 if tok < k else -1
        w["peak"] = max(w["peak"], depth)
        w["complete"] = depth == 0
    return words


def climb_probability(p: float, d: int) -> float:
    """P(open) at depth d of the walk conditioned to go deeper before returning to 0 (gambler's ruin)."""
    r = (1 - p) / p
    h = (lambda x: x) if r == 1 else (lambda x: 1 - r**x)
    return p * h(d + 1) / h(d)


def within_sigmas(observed: float, expected: float, variance: float) -> bool:
    return abs(observed - expected) <= SIGMAS * math.sqrt(variance)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("cfg_kwargs", [{}, {"pairs": 2, "depth_min": 2, "depth_max": 5, "p_open": 0.6}])
def test_every_sequence_is_a_valid_prefix(shuffle, cfg_kwargs):
    cfg = DyckConfig(shuffle=shuffle, **cfg_kwargs)
    rows = dyck_sequences(cfg, 3, "train", 0, 150, 1024)
    assert rows.shape == (150, 1024) and rows.dtype == np.int64
    assert rows.min() >= 0 and rows.max() < cfg.vocab_size == 2 * cfg.pairs
    for row in rows:
        assert py_valid(row, cfg.pairs, shuffle, cfg.depth_max)
        assert is_valid_prefix(row, cfg)
    peaks = {w["peak"] for row in rows for w in py_words(row, cfg.pairs) if w["complete"]}
    assert peaks == set(range(cfg.depth_min, cfg.depth_max + 1))  # depth range covered, never exceeded


@pytest.mark.parametrize("shuffle", [False, True])
def test_word_depth_is_uniform_over_the_range(shuffle):
    cfg = DyckConfig(shuffle=shuffle)
    rows = dyck_sequences(cfg, 11, "train", 0, 3200, 2048)
    first = [py_words(row, cfg.pairs, max_words=1)[0] for row in rows]  # a word's depth is drawn before its steps
    assert all(w["complete"] for w in first)
    counts = np.bincount([w["peak"] for w in first], minlength=17)[1:]
    assert counts.shape == (16,) and counts.min() > 0
    expected = len(first) / 16
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 15 + 6 * math.sqrt(2 * 15), counts


@pytest.mark.parametrize("p_open", [0.5, 0.3])
def test_open_probability_while_wandering_and_climbing(p_open):
    """After a word first reaches its depth D, 0 < d < D opens with p_open; before, with the
    conditioned-walk probability (1 at depth 1)."""
    cfg = DyckConfig(p_open=p_open)
    rows = dyck_sequences(cfg, 5, "train", 0, 300, 2048)
    wander_opens = wander_n = 0
    climb_opens = climb_mean = climb_var = 0.0
    for row in rows:
        for w in py_words(row, cfg.pairs):
            if w["start"] >= 1024:  # later words may be cut off, and a cut word's peak is not its D
                break
            assert w["complete"]
            reached = False
            for depth, opened in zip(w["depths"], w["opens"]):
                if reached and 0 < depth < w["peak"]:
                    wander_n += 1
                    wander_opens += opened
                elif not reached and depth > 0:
                    c = climb_probability(p_open, depth)
                    climb_opens += opened
                    climb_mean += c
                    climb_var += c * (1 - c)
                reached = reached or depth + opened == w["peak"]
    assert wander_n > 50_000 and climb_mean > 10_000
    assert within_sigmas(wander_opens, p_open * wander_n, p_open * (1 - p_open) * wander_n)
    assert within_sigmas(climb_opens, climb_mean, climb_var)


@pytest.mark.parametrize("shuffle", [False, True])
def test_bracket_types_are_uniform(shuffle):
    cfg = DyckConfig(shuffle=shuffle)
    rows = dyck_sequences(cfg, 2, "val", 0, 200, 1024)
    opens = rows[rows < cfg.pairs]
    counts = np.bincount(opens, minlength=cfg.pairs)
    expected = len(opens) / cfg.pairs
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    df = cfg.pairs - 1
    assert chi2 < df + 6 * math.sqrt(2 * df)
    closes = np.bincount(rows[rows >= cfg.pairs] - cfg.pairs, minlength=cfg.pairs)
    assert np.all(closes <= counts)  # no type closes more often than it opens (rows start at depth 0)


def test_shuffle_closes_a_uniform_open_bracket_with_multiplicity():
    """Right after opening type u at depth d, the next close is u with probability (#open u)/d
    (Dyck: always). Few types make repeats common, so 'uniform over distinct types' would fail."""
    for shuffle in (False, True):
        cfg = DyckConfig(pairs=3, depth_min=8, depth_max=12, shuffle=shuffle)
        rows = dyck_sequences(cfg, 9, "train", 0, 200, 1024)
        hits = mean = var = 0.0
        for row in rows:
            counts = [0] * cfg.pairs
            for prev, tok in zip(row[:-1], row[1:]):
                prev, tok = int(prev), int(tok)
                counts[prev % cfg.pairs] += 1 if prev < cfg.pairs else -1
                if prev < cfg.pairs <= tok:
                    p = 1.0 if not shuffle else counts[prev] / sum(counts)
                    hits += tok - cfg.pairs == prev
                    mean += p
                    var += p * (1 - p)
        if shuffle:
            assert var > 1000 and within_sigmas(hits, mean, var)
        else:
            assert hits == mean > 1000


def test_shuffle_pairs_cross_and_dyck_pairs_never_do():
    dyck = dyck_sequences(DyckConfig(), 4, "train", 0, 200, 256)
    shuffled = dyck_sequences(DyckConfig(shuffle=True), 4, "train", 0, 200, 256)
    assert all(py_valid(row, 64, False, 16) for row in dyck)
    crossing = [not py_valid(row, 64, False, 16) for row in shuffled]  # a close that is not the innermost
    assert all(py_valid(row, 64, True, 16) for row in shuffled)
    assert np.mean(crossing) > 0.9


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_sequence_is_a_pure_function_of_seed_split_and_index(shuffle):
    cfg = DyckConfig(shuffle=shuffle)
    whole = dyck_sequences(cfg, 7, "train", 0, 12, 300)
    assert np.array_equal(whole, dyck_sequences(cfg, 7, "train", 0, 12, 300))
    assert np.array_equal(whole[5:9], dyck_sequences(cfg, 7, "train", 5, 4, 300))  # any batch
    assert np.array_equal(whole[3], dyck_sequences(cfg, 7, "train", 3, 1, 300)[0])
    assert np.array_equal(whole[:, :100], dyck_sequences(cfg, 7, "train", 0, 12, 100))  # any length
    val = dyck_sequences(cfg, 7, "val", 0, 12, 300)
    other_seed = dyck_sequences(cfg, 8, "train", 0, 12, 300)
    rows = np.concatenate([whole, val, other_seed])
    assert len({row.tobytes() for row in rows}) == len(rows)


def test_train_and_val_keys_never_coincide():
    """Key i of split s is a bijection of base + 2i + s: distinct for every index below 2**62."""
    for start in (0, 1, 2**40, 2**62 - 100_000):
        train = sequence_keys(123, "train", start, 100_000)
        val = sequence_keys(123, "val", start, 100_000)
        assert train.min() >= 0 and val.min() >= 0
        assert len(np.unique(np.concatenate([train, val]))) == 200_000
    assert not np.isin(sequence_keys(124, "train", 0, 1000), sequence_keys(123, "train", 0, 1000)).any()


@pytest.mark.parametrize("shuffle", [False, True])
def test_true_next_tokens_are_always_valid_continuations(shuffle):
    cfg = DyckConfig(shuffle=shuffle)
    rows = dyck_sequences(cfg, 1, "val", 0, 64, 513)
    ok = continuation_validity(rows[:, :-1], rows[:, 1:], cfg)
    assert ok.shape == (64, 512) and ok.all()
    one = continuation_validity(rows[0, :-1], rows[0, 1:], cfg)
    assert one.shape == (512,) and one.all()


def test_known_continuations():
    k = 64
    prefix = np.array([3, 5])  # two brackets open: 3 outside, 5 inside
    for shuffle, close_outer in ((False, False), (True, True)):
        cfg = DyckConfig(shuffle=shuffle)

        def after(n, token, cfg=cfg):  # is `token` valid after the first n prefix tokens?
            pred = np.zeros(len(prefix), dtype=np.int64)
            pred[n - 1] = token
            return bool(continuation_validity(prefix, pred, cfg)[n - 1])

        assert after(2, k + 5) and after(2, 17) and after(1, k + 3)
        assert after(2, k + 3) == close_outer  # crossing: allowed only in shuffle-Dyck
        assert not after(2, k + 4) and not after(1, k + 5)  # type not open
        assert not after(2, -1) and not after(2, 2 * k)  # out of range
    cfg = DyckConfig(depth_max=2)
    assert not continuation_validity(prefix, np.array([0, 7]), cfg)[1]  # would exceed depth_max
    stream = np.array([3, k + 3])  # a word ended: a new one may start, nothing may close
    assert continuation_validity(stream, np.array([0, 9]), cfg)[1]
    assert not continuation_validity(stream, np.array([0, k + 3]), cfg)[1]
    broken = np.array([3, k + 4, 1])  # invalid prefix: nothing continues it
    assert continuation_validity(broken, np.array([k + 3, 2, 2]), cfg).tolist() == [True, False, False]


@pytest.mark.parametrize("shuffle", [False, True])
def test_continuation_validity_matches_the_python_checker(shuffle):
    cfg = DyckConfig(pairs=3, depth_min=1, depth_max=4, shuffle=shuffle)
    rng = np.random.default_rng(0)
    prefix = dyck_sequences(cfg, 0, "train", 0, 40, 60)
    prefix[::4, 30] = rng.integers(0, 6, prefix[::4, 30].shape)  # some prefixes become invalid
    pred = rng.integers(-1, 7, prefix.shape)
    ok = continuation_validity(prefix, pred, cfg)
    expected = [[py_valid(list(p[: t + 1]) + [q[t]], 3, shuffle, 4) for t in range(60)] for p, q in zip(prefix, pred)]
    assert ok.tolist() == expected
    assert 0.2 < ok.mean() < 0.8  # a real mix of valid and invalid predictions
    for seq in rng.integers(0, 6, (300, 8)):
        assert is_valid_prefix(seq, cfg) == py_valid(seq, 3, shuffle, 4)


@pytest.mark.parametrize(
    "kwargs, seq_len",
    [
        ({"pairs": 0}, None),
        ({"depth_min": 0}, None),
        ({"depth_min": 5, "depth_max": 4}, None),
        ({"p_open": 0.0}, None),
        ({"p_open": 1.0}, None),
        ({"p_open": -0.2}, None),
        ({"depth_min": 3, "depth_max": 3}, 4),  # a depth-3 word needs 6 tokens; a row holds 5
    ],
)
def test_bad_configs_raise_one_line_errors(kwargs, seq_len):
    with pytest.raises(NcalabError) as err:
        DyckConfig(**kwargs).validate(seq_len)
    assert "\n" not in str(err.value) and str(err.value)
    if seq_len is None:
        with pytest.raises(NcalabError):
            dyck_sequences(DyckConfig(**kwargs), 0, "train", 0, 1, 16)


def test_config_edges_and_bad_arguments():
    DyckConfig(depth_min=3, depth_max=3).validate(5)  # exactly fits
    DyckConfig().validate(1024)
    cfg = DyckConfig()
    for args in (("test", 0, 1, 8), ("train", -1, 1, 8), ("train", 0, -1, 8), ("train", 0, 1, 0)):
        with pytest.raises(NcalabError):
            dyck_sequences(cfg, 0, *args)
    assert dyck_sequences(cfg, 0, "train", 0, 0, 8).shape == (0, 8)
    with pytest.raises(NcalabError):
        continuation_validity(np.zeros((2, 3)), np.zeros((2, 4)), cfg)
