"""Sweeps: a grid of settings times seeds, run as experiments through the job queue.

A sweep stores its base config, its grid and its seeds; each member is an ordinary
experiment with the sweep's id. Members that would train an identical stage 1 or scratch
baseline share it through reuse keys (see ncalab.experiment.reuse), so a sweep over, say,
transfer settings trains one stage 1 and one scratch model per seed.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ncalab.config import ExperimentConfig
from ncalab.config.grid import apply_setting, parse_grid, setting_id, setting_label, settings
from ncalab.config.keys import lookup, short
from ncalab.config.stored import stored_config
from ncalab.errors import NcalabError
from ncalab.jobs import control
from ncalab.jobs.queue import reap
from ncalab.scaling.answers import paired_gain, paired_p_value
from ncalab.services.experiments import check, check_store_for
from ncalab.services.launch import How, launch
from ncalab.services.launch import resume as launch_again
from ncalab.services.runs import compute_results
from ncalab.services.runs import remove as remove_experiment

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store, StoreReader
    from ncalab.store.schema import Experiment

ACTIVE = ("queued", "running")
RESUMABLE = ("failed", "cancelled", "lost")


def _base(spec: dict) -> ExperimentConfig:
    return stored_config(spec["base"])


def _settings(spec: dict) -> list[dict]:
    return settings(spec["grid"], zipped=spec.get("zip", False))


def _members(store: StoreReader, sweep_id: str, grid: dict[str, list]) -> dict[tuple[str, int], Experiment]:
    """{(setting id, seed): experiment} of the sweep."""
    out = {}
    for exp in store.experiments_of_sweep(sweep_id):
        out[(setting_id(_setting_of(exp.config, grid)), exp.seed)] = exp
    return out


def _setting_of(config: dict, grid: dict[str, list]) -> dict:
    return {key: lookup(config, key) for key in grid}


def _submit_missing(store: Store, sweep, spec: dict) -> list[str]:
    """Queue every (setting, seed) of the spec the sweep lacks; returns the new experiment ids."""
    base, grid = _base(spec), spec["grid"]
    have = _members(store, sweep.id, grid)
    todo = [(s, seed) for seed in spec["seeds"] for s in _settings(spec) if (setting_id(s), seed) not in have]
    cfgs = [(s, apply_setting(base, s, seed)) for s, seed in todo]
    _check_members(cfg for _, cfg in cfgs)  # every member can run before one is stored
    # queued together: the caller starts the queue once (on a cluster, as one job array)
    return [launch(cfg, store, How.QUEUED, name=setting_label(s), sweep_id=sweep.id).experiment_id for s, cfg in cfgs]


def create(store: Store, base: ExperimentConfig, grid_items: list[str], seeds: list[int], name: str | None = None,
           zipped: bool = False) -> dict:
    """Store a sweep and queue its members (nothing is stored if any member is invalid).
    ``zipped`` pairs the grids' values position by position instead of taking their product."""
    grid = parse_grid(grid_items, base, zipped=zipped)
    if not grid:
        raise NcalabError("a sweep needs at least one --grid KEY=V1,V2,...")
    return create_grid(store, base, grid, seeds, name, zipped=zipped)


def create_grid(store: Store, base: ExperimentConfig, grid: dict[str, list], seeds: list[int], name: str | None = None,
                zipped: bool = False, extra: dict | None = None) -> dict:
    """`create` for a grid already typed ({key: [values]}); ``extra`` is kept in the sweep's spec
    (a study's declaration)."""
    _check_seeds(seeds)
    spec = {"preset": base.preset, "scale": base.scale, "base": base.to_dict(), "grid": grid, "seeds": list(seeds),
            **(extra or {})}
    if zipped:
        spec["zip"] = True
    # every member can run (config, device, corpora) before the sweep is stored
    _check_members(apply_setting(base, s, seed) for s in _settings(spec) for seed in seeds)

    check_store_for(base, store)
    sweep = store.create_sweep(spec, name)
    created = _submit_missing(store, sweep, spec)
    return {"sweep_id": sweep.id, "experiments": created, "settings": len(_settings(spec)), "seeds": list(seeds)}


def _check_members(cfgs) -> None:
    """Raise what `submit` would for any member; each distinct device and corpus is checked once."""
    seen = set()
    for cfg in cfgs:
        d = cfg.to_dict()
        what = json.dumps([d["runtime"], d["data"]["corpus"], d["stage1"]["source"], d["stage1"]["corpus"], d["eval"]],
                          sort_keys=True, default=str)
        if what not in seen:
            check(cfg)
            seen.add(what)


