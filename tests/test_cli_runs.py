"""`ncalab runs ...` on a real store with real (micro) experiments."""

import csv
import json
import socket
import sqlite3

import pytest
from conftest import MICRO, cli, cli_json, copy_lab

from ncalab.cli.main import main
from ncalab.services import runs as svc
from ncalab.store import RunStore, quick
from ncalab.store.location import DB_NAME


@pytest.fixture(scope="module")
def store_home(tmp_path_factory, code_corpus, micro_lab):
    home = copy_lab(micro_lab, tmp_path_factory.mktemp("store") / "h")  # seed 0, and seed 1 trained here
    assert main(["run", "--corpus", str(code_corpus), "--home", str(home), "--seed", "1", "--json", *MICRO]) == 0
    store = RunStore(home)
    ids = [e.id for e in store.list_experiments()]
    return home, ids


def test_list_show_compare(capsys, store_home):
    home, ids = store_home
    rows = cli_json(capsys, "runs", "list", "--home", str(home))["experiments"]
    assert {r["id"] for r in rows} == set(ids) and all(r["status"] == "completed" for r in rows)
    assert all(r["ppl_nca"] and r["ppl_scratch"] for r in rows)
    assert cli_json(capsys, "runs", "list", "--home", str(home), "--status", "failed")["experiments"] == []
    d = cli_json(capsys, "runs", "show", ids[0], "--home", str(home))
    assert d["status"] == "completed" and d["summary"]["experiment_id"] == ids[0]
    assert [r["kind"] for r in d["runs"]] and all(r["pid"] is None for r in d["runs"])
    assert "val_ppl" in d["runs"][-1]["latest_metrics"]
    c = cli_json(capsys, "runs", "compare", *ids, "--home", str(home))
    assert c["differs"] == ["seed"]
    code, out, _ = cli(capsys, "runs", "compare", *ids, "--home", str(home))
    assert code == 0 and "seed" in out


def test_home_before_the_command_is_the_store_of_the_command_and_of_the_lab(capsys, store_home, tmp_path,
                                                                          monkeypatch):
    """`ncalab --home DIR CMD` reads DIR as `CMD --home DIR` does; a command's own --home wins."""
    home, ids = store_home
    monkeypatch.delenv("NCALAB_HOME", raising=False)  # what the product sets is undone after the test
    monkeypatch.chdir(tmp_path)  # ./runs here is empty: only --home can find the experiments
    rows = cli_json(capsys, "--home", str(home), "runs", "list")["experiments"]
    assert {r["id"] for r in rows} == set(ids)
    empty = tmp_path / "empty"
    assert cli_json(capsys, "--home", str(home), "runs", "list", "--home", str(empty))["experiments"] == []


def test_every_stage_stores_its_peak_memory_and_show_and_compare_print_it(capsys, store_home):
    home, ids = store_home
    d = cli_json(capsys, "runs", "show", ids[0], "--home", str(home))
    peaks = {r["kind"]: r["latest_metrics"].get("stage_peak_rss_bytes") for r in d["runs"]}
    assert set(peaks) == {"stage1", "nca", "scratch"} and all(p and 100 << 20 < p < 8 << 30 for p in peaks.values())
    assert all(c["peak_rss_bytes"] == peaks[k] for k, c in d["summary"]["compute"].items())
    assert all("stage_peak_device_bytes" not in r["latest_metrics"] for r in d["runs"])  # on a CPU
    code, out, _ = cli(capsys, "runs", "show", ids[0], "--home", str(home))
    assert code == 0 and "peak" in out and "GiB" in out  # the compute table and the runs table
    c = cli_json(capsys, "runs", "compare", *ids, "--home", str(home))
    assert all(e["results"]["peak_rss_bytes"] > 100 << 20 and e["results"]["peak_device_bytes"] is None
               for e in c["experiments"])
    code, out, _ = cli(capsys, "runs", "compare", *ids, "--home", str(home))
    assert code == 0 and "peak_rss" in out


def test_plot_and_export(capsys, store_home, tmp_path):
    home, ids = store_home
    p = cli_json(capsys, "runs", "plot", ids[0], "--home", str(home))
    labels = sorted(c["label"].split("/")[1] for c in p["curves"])
    assert labels == ["nca", "scratch"] and all(c["x"] == sorted(c["x"]) for c in p["curves"])
    code, out, _ = cli(capsys, "runs", "plot", ids[0], "--home", str(home), "--metric", "train_loss", "--x", "step")
    assert code == 0 and "train_loss" in out
    out_file = tmp_path / "m.csv"
    assert cli(capsys, "runs", "export", ids[0], "--format", "csv", "--out", str(out_file), "--home", str(home))[0] == 0
    rows = list(csv.DictReader(out_file.open()))
    store = RunStore(home)
    n = sum(len(store.metrics(r.id)) for r in store.runs_of(ids[0]))
    assert len(rows) == n and {"val_ppl", "train_loss"} <= {r["name"] for r in rows}
    code, out, _ = cli(capsys, "runs", "export", ids[0], "--format", "json", "--home", str(home))
    assert len(json.loads(out)["points"]) == n


