"""`ncalab match`: a corpus measured with the bands' gzip statistic, the band it recommends,
and `stage1.band=match` in a run."""

import itertools
import json

import numpy as np
import pytest
from conftest import GSM8K, WIKITEXT, cli_json

from ncalab.cli.main import main
from ncalab.data import match as m
from ncalab.errors import NcalabError
from ncalab.nca.bands import Band
from ncalab.nca.complexity import gzip_ratio


def test_the_anchors_map_to_the_bands_the_paper_reports():
    assert m.recommend(m.ANCHORS["code"]) == Band(0.3, 0.4)
    assert m.recommend(m.ANCHORS["web"]) == m.recommend(m.ANCHORS["math"]) == Band(0.5, 1.0)
    grid = np.linspace(0.0, 0.7, 141)
    mapped = [m.mapped_score(x) for x in grid]
    assert all(a <= b for a, b in itertools.pairwise(mapped))  # monotone
    assert m.recommend(0.1) == Band(0.3, 0.4) and m.recommend(0.69) == Band(0.5, 1.0)  # flat beyond the anchors
    between = (m.ANCHORS["code"] + m.ANCHORS["math"]) / 2
    assert m.recommend(between) == Band(0.4, 0.5)
    assert m.nearest_domains(Band(0.5, 1.0)) == ["math", "web"]


def test_the_corpus_statistic_is_the_band_tests_gzip_ratio_on_each_window():
    ids = np.random.default_rng(0).integers(0, 4096, size=360 * 9 + 17)
    scores = m.window_scores(ids, 360)
    assert len(scores) == 9
    assert scores == pytest.approx([gzip_ratio(ids[i * 360:(i + 1) * 360]) for i in range(9)])
    docs = [list(range(100))] * 40  # 40 documents of 100 tokens and an end-of-text token each
    cs = m.measure(docs, 4095, 360, max_windows=8)
    assert cs.tokens_read == 8 * 360 and len(cs.scores) == 8
    with pytest.raises(NcalabError, match="has 505 tokens, 1 windows of 360; match needs at least 8 windows"):
        m.measure(docs[:5], 4095, 360)


def test_match_prints_a_table_a_plot_and_the_numbers(tmp_path, capsys):
    home = str(tmp_path / "h")
    assert main(["match", "--corpus", str(WIKITEXT), "--home", home, "--rules", "200"]) == 0
    out = capsys.readouterr().out
    for text in ("corpus ", "NCA rules ", "200 NCA rules", "WikiText-2 valid", "python-stdlib", "recommended band: 0.5-1",
                 "gzip score"):
        assert text in out
    res = cli_json(capsys, "match", "--corpus", str(WIKITEXT), "--home", home, "--rules", "200")
    assert res["window"] == 360 and res["windows"] == len(res["scores"]) >= m.MIN_WINDOWS
    assert sum(res["statistic"]["bins"].values()) == pytest.approx(1.0)
    assert res["statistic"]["median"] == pytest.approx(float(np.median(res["scores"])))
    assert len(res["nca"]["scores"]) == 200 and res["band"] == [0.5, 1.0] and res["like"] == ["math", "web"]
    assert res["anchors"]["code"]["band"] == [0.3, 0.4]
    # GSM8K's excerpt: math, the same band
    assert cli_json(capsys, "match", "--corpus", str(GSM8K), "--home", home, "--rules", "50")["band"] == [0.5, 1.0]


# slow (end to end); the fast suite keeps test_match_prints_a_table_a_plot_and_the_numbers and the
# band choice on WikiText and GSM8K
@pytest.mark.slow
def test_match_on_the_shipped_code_corpus_recommends_the_code_band(tmp_path, capsys):
    res = cli_json(capsys, "match", "--corpus", "python-stdlib", "--home", str(tmp_path), "--rules", "50")
    assert res["band"] == [0.3, 0.4] and res["like"] == ["code"]
    assert res["statistic"]["median"] == pytest.approx(m.ANCHORS["code"], abs=0.01)


@pytest.mark.parametrize("content, says", [
    ("", "is empty (0 bytes)"),
    ("\n  \n\n", "has no text"),
    ('{"text": "a"}\n{not json\n', "cannot read corpus"),
    ("a few words, nowhere near enough tokens.\n", "match needs at least 8 windows"),
])
def test_a_corpus_that_cannot_be_matched_is_one_line(tmp_path, capsys, content, says):
    path = tmp_path / ("c.jsonl" if content.startswith("{") else "c.txt")
    path.write_text(content)
    assert main(["match", "--corpus", str(path), "--home", str(tmp_path / "h")]) != 0
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and err.startswith("error:")


def test_match_of_a_missing_corpus_is_one_line(tmp_path, capsys):
    assert main(["match", "--corpus", str(tmp_path / "nowhere"), "--home", str(tmp_path)]) == 1
    assert "not found" in capsys.readouterr().err


def _config(capsys, *args) -> dict:
    assert main(["run", *args, "--print-config"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_run_with_band_match_stores_the_recommended_band(tmp_path, capsys):
    home = ["--home", str(tmp_path)]
    cfg = _config(capsys, "--preset", "code", "--corpus", str(WIKITEXT), "--set", "stage1.band=match", *home)
    assert cfg["stage1"]["band"] == [0.5, 1.0]  # web text: the 50%+ band, though the preset is code's
    # the last --set of the band wins
    cfg = _config(capsys, "--corpus", str(WIKITEXT), "--set", "stage1.band=match", "--set", "stage1.band=0.2:0.3", *home)
    assert cfg["stage1"]["band"] == [0.2, 0.3]
    # a config file may ask for it too
    conf = tmp_path / "c.toml"
    conf.write_text('[stage1]\nband = "match"\n')
    assert _config(capsys, "--corpus", str(WIKITEXT), "--config", str(conf), *home)["stage1"]["band"] == [0.5, 1.0]
    assert main(["run", "--corpus", str(WIKITEXT), "--set", "stage1.band=match", "--set", "stage1.source=dyck",
                 "--print-config", *home]) == 1
    assert "picks an NCA band" in capsys.readouterr().err


def test_the_matched_band_is_in_the_reuse_key_as_the_band_it_resolved_to(tmp_path):
    from ncalab.experiment.reuse import run_keys
    from ncalab.services.config import resolve_config
    from ncalab.train.device import choose

    cpu = choose("cpu", "fp32")
    matched = resolve_config("code", "tiny", sets=["stage1.band=match"], corpus=str(WIKITEXT), home=tmp_path)
    given = resolve_config("code", "tiny", sets=["stage1.band=0.5:1"], corpus=str(WIKITEXT), home=tmp_path)
    default = resolve_config("code", "tiny", corpus=str(WIKITEXT), home=tmp_path)
    assert run_keys(matched, cpu) == run_keys(given, cpu) != run_keys(default, cpu)
