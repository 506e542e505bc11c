"""The `eca` source: known rules exactly, the generator against the reference step, the paper's
serialisation (rows of cells as patch tokens), determinism by global index and the settings."""

import math

import numpy as np
import pytest

from ncalab.data.eca import WOLFRAM_CLASSES, ECASettings, decode_rows, eca_sequences, evolve, sequence_rules
from ncalab.errors import NcalabError
from ncalab.services.config import resolve_config


def _single_cell(width=101):
    row = np.zeros(width, dtype=np.uint8)
    row[width // 2] = 1
    return row


def test_rule_30_centre_column_is_the_known_sequence():
    grid = evolve(30, _single_cell(), 40)
    # OEIS A051023, the centre column of rule 30 from one live cell
    assert "".join(map(str, grid[:25, 50])) == "1101110011000101100100111"
    left, right = np.roll(grid[:-1], 1, axis=1), np.roll(grid[:-1], -1, axis=1)
    assert np.array_equal(grid[1:], left ^ (grid[:-1] | right))  # rule 30 = left xor (centre or right)


def test_rule_90_from_one_cell_is_pascals_triangle_mod_2():
    steps, mid = 40, 50
    grid = evolve(90, _single_cell(), steps)
    for t in range(steps + 1):
        want = [math.comb(t, (t + x) // 2) % 2 if (t + x) % 2 == 0 and abs(x) <= t else 0 for x in range(-mid, mid + 1)]
        assert grid[t].tolist() == want


def test_rule_184_keeps_the_number_of_ones_in_every_generated_sequence():
    s = ECASettings(rules=[184], width=60, world=60, steps=200, patch=1)
    seqs = eca_sequences(s, 3, "train", 0, 8, 60 * 40)
    for seq in seqs:
        rows = decode_rows(seq, s)
        assert len(set(rows.sum(axis=1).tolist())) == 1 and rows.shape == (40, 60)


@pytest.mark.parametrize("rule", [30, 54, 90, 110, 184])
@pytest.mark.parametrize("boundary", ["periodic", "fixed"])
def test_generated_rows_follow_the_rule_step_by_step(rule, boundary):
    s = ECASettings(rules=[rule], width=48, world=48, steps=300, interval=1, boundary=boundary, patch=4)
    seq = eca_sequences(s, 0, "val", 5, 1, 12 * 30)[0]
    rows = decode_rows(seq, s)
    assert np.array_equal(rows, evolve(rule, rows[0], len(rows) - 1, periodic=boundary == "periodic"))


def test_interval_takes_every_kth_row_and_a_window_is_cut_from_the_world():
    s = ECASettings(rules=[110], width=20, world=20, steps=400, interval=3, patch=4)
    rows = decode_rows(eca_sequences(s, 1, "train", 0, 1, 5 * 30)[0], s)
    assert np.array_equal(rows, evolve(110, rows[0], 3 * 29)[::3])
    wide = ECASettings(rules=[110], width=20, world=200, steps=400, patch=4)
    assert decode_rows(eca_sequences(wide, 1, "train", 0, 1, 150)[0], wide).shape == (30, 20)


def test_tokens_are_patches_of_cells_first_cell_highest_bit():
    s = ECASettings(rules=[90], width=10, world=10, patch=5, steps=50)
    seq = eca_sequences(s, 0, "train", 0, 1, 20)[0]
    rows = decode_rows(seq, s)
    assert seq[0] == int("".join(map(str, rows[0, :5])), 2) and seq[1] == int("".join(map(str, rows[0, 5:])), 2)
    assert seq.max() < s.vocab_size == 32


def test_sequences_are_pure_functions_of_their_index_and_split():
    s = ECASettings()
    whole = eca_sequences(s, 7, "train", 0, 6, 257)
    assert np.array_equal(whole[3:5], eca_sequences(s, 7, "train", 3, 2, 257))
    assert not np.array_equal(whole[:2], eca_sequences(s, 7, "val", 0, 2, 257))
    assert not np.array_equal(whole[:2], eca_sequences(s, 8, "train", 0, 2, 257))


def test_rules_are_drawn_per_sequence_from_the_set_or_the_class():
    assert sum(len(r) for r in WOLFRAM_CLASSES.values()) == 88
    assert set(sequence_rules(ECASettings(rules=[30, 110]), 0, "train", 0, 200).tolist()) == {30, 110}
    assert set(sequence_rules(ECASettings(rule_class=3), 0, "train", 0, 500).tolist()) == set(WOLFRAM_CLASSES[3])


@pytest.mark.parametrize("item, message", [
    ("eca.rules=300", "rules are numbers 0-255"), ("eca.rule_class=5", "rule_class must be 1, 2, 3 or 4"),
    ("eca.boundary=open", "boundary must be one of periodic, fixed"), ("eca.world=50", "must hold a row"),
    ("eca.steps=10", "spans"),
])
def test_bad_settings_are_one_line(item, message):
    with pytest.raises(NcalabError, match=message):
        resolve_config("code", "tiny", None, ["stage1.source=eca", item])
