"""Scaling studies: a grid of model sizes N and stage-2 budgets D for scratch, the matched-scale
control and stage-1 sources, run as a sweep, and the answers fitted from what it stored.

A study is a sweep whose spec also holds its declaration (``spec["study"]``). Its members are
ordinary experiments, one per (size, arm, seed): a source's experiment gives that source's arm
(its warm-started run) and scratch (its scratch run, identical across the sources of a size and
seed, so trained once and reused); the matched-scale control is the first source's experiment
with `transfer.control=matched_scale` (its stage 1 reused too). Every member runs the longest
budget on a wsd schedule with the shorter ones as cooldown branches (experiment/budgets.py),
so each (N, arm, seed) costs about 1.15 times its longest budget. The points are read back
from the runs' `budget_val_loss` metrics, so a study answers while it runs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ncalab import plugins
from ncalab.config import ExperimentConfig
from ncalab.config.grid import apply_setting, parse_grid, settings
from ncalab.config.keys import lookup
from ncalab.config.stored import stored_config
from ncalab.errors import NcalabError
from ncalab.experiment.budgets import LOSS
from ncalab.jobs.queue import reap
from ncalab.lazy import np
from ncalab.planning.compute import model_compute
from ncalab.scaling.answers import StudyAnswers, StudyPoint, answers, as_dict, predict
from ncalab.services import sweeps
from ncalab.services.sweeps import count
from ncalab.train.schedule import warmup_steps

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store

SCRATCH, MATCHED = "scratch", "matched_scale"
SOURCE_KEYS = ("stage1.source", "stage1.tokens", "transfer.control")


@dataclass(frozen=True)
class Arm:
    """A stage-1 arm of the study: a source with its stage-1 budget, or the matched-scale
    control of one (scratch is every member's own scratch run)."""

    name: str
    source: str
    stage1_tokens: int
    control: str = "none"


def parse_budgets(text: str) -> list[int]:
    """'1e6,2e6,4e6' or '1M,2M,4M' -> sorted whole token counts, each > 0 and distinct."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        out.append(_tokens(part, "--budgets"))
    if len(out) != len(set(out)):
        raise NcalabError(f"--budgets lists a budget twice: {text}")
    if len(out) < 2:
        raise NcalabError(f"a study needs at least 2 stage-2 budgets (--budgets D1,D2,...), got {len(out)}: "
                          f"one budget cannot separate the data term of the law")
    return sorted(out)


_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}


def _tokens(text: str, what: str) -> int:
    scale = _SUFFIX.get(text[-1].lower(), 1.0)
    try:
        value = float(text[:-1] if scale != 1.0 else text) * scale
    except ValueError:
        raise NcalabError(f"{what}: {text!r} is not a number of tokens (e.g. 2e6 or 2M)") from None
    if not math.isfinite(value) or value <= 0 or value != int(value):
        raise NcalabError(f"{what}: {text!r} must be a positive whole number of tokens")
    return int(value)


def parse_arms(text: str, base: ExperimentConfig, matched_scale: bool) -> list[Arm]:
    """'nca,dyck:2e6' -> the sources' arms (each with its stage-1 budget, the base's by default),
    then the matched-scale control of the first source."""
    known = plugins.names()
    arms: list[Arm] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, budget = part.partition(":")
        if name not in known:
            raise NcalabError(f"--sources: unknown stage-1 source {name!r}; known: {', '.join(known)}")
        if name in (a.name for a in arms):
            raise NcalabError(f"--sources lists {name} twice")
        arms.append(Arm(name, name, _tokens(budget, f"--sources {name}") if budget else base.stage1.tokens))
    if not arms:
        raise NcalabError("a study needs at least one stage-1 source (--sources nca,dyck)")
    if matched_scale:
        first = arms[0]
        arms.append(Arm(MATCHED, first.source, first.stage1_tokens, control="matched_scale"))
    return arms


def parse_sizes(items: list[str], base: ExperimentConfig) -> dict[str, list]:
    """['model.d_model=64,128,256', 'model.n_head=2,4,8'] -> the sizes, zipped (each key moves
    with the others), at least two."""
    if not items:
        raise NcalabError("a study needs model sizes: --size model.d_model=64,128,256 (repeatable; zipped)")
    for item in items:
        key = item.split("=", 1)[0].strip()
        if not key.startswith("model."):
            raise NcalabError(f"--size takes model settings (widths, depths, heads), not {key!r}")
    sizes = parse_grid(items, base, zipped=True)
    count = len(next(iter(sizes.values())))
    if count < 2:
        raise NcalabError(f"a study needs at least 2 model sizes, got {count}: one size cannot separate "
                          f"the size term of the law")
    return sizes


def study_base(base: ExperimentConfig, budgets: list[int]) -> ExperimentConfig:
    """The members' shared config: stage 2 on wsd for the longest budget with the others as
    cooldown branches, warmed up for the same number of steps at every budget (the base's
    warm-up share of the shortest budget, when the base gives a share)."""
    cfg = copy.deepcopy(base)
    s2 = cfg.stage2
    if 0 < s2.warmup < 1:
        per_step = s2.batch_size * s2.seq_len
        s2.warmup = float(warmup_steps(-(-budgets[0] // per_step), s2.warmup))
    s2.schedule, s2.tokens, s2.budgets = "wsd", budgets[-1], budgets[:-1]
    return cfg.validate()


def declare(store: Store, base: ExperimentConfig, size_items: list[str], budgets: list[int], arms: list[Arm],
            seeds: list[int], name: str | None = None) -> dict:
    """Store a study and queue its members (nothing is stored if any member cannot run)."""
    sizes = parse_sizes(size_items, base)
    cfg = study_base(base, budgets)
    grid: dict[str, list] = {key: [] for key in [*sizes, *SOURCE_KEYS]}
    for size in settings(sizes, zipped=True):
        for arm in arms:
            for key, value in {**size, "stage1.source": arm.source, "stage1.tokens": arm.stage1_tokens,
                               "transfer.control": arm.control}.items():
                grid[key].append(value)
    study = {"sizes": sizes, "budgets": budgets, "arms": [vars(a) for a in arms]}
    made = sweeps.create_grid(store, cfg, grid, seeds, name, zipped=True, extra={"study": study})
    return {**made, "study_id": made["sweep_id"]}


def spec_of(store: Store, study_id: str) -> dict:
    """The sweep spec of a study; a plain sweep is refused in one line."""
    spec = store.get_sweep(study_id).spec
    if "study" not in spec:
        raise NcalabError(f"{study_id} is a sweep, not a study: `ncalab sweep show {study_id}` shows it")
    return spec


def arm_of(cfg: dict) -> str:
    """The study arm of a member's warm-started run."""
    return MATCHED if lookup(cfg, "transfer.control") == "matched_scale" else lookup(cfg, "stage1.source")


