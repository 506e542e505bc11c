"""What a report says about an experiment, several experiments or a sweep, gathered from the
run store alone (read-only: making a report never writes to the store).

The result is plain data (dataclasses of numbers, strings and small arrays); ncalab.display
draws it (figures) and assembles the page (report_html). Experiments that share a setting
and differ only in their seed form one group; a group's curves are the mean over its seeds
with the range as a band, and its verdict applies the rule the sweeps use (docs/results.md).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ncalab import __version__
from ncalab.config.grid import setting_label
from ncalab.config.keys import flatten
from ncalab.config.stored import stored_config, with_added
from ncalab.errors import NcalabError
from ncalab.experiment.presets import resolve
from ncalab.experiment.summary import ExperimentSummary, StageCompute
from ncalab.nca import strip
from ncalab.nca.stored import is_nca_corpus, open_stored
from ncalab.nca.strip import first_rules
from ncalab.services import sweeps
from ncalab.services.runs import resolve_experiment
from ncalab.services.study import report_part
from ncalab.services.sweeps import paired_by_seed
from ncalab.store.location import default_home
from ncalab.store.store import RunStore

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store, StoreReader

RULE = ("a warm start counts as helping only if it beats scratch on every seed, on at least 3 seeds (fresh ones, "
        "not used to choose the setting), and its mean gain is more than twice its standard error")
MIN_SEEDS = 3
# Keys that say where or how a run ran, not what it is: they never make two settings differ.
_NOT_SETTING = ("seed", "runtime.", "eval.")
ARMS = ("nca", "scratch")
ICL_PREFIXES = ("icl_", "dyck_")  # the in-context metrics of a stage-1 run
PROBE_PREFIX = "probe:"  # the skill probes of the stage-1 run and both arms (experiment/probing.py)


@dataclass
class Member:
    """One experiment as the store holds it now (finished or not)."""

    id: str
    name: str | None
    seed: int
    status: str
    config: dict  # with_added, nested
    summary: ExperimentSummary | None
    runs: list[dict]  # kind, status, tokens, total_tokens, error
    curves: dict[str, tuple[list, list]]  # "nca", "scratch": val_ppl; "stage1": val_loss (x = tokens)
    icl: dict[str, tuple[list, list]]  # in-context metric -> (frame, value)
    compute: dict[str, StageCompute]
    heartbeat_at: float | None = None
    error: str | None = None
    stage1_model: Path | None = None  # its stage-1 run's model folder (with rules.npz since stage 1 keeps it)
    probes: list[dict] = field(default_factory=list)  # runs' skill probe metrics: {kind, latest_metrics} (display.probes)


@dataclass
class Series:
    """A curve to draw: one experiment's, or a group's mean with its range over seeds."""

    label: str
    x: list[float]
    y: list[float]
    lo: list[float] | None = None
    hi: list[float] | None = None
    kind: str = "nca"  # nca, scratch, stage1, or a metric name


@dataclass
class Group:
    """Experiments of one setting (a sweep's row, or experiments that differ only in seed)."""

    label: str
    setting: dict
    members: list[Member]
    verdict: dict = field(default_factory=dict)


@dataclass
class Report:
    title: str
    kind: str  # experiment, experiments or sweep
    ids: list[str]
    groups: list[Group]
    config: dict  # flat: the first member's (a sweep's: its base)
    differs: list[str]  # keys of config that differ from the preset's defaults
    swept: list[str]  # keys whose values make the groups
    source: dict  # what stage 1 trained on
    strip: list[dict] = field(default_factory=list)  # NCA rules: rule_seed, score, frames (F, H, W)
    notes: list[str] = field(default_factory=list)
    sweep_table: dict | None = None
    study: dict | None = None  # a scaling study's grid, answers and D_T curves (services.study.report_part)
    made_at: float = field(default_factory=time.time)
    home: str = ""
    version: str = __version__

    strip_note: str | None = None  # why there are no frames
    _pending: tuple | None = field(default=None, repr=False)  # (pool, future) of frames drawn in the background

    def wait_strip(self) -> list[dict]:
        """The NCA frames, once the background process (if any) has drawn them."""
        if self._pending is not None:
            pool, future = self._pending
            self._pending = None
            try:
                self.strip, self.strip_note = future.result()
            except Exception as e:  # the process died: the report goes on without frames
                self.strip, self.strip_note = [], f"no NCA frames: {type(e).__name__}: {e}"
            finally:
                pool.shutdown()
        return self.strip

    @property
    def members(self) -> list[Member]:
        return [m for g in self.groups for m in g.members]

    @property
    def unfinished(self) -> list[Member]:
        return [m for m in self.members if m.status != "completed"]


# ---- opening the store read-only ------------------------------------------------------------------

@contextlib.contextmanager
def open_store(home):
    """The store at ``home``, read-only. A store of an older schema is not upgraded: a snapshot
    of it is taken into a temporary folder and the snapshot is upgraded and read instead."""
    home = Path(home if home is not None else default_home()).expanduser()
    try:
        store = RunStore(home, readonly=True)
    except NcalabError as e:
        if "older than" not in str(e) or not (home / "ncalab.db").is_file():
            raise
        with tempfile.TemporaryDirectory(prefix="ncalab-report-") as tmp:
            _snapshot(home / "ncalab.db", Path(tmp) / "ncalab.db")
            store = RunStore(tmp)
            try:
                yield store
            finally:
                store.close()
        return
    try:
        yield store
    finally:
        store.close()


def _snapshot(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (its WAL included), read without writing."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


# ---- gathering -----------------------------------------------------------------------------------

def gather(store: Store, idents: list[str], frames: bool = True, background: bool = False) -> Report:
    """The report of one sweep (an s- id) or of experiments (e- ids; a run id stands for its
    experiment). ``frames`` draws a few of the NCA rules stage 1 trained on (``background``: in
    a forked process, collected by Report.wait_strip)."""
    if not idents:
        raise NcalabError("give at least one experiment or sweep id")
    sweeps = [i for i in idents if i.startswith("s-")]
    if sweeps and len(idents) > 1:
        raise NcalabError("a report covers one sweep or several experiments, not both: give one s- id alone")
    rep = _sweep_report(store, sweeps[0]) if sweeps else _experiments_report(store, idents)
    rep.home = str(store.home)
    for g in rep.groups:
        g.verdict = verdict([m.summary for m in g.members if m.summary is not None])
    if frames:
        _add_strip(rep, background)
    return rep


def _experiments_report(store: Store, idents: list[str]) -> Report:
    exps = list({e.id: e for e in (resolve_experiment(store, i) for i in idents)}.values())
    members = members_of(store, exps)
    flats = [_setting_keys(flatten(m.config)) for m in members]
    swept = sorted(k for k in set().union(*flats) if len({_key(f.get(k)) for f in flats}) > 1)
    groups: dict[str, Group] = {}
    for m, flat in zip(members, flats):
        setting = {k: flat.get(k) for k in swept}
        g = groups.setdefault(_key(setting), Group(_label(setting), setting, []))
        g.members.append(m)
    first = exps[0]
    kind = "experiment" if len(exps) == 1 else "experiments"
    title = f"experiment {first.id}" if len(exps) == 1 else f"{len(exps)} experiments"
    return Report(title, kind, [e.id for e in exps], list(groups.values()), **_config_part(first.config, store),
                  swept=swept, source=source_of(members[0].config))


def _sweep_report(store: Store, sweep_id: str) -> Report:
    tab = sweeps.table(store, sweep_id, reap_first=False)
    by_id = {e.id: e for e in store.experiments_of_sweep(sweep_id)}
    read = {m.id: m for m in members_of(store, [by_id[i] for r in tab["rows"] for i in r["experiments"]])}
    groups = [Group(r["label"], r["setting"], [read[i] for i in r["experiments"]]) for r in tab["rows"]]
    base = store.get_sweep(sweep_id).spec["base"]
    kind = "study" if "study" in store.get_sweep(sweep_id).spec else "sweep"
    title = f"{kind} {sweep_id}" + (f" ({tab['name']})" if tab["name"] else "")
    rep = Report(title, "sweep", [sweep_id], groups, **_config_part(base, store), swept=list(tab["grid"]),
                 source=source_of(base), sweep_table=tab)
    if kind == "study":  # a scaling study: its grid, laws and answers
        rep.study = report_part(store, sweep_id)
    if "stage1.source" in tab["grid"]:
        rep.source["swept"] = list(tab["grid"]["stage1.source"])
    return rep


def members_of(store: Store, exps) -> list[Member]:
    """Each experiment's curves, in-context figures, compute and summary, as stored now (every
    curve of every experiment read in one query)."""
    runs_of = [{r.kind: r for r in store.runs_of(e.id)} for e in exps]
    points = store.series([r.id for runs in runs_of for r in runs.values()], ("val_ppl", "val_loss"),
                          (*ICL_PREFIXES, PROBE_PREFIX))
    return [_member(store, e, runs, points) for e, runs in zip(exps, runs_of)]


def _member(store: Store, exp, runs: dict, points: dict) -> Member:
    def tokens_curve(kind: str, name: str) -> tuple[list, list]:
        _, tokens, values = points.get((runs[kind].id, name), ([], [], []))
        return tokens, values

    curves = {arm: tokens_curve(arm, "val_ppl") for arm in ARMS if arm in runs}
    icl: dict[str, tuple[list, list]] = {}
    if "stage1" in runs:
        curves["stage1"] = tokens_curve("stage1", "val_loss")
        stage1 = runs["stage1"].id
        for (run_id, name), (steps, _, values) in sorted(points.items()):
            if run_id == stage1 and name.startswith(ICL_PREFIXES):
                icl[name] = (steps, values)
    summary = ExperimentSummary.from_dict(exp.summary) if exp.summary else None
    compute = dict(summary.compute) if summary and summary.compute else {}
    if not compute:  # unfinished (or from before compute was kept): what each finished stage logged
        for kind in ("stage1", *ARMS):
            c = StageCompute.from_metrics(store.latest_metrics(runs[kind].id)) if kind in runs else None
            if c is not None:
                compute[kind] = c
    run_rows = [{"kind": r.kind, "status": r.status, "tokens": r.tokens, "total_tokens": r.total_tokens,
                 "error": r.error} for r in runs.values()]
    by_id = {r.id: r.kind for r in runs.values()}
    probes: dict[str, dict[str, float]] = {}  # each run's last stored value of every probe metric
    for (run_id, name), (_, _, values) in points.items():
        if run_id in by_id and name.startswith(PROBE_PREFIX) and values:
            probes.setdefault(by_id[run_id], {})[name] = values[-1]
    return Member(exp.id, exp.name, exp.seed, exp.status, with_added(exp.config), summary, run_rows,
                  {k: v for k, v in curves.items() if v[0]}, icl, compute,
                  getattr(exp, "heartbeat_at", None), getattr(exp, "error", None),
                  store.run_dir(runs["stage1"]) / "model" if "stage1" in runs else None,
                  [{"kind": k, "latest_metrics": m} for k, m in probes.items()])


def _setting_keys(flat: dict) -> dict:
    return {k: v for k, v in flat.items() if not k.startswith(_NOT_SETTING)}


def _key(v) -> str:
    import json

    return json.dumps(v, sort_keys=True, default=str)


def _label(setting: dict) -> str:
    return setting_label(setting) if setting else ""


def _config_part(tree: dict, store: StoreReader) -> dict:
    """The flat config and the keys where it differs from its preset's defaults. Only keys the
    experiment stored count: a setting added since it ran is shown at the value it ran with, not
    flagged as a change."""
    flat = flatten(with_added(tree))
    try:
        preset = flatten(resolve(tree.get("preset", "code"), tree.get("scale", "tiny"), store.home).to_dict())
    except NcalabError:  # a saved family that is gone: nothing to compare with
        return {"config": flat, "differs": []}
    stored = flatten(tree)
    differs = [k for k in flat if k in stored and k != "seed" and _key(flat[k]) != _key(preset.get(k, flat[k]))]
    return {"config": flat, "differs": differs}


def source_of(tree: dict) -> dict:
    """What stage 1 trained on, in words and settings."""
    cfg = stored_config(tree)
    s1 = cfg.stage1
    out = {"source": s1.source, "tokens": s1.tokens, "corpus": s1.corpus, "stage2_corpus": cfg.data.corpus}
    if s1.source == "nca":
        n = cfg.nca
        out.update(band=cfg.band().label(), grid=f"{n.height}x{n.width}", alphabet=n.alphabet, patch=n.patch,
                   seed=cfg.seed)
    return out


# ---- the verdict: the sweeps' decision rule ---------------------------------------------------------

def interval(values: list[float]) -> dict:
    """Mean, sd, standard error and mean ± 2 standard errors (None where too few values)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"n": 0, "mean": None, "sd": None, "se": None, "lo": None, "hi": None}
    mean = statistics.fmean(vals)
    sd = statistics.stdev(vals) if len(vals) > 1 else None
    se = None if sd is None else sd / math.sqrt(len(vals))
    lo, hi = (None, None) if se is None else (mean - 2 * se, mean + 2 * se)
    return {"n": len(vals), "mean": mean, "sd": sd, "se": se, "lo": lo, "hi": hi}


def verdict(summaries: list[ExperimentSummary]) -> dict:
    """Gain and speedup over the finished seeds with their intervals, and whether the rule is met."""
    gain = interval([s.gain for s in summaries])
    speed = interval([s.speedup for s in summaries if s.speedup])
    n, wins = gain["n"], sum(1 for s in summaries if s.gain > 0)
    out = {"gain": gain, "speedup": speed, "wins": wins, "seeds": n,
           "ppl_nca": interval([s.ppl_nca for s in summaries]), "ppl_scratch": interval([s.ppl_scratch for s in summaries]),
           # the gain paired by seed, as `sweep show` gives it: 95% t-interval and a paired t-test
           "paired": paired_by_seed([{"ppl_nca": s.ppl_nca, "ppl_scratch": s.ppl_scratch} for s in summaries])}
    if n == 0:
        return {**out, "met": False, "why": "no finished seed yet"}
    if n < MIN_SEEDS:
        return {**out, "met": False, "why": f"{n} of the {MIN_SEEDS} seeds the rule needs"}
    if wins < n:
        return {**out, "met": False, "why": f"beats scratch on {wins} of {n} seeds"}
    if gain["mean"] <= 2 * gain["se"]:
        return {**out, "met": False, "why": f"mean gain {gain['mean']:+.4f} is not above 2 x SE = {2 * gain['se']:.4f}"}
    return {**out, "met": True, "why": f"beats scratch on {n}/{n} seeds and {gain['mean']:+.4f} > 2 x SE"}


# ---- curves over seeds -----------------------------------------------------------------------------

def spread(curves: list[tuple[list, list]]) -> tuple[list, list, list | None, list | None]:
    """Mean and range over curves, on the x of the longest; a curve counts only where it has
    points (a seed still running adds to the start only)."""
    arrays = [(np.asarray(x, float), np.asarray(y, float)) for x, y in curves if len(x)]
    if not arrays:
        return [], [], None, None
    if len(arrays) == 1:
        return arrays[0][0].tolist(), arrays[0][1].tolist(), None, None
    xs = max((c[0] for c in arrays), key=len)
    ys = np.full((len(arrays), len(xs)), np.nan)
    for i, (x, y) in enumerate(arrays):
        inside = xs <= x[-1] + 1e-9
        ys[i, inside] = np.interp(xs[inside], x, y)
    with np.errstate(all="ignore"), _quiet_nan():
        mean, lo, hi = np.nanmean(ys, 0), np.nanmin(ys, 0), np.nanmax(ys, 0)
    return xs.tolist(), mean.tolist(), lo.tolist(), hi.tolist()


@contextlib.contextmanager
def _quiet_nan():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def curve_series(rep: Report) -> list[Series]:
    """Validation perplexity of both arms: per experiment when there is one group, else each
    group's mean over seeds; scratch drawn once when every group shares it."""
    out: list[Series] = []
    many = len(rep.groups) > 1
    scratch: dict[str, Series] = {}
    for g in rep.groups:
        for arm in ARMS:
            x, y, lo, hi = spread([m.curves[arm] for m in g.members if arm in m.curves])
            if not x:
                continue
            name = _arm_name(arm, rep.source)
            s = Series(f"{g.label}: {name}" if many else name, x, y, lo, hi, arm)
            if arm == "scratch":
                scratch.setdefault(_key([round(v, 6) for v in y]), s)
            else:
                out.append(s)
    if len(scratch) == 1:
        only = next(iter(scratch.values()))
        only.label = "scratch"
    return out + list(scratch.values())


def _arm_name(arm: str, source: dict) -> str:
    if arm == "scratch":
        return "scratch"
    return "warm-started" if source.get("swept") else f"{source.get('source', 'nca')}-initialised"


def stage1_series(rep: Report) -> list[Series]:
    out = []
    for g in rep.groups:
        x, y, lo, hi = spread([m.curves["stage1"] for m in g.members if "stage1" in m.curves])
        if x:
            out.append(Series(g.label or "stage 1", x, y, lo, hi, "stage1"))
    return out


def icl_series(rep: Report) -> list[Series]:
    """In-context accuracy per frame: every band of one group, or the training band of each group.
    A series' kind is the metric's name, its label the group's (empty for one group)."""
    out = []
    many = len(rep.groups) > 1
    for g in rep.groups:
        names = sorted({n for m in g.members for n in m.icl})
        if many:
            names = [n for n in names if n in ("icl_cell_acc", "dyck_validity")]
        for name in names:
            x, y, lo, hi = spread([m.icl[name] for m in g.members if name in m.icl])
            if x:
                out.append(Series(g.label if many else "", x, y, lo, hi, name))
    return out


# ---- NCA frames -------------------------------------------------------------------------------------

def _add_strip(rep: Report, background: bool = False) -> None:
    """The NCA frames: the ones stage 1 kept, else drawn again (see draw_strip)."""
    if not kept_strip(rep):
        draw_strip(rep, background)


def kept_strip(rep: Report) -> bool:
    """Read the NCA frames stage 1 kept beside its model (ncalab.nca.strip); False when the
    report has no NCA stage 1 or its experiment is from before stage 1 kept them."""
    first = _nca_member(rep)
    kept = strip.load(first.stage1_model) if first is not None and first.stage1_model else None
    if kept:
        rep.strip = kept
    return bool(kept)


def draw_strip(rep: Report, background: bool = False) -> None:
    """Draw the NCA frames again from the experiment's settings (in a forked process when
    ``background``, so the simulator's start-up overlaps the figures on a second core);
    Report.wait_strip collects them."""
    first = _nca_member(rep)
    if first is None:
        return
    tree = first.config
    if background and can_fork():
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
        rep._pending = (pool, pool.submit(strip_of, tree))
    else:
        rep.strip, rep.strip_note = strip_of(tree)


def gather_at(home, idents: list[str], frames: bool = True) -> Report:
    """gather() on the store at ``home``, with only the frames stage 1 kept (a forked process
    runs this while its parent loads the plotting library)."""
    with open_store(home) as store:
        rep = gather(store, idents, frames=False)
    if frames:
        kept_strip(rep)
    return rep


def can_fork() -> bool:
    import multiprocessing
    import os
    import threading

    # fork only from a single-threaded process (the CLI), and only where a second core can take it
    return ("fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) > 1
            and threading.active_count() == 1)


def strip_of(tree: dict, rules: int = 4, frames: int = 6) -> tuple[list[dict], str | None]:
    """A few rules the experiment's stage 1 trained on: the first of its stream's rules in its
    band (every stream takes those first), with the frames of the trajectory that was scored.
    Returns (rows, None), or ([], why there are none)."""
    cfg = stored_config(tree)
    nca, band = cfg.nca, cfg.band()
    if cfg.stage1.corpus and is_nca_corpus(cfg.stage1.corpus):
        try:
            corpus = open_stored(cfg.stage1.corpus)
        except (NcalabError, OSError):
            return [], f"no NCA frames: the stored corpus {cfg.stage1.corpus} cannot be read here"
        nca, band = corpus.cfg, corpus.band or band

    try:
        return first_rules(nca, band, cfg.seed, rules, frames), None
    except NcalabError as e:
        return [], f"no NCA frames: {e}"


def _nca_member(rep: Report) -> Member | None:
    """The first member whose stage 1 is NCA data."""
    for m in rep.members:
        if m.config.get("stage1", {}).get("source", "nca") == "nca":
            return m
    return None


def unfinished_line(rep: Report) -> str | None:
    """'Still running: ...' for a report of experiments not all finished (None when all are)."""
    left = rep.unfinished
    if not left:
        return None
    counts: dict[str, int] = {}
    for m in left:
        counts[m.status] = counts.get(m.status, 0) + 1
    what = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(rep.made_at))
    return (f"Not finished: {what} of {len(rep.members)} experiment{'s' if len(rep.members) > 1 else ''}. "
            f"This report shows what the store held at {when}; make it again for the rest.")


def check_out(path: Path, suffixes: tuple[str, ...]) -> Path:
    """An output path that can be written, with a suffix from ``suffixes``; checked before any work."""
    path = Path(path).expanduser()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in suffixes:
        raise NcalabError(f"cannot write {path}: the format is told by the suffix, one of "
                          f"{', '.join('.' + s for s in suffixes)}")
    if path.is_dir():
        raise NcalabError(f"cannot write {path}: it is a folder")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise NcalabError(f"cannot write {path}: no folder {parent}")
    if not _writable(path):
        raise NcalabError(f"cannot write {path}: permission denied")
    return path


def _writable(path: Path) -> bool:
    import os

    return os.access(path, os.W_OK) if path.exists() else os.access(path.parent or Path("."), os.W_OK)


def write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary file beside it, so a failed write leaves no half file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        shutil.move(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise NcalabError(f"cannot write {path}: {e.strerror or e}") from None
