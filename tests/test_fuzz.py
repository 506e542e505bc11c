"""Random and hostile input to the CLI's parsers and validators: `--set`, `--grid`, bands,
presets and saved families, config files, keys.toml and ids. Every command either succeeds
or refuses with one line (`error: ...`, or click's usage message), never a traceback, and a
refused command leaves the store exactly as it was.

Nothing here trains: `run` only prints its config, and sweeps ask for a device that does not
exist, so every one of them is refused before anything is stored.
"""

import json
import math
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ncalab.cli.main import main
from ncalab.config import ExperimentConfig, apply_overrides
from ncalab.config.keys import flatten
from ncalab.errors import NcalabError
from ncalab.config.grid import apply_setting, parse_grid
from ncalab.config.grid import settings as grid_settings
from ncalab.nca.bands import Band, parse_band
from ncalab.store import RunStore
from ncalab.store.store import DB_NAME
from ncalab.tui.commands import load_keymap

# slow (hypothesis: 40 inputs per parser); the fast suite keeps each command's explicit bad-input
# tests (test_run_experiment, test_sweeps, test_cli_nca, test_cli_runs, test_report ...)
pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
KEYS = sorted(flatten(ExperimentConfig().to_dict()))
SECTIONS = sorted({k.split(".")[0] for k in KEYS if "." in k})
NO_DEVICE = "cuda:99"  # no machine has it: a sweep is refused after all its parsing, before storing

# Values a user (or an attacker) might type: numbers of every shape, bands, lists, words.
texts = st.text(max_size=24)
numbers = st.one_of(st.integers().map(str), st.floats().map(repr), st.sampled_from(
    ["nan", "inf", "-inf", "1e999", "-0", "0x10", "1_000", "1e-400", "9" * 400, "2e6", "-1", "0", "0.5", "1e308"]))
words = st.sampled_from(["", " ", "none", "null", "[]", "true", "false", "0.3:0.4", "0.4:0.3", "0:1", "1:0", ":", "a:b",
                         "attn+norm", "attn,mlp", "attn,attn", "nca", "dyck", "text", "cpu", "flops", "gpt2", "=", "==",
                         "python-stdlib", "hf:", "../../etc/passwd", "\x00", "é", "𝔘", "1,2,3", "0.3:0.4:0.5"])
values = st.one_of(numbers, words, texts)
keys = st.one_of(st.sampled_from(KEYS), texts, st.sampled_from(KEYS).map(lambda k: k + ".x"),
                 st.sampled_from(SECTIONS), st.sampled_from(KEYS).map(str.upper))


def store_state(home: Path) -> tuple:
    """Everything a command could change: every row of the database, and every other file."""
    db = home / DB_NAME
    rows = ""
    if db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = "\n".join(con.iterdump())
        finally:
            con.close()
    files = {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*"))
             if p.is_file() and not p.name.startswith(DB_NAME)}
    return rows, files