def test_tag_note_and_rm(capsys, store_home):
    home, ids = store_home
    assert cli(capsys, "runs", "tag", ids[1], "baseline", "--home", str(home))[0] == 0
    assert cli(capsys, "runs", "note", ids[1], "seed 1 for the table", "--home", str(home))[0] == 0
    d = cli_json(capsys, "runs", "show", ids[1], "--home", str(home))
    assert d["tags"] == ["baseline"] and d["note"] == "seed 1 for the table"
    store = RunStore(home)
    run = store.runs_of(ids[1])[0]
    folder = store.run_dir(run)
    store.start_run(run.id, pid=1, host="h", device="cpu")  # as if a job were training it
    code, _, err = cli(capsys, "runs", "rm", ids[1], "--yes", "--home", str(home))
    assert code != 0 and "cancel it first" in err and folder.exists()
    store.finish_run(run.id, "cancelled")
    assert cli(capsys, "runs", "rm", ids[1], "--yes", "--home", str(home))[0] == 0
    assert not folder.exists() and ids[1] not in [e.id for e in store.list_experiments()]
    assert store.metrics(run.id) == []


@pytest.mark.parametrize("args, message", [
    (["runs", "show", "e-00000000"], "no experiment"),
    (["runs", "show", "r-00000000"], "no run"),
    (["runs", "list", "--status", "sleeping"], "unknown status"),
    (["runs", "plot", "e-00000000"], "no experiment"),
    (["runs", "export", "e-00000000", "--format", "xml"], "csv or json"),
    (["runs", "compare", "e-00000000"], "at least two"),
])
def test_bad_input(capsys, store_home, args, message):
    home, _ = store_home
    code, _, err = cli(capsys, *args, "--home", str(home))
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1


def test_export_to_unwritable_path(capsys, store_home, tmp_path):
    home, ids = store_home
    blocker = tmp_path / "f"
    blocker.write_text("")
    code, _, err = cli(capsys, "runs", "export", ids[0], "--out", str(blocker / "x.csv"), "--home", str(home))
    assert code != 0 and "cannot write" in err


def test_list_shows_the_newest_fifty_and_says_how_many_are_not_shown(tmp_path, capsys):
    with RunStore(tmp_path) as store:
        ids = []
        for seed in range(53):
            e = store.create_experiment("code", "tiny", seed, {})
            store.finish_experiment(e.id, "completed")
            ids.append(e.id)
    newest_first = ids[::-1]
    code, out, _ = cli(capsys, "runs", "list", "--home", str(tmp_path))
    assert code == 0 and "the newest 50 of 53 experiments" in out and "3 older not shown" in out
    assert newest_first[0] in out and newest_first[49] in out and not any(i in out for i in newest_first[50:])
    code, out, _ = cli(capsys, "runs", "list", "--home", str(tmp_path), "--limit", "0")
    assert "53 experiments" in out and all(i in out for i in ids) and "not shown" not in out
    assert [r["id"] for r in cli_json(capsys, "runs", "list", "--home", str(tmp_path))["experiments"]] == newest_first
    assert [r["id"] for r in cli_json(capsys, "runs", "list", "--home", str(tmp_path), "-n", "2")["experiments"]] == \
        newest_first[:2]
    code, _, err = cli(capsys, "runs", "list", "--home", str(tmp_path), "--limit", "-1")
    assert code != 0 and "--limit" in err and len(err.strip().splitlines()) == 1


