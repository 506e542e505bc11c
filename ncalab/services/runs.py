"""Browsing the run store: lists, details, comparisons, curves, exports, tags, deletion.

Listing reads experiments and their stored summaries only, never the metric points.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ncalab.config.keys import flatten
from ncalab.config.stored import with_added
from ncalab.errors import NcalabError
from ncalab.experiment import tracking
from ncalab.jobs.queue import is_dead
from ncalab.scaling.answers import paired_gain, paired_p_value
from ncalab.services.runstore import home_folder, open_store
from ncalab.store.names import STATUSES
from ncalab.store.quick import list_experiments

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store, StoreReader

SUMMARY_KEYS = ("ppl_nca", "ppl_scratch", "gain", "speedup")
# What each comparison cost, from the summary's compute accounting.
COMPUTE_KEYS = ("stage1_flops", "stage2_flops", "params_no_embeddings")


def compute_results(summary: dict) -> dict:
    """stage1_flops, stage2_flops (of one arm) and the model's parameters without embeddings."""
    c = summary.get("compute") or {}
    return {"stage1_flops": (c.get("stage1") or {}).get("flops"), "stage2_flops": (c.get("nca") or {}).get("flops"),
            "params_no_embeddings": (c.get("stage1") or {}).get("params_no_embeddings")}


# The most memory any stage of the experiment held (bytes): resident, and on a GPU allocated there.
MEMORY_KEYS = ("peak_rss_bytes", "peak_device_bytes")


def memory_results(runs: list[dict]) -> dict:
    """The largest stored stage peak of each kind over an experiment's runs (None: not measured)."""
    out = {}
    for key in MEMORY_KEYS:
        values = [v for r in runs if (v := r["latest_metrics"].get(f"stage_{key}")) is not None and v == v]
        out[key] = max(values) if values else None
    return out


def _summary(exp) -> dict:
    return json.loads(exp.summary_json) if exp.summary_json else {}


def experiment_row(exp) -> dict:
    s = _summary(exp)
    end = exp.finished_at or (time.time() if exp.status == "running" else None)
    return {
        "id": exp.id, "name": exp.name, "preset": exp.preset, "scale": exp.scale, "seed": exp.seed,
        "status": exp.status, "created_at": exp.created_at, "started_at": exp.started_at,
        "duration_s": (end - exp.started_at) if (end and exp.started_at) else None,
        "tags": json.loads(exp.tags_json or "[]"), "sweep_id": exp.sweep_id,
        **{k: s.get(k) for k in SUMMARY_KEYS},
    }


