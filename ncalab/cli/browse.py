"""`ncalab runs ...`: browse the run store from the terminal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from ncalab.cli.common import Home, JsonFlag, emit_json, out_console
from ncalab.cli.groups import CommandTable, lazy_group
from ncalab.config.keys import flatten
from ncalab.display.probes import probes_table, stored_models
from ncalab.display.summary import (
    as_summary,
    compute_table,
    downstream_table,
    gib,
    in_context_table,
    si,
    summary_table,
)
from ncalab.display.tables import STATUS_STYLE
from ncalab.errors import NcalabError
from ncalab.services import runs as svc
from ncalab.services.runstore import open_store

# The sub-commands of `ncalab runs`: name -> (module, command function, the help line `ncalab runs
# --help` shows), as cli/main.py's table. Those that start jobs or draw figures (torch, SQLAlchemy,
# matplotlib) sit in modules of their own, so `runs list` and `runs show` import none of that.
RUNS_COMMANDS: CommandTable = {
    "list": (__name__, "list_", "Experiments, newest first, with their results."),
    "show": (__name__, "show", "Config, status, summary and latest metrics of one experiment."),
    "compare": (__name__, "compare", "Configs and results side by side; differences highlighted."),
    "plot": ("ncalab.cli.runs_plot", "plot",
             "Curves in the terminal (or a figure file); an experiment overlays its NCA and scratch runs."),
    "export": (__name__, "export", "Every metric point, as CSV or JSON; or whole experiments to TensorBoard or MLflow."),
    "rm": (__name__, "rm", "Delete an experiment, its runs, metrics and folders (asks first)."),
    "tag": (__name__, "tag", "Add a tag to an experiment."),
    "note": (__name__, "note", "Attach a note to an experiment."),
    "cancel": ("ncalab.cli.runs_jobs", "cancel",
               "Stop an experiment gracefully: its job writes a checkpoint, then the status is cancelled."),
    "resume": ("ncalab.cli.runs_jobs", "resume",
               "Continue a cancelled, failed or lost experiment from its last checkpoints (in the background)."),
    "tail": ("ncalab.cli.runs_jobs", "tail", "Show an experiment's job log and follow it live until the job ends."),
}

app = typer.Typer(cls=lazy_group(RUNS_COMMANDS), help="Browse, compare, plot, export and tidy the runs in the store.",
                  no_args_is_help=True)


def _fmt(v, spec=".3f", none="-"):
    return none if v is None else format(v, spec)


def _when(t):
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "-"


TABLE_ROWS = 50  # the table's default length


def _dur(s):
    if s is None:
        return "-"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"




def list_(
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Only this preset.")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", "-n", show_default=False,
        help="Show the newest N (0: all). Default: the table the newest 50, --json all.")] = None,
    home: Home = None, json_out: JsonFlag = False,
) -> None:
    """Experiments, newest first, with their results."""
    if limit is not None and limit < 0:
        raise NcalabError(f"--limit takes 0 (all) or a positive number, not {limit}")
    rows = svc.listing(home, status, preset)
    if json_out:
        emit_json({"experiments": rows[:limit] if limit else rows})
        return
    total, limit = len(rows), TABLE_ROWS if limit is None else limit
    rows = rows[:limit] if limit else rows  # a table of thousands scrolls away and takes seconds to draw
    title = f"{total} experiments" if len(rows) == total else f"the newest {len(rows)} of {total} experiments"
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    # ppl columns: final validation perplexity of the NCA-initialised and the scratch model
    cols = ["id", "status", "preset", "seed", "nca", "scratch", "gain", "speedup", "took"]
    if out_console.width >= 100:
        cols.insert(8, "started")
    if any(r["tags"] for r in rows):
        cols.append("tags")
    for c in cols:
        t.add_column(c, justify="right" if c in ("seed", "nca", "scratch", "gain", "speedup") else "left",
                     no_wrap=True, min_width=len(c))
    for r in rows:
        gain = r["gain"]
        gain_s = "-" if gain is None else f"[{'green' if gain > 0 else 'red'}]{gain:+.3f}[/]"
        cells = {"id": r["id"], "status": f"[{STATUS_STYLE.get(r['status'], '')}]{r['status']}[/]",
                 "preset": f"{r['preset']}/{r['scale']}", "seed": str(r["seed"]), "nca": _fmt(r["ppl_nca"], ".1f"),
                 "scratch": _fmt(r["ppl_scratch"], ".1f"), "gain": gain_s,
                 "speedup": "-" if r["speedup"] is None else f"{r['speedup']:.2f}x",
                 "started": _when(r["started_at"]), "took": _dur(r["duration_s"]), "tags": ",".join(r["tags"])}
        t.add_row(*[cells[c] for c in cols])
    out_console.print(t)
    if len(rows) < total:
        out_console.print(f"{total - len(rows)} older not shown: --limit 0 shows all, --status or --preset narrows")


def show(ident: Annotated[str, typer.Argument(help="Experiment or run id.")], home: Home = None, json_out: JsonFlag = False) -> None:
    """Config, status, summary and latest metrics of one experiment."""
    store = open_store(home, reap=True)
    d = {**svc.details(store, ident), "store": store.where}  # the database, never its password
    if json_out:
        emit_json(d)
        return
    out_console.print(f"[bold]{d['id']}[/]  {d['preset']} / {d['scale']} / seed {d['seed']}  "
                      f"[{STATUS_STYLE.get(d['status'], '')}]{d['status']}[/]  {_dur(d['duration_s'])}"
                      + (f"  tags: {', '.join(d['tags'])}" if d["tags"] else ""))
    if d["note"]:
        out_console.print(f"note: {d['note']}")
    if d["summary"]:
        s = as_summary(d["summary"])
        out_console.print(summary_table(s))
        for table in (in_context_table(s), compute_table(s), downstream_table(s)):
            if table is not None:
                out_console.print(table)
    t = Table(title="runs", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    gpu = any("stage_peak_device_bytes" in r["latest_metrics"] for r in d["runs"])
    for c in ("run", "kind", "status", "tokens", "val loss", "val ppl", "peak GiB", *(["GPU GiB"] if gpu else [])):
        t.add_column(c, no_wrap=True, min_width=len(c))
    for r in d["runs"]:
        m = r["latest_metrics"]
        t.add_row(r["id"], r["kind"], r["status"] + (f" (pid {r['pid']})" if r["pid"] else ""),
                  f"{r['tokens']:,}/{r['total_tokens']:,}", _fmt(m.get("val_loss"), ".4f"), _fmt(m.get("val_ppl"), ".2f"),
                  gib(m.get("stage_peak_rss_bytes"), unit=False),
                  *([gib(m.get("stage_peak_device_bytes"), unit=False)] if gpu else []))
    out_console.print(t)
    probes = probes_table(stored_models(d["runs"]))
    if probes is not None:
        out_console.print(probes)
    devices = {r["device"] for r in d["runs"] if r["device"]}
    if devices:
        out_console.print(f"device: {', '.join(sorted(devices))}")
    out_console.print(f"store: {d['store']}")
    for r in d["runs"]:
        if r["error"]:
            out_console.print(f"[red]{r['kind']} failed:[/] {r['error']}")
    cfg = Table(title="config", show_header=False, box=None)
    for k, v in flatten(d["config"]).items():
        cfg.add_row(k, json.dumps(v))
    out_console.print(cfg)


def compare(idents: Annotated[list[str], typer.Argument(help="Two or more experiment ids.")], home: Home = None,
            all_keys: Annotated[bool, typer.Option("--all", help="Show every config key, not only those that differ.")] = False,
            baseline: Annotated[str | None, typer.Option(
                "--baseline", help="The arm the others are compared with, by one of its experiment ids (default: the "
                                   "first id's arm).")] = None,
            json_out: JsonFlag = False) -> None:
    """Configs and results side by side; differences highlighted.

    Experiments that differ only in their seed form an arm: with two or more arms, each arm's gain and its difference to the baseline arm, paired by seed, with 95% intervals and paired t-tests.
    """
    c = svc.compare(open_store(home, reap=True), idents)
    c["arms"] = svc.arms(c, baseline)
    if json_out:
        emit_json(c)
        return
    t = Table(title="comparison")
    t.add_column("")
    for e in c["experiments"]:
        t.add_column(e["id"], justify="right")
    for k in svc.SUMMARY_KEYS:
        t.add_row(f"[bold]{k}[/]", *[_fmt(e["results"][k], ".4f") for e in c["experiments"]])
    for k in svc.COMPUTE_KEYS:
        t.add_row(f"[bold]{k}[/]", *[si(e["results"][k]) for e in c["experiments"]])
    for k in svc.MEMORY_KEYS:
        t.add_row(f"[bold]{k.removesuffix('_bytes')}[/]", *[gib(e["results"][k]) for e in c["experiments"]])
    for k in (c["keys"] if all_keys else c["differs"]):
        style = "yellow" if k in c["differs"] else ""
        t.add_row(f"[{style}]{k}[/]" if style else k, *[json.dumps(e["config"].get(k)) for e in c["experiments"]])
    out_console.print(t)
    if not c["differs"]:
        out_console.print("[dim]the configs are identical[/]")
    if len(c["arms"]) > 1:
        out_console.print(_arms_table(c))


def _estimate_text(e: dict) -> tuple[str, str]:
    """(gain [95% CI], p) of one paired estimate, or the reason there is no interval."""
    if e["mean"] is None:
        return "-", e["why"] or "-"
    ci = f" [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]" if e["ci"] else f" ({e['why']})"
    return f"{e['mean']:+.3f}{ci}", "-" if e["p"] is None else f"{e['p']:.2g}"


def _arms_table(c: dict) -> Table:
    differs = [k for k in c["differs"] if not k.startswith(svc.NOT_THE_ARM)]
    config = {e["id"]: e["config"] for e in c["experiments"]}
    t = Table(title="arms (experiments differing only in their seed): gains paired by seed, 95% t-intervals, "
                    "paired t-tests", box=box.SIMPLE_HEAD)
    for col in ("arm", "seeds", "gain vs own scratch", "p", "vs baseline (NCA-side ppl)", "p"):
        t.add_column(col, justify="left" if col in ("arm", "vs baseline (NCA-side ppl)", "gain vs own scratch") else "right")
    for arm in c["arms"]:
        first = config[arm["experiments"][0]]
        label = " ".join(f"{k}={json.dumps(first.get(k))}" for k in differs) or arm["experiments"][0]
        vs = ("baseline", "") if arm["baseline"] else _estimate_text(arm["vs_baseline"])
        t.add_row(label, str(len(arm["seeds"])), *_estimate_text(arm["gain"]), *vs)
    return t


def export(idents: Annotated[list[str], typer.Argument(help="Experiment or run ids.")],
           fmt: Annotated[str, typer.Option("--format", help="csv, json, tensorboard or mlflow.")] = "csv",
           out: Annotated[Path | None, typer.Option("--out", help="File to write (default: stdout); for tensorboard "
                                                    "and mlflow a folder (default: the experiment's tensorboard "
                                                    "folder; MLFLOW_TRACKING_URI or the store's mlflow.db).")] = None,
           home: Home = None) -> None:
    """Every metric point, as CSV or JSON; or whole experiments to TensorBoard or MLflow."""
    if fmt in svc.TRACKER_FORMATS:
        for where in svc.export_to_tracker(open_store(home, reap=True), idents, fmt, out):
            out_console.print(f"wrote {where}")
        return
    text = svc.export(open_store(home, reap=True), idents, fmt)
    if out is None:
        typer.echo(text, nl=False)
    else:
        svc.write_text(out, text)


def rm(ident: Annotated[str, typer.Argument(help="Experiment id.")],
       yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False, home: Home = None) -> None:
    """Delete an experiment, its runs, metrics and folders (asks first)."""
    store = open_store(home, reap=True)
    exp = svc.resolve_experiment(store, ident)
    if not yes and not typer.confirm(f"delete experiment {exp.id} ({exp.preset}/{exp.scale}, {exp.status}) and its files?"):
        raise NcalabError("nothing deleted")
    svc.remove(store, exp.id)
    out_console.print(f"deleted {exp.id}")


def tag(ident: Annotated[str, typer.Argument()], tag_: Annotated[str, typer.Argument(metavar="TAG")], home: Home = None) -> None:
    """Add a tag to an experiment."""
    store = open_store(home, reap=True)
    store.tag(svc.resolve_experiment(store, ident).id, tag_)


def note(ident: Annotated[str, typer.Argument()], text: Annotated[str, typer.Argument()], home: Home = None) -> None:
    """Attach a note to an experiment."""
    store = open_store(home, reap=True)
    store.set_note(svc.resolve_experiment(store, ident).id, text)