def _check_seeds(seeds: list[int]) -> None:
    if not seeds:
        raise NcalabError("--seeds must be at least 1")
    if len(set(seeds)) != len(seeds):
        raise NcalabError("the seeds of a sweep must be distinct")


def extend(store: Store, sweep_id: str, grid_items: Sequence[str] = (), seeds: Sequence[int] = ()) -> dict:
    """Add values to the swept keys and/or seeds; only the members that do not exist yet run."""
    sweep = store.get_sweep(sweep_id)
    spec = sweep.spec
    zipped = spec.get("zip", False)
    more = parse_grid(list(grid_items), _base(spec), zipped=zipped)
    new_keys = set(more) - set(spec["grid"])
    if new_keys:
        raise NcalabError(f"sweep {sweep_id} does not sweep {', '.join(sorted(new_keys))}; start a new sweep for new keys")
    if zipped:
        grid = _extend_zipped(sweep_id, spec["grid"], more)
    else:
        grid = {k: vs + [v for v in more.get(k, []) if v not in vs] for k, vs in spec["grid"].items()}
    all_seeds = spec["seeds"] + [s for s in seeds if s not in spec["seeds"]]
    spec = {**spec, "grid": grid, "seeds": all_seeds}
    created = _submit_missing(store, sweep, spec)
    store.set_sweep_spec(sweep_id, spec)
    return {"sweep_id": sweep_id, "experiments": created, "settings": len(_settings(spec)), "seeds": all_seeds}


def _extend_zipped(sweep_id: str, grid: dict[str, list], more: dict[str, list]) -> dict[str, list]:
    """A zipped grid grows by whole settings: every key gets its value for each new setting."""
    if not more:
        return grid
    missing = set(grid) - set(more)
    if missing:
        raise NcalabError(f"sweep {sweep_id} zips its keys; give values for {', '.join(sorted(missing))} too")
    have = settings(grid, zipped=True)
    new = [s for s in settings(more, zipped=True) if s not in have]
    return {k: vs + [s[k] for s in new] for k, vs in grid.items()}


def resume(store: Store, sweep_id: str) -> list[str]:
    """Queue again the members that failed, were cancelled or were lost."""
    store.get_sweep(sweep_id)
    reap(store)
    out = []
    for exp in store.experiments_of_sweep(sweep_id):
        if exp.status in RESUMABLE:
            launch_again(store, exp.id)
            out.append(exp.id)
    return out


def cancel(store: Store, sweep_id: str, wait: float = 120.0) -> list[str]:
    """Stop a sweep: queued members are cancelled first (so no freed slot starts one), then
    running ones stop gracefully at a checkpoint. `resume` queues them all again."""
    store.get_sweep(sweep_id)
    reap(store)
    members = store.experiments_of_sweep(sweep_id)
    queued = [e.id for e in members if e.status == "queued"]
    running = [e.id for e in members if e.status == "running"]
    for exp_id in queued + running:
        try:
            control.cancel(store, exp_id, wait)
        except NcalabError:  # it ended (or its job vanished) meanwhile: nothing left to stop
            continue
    return queued + running