def size_of(cfg: ExperimentConfig) -> int:
    """N: the non-embedding parameters of the member's model."""
    return model_compute(cfg.model, cfg.data.vocab_size, cfg.stage2.seq_len).params_no_embeddings


def points(store: Store, study_id: str) -> list[StudyPoint]:
    """Every stored (arm, N, D, seed, loss) of the study, scratch once per (N, D, seed) however
    many members share it; a budget appears once its run has stored it."""
    spec_of(store, study_id)
    out: dict[tuple, StudyPoint] = {}
    for exp in store.experiments_of_sweep(study_id):
        cfg = stored_config(exp.config)
        n = size_of(cfg)
        for run in store.runs_of(exp.id):
            arm = {"nca": arm_of(exp.config), "scratch": SCRATCH}.get(run.kind)
            if arm is None:
                continue
            for d, loss in zip(*store.curve(run.id, LOSS)):
                out.setdefault((arm, n, d, exp.seed), StudyPoint(arm, float(n), float(d), exp.seed, float(loss)))
    return sorted(out.values(), key=lambda p: (p.arm, p.n, p.d, p.seed))


def grid(store: Store, study_id: str, reap_first: bool = True) -> dict:
    """The declared grid with what is stored: for each arm, size and budget the losses of the
    seeds stored so far. ``reap_first=False`` only reads (the TUI's and a report's read-only store)."""
    spec = spec_of(store, study_id)
    if reap_first:
        reap(store)
    study, base = spec["study"], stored_config(spec["base"])
    sizes = []
    for size in settings(study["sizes"], zipped=True):
        sizes.append({"setting": size, "n": size_of(apply_setting(base, size, base.seed))})
    arms = [SCRATCH, *(a["name"] for a in study["arms"])]
    got: dict[tuple, list[float]] = {}
    for p in points(store, study_id):
        got.setdefault((p.arm, p.n, p.d), []).append(p.loss)
    cells = [{"arm": arm, "n": s["n"], "d": d, "losses": got.get((arm, s["n"], d), [])}
             for arm in arms for s in sizes for d in study["budgets"]]
    members = store.experiments_of_sweep(study_id)
    status: dict[str, int] = {}
    for e in members:
        status[e.status] = status.get(e.status, 0) + 1
    return {"study_id": study_id, "name": store.get_sweep(study_id).name, "arms": arms, "sizes": sizes,
            "budgets": study["budgets"], "seeds": spec["seeds"], "cells": cells, "members": len(members),
            "status": status}