def training_estimate(store: StoreReader | None, cfg) -> str:
    """Time on this machine from the speed of earlier stages with the same model shape (the
    Launch screen shows it beside the budgets)."""
    if store is None:
        return "no finished run of this model shape yet: no estimate"
    shape = (cfg.model.n_layer, cfg.model.d_model, cfg.model.n_head)
    speeds: dict[str, list[float]] = {}
    for exp in store.list_experiments(status="completed", limit=50):
        c = flatten(exp.config)
        if (c.get("model.n_layer"), c.get("model.d_model"), c.get("model.n_head")) != shape:
            continue
        for k, v in (exp.summary or {}).get("tokens_per_s", {}).items():
            if v:
                speeds.setdefault(k, []).append(v)
    if not all(k in speeds for k in ("stage1", "nca", "scratch")):
        return "no finished run of this model shape yet: no estimate"
    med = {k: sorted(v)[len(v) // 2] for k, v in speeds.items()}
    seconds = cfg.stage1.tokens / med["stage1"] + cfg.stage2.tokens / med["nca"] + cfg.stage2.tokens / med["scratch"]
    return f"about {seconds / 60:.0f} min of training on this machine (from {len(speeds['stage1'])} earlier runs)"


def list_rows(store: StoreReader, status: str | None = None, preset: str | None = None) -> list[dict]:
    _check_status(status)
    return [experiment_row(e) for e in store.list_experiments(status=status, preset=preset)]


def listing(home: Path | str | None, status: str | None = None, preset: str | None = None) -> list[dict]:
    """`ncalab runs list`: the rows of list_rows, read straight from the SQLite file where the
    store needs nothing written first (store/quick.py); else through the store, which also marks
    dead jobs lost (a running experiment whose process is gone sends it there)."""
    _check_status(status)
    quick = list_experiments(home_folder(home), status=status, preset=preset)
    if quick is None or any(e.status == "running" and is_dead(e) for e in quick):
        return list_rows(open_store(home, reap=True), status, preset)
    return [experiment_row(e) for e in quick]


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise NcalabError(f"unknown status {status!r}; choose one of {', '.join(STATUSES)}")


def resolve_experiment(store: StoreReader, ident: str):
    """An experiment by its id, or by the id of one of its runs."""
    if ident.startswith("r-"):
        return store.get_experiment(store.get_run(ident).experiment_id)
    return store.get_experiment(ident)


def details(store: StoreReader, ident: str) -> dict:
    exp = resolve_experiment(store, ident)
    runs = []
    for r in store.runs_of(exp.id):
        runs.append({
            "id": r.id, "kind": r.kind, "status": r.status, "pid": r.pid if r.status == "running" else None,
            "host": r.host, "device": r.device, "tokens": r.tokens, "total_tokens": r.total_tokens,
            "started_at": r.started_at, "finished_at": r.finished_at, "heartbeat_at": r.heartbeat_at,
            "error": r.error, "folder": str(store.run_dir(r)), "latest_metrics": store.latest_metrics(r.id),
        })
    return {**experiment_row(exp), "pid": exp.pid if exp.status == "running" else None,  # the job's process
            "note": exp.note, "config": with_added(json.loads(exp.config_json)),
            "summary": _summary(exp), "runs": runs}



def compare(store: StoreReader, idents: list[str]) -> dict:
    """Configs and results side by side; ``differs`` lists the keys whose values differ."""
    if len(idents) < 2:
        raise NcalabError("compare needs at least two ids")
    cols = []
    for ident in idents:
        d = details(store, ident)
        results = {**{k: d.get(k) for k in SUMMARY_KEYS}, **compute_results(d["summary"]), **memory_results(d["runs"])}
        cols.append({"id": d["id"], "config": flatten(d["config"]), "results": results})
    keys = sorted(set().union(*(c["config"] for c in cols)))
    differs = [k for k in keys if len({json.dumps(c["config"].get(k)) for c in cols}) > 1]
    return {"experiments": cols, "keys": keys, "differs": differs}


# keys that say where or how an experiment ran, not what it is: experiments that differ only in
# these (and the seed) are seeds of one arm
NOT_THE_ARM = ("seed", "runtime.", "eval.", "family", "name")


def arms(compared: dict, baseline: str | None = None) -> list[dict]:
    """The compared experiments grouped into arms (the same config but for the seed), each with
    its gain over its own scratch runs paired by seed (95% t-interval, p), and its difference to
    the baseline arm (the one holding experiment id `baseline`, else the first): the NCA-side
    gain 1 - ppl / ppl_baseline paired by seed, its 95% t-interval and a paired t-test's p.
    One seed, or no seed in common, gives the reason instead of an interval."""
    groups: dict[str, list[dict]] = {}
    for e in compared["experiments"]:
        key = json.dumps({k: v for k, v in e["config"].items() if not k.startswith(NOT_THE_ARM)}, sort_keys=True,
                         default=str)
        groups.setdefault(key, []).append(e)
    arms_ = list(groups.values())
    if baseline is not None and not any(e["id"] == baseline for arm in arms_ for e in arm):
        raise NcalabError(f"--baseline {baseline} is not one of the compared experiments")
    base = next((arm for arm in arms_ if any(e["id"] == baseline for e in arm)), arms_[0])

    def by_seed(arm):
        return {e["config"].get("seed"): e["results"] for e in arm if e["results"].get("ppl_nca")}

    def estimate(warm: list[float], cold: list[float]) -> dict:
        g = paired_gain(warm, cold)
        return {"mean": g.value, "ci": None if g.lo is None else [g.lo, g.hi], "p": paired_p_value(warm, cold),
                "why": g.reason}

    out, base_seeds = [], by_seed(base)
    for arm in arms_:
        seeds = by_seed(arm)
        own = [s for s, r in seeds.items() if r.get("ppl_scratch")]
        common = sorted(set(seeds) & set(base_seeds), key=str)
        row = {"experiments": [e["id"] for e in arm], "seeds": sorted(seeds, key=str), "baseline": arm is base,
               "gain": estimate([math.log(seeds[s]["ppl_nca"]) for s in own],
                                [math.log(seeds[s]["ppl_scratch"]) for s in own])}
        if arm is not base:
            row["vs_baseline"] = estimate([math.log(seeds[s]["ppl_nca"]) for s in common],
                                          [math.log(base_seeds[s]["ppl_nca"]) for s in common])
        out.append(row)
    return out


def curves(store: Store, idents: list[str], metric: str = "val_ppl", x: str = "tokens") -> list[dict]:
    """One curve per run: an experiment id gives its NCA and scratch runs (stage 1 for NCA
    metrics that only stage 1 has), a run id gives that run."""
    if x not in ("tokens", "step", "time"):
        raise NcalabError(f"--x must be tokens, step or time, got {x!r}")
    out = []
    for ident in idents:
        if ident.startswith("r-"):
            runs = [store.get_run(ident)]
        else:
            exp = store.get_experiment(ident)
            runs = [r for r in store.runs_of(exp.id) if r.kind in ("nca", "scratch")]
            if metric not in {"val_ppl", "val_loss", "train_loss", "lr", "tokens_per_s"} or not runs:
                runs = store.runs_of(exp.id)
        for r in runs:
            pts = store.metrics(r.id, metric)
            if not pts:
                continue
            xs = {"tokens": [p.tokens for p in pts], "step": [p.step for p in pts], "time": [p.wall_time for p in pts]}[x]
            out.append({"label": f"{r.experiment_id}/{r.kind}", "run_id": r.id, "x": xs,
                        "y": [float("nan") if p.value is None else p.value for p in pts]})
    if not out:
        raise NcalabError(f"no {metric!r} points for {', '.join(idents)}")
    return out


TRACKER_FORMATS = ("tensorboard", "mlflow")  # `runs export` writes these through ncalab.experiment.tracking


def export(store: Store, idents: list[str], fmt: str) -> str:
    """Every metric point of the given experiments or runs, as CSV or JSON text."""
    if fmt not in ("csv", "json"):
        raise NcalabError(f"--format must be csv or json (or {' or '.join(TRACKER_FORMATS)}), got {fmt!r}")
    rows = []
    for ident in idents:
        runs = [store.get_run(ident)] if ident.startswith("r-") else store.runs_of(store.get_experiment(ident).id)
        for r in runs:
            for p in store.metrics(r.id):
                rows.append({"experiment_id": r.experiment_id, "run_id": r.id, "kind": r.kind, "name": p.name,
                             "step": p.step, "tokens": p.tokens, "wall_time": p.wall_time, "value": p.value})
    if fmt == "json":
        return json.dumps({"points": rows})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["experiment_id", "run_id", "kind", "name", "step", "tokens", "wall_time", "value"])
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def export_to_tracker(store: Store, idents: list[str], fmt: str, out: Path | None = None) -> list[str]:
    """Write whole experiments (a run id stands for its experiment) to TensorBoard event files
    (under ``out``, default each experiment's tensorboard folder) or to MLflow (``out``/mlflow.db,
    default MLFLOW_TRACKING_URI or the store's mlflow.db); returns where each went."""
    if fmt not in TRACKER_FORMATS:
        raise NcalabError(f"--format must be csv or json (or {' or '.join(TRACKER_FORMATS)}), got {fmt!r}")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise NcalabError(f"--out {out} is a file; {fmt} writes into a folder")
    exp_ids = list(dict.fromkeys(resolve_experiment(store, i).id for i in idents))
    return tracking.export(store, exp_ids, fmt, Path(out) if out is not None else None)


def write_text(path: Path, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as e:
        raise NcalabError(f"cannot write {path}: {e.strerror or e}") from None


def remove(store: Store, ident: str) -> list[Path]:
    """Delete an experiment (rows, then folders). Refused while any of its runs is running."""
    exp = resolve_experiment(store, ident)
    running = [r.id for r in store.runs_of(exp.id) if r.status in ("running",)]
    if running or exp.status == "running":
        raise NcalabError(f"experiment {exp.id} is running ({', '.join(running) or 'starting'}); cancel it first")
    folders = store.delete_experiment(exp.id)
    for f in folders:
        shutil.rmtree(f, ignore_errors=True)
    exp_dir = store.home / "experiments" / exp.id
    shutil.rmtree(exp_dir, ignore_errors=True)
    return folders
