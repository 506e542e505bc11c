"""`ncalab sweep`: a grid of settings times seeds, through the job queue; show, plot, extend."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from ncalab.cli.common import (
    ConfigFile,
    Corpus,
    Detach,
    Device,
    Executor,
    GpusPerNode,
    Home,
    JsonFlag,
    MaxJobs,
    Name,
    Nodes,
    NProc,
    Partition,
    Preset,
    Scale,
    Sets,
    SlurmArg,
    TimeLimit,
    Track,
    emit_json,
    err_console,
    out_console,
    scale_settings,
    track_setting,
)
from ncalab.display.figures import PLOT_FORMATS, gain_by_key_figure, save_figure
from ncalab.display.plots import gain_plot
from ncalab.display.tables import SWEEP_LEGEND, status_cell, sweep_table
from ncalab.errors import NcalabError
from ncalab.services import sweeps
from ncalab.services.config import resolve_config
from ncalab.services.jobs import members_progress, schedule, set_max_jobs, start_members
from ncalab.services.report import check_out
from ncalab.services.runstore import open_store

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store

app = typer.Typer(help="Sweeps: run a grid of settings over seeds, as experiments grouped in the store.")

Grid = Annotated[list[str] | None, typer.Option(
    "--grid", help="KEY=V1,V2,... (repeatable; the sweep runs the cartesian product). List values: attn+norm; bands: 0.3:0.5.")]


def seed_list(n: int, start: int) -> list[int]:
    if n < 1:
        raise NcalabError(f"--seeds must be at least 1, got {n}")
    return list(range(start, start + n))


@app.callback(invoke_without_command=True)
def sweep(
    ctx: typer.Context,
    preset: Preset = "code", scale: Scale = "tiny",
    grid: Grid = None,
    zipped: Annotated[bool, typer.Option("--zip", help="Pair the grids' values position by position instead of "
                                         "taking their product (e.g. width with head count).")] = False,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per setting.")] = 1,
    seed_start: Annotated[int, typer.Option("--seed-start", help="First seed (fresh seeds for a confirmation sweep).")] = 0,
    corpus: Corpus = None, config: ConfigFile = None,
    set_: Sets("A base setting every member shares (repeatable).") = None,
    device: Device = None, name: Name("sweep") = None, home: Home = None,
    detach: Detach("Queue the members and return at once.") = False, max_jobs: MaxJobs = None, track: Track = None,
    nproc: NProc = None, executor: Executor = None, nodes: Nodes = None, gpus_per_node: GpusPerNode = None,
    partition: Partition = None, time_limit: TimeLimit = None, slurm_arg: SlurmArg = None,
    json_out: JsonFlag = False,
) -> None:
    """Run a sweep: every setting of the grid, for each seed, as background jobs. Without
    --detach it shows progress until the sweep ends; Ctrl-C stops watching, not the jobs."""
    if ctx.invoked_subcommand is not None:
        return
    if not grid:
        raise NcalabError("a sweep needs at least one --grid KEY=V1,V2,... (see `ncalab sweep --help`)")

    sets = (set_ or []) + track_setting(track) + scale_settings(nproc, executor, nodes, gpus_per_node, partition,
                                                                time_limit, slurm_arg)
    base = resolve_config(preset, scale, config, sets, corpus=corpus, device=device, home=home)
    store = open_store(home, reap=True)
    if max_jobs is not None:
        set_max_jobs(store, max_jobs)
    made = sweeps.create(store, base, grid, seed_list(seeds, seed_start), name, zipped=zipped)
    start_members(store, made["experiments"], base, max_jobs)  # on a cluster: one job array
    if not detach:
        watch_members(store, made["sweep_id"], quiet=json_out)
    if json_out:
        emit_json(sweeps.table(store, made["sweep_id"]) if not detach else made)
    elif detach:
        out_console.print(f"sweep {made['sweep_id']}: {len(made['experiments'])} experiments queued "
                          f"({sweeps.count(made['settings'], 'setting')} x {sweeps.count(len(made['seeds']), 'seed')}); "
                          f"`ncalab sweep show {made['sweep_id']}` shows the table")
    else:
        print_table(sweeps.table(store, made["sweep_id"]))


def watch_members(store: Store, sweep_id: str, quiet: bool = False) -> None:
    """Progress until every member has ended (jobs run detached; Ctrl-C only stops watching)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("sweep {task.fields[sid]}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=err_console, disable=quiet)
    try:
        with bar:
            task = bar.add_task("", total=None, sid=sweep_id, info="")
            while True:
                now = members_progress(store, sweep_id)  # also starts the queue when nothing runs
                info = f"running: {now.running}" if now.running else ""
                bar.update(task, total=now.total, completed=now.ended, info=info)
                if now.done:
                    break
                time.sleep(2.0)
    except KeyboardInterrupt:
        err_console.print(f"stopped watching; the jobs go on. `ncalab sweep show {sweep_id}` shows the table")
        raise typer.Exit(0) from None


def print_table(tab: dict) -> None:
    out_console.print(sweep_table(tab))
    out_console.print(f"[dim]{SWEEP_LEGEND}[/]")


@app.command("show")
def show(sweep_id: Annotated[str, typer.Argument(help="A sweep id (s-...).")], home: Home = None, json_out: JsonFlag = False) -> None:
    """One row per setting: mean ± sd of ppl_nca, ppl_scratch, gain and speedup; best first."""
    tab = sweeps.table(open_store(home, reap=True), sweep_id)
    if json_out:
        emit_json(tab)
    else:
        print_table(tab)


@app.command("list")
def list_(home: Home = None, json_out: JsonFlag = False) -> None:
    """Every sweep, newest first."""
    rows = sweeps.list_sweeps(open_store(home, reap=True))
    if json_out:
        emit_json({"sweeps": rows})
        return
    t = Table(title=f"{len(rows)} sweeps", box=box.SIMPLE_HEAD, title_justify="left", padding=(0, 1), pad_edge=False)
    # ids and counts never wrap; a long name is cut, a long grid or status wraps
    t.add_column("id", no_wrap=True, min_width=10)
    t.add_column("name", no_wrap=True, overflow="ellipsis", max_width=22)
    t.add_column("grid x seeds", min_width=19)
    t.add_column("done", justify="right", no_wrap=True, min_width=5)
    t.add_column("status", min_width=10)
    for r in rows:
        t.add_row(r["sweep_id"], r["name"] or "", r["grid_label"],
                  f"{r['status'].get('completed', 0)}/{r['members']}", status_cell(r["status"]))
    out_console.print(t)


@app.command("plot")
def plot(
    sweep_id: Annotated[str, typer.Argument(help="A sweep id (s-...).")],
    key: Annotated[str | None, typer.Option("--key", help="The swept key on the x axis (default: the first).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the plot to a file instead: .png, .svg or .pdf, "
                                             "a paper column wide (needs matplotlib).")] = None,
    home: Home = None, json_out: JsonFlag = False,
) -> None:
    """Gain against one swept key, in the terminal or as a figure file (mean over seeds, and every seed)."""
    if out is not None:
        out = check_out(out, PLOT_FORMATS)  # before any work
    tab = sweeps.table(open_store(home, reap=True), sweep_id)
    key = key or next(iter(tab["grid"]))
    points = sweeps.gain_by_key(tab, key)
    if out is not None:
        fig = gain_by_key_figure(tab, key, title=f"sweep {sweep_id}")
        if fig is None:
            raise NcalabError(f"sweep {sweep_id} has no completed experiments yet")
        out_console.print(f"wrote {save_figure(fig, out)}")
        return
    if json_out:
        emit_json({"sweep_id": sweep_id, "key": key, "points": points})
        return
    text = gain_plot(tab, key, min(100, out_console.width), 22,
                     title=f"sweep {sweep_id}: gain > 0 means NCA pre-pre-training helped")
    if text is None:
        raise NcalabError(f"sweep {sweep_id} has no completed experiments yet")
    print(text)


@app.command("extend")
def extend(
    sweep_id: Annotated[str, typer.Argument(help="A sweep id (s-...).")],
    grid: Grid = None,
    seeds: Annotated[int | None, typer.Option("--seeds", help="Seeds per setting in total (more seeds continue after the last).")] = None,
    home: Home = None, json_out: JsonFlag = False,
) -> None:
    """Add values to the swept keys or more seeds; what already exists is not run again."""
    store = open_store(home, reap=True)
    have = store.get_sweep(sweep_id).spec["seeds"]
    more: list[int] = []
    if seeds is not None:
        if seeds < len(have):
            raise NcalabError(f"sweep {sweep_id} already has {len(have)} seeds; --seeds is the new total")
        more = [max(have) + 1 + i for i in range(seeds - len(have))]
    if not grid and not more:
        raise NcalabError("nothing to add: give --grid KEY=NEW_VALUES or a larger --seeds")
    made = sweeps.extend(store, sweep_id, grid or [], more)
    schedule(store)
    if json_out:
        emit_json(made)
    else:
        out_console.print(f"sweep {sweep_id}: {len(made['experiments'])} new experiments queued")


@app.command("resume")
def resume(sweep_id: Annotated[str, typer.Argument(help="A sweep id (s-...).")], home: Home = None, json_out: JsonFlag = False) -> None:
    """Queue again the members that failed, were cancelled or were lost."""
    store = open_store(home, reap=True)
    ids = sweeps.resume(store, sweep_id)
    schedule(store)
    if json_out:
        emit_json({"sweep_id": sweep_id, "resumed": ids})
    else:
        out_console.print(f"sweep {sweep_id}: {len(ids)} experiments queued again" if ids else f"sweep {sweep_id}: nothing to resume")


@app.command("cancel")
def cancel(
    sweep_id: Annotated[str, typer.Argument(help="A sweep id (s-...).")],
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for each running job to checkpoint and stop.")] = 120.0,
    home: Home = None, json_out: JsonFlag = False,
) -> None:
    """Stop a sweep: queued members are cancelled, running ones stop at a checkpoint (`resume` continues)."""
    ids = sweeps.cancel(open_store(home, reap=True), sweep_id, wait)
    if json_out:
        emit_json({"sweep_id": sweep_id, "cancelled": ids})
    else:
        out_console.print(f"sweep {sweep_id}: {sweeps.count(len(ids), 'experiment')} stopped; `ncalab sweep resume {sweep_id}` continues"
                          if ids else f"sweep {sweep_id}: nothing queued or running")


@app.command("rm")
def rm(
    sweep_id: Annotated[str, typer.Argument(help="A sweep id (s-...).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    home: Home = None,
) -> None:
    """Delete a sweep, its experiments, their metrics and files (asks first)."""
    store = open_store(home, reap=True)
    n = len(store.experiments_of_sweep(store.get_sweep(sweep_id).id))
    if not yes and not typer.confirm(f"delete sweep {sweep_id} and its {n} experiments with their files?"):
        raise typer.Exit(1)
    removed = sweeps.remove(store, sweep_id)
    out_console.print(f"deleted sweep {sweep_id} and {len(removed)} experiments")