def export(store: Store, study_id: str) -> dict:
    """A study's points with what makes them comparable, as plain data: `ncalab study export`
    writes it, and `study fit --points` pools it with a store's studies (a GPU's with a CPU's)."""
    spec = spec_of(store, study_id)
    return {"study_id": study_id, "comparable": _comparable(stored_config(spec["base"])),
            "points": [vars(p) for p in points(store, study_id)]}


def read_points(path) -> dict:
    """An exported study (or a GPU check's report holding one in its scaling_study part)."""
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise NcalabError(f"--points {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if isinstance(data, dict) and "parts" in data:  # benchmarks/gpu_check.py's report
        data = ((data["parts"].get("scaling_study") or {}).get("figures") or {}).get("export")
    if not (isinstance(data, dict) and isinstance(data.get("points"), list) and "comparable" in data):
        raise NcalabError(f"--points {path}: not an exported study (`ncalab study export ID --out FILE`)")
    try:
        data["points"] = [StudyPoint(str(p["arm"]), float(p["n"]), float(p["d"]), int(p["seed"]), float(p["loss"]))
                          for p in data["points"]]
    except (KeyError, TypeError, ValueError):
        raise NcalabError(f"--points {path}: a point lacks arm, n, d, seed or loss") from None
    return data


def fit(store: Store, study_ids: list[str], at: Sequence[tuple[float, float]] = (), ratio: float = 20.0,
        resamples: int = 1000, seed: int = 0, extra: Sequence[dict] = ()) -> StudyAnswers:
    """The answers from the points of one study, or several pooled, with ``extra`` exported
    ones (a GPU study extending a CPU one's range): all must share the corpus, tokenizer and
    stage-2 settings but the budgets, or their losses cannot share one law."""
    parts = [(sid, export(store, sid)) for sid in dict.fromkeys(study_ids)]
    parts += [(f"the points of {x.get('study_id') or 'a file'}", x) for x in extra]
    if not parts:
        raise NcalabError("give a study id or --points FILE")
    first = parts[0]
    pts: list[StudyPoint] = []
    for name, part in parts:
        if part["comparable"] != first[1]["comparable"]:
            raise NcalabError(f"{first[0]} and {name} differ in their data or stage-2 settings; "
                              f"their losses cannot share one law")
        pts += [p if isinstance(p, StudyPoint) else StudyPoint(**p) for p in part["points"]]
    if not pts:
        raise NcalabError(f"{', '.join(name for name, _ in parts)}: no stored points yet"
                          + (f"; `ncalab study show {study_ids[0]}` shows its progress" if study_ids else ""))
    return answers(pts, at=list(at), ratio=ratio, resamples=resamples, seed=seed)


def _comparable(cfg: ExperimentConfig) -> dict:
    """What must agree for losses to be comparable: the data and tokenizer, and stage 2 but for
    its budgets."""
    d = cfg.to_dict()
    stage2 = {k: v for k, v in d["stage2"].items() if k not in ("tokens", "budgets", "warmup", "micro_batch_size")}
    return {"data": d["data"], "stage2": stage2}


def parse_at(items: list[str]) -> list[tuple[float, float]]:
    """['1.6e9,3e10'] -> [(N, D)]: sizes and budgets at which to predict."""
    out = []
    for item in items:
        n, sep, d = item.partition(",")
        if not sep:
            raise NcalabError(f"--at takes N,D (non-embedding parameters, stage-2 tokens), got {item!r}")
        out.append((float(_tokens(n.strip(), "--at N")), float(_tokens(d.strip(), "--at D"))))
    return out


def study_label(spec: dict) -> str:
    """'3 sizes x 3 budgets x 4 arms x 2 seeds' (a sweep's label would list the zipped keys)."""
    study = spec["study"]
    sizes = len(next(iter(study["sizes"].values())))
    return " x ".join([count(sizes, "size"), count(len(study["budgets"]), "budget"),
                       count(len(study["arms"]) + 1, "arm"), count(len(spec["seeds"]), "seed")])  # + scratch


def list_studies(store: Store) -> list[dict]:
    """Every study, newest first, as `sweep list` rows with the study's own grid label."""
    out = []
    for row in sweeps.list_sweeps(store):
        spec = store.get_sweep(row["sweep_id"]).spec
        if "study" in spec:
            out.append({**row, "grid_label": study_label(spec)})
    return out


def transfer_curves(ans: StudyAnswers, points: int = 40, beyond: float = 1000.0) -> list[dict]:
    """For each source against each baseline with both laws: D_T / D along D = ratio x N, with
    its paired-bootstrap band, from the grid's smallest N to ``beyond`` times its largest (the
    report's figure; where the grid ends is marked there)."""
    out = []
    for pair in ans.pairs:
        fits = ans.fits
        if not (fits[pair.source].fitted and fits[pair.baseline].fitted):
            continue
        lo, hi = fits[pair.source].n_range
        ns = np.geomspace(lo, hi * beyond, points)
        preds = predict(fits, pair.source, pair.baseline, [(float(n), ans.ratio * float(n)) for n in ns])
        out.append({"label": f"{pair.source} vs {pair.baseline}", "n": [p.n for p in preds],
                    "value": [p.multiple.value for p in preds], "lo": [p.multiple.lo for p in preds],
                    "hi": [p.multiple.hi for p in preds], "grid_n": [lo, hi], "ratio": ans.ratio})
    return out


def report_part(store: Store, study_id: str, resamples: int = 1000) -> dict:
    """What a report shows of a study: its grid, and its answers with the D_T curves, or the
    one line saying why there are none yet. Only reads the store."""
    part: dict = {"grid": grid(store, study_id, reap_first=False), "answers": None, "reason": None, "curves": []}
    try:
        part["answers"] = fit(store, [study_id], resamples=resamples)
    except NcalabError as e:
        part["reason"] = str(e)
        return part
    part["curves"] = transfer_curves(part["answers"])
    return part


def answers_dict(ans: StudyAnswers) -> dict:
    """The answers as JSON (`ncalab study fit --json`): crossover, predictions, laws and gains."""
    return as_dict(ans)