def test_compare_groups_seeds_into_arms_and_pairs_them_by_seed(tmp_path, capsys):
    """Three seeds of two arms (the second better by a known factor on two seeds, worse on the
    third): the paired difference and its p-value are scipy's on the same numbers."""
    import math

    from scipy import stats

    base_ppl, other_ppl, scratch = [100.0, 110.0, 105.0], [95.0, 99.0, 107.0], [98.0, 108.0, 101.0]
    ids = {}
    with RunStore(tmp_path) as store:
        for arm, ppls, lr in (("base", base_ppl, 0.001), ("other", other_ppl, 0.0003)):
            for seed, ppl in enumerate(ppls):
                e = store.create_experiment("code", "tiny", seed, {"seed": seed, "stage2": {"lr": lr}})
                store.set_summary(e.id, {"ppl_nca": ppl, "ppl_scratch": scratch[seed], "gain": 1 - ppl / scratch[seed],
                                         "speedup": None})
                store.finish_experiment(e.id, "completed")
                ids.setdefault(arm, []).append(e.id)
    c = cli_json(capsys, "runs", "compare", *ids["base"], *ids["other"], "--home", str(tmp_path))
    base, other = c["arms"]
    assert base["baseline"] and sorted(base["experiments"]) == sorted(ids["base"]) and len(other["seeds"]) == 3
    gains = [1 - o / b for o, b in zip(other_ppl, base_ppl, strict=True)]
    mean, sd = sum(gains) / 3, stats.tstd(gains)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert other["vs_baseline"]["mean"] == pytest.approx(mean)
    assert other["vs_baseline"]["ci"] == pytest.approx([mean - half, mean + half])
    p = stats.ttest_rel([math.log(x) for x in other_ppl], [math.log(x) for x in base_ppl]).pvalue
    assert other["vs_baseline"]["p"] == pytest.approx(p)
    own = [1 - b / s for b, s in zip(base_ppl, scratch, strict=True)]
    assert base["gain"]["mean"] == pytest.approx(sum(own) / 3)
    code, out, _ = cli(capsys, "runs", "compare", *ids["base"], *ids["other"], "--home", str(tmp_path), "--baseline",
                       ids["other"][1])
    assert code == 0 and "arms" in out and "stage2.lr=0.0003" in out and "baseline" in out
    # one seed an arm: the difference without an interval, and why
    one = cli_json(capsys, "runs", "compare", ids["base"][0], ids["other"][0], "--home", str(tmp_path))["arms"][1]
    assert one["vs_baseline"]["ci"] is None and "one seed" in one["vs_baseline"]["why"]
    code, _, err = cli(capsys, "runs", "compare", *ids["base"], "--home", str(tmp_path), "--baseline", "e-00000000")
    assert code != 0 and "not one of the compared" in err and len(err.strip().splitlines()) == 1


def _listed(home, **filters):
    return [{k: v for k, v in row.items() if k != "duration_s"} for row in svc.listing(home, **filters)]


def test_the_quick_listing_reads_what_the_store_lists(tmp_path):
    """`runs list` reads the SQLite file without the ORM (store/quick.py): the same rows, in the
    same order (ties of created_at by insertion), under every filter, as the store's own listing."""
    with RunStore(tmp_path) as store:
        for i, (preset, status) in enumerate([("code", "completed"), ("web", "failed"), ("code", "cancelled"),
                                              ("code", "completed"), ("web", "queued")]):
            e = store.create_experiment(preset, "tiny", i, {"seed": i}, name=f"n{i}")
            if i % 2:
                store.tag(e.id, "a")
            store.set_summary(e.id, {"ppl_nca": 100.0 + i, "ppl_scratch": 99.0, "gain": -0.01 * i, "speedup": None})
            if status != "queued":
                store.finish_experiment(e.id, status)
    with sqlite3.connect(tmp_path / DB_NAME) as db:  # experiments created in the same instant
        db.execute("UPDATE experiments SET created_at = 1000.0")
    with RunStore(tmp_path) as store:
        for filters in ({}, {"status": "completed"}, {"preset": "web"}, {"status": "completed", "preset": "code"}):
            want = [{k: v for k, v in row.items() if k != "duration_s"} for row in svc.list_rows(store, **filters)]
            assert quick.list_experiments(tmp_path, **filters) is not None
            assert _listed(tmp_path, **filters) == want and want
        assert [r["id"] for r in _listed(tmp_path)] == [e.id for e in store.list_experiments()]


def test_the_quick_listing_leaves_to_the_store_what_it_cannot_read(tmp_path, monkeypatch):
    """A dead job to mark lost, another schema version or a PostgreSQL URL: the store is opened,
    which marks, upgrades or connects as it always did."""
    with RunStore(tmp_path) as store:
        e = store.create_experiment("code", "tiny", 0, {})
        assert store.claim_experiment(e.id, pid=2**22 + 12345, host=socket.gethostname())
    assert quick.list_experiments(tmp_path)[0].status == "running"
    assert _listed(tmp_path)[0]["status"] == "lost"  # the dead job was marked before it was shown
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE store_meta SET value = '3' WHERE key = 'schema_version'")
    assert quick.list_experiments(tmp_path) is None
    assert _listed(tmp_path)[0]["id"] == e.id
    assert quick.list_experiments(tmp_path) is not None  # the store upgraded it
    assert quick.list_experiments(tmp_path / "nowhere") is None
    monkeypatch.setenv("NCALAB_STORE", "postgresql://u@h/db")
    assert quick.list_experiments(tmp_path) is None
