"""Sources are plugins: the registry, the settings sections of plugins in the config, `ncalab
sources`, an installed plugin package running an experiment, and a broken plugin that costs one
warning line, not the command."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MICRO, cli_json

from ncalab import plugins
from ncalab.cli.main import main
from ncalab.config import ExperimentConfig
from ncalab.config.keys import apply_overrides
from ncalab.errors import NcalabError
from ncalab.sources.interface import SOURCES
from ncalab.services.config import resolve_config

HERE = Path(__file__).parent


def test_builtin_sources_are_entry_points_of_ncalab():
    entries = plugins.entries()
    assert set(plugins.BUILTIN) <= set(entries)
    assert all(entries[n].origin == "builtin" and entries[n].target == plugins.BUILTIN[n] for n in plugins.BUILTIN)
    assert {"nca", "dyck", "shuffle_dyck", "text", "eca", "ww"} <= set(SOURCES)
    assert all(SOURCES[n].name == n for n in plugins.BUILTIN)


def test_a_checkout_without_metadata_falls_back_to_the_builtin_table(monkeypatch):
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: [])
    assert set(plugins.entries()) == set(plugins.BUILTIN)
    assert plugins.load("eca").name == "eca"


def test_a_plugin_section_is_set_printed_stored_and_validated():
    cfg = resolve_config("code", "tiny", None, ["stage1.source=eca", "eca.rules=30,110", "eca.width=50"])
    tree = cfg.to_dict()
    assert tree["eca"]["rules"] == [30, 110] and tree["eca"]["width"] == 50
    again = apply_overrides(ExperimentConfig(), json.loads(json.dumps(tree))).validate()
    assert again.to_dict() == tree  # a stored config reads back as it ran
    assert "eca" not in ExperimentConfig().validate().to_dict()  # present only where used or set
    with pytest.raises(NcalabError, match="eca: patch must be 1-16 and divide width"):
        resolve_config("code", "tiny", None, ["stage1.source=eca", "eca.patch=3"])
    with pytest.raises(NcalabError, match="unknown config key 'nosuch.x'"):
        resolve_config("code", "tiny", None, ["nosuch.x=1"])
    with pytest.raises(NcalabError, match="stage1.source must be one of .*eca.*got 'nosuch'"):
        resolve_config("code", "tiny", None, ["stage1.source=nosuch"])


def test_a_broken_plugin_is_left_out_with_one_warning(monkeypatch, capsys):
    real = plugins.entries()
    fake = {**real, "bad": plugins.Entry("bad", "json:no_such_attribute", "bad-dist"),
            "odd": plugins.Entry("odd", "json:dumps", "odd-dist")}
    monkeypatch.setattr(plugins, "entries", lambda: fake)
    monkeypatch.setattr(plugins, "_broken", {})
    monkeypatch.setattr(plugins, "_warned", set())
    assert plugins.load("bad") is None and plugins.load("bad") is None
    assert plugins.load("odd") is None  # an object that is not a source
    assert "bad" not in SOURCES and "odd" not in set(SOURCES) and "eca" in SOURCES
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "'bad' (bad-dist" in err[0] and "'odd' (odd-dist" in err[1]
    assert "not a source" in err[1]
    with pytest.raises(NcalabError, match="stage1.source=bad: the source plugin is broken"):
        resolve_config("code", "tiny", None, ["stage1.source=bad"])


def test_sources_command_lists_every_source_with_settings_and_a_sample(capsys):
    rows = {r["name"]: r for r in cli_json(capsys, "sources")["sources"]}
    assert {"nca", "dyck", "shuffle_dyck", "text", "eca", "ww"} <= set(rows)
    eca = rows["eca"]
    assert eca["origin"] == "builtin" and eca["settings_key"] == "eca" and eca["settings"]["width"] == 100
    assert len(eca["sample"]) == 16 and all(0 <= t < eca["vocab_size"] == 32 for t in eca["sample"])
    assert rows["shuffle_dyck"]["settings_key"] == "dyck" and rows["text"]["sample"] is None
    assert main(["sources", "--no-sample"]) == 0
    out = capsys.readouterr().out
    assert "eca.rule_class=4" in out and "ww.symbols=64" in out and "builtin" in out


def _install(package: str, tmp_path: Path) -> Path:
    """pip-install a plugin package from tests/ into a folder of its own (a copy: the build
    writes beside the sources)."""
    src = shutil.copytree(HERE / package, tmp_path / package)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True, timeout=300)
    return target


def _ncalab(target: Path, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target), "NCALAB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "ncalab.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_an_installed_plugin_runs_an_experiment_and_stores_its_settings(tmp_path, code_corpus):
    target = _install("plugin_source", tmp_path)
    home = tmp_path / "h"
    listed = _ncalab(target, "sources", "--json", "--no-sample", home=home)
    assert listed.returncode == 0, listed.stderr
    toy = {r["name"]: r for r in json.loads(listed.stdout)["sources"]}["toy"]
    assert toy["origin"] == "ncalab-toy-source" and toy["settings"] == {"period": 3, "symbols": 16}
    run = _ncalab(target, "run", "--preset", "code", "--corpus", str(code_corpus), *MICRO,
                  "--set", "stage2.tokens=8192", "--set", "stage1.source=toy", "--set", "toy.period=4", "--json",
                  home=home)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["source"] == "toy" and summary["ppl_nca"] > 0
    from ncalab.store import RunStore

    store = RunStore(home)
    exp = store.get_experiment(summary["experiment_id"])
    assert exp.status == "completed"
    assert json.loads(exp.config_json)["toy"] == {"period": 4, "symbols": 16}
    stage1 = next(r for r in store.runs_of(exp.id) if r.kind == "stage1")
    assert stage1.status == "completed"


@pytest.mark.slow
def test_a_broken_installed_plugin_is_one_warning_line_and_the_cli_works(tmp_path):
    target = _install("plugin_broken", tmp_path)
    home = tmp_path / "h"
    listed = _ncalab(target, "sources", "--no-sample", home=home)
    assert listed.returncode == 0, listed.stderr
    lines = [ln for ln in listed.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning:") and "'broken'" in lines[0]
    assert "ncalab-broken-source" in lines[0] and "a_module_that_is_not_installed" in lines[0]
    assert "eca" in listed.stdout
    printed = _ncalab(target, "run", "--preset", "code", "--print-config", "--json", home=home)
    assert printed.returncode == 0 and json.loads(printed.stdout)["stage1"]["source"] == "nca"
    asked = _ncalab(target, "run", "--preset", "code", "--set", "stage1.source=broken", "--print-config", home=home)
    assert asked.returncode == 1 and "broken" in asked.stderr.splitlines()[-1]


def test_a_sweep_over_every_source_shares_one_scratch_baseline(tmp_path, code_corpus):
    from ncalab.services import sweeps
    from ncalab.store import RunStore

    base = resolve_config("code", "tiny", None, [MICRO[i + 1] for i in range(0, len(MICRO), 2)], corpus=str(code_corpus))
    names = [n for n in plugins.names() if n != "text"]  # text needs a corpus of its own
    store = RunStore(tmp_path / "h")
    made = sweeps.create(store, base, ["stage1.source=" + ",".join(names)], [0, 1])
    assert len(made["experiments"]) == 2 * len(names)
    keys = {}
    for exp_id in made["experiments"]:
        exp = store.get_experiment(exp_id)
        runs = {r.kind: r.reuse_key for r in store.runs_of(exp_id)}
        keys.setdefault(exp.seed, []).append(runs)
    for seed_runs in keys.values():
        assert len({r["scratch"] for r in seed_runs}) == 1  # one scratch baseline per seed, whatever the source
        assert len({r["stage1"] for r in seed_runs}) == len(names)  # each source its own stage 1
    assert keys[0][0]["scratch"] != keys[1][0]["scratch"]


def test_an_experiment_of_a_plugin_no_longer_installed_stays_readable(tmp_path, capsys):
    from ncalab.store import RunStore

    tree = ExperimentConfig().to_dict()
    tree["stage1"]["source"], tree["gone"] = "gone", {"period": 4}  # as `toy` stored it, then uninstalled
    store = RunStore(tmp_path)
    exp = store.create_experiment("code", "tiny", 0, tree)
    store.set_experiment_status(exp.id, "failed")
    shown = cli_json(capsys, "runs", "show", exp.id, "--home", tmp_path)
    assert shown["config"]["gone"] == {"period": 4} and shown["config"]["stage1"]["source"] == "gone"
    assert [e["id"] for e in cli_json(capsys, "runs", "list", "--home", tmp_path)["experiments"]] == [exp.id]
    assert main(["runs", "resume", exp.id, "--home", str(tmp_path)]) == 1  # running it again needs the plugin
    assert "stage1.source must be one of" in capsys.readouterr().err
