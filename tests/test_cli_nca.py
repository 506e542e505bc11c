"""`ncalab nca ...` from a user's side: outputs, files, and one-line errors for bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import cli_fails, cli_json

from ncalab.cli.main import main
from ncalab.nca.corpus import NCACorpus
from ncalab.nca.engine import RuleBatch
from ncalab.nca.stream import frames_to_sequences


def test_complexity_json(capsys):
    res = cli_json(capsys, "nca", "complexity", "--rules", "500", "--seed", "1")
    assert len(res["scores"]) == 500 and len(res["deciles"]) == 9
    assert set(res["bands"]) == {"0.0-0.3", "0.3-0.4", "0.4-0.5", "0.5-1.0"}
    assert abs(sum(res["bands"].values()) - 1) < 1e-9
    assert res["deciles"] == sorted(res["deciles"])
    s = np.array(res["scores"])
    assert res["bands"]["0.5-1.0"] == pytest.approx((s >= 0.5).mean())


def test_sample_json_frames_match_engine(capsys):
    res = cli_json(capsys, "nca", "sample", "--seed", "12", "--steps", "11", "--alphabet", "4")
    frames = np.array(res["frames"])
    assert frames.shape == (11, 12, 12) and frames.max() < 4
    cfg = __import__("ncalab.nca.config", fromlist=["NCAConfig"]).NCAConfig(alphabet=4)
    assert np.array_equal(RuleBatch([12], [12], cfg).frames(11)[0], frames)
    assert 0 < res["score"] < 1 and "change_rate" in res["stats"]


def test_sample_renders_in_colour():
    proc = subprocess.run([sys.executable, "-m", "ncalab.cli.main", "nca", "sample", "--seed", "3", "--steps", "2"],
                          capture_output=True, text=True, env={"COLUMNS": "100", "FORCE_COLOR": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "▀" in proc.stdout and "\x1b[" in proc.stdout and "gzip score" in proc.stdout


def test_generate_and_stats(tmp_path, capsys):
    out = tmp_path / "corpus"
    res = cli_json(capsys, "nca", "generate", "--domain", "code", "--tokens", "20000", "--out", str(out),
                   "--seed", "4", "--val-sequences", "8")
    assert res["tokens"] == 20 * 1024 and res["rules_accepted"] >= 20 + 8
    assert res["rules_scored"] > res["rules_accepted"] and res["tokens_per_s"] > 0
    corpus = NCACorpus(out)
    assert len(corpus) == 20 and corpus[0].shape == (1025,)
    # every sequence traces back to its rule and its (fresh) initial state
    pairs = [corpus.seeds_of(i) for i in (0, 7, 19)]
    assert all(rule != start for rule, start in pairs)
    again = frames_to_sequences(RuleBatch([r for r, _ in pairs], [s for _, s in pairs], corpus.cfg).frames(27),
                                corpus.cfg)
    assert np.array_equal(again, np.stack([corpus[i] for i in (0, 7, 19)]))
    assert all(0.3 < corpus.rule_of(i)[1] < 0.4 for i in range(20))
    val = NCACorpus(out, "val")
    assert len(val) == 8 and not set(val.all_rules()["rule_seed"]) & set(corpus.all_rules()["rule_seed"])
    stats = cli_json(capsys, "nca", "stats", str(out))
    assert stats["sequences"] == 20 and stats["tokens"] == 20 * 1024 and stats["unique_rules"] == 20
    assert 0.3 < stats["score"]["mean"] < 0.4
    assert stats["distinct_tokens"] > 100 and 0 < stats["unigram_entropy_bits"] < np.log2(10_002)
    assert stats["trajectory"]["change_rate"]["mean"] > 0


def test_generate_refuses_non_empty_out_and_force_keeps_foreign_files(tmp_path, capsys):
    out = tmp_path / "c"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    err = cli_fails(capsys, "nca", "generate", "--band", "0.5:1", "--tokens", "3000", "--out", str(out))
    assert "not empty" in err and (out / "notes.txt").exists()
    cli_json(capsys, "nca", "generate", "--band", "0.5:1", "--tokens", "3000", "--out", str(out), "--force")
    assert (out / "notes.txt").read_text() == "mine" and (out / "manifest.json").exists()


@pytest.mark.parametrize("args, message", [
    (["nca", "sample", "--height", "13"], "not divisible"),
    (["nca", "sample", "--patch", "3"], "more than the limit"),
    (["nca", "complexity", "--rules", "0"], "positive"),
    (["nca", "generate", "--band", "0.5:0.4", "--tokens", "10", "--out", "X"], "lo < hi"),
    (["nca", "generate", "--band", "0.5:1.2", "--tokens", "10", "--out", "X"], "within [0, 1]"),
    (["nca", "generate", "--domain", "poetry", "--tokens", "10", "--out", "X"], "unknown domain"),
    (["nca", "generate", "--domain", "code", "--tokens", "0", "--out", "X"], "positive"),
    (["nca", "generate", "--tokens", "10", "--out", "X"], "exactly one"),
    (["nca", "sample", "--steps", "-1"], "positive"),
    (["nca", "stats", "/nonexistent/corpus"], "not a directory"),
])
def test_bad_input_is_one_line_error(capsys, args, message):
    err = cli_fails(capsys, *args)
    assert message in err and len(err.strip().splitlines()) == 1


def test_set_nca_keys_change_sample_and_generate(tmp_path, capsys):
    res = cli_json(capsys, "nca", "sample", "--seed", "12", "--steps", "5", "--set", "nca.alphabet=4")
    frames = np.array(res["frames"])
    assert res["config"]["alphabet"] == 4 and frames.max() < 4
    cfg = __import__("ncalab.nca.config", fromlist=["NCAConfig"]).NCAConfig(alphabet=4)
    assert np.array_equal(RuleBatch([12], [12], cfg).frames(5)[0], frames)
    # --set goes under the dedicated flags, as with `ncalab run`: a flag given as well wins
    both = cli_json(capsys, "nca", "sample", "--steps", "2", "--set", "nca.alphabet=4", "--alphabet", "3")
    assert both["config"]["alphabet"] == 3
    out = tmp_path / "c4"
    res = cli_json(capsys, "nca", "generate", "--band", "0:1", "--tokens", "1000", "--out", str(out), "--val-sequences", "2",
                   "--set", "nca.alphabet=4", "--set", "nca.seq_len=256")
    assert res["tokens"] == 4 * 256
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["alphabet"] == 4 and manifest["config"]["seq_len"] == 256
    corpus = NCACorpus(out)
    assert corpus.cfg.alphabet == 4 and len(corpus) == 4
    assert max(int(corpus[i].max()) for i in range(len(corpus))) < 4**4 + 2


@pytest.mark.parametrize("args, message", [
    (["nca", "sample", "--set", "stage1.lr=3e-4"], "only nca.KEY=VALUE"),
    (["nca", "complexity", "--rules", "5", "--set", "model.d_model=64"], "only nca.KEY=VALUE"),
    (["nca", "generate", "--band", "0:1", "--tokens", "10", "--out", "X", "--set", "seed=3"], "only nca.KEY=VALUE"),
    (["nca", "sample", "--set", "nca.bogus=1"], "unknown config key 'nca.bogus'"),
    (["nca", "sample", "--set", "nca.alphabet=x"], "expected an integer"),
    (["nca", "sample", "--set", "nca.alphabet"], "KEY=VALUE"),
    (["nca", "sample", "--set", "nca.alphabet=1"], "alphabet must be between"),
])
def test_bad_set_is_one_line_error(capsys, args, message):
    err = cli_fails(capsys, *args)
    assert message in err and len(err.strip().splitlines()) == 1


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = cli_fails(capsys, "nca", "generate", "--domain", "web", "--tokens", "10", "--out", str(blocker / "sub"))
    assert "cannot write" in err or "not a directory" in err


def test_every_command_has_help(capsys):
    # one real process for the entry point; the commands in this one (each process would load
    # the NCA engine again: 4-5 s apiece beside the other test worker)
    proc = subprocess.run([sys.executable, "-m", "ncalab.cli.main", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Usage" in proc.stdout
    for args in (["nca", "--help"], ["nca", "sample", "--help"], ["nca", "complexity", "--help"],
                 ["nca", "generate", "--help"], ["nca", "stats", "--help"]):
        assert main(args) == 0, args
        out = capsys.readouterr().out
        assert "Usage" in out and args[-2] in out, args


def test_every_command_help_paragraph_is_one_line():
    """Help texts are shown with the line breaks they are written with (Typer's rich markup
    mode keeps them): a paragraph of more than one line breaks mid-sentence in the command
    lists and in --help, so each is one line and the terminal wraps it."""
    import inspect

    import typer

    from ncalab.cli.main import app

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():  # a group (Typer vendors click)
            yield from walk(sub, [*path, name])

    commands = list(walk(typer.main.get_command(app), ["ncalab"]))
    assert len(commands) > 30  # the whole tree, groups and their commands
    broken = [" ".join(path) for path, command in commands
              if any("\n" in p for p in inspect.cleandoc(command.help or "").split("\n\n"))]
    assert broken == []


@pytest.mark.parametrize("args", [["nca", "bands"], ["run", "--bogus"], ["sweep", "show"], ["nca", "sample", "--alphabet", "x"]])
def test_usage_errors_are_usage_errors(capsys, args):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and "Error:" in err and "internal error" not in err and "Traceback" not in err