def check(capsys, home: Path, argv: list[str]) -> tuple[int, str]:
    """Run the CLI; it must succeed, or refuse in one line and leave the store as it was."""
    before = store_state(home)
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, (argv, err)
    assert "internal error" not in err, (argv, err)
    if code != 0:
        usage = code == 2 and "Usage:" in err  # click's own message for a malformed command line
        lines = [line for line in err.splitlines() if line.strip()]
        assert usage or (len(lines) == 1 and lines[0].startswith("error: ")), (argv, code, err)
        assert store_state(home) == before, argv
    return code, out


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A store with a completed and a cancelled experiment (made directly: nothing trains)."""
    h = tmp_path_factory.mktemp("store")
    store = RunStore(h)
    for status in ("completed", "cancelled"):
        exp = store.create_experiment("code", "tiny", 0, ExperimentConfig().to_dict())
        for kind in ("stage1", "nca", "scratch"):
            store.create_run(exp.id, kind, ExperimentConfig().to_dict(), 1000)
        store.finish_experiment(exp.id, status)
    store.close()
    return h


@FUZZ
@given(items=st.lists(st.one_of(st.tuples(keys, values).map("=".join), texts), min_size=1, max_size=3))
def test_set(capsys, home, items):
    argv = ["run", "--print-config", "--home", str(home)] + [a for item in items for a in ("--set", item)]
    code, out = check(capsys, home, argv)
    if code == 0:  # what it printed is a valid config that reads back as itself
        printed = json.loads(out)
        assert apply_overrides(ExperimentConfig(), printed).validate().to_dict() == printed


grid_keys = st.one_of(st.sampled_from([k for k in KEYS if not k.startswith("runtime.")]), texts)
grid_items = st.one_of(
    st.sampled_from(["stage2.lr=1e-3,3e-4", "transfer.reinit=none,attn+norm", "stage1.band=0.3:0.4,0.5:1",
                     "model.d_model=64,128", "model.n_head=2,4", "stage1.source=nca,dyck", "seed=1,2"]),
    st.tuples(grid_keys, st.lists(values, max_size=4).map(",".join)).map("=".join),
    st.tuples(grid_keys, st.lists(st.sampled_from(["0.3:0.4", "0.5:1", "attn+mlp", "none", "1e-3", "3", "x"]),
                                  max_size=3).map(",".join)).map("=".join),
    texts)


@FUZZ
@given(items=st.lists(grid_items, min_size=0, max_size=3), zipped=st.booleans(),
       seeds=st.integers(-2, 3))
def test_grid(capsys, home, items, zipped, seeds):
    argv = ["sweep", "--detach", "--device", NO_DEVICE, "--home", str(home), "--seeds", str(seeds)]
    argv += (["--zip"] if zipped else []) + [a for item in items for a in ("--grid", item)]
    code, _ = check(capsys, home, argv)
    assert code != 0  # the device does not exist
    base = ExperimentConfig()
    try:
        grid = parse_grid(items, base, zipped=zipped)
        for s in grid_settings(grid, zipped=zipped):
            assert isinstance(apply_setting(base, s, 0), ExperimentConfig)
    except NcalabError as e:
        assert str(e) and "\n" not in str(e)


@FUZZ
@given(band=st.one_of(texts, st.tuples(numbers, numbers).map(":".join), words))
def test_band(capsys, home, tmp_path, band):
    out = tmp_path / "corpus"
    check(capsys, home, ["nca", "generate", "--out", str(out), "--tokens", "0", "--band", band])
    assert not out.exists()
    try:
        b = parse_band(band)
    except NcalabError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(b, Band) and 0 <= b.lo < b.hi <= 1


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)), max_leaves=8)
good_family = {"domain": "math", "band": [0.5, 1.0], "nca": {"alphabet": 2, "height": 8}}


@st.composite
def families(draw) -> object:
    """A families.json: random JSON, or a valid family with one part replaced by anything."""
    if draw(st.booleans()):
        return draw(json_values)
    fam = json.loads(json.dumps(good_family))
    where = draw(st.sampled_from(["domain", "band", "nca", "nca.alphabet", "nca.height", "nca.extra", "band.0", "name"]))
    junk = draw(json_values)
    name = "fam"
    if where == "name":
        name = draw(texts)
    elif where.startswith("nca."):
        fam["nca"][where[4:]] = junk
    elif where == "band.0":
        fam["band"][0] = junk
    else:
        fam[where] = junk
    return {name: fam}


@FUZZ
@given(content=families(), preset=st.one_of(st.sampled_from(["fam", "code", "math", "web", ""]), texts),
       scale=st.one_of(st.sampled_from(["tiny", "small", "paper"]), texts))
def test_presets_and_saved_families(capsys, tmp_path_factory, content, preset, scale):
    home = tmp_path_factory.mktemp("fam")
    (home / "families.json").write_text(json.dumps(content))
    check(capsys, home, ["run", "--print-config", "--home", str(home), "--preset", preset, "--scale", scale])


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def _toml(doc: dict) -> str:
    """Config-shaped TOML: top-level values first, then one table per section."""
    top = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [f"[{json.dumps(k)}]\n" + "\n".join(f"{json.dumps(kk)} = {_toml_value(vv)}" for kk, vv in v.items())
              for k, v in doc.items() if isinstance(v, dict)]
    return "\n".join(top + tables) + "\n"


config_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts,
                        st.lists(st.one_of(st.floats(), texts), max_size=3))


def _nested(pairs: list[tuple[str, object]]) -> dict:
    """{'stage1.lr': v} -> {'stage1': {'lr': v}}, as a config file writes it."""
    doc: dict = {}
    for key, value in pairs:
        *sections, leaf_key = key.split(".")
        node = doc
        for part in sections:
            node = node.setdefault(part, {})
        node[leaf_key] = value
    return doc


config_docs = st.one_of(
    # real keys with values of any type
    st.lists(st.tuples(st.sampled_from(KEYS), config_leaf), max_size=4).map(_nested),
    # any shape at all
    st.dictionaries(st.one_of(st.sampled_from(SECTIONS + ["preset", "scale", "seed"]), texts),
                    st.one_of(config_leaf, st.dictionaries(texts, config_leaf, max_size=3)), max_size=3))


@FUZZ
@given(doc=config_docs, fmt=st.sampled_from(["json", "toml", "text", "bytes"]), raw=st.binary(max_size=64))
def test_config_files(capsys, home, tmp_path_factory, doc, fmt, raw):
    folder = tmp_path_factory.mktemp("cfg")
    f = folder / ("c.json" if fmt == "json" else "c.toml")
    if fmt == "json":
        f.write_text(json.dumps(doc))
    elif fmt == "toml":
        f.write_text(_toml({k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v)
                            for k, v in doc.items() if v is not None}))
    elif fmt == "text":
        f.write_text(raw.decode("latin-1"))
    else:
        f.write_bytes(raw)
    check(capsys, home, ["run", "--print-config", "--home", str(home), "--config", str(f)])


@FUZZ
@given(content=st.one_of(
    st.binary(max_size=80),
    st.dictionaries(st.one_of(texts, st.sampled_from(["go.explore", "runs.refresh", "launch.start"])),
                    st.one_of(texts, st.integers(), st.booleans(), st.lists(texts, max_size=2)), max_size=4)
    .map(lambda keys: _toml({"keys": keys}).encode()),
    json_values.map(lambda v: _toml({"keys": v} if not isinstance(v, dict) else v).encode())))
def test_keymap(tmp_path_factory, content):
    f = tmp_path_factory.mktemp("keys") / "keys.toml"
    f.write_bytes(content)
    keymap, problem = load_keymap(f)
    assert isinstance(keymap, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in keymap.items())
    assert problem is None or (isinstance(problem, str) and keymap == {})


def _real_ids(home: Path) -> list[str]:
    store = RunStore(home)
    try:
        exps = store.list_experiments()
        return [e.id for e in exps] + [r.id for e in exps for r in store.runs_of(e.id)]
    finally:
        store.close()


@st.composite
def ids(draw, real: list[str]) -> str:
    """Random text, or a real id that is off by a little."""
    if draw(st.booleans()):
        return draw(texts)
    rid = draw(st.sampled_from(real))
    how = draw(st.sampled_from(["upper", "cut", "space", "swap", "prefix", "suffix"]))
    return {"upper": rid.upper(), "cut": rid[:-1], "space": f" {rid} ", "swap": rid[:2] + rid[:1:-1],
            "prefix": "x" + rid, "suffix": rid + draw(texts)}[how]


@FUZZ
@given(data=st.data(), command=st.sampled_from(["show", "rm", "cancel", "resume", "tag", "note", "compare", "export",
                                                "plot", "tail"]))
def test_ids(capsys, home, data, command):
    real = _real_ids(home)
    ident = data.draw(ids(real))
    assume(ident not in real)
    extra = {"rm": ["--yes"], "cancel": ["--wait", "0"], "tag": [data.draw(texts)], "note": [data.draw(texts)],
             "compare": [real[0]], "export": ["--format", data.draw(st.sampled_from(["csv", "json", "x"]))],
             "tail": ["--no-follow"]}.get(command, [])
    code, _ = check(capsys, home, ["runs", command, ident, *extra, "--home", str(home)])
    assert code != 0  # no such experiment or run