def remove(store: Store, sweep_id: str) -> list[str]:
    """Delete a sweep and its experiments (refused while one runs: cancel it first).
    Runs of other experiments that reused a result here keep their copies."""
    store.get_sweep(sweep_id)
    members = store.experiments_of_sweep(sweep_id)
    running = [e.id for e in members if e.status == "running"]
    if running:
        raise NcalabError(f"sweep {sweep_id} has running experiments ({', '.join(running)}); cancel them first")
    for exp in members:
        remove_experiment(store, exp.id)
    store.delete_sweep(sweep_id)
    return [e.id for e in members]


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def table(store: Store, sweep_id: str, reap_first: bool = True) -> dict:
    """One row per setting: mean and sd over seeds of ppl_nca, ppl_scratch, gain, speedup, and
    in how many seeds NCA beat scratch; sorted by mean gain, best first (marked ``best``).
    ``reap_first=False`` only reads (a report from a read-only store)."""
    sweep = store.get_sweep(sweep_id)
    if reap_first:
        reap(store)
    spec = sweep.spec
    grid = spec["grid"]
    groups: dict[str, dict] = {}
    for s in _settings(spec):
        groups[setting_id(s)] = {"setting": s, "label": setting_label(s), "experiments": [], "summaries": [], "status": {}}
    for exp in store.experiments_of_sweep(sweep_id):
        g = groups.get(setting_id(_setting_of(exp.config, grid)))
        if g is None:
            continue
        g["experiments"].append(exp.id)
        g["status"][exp.status] = g["status"].get(exp.status, 0) + 1
        if exp.status == "completed" and exp.summary:
            g["summaries"].append(exp.summary)
    rows = []
    for g in groups.values():
        sums = g.pop("summaries")
        row = {**g, "seeds_done": len(sums), "seeds": len(g["experiments"])}
        for key in ("ppl_nca", "ppl_scratch", "gain", "speedup"):
            row[key], row[key + "_sd"] = _stats([s.get(key) for s in sums])
        row.update(paired_by_seed(sums))
        row["speedup_n"] = sum(1 for s in sums if s.get("speedup") is not None)
        row["wins"] = sum(1 for s in sums if s.get("gain") is not None and s["gain"] > 0)
        row["gains"] = [s["gain"] for s in sums if s.get("gain") is not None]
        row["stage1_flops"], _ = _stats([compute_results(s)["stage1_flops"] for s in sums])
        rows.append(row)
    rows.sort(key=lambda r: (r["gain"] is None, -(r["gain"] or 0.0)))
    for i, r in enumerate(rows):
        r["best"] = i == 0 and r["gain"] is not None
    members = [e for g in groups.values() for e in g["experiments"]]
    return {"sweep_id": sweep.id, "name": sweep.name, "preset": spec["preset"], "scale": spec["scale"],
            "grid": grid, "zip": spec.get("zip", False), "seeds": spec["seeds"], "rows": rows, "members": len(members),
            "done": sum(r["seeds_done"] for r in rows), "created_at": sweep.created_at}


def paired_by_seed(summaries: list[dict]) -> dict:
    """The gain paired by seed (each seed's warm arm against its own scratch run: same data, same
    order) with its 95% t-interval, and a paired t-test's p-value; for one seed, why there is none."""
    pairs = [(math.log(s["ppl_nca"]), math.log(s["ppl_scratch"])) for s in summaries
             if s.get("ppl_nca") and s.get("ppl_scratch")]
    if not pairs:
        return {"gain_ci": None, "p_value": None, "paired_note": "no seed done"}
    warm, base = zip(*pairs)
    g = paired_gain(warm, base)
    return {"gain_ci": None if g.lo is None else [g.lo, g.hi], "p_value": paired_p_value(warm, base),
            "paired_note": g.reason}


def list_sweeps(store: StoreReader) -> list[dict]:
    out = []
    for sw in store.list_sweeps():
        exps = store.experiments_of_sweep(sw.id)
        status: dict[str, int] = {}
        for e in exps:
            status[e.status] = status.get(e.status, 0) + 1
        spec = sw.spec
        out.append({"sweep_id": sw.id, "name": sw.name, "preset": spec["preset"], "scale": spec["scale"],
                    "grid": {k: len(v) for k, v in spec["grid"].items()}, "zip": spec.get("zip", False),
                    "grid_label": grid_label(spec), "seeds": len(spec["seeds"]),
                    "members": len(exps), "status": status, "created_at": sw.created_at})
    return out


def grid_label(spec: dict) -> str:
    """'lr(3) x warmup(2) x 2 seeds'; zipped keys move together, so they share one count."""
    short_keys = [short(k) for k in spec["grid"]]
    counts = [len(v) for v in spec["grid"].values()]
    if spec.get("zip"):
        grid = f"{'+'.join(short_keys)}({counts[0]})"
    else:
        grid = " x ".join(f"{k}({n})" for k, n in zip(short_keys, counts))
    return f"{grid} x {count(len(spec['seeds']), 'seed')}"


def count(n: int, noun: str) -> str:
    """'1 seed', '3 seeds'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def gain_by_key(tab: dict, key: str) -> list[dict]:
    """Mean and sd of the gain for each value of one swept key, over every completed member
    with that value (the other keys' settings and the seeds pooled)."""
    if key not in tab["grid"]:
        raise NcalabError(f"sweep {tab['sweep_id']} does not sweep {key!r}; it sweeps {', '.join(tab['grid'])}")
    out = []
    values = []
    for v in tab["grid"][key]:  # a zipped grid may repeat a value
        if v not in values:
            values.append(v)
    for v in values:
        gains = [g for r in tab["rows"] if r["setting"][key] == v for g in r["gains"]]
        mean, sd = _stats(gains)
        out.append({"value": v, "gain": mean, "gain_sd": sd, "n": len(gains)})
    return out
