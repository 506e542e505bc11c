"""`ncalab study`: declare and launch a scaling study; show its grid and answers; fit it."""

from __future__ import annotations

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
    out_console,
    scale_settings,
    track_setting,
)
from ncalab.cli.sweep import seed_list, watch_members
from ncalab.display.study import grid_table, study_renderables
from ncalab.display.tables import status_cell
from ncalab.errors import NcalabError
from ncalab.services import study as svc
from ncalab.services import sweeps
from ncalab.services.config import resolve_config
from ncalab.services.jobs import schedule, set_max_jobs, start_members
from ncalab.services.report import write_bytes
from ncalab.services.runstore import open_store

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store

app = typer.Typer(help="Scaling studies: where would a stage-1 source start to help? A fitted law per arm, the "
                  "tokens a warm start saves or costs, and the crossover.")

StudyId = Annotated[str, typer.Argument(help="A study id (s-...).")]
At = Annotated[list[str] | None, typer.Option(
    "--at", help="N,D at which to predict: non-embedding parameters and stage-2 tokens, e.g. 1.6e9,3e10 (repeatable).")]
Ratio = Annotated[float, typer.Option("--ratio", help="Tokens per parameter along which the crossover is sought.")]
Resamples = Annotated[int, typer.Option("--resamples", help="Bootstrap resamples for the intervals.")]


@app.callback(invoke_without_command=True)
def study(
    ctx: typer.Context,
    preset: Preset = "code", scale: Scale = "tiny",
    size: Annotated[list[str] | None, typer.Option(
        "--size", help="Model sizes, KEY=V1,V2,... of model settings (repeatable; the keys move together), "
        "e.g. --size model.d_model=64,128,256 --size model.n_head=2,4,8.")] = None,
    budgets: Annotated[str | None, typer.Option(
        "--budgets", help="Stage-2 token budgets D, e.g. 1M,2M,4M: the longest is trained, the others are its "
        "cooldown branches.")] = None,
    sources: Annotated[str, typer.Option(
        "--sources", help="Stage-1 sources, each an arm against scratch, with its own stage-1 budget after a colon: "
        "nca,dyck:2M (plugins included).")] = "nca",
    matched_scale: Annotated[bool, typer.Option(
        "--matched-scale/--no-matched-scale", help="Add the matched-scale control of the first source.")] = True,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per (size, arm).")] = 2,
    seed_start: Annotated[int, typer.Option("--seed-start", help="First seed.")] = 0,
    corpus: Corpus = None, config: ConfigFile = None,
    set_: Sets("A base setting every member shares (repeatable).") = None,
    device: Device = None, name: Name("study") = None, home: Home = None,
    detach: Detach("Queue the members and return at once.") = False, max_jobs: MaxJobs = None, track: Track = None,
    nproc: NProc = None, executor: Executor = None, nodes: Nodes = None, gpus_per_node: GpusPerNode = None,
    partition: Partition = None, time_limit: TimeLimit = None, slurm_arg: SlurmArg = None,
    json_out: JsonFlag = False,
) -> None:
    """Declare a study and run its members as background jobs (on a cluster, one job array).

    Without --detach it shows progress until the study ends; Ctrl-C stops watching, not the jobs."""
    if ctx.invoked_subcommand is not None:
        return

    if not budgets:
        raise NcalabError("a study needs stage-2 budgets: --budgets D1,D2,... (e.g. 1M,2M,4M)")
    sets = (set_ or []) + track_setting(track) + scale_settings(nproc, executor, nodes, gpus_per_node, partition,
                                                                time_limit, slurm_arg)
    base = resolve_config(preset, scale, config, sets, corpus=corpus, device=device, home=home)
    arms = svc.parse_arms(sources, base, matched_scale)
    made = svc.declare(open_store(home, reap=True), base, size or [], svc.parse_budgets(budgets), arms,
                       seed_list(seeds, seed_start), name)
    store = open_store(home, reap=True)
    if max_jobs is not None:
        set_max_jobs(store, max_jobs)
    start_members(store, made["experiments"], base, max_jobs)  # on a cluster: one job array
    if not detach:
        watch_members(store, made["study_id"], quiet=json_out)
    if json_out:
        emit_json(made if detach else svc.grid(store, made["study_id"]))
    elif detach:
        out_console.print(f"study {made['study_id']}: {len(made['experiments'])} experiments queued; "
                          f"`ncalab study show {made['study_id']}` shows its grid and answers")
    else:
        _print_study(store, made["study_id"])


def _print_study(store: Store, study_id: str, at=(), ratio: float = 20.0, resamples: int = 1000) -> None:
    out_console.print(grid_table(svc.grid(store, study_id)))
    try:
        ans = svc.fit(store, [study_id], at=at, ratio=ratio, resamples=resamples)
    except NcalabError as e:  # nothing stored yet, or no arm to compare: the grid says it
        out_console.print(f"no answers yet: {e}")
        return
    for r in study_renderables(ans):
        out_console.print(r)


@app.command("show")
def show(study_id: StudyId, at: At = None, ratio: Ratio = 20.0, resamples: Resamples = 1000,
         home: Home = None, json_out: JsonFlag = False) -> None:
    """The study's grid (mean loss over the seeds stored so far), then its answers."""
    store = open_store(home, reap=True)
    if json_out:
        emit_json(svc.grid(store, study_id))
        return
    _print_study(store, study_id, svc.parse_at(at or []), ratio, resamples)


@app.command("fit")
def fit(
    study_ids: Annotated[list[str] | None, typer.Argument(
        help="One study id, or several to pool (same data and stage 2); none with --points.")] = None,
    at: At = None, ratio: Ratio = 20.0, resamples: Resamples = 1000,
    points: Annotated[list[Path] | None, typer.Option(
        "--points", help="An exported study to pool (`ncalab study export`, or a GPU check's report), repeatable.")] = None,
    home: Home = None, json_out: JsonFlag = False,
) -> None:
    """The answers: crossover, predictions at --at, each arm's law with intervals and its leave-one-out error, and the measured gains and D_T at the grid points."""
    extra = [svc.read_points(p) for p in points or []]
    ans = svc.fit(open_store(home, reap=True) if study_ids else None, study_ids or [], at=svc.parse_at(at or []), ratio=ratio, resamples=resamples,
                  extra=extra)
    if json_out:
        emit_json({"studies": study_ids or [], **svc.answers_dict(ans)})
        return
    for r in study_renderables(ans):
        out_console.print(r)


@app.command("export")
def export(study_id: StudyId, out: Annotated[Path, typer.Option("--out", help="The JSON file to write.")],
           home: Home = None) -> None:
    """Write the study's points and what makes them comparable, for `study fit --points` elsewhere."""
    import json

    data = svc.export(open_store(home, reap=True), study_id)
    write_bytes(out, (json.dumps(data, indent=1) + "\n").encode())
    out_console.print(f"wrote {out}: {len(data['points'])} points of study {study_id}")


@app.command("list")
def list_(home: Home = None, json_out: JsonFlag = False) -> None:
    """Every study, newest first."""
    rows = svc.list_studies(open_store(home, reap=True))
    if json_out:
        emit_json({"studies": rows})
        return
    t = Table(title=f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'}", box=box.SIMPLE_HEAD, title_justify="left", padding=(0, 1), pad_edge=False)
    for col, kw in (("id", {"no_wrap": True, "min_width": 10}), ("name", {"no_wrap": True, "max_width": 22}),
                    ("grid", {"min_width": 19}), ("done", {"justify": "right", "no_wrap": True}), ("status", {})):
        t.add_column(col, **kw)
    for r in rows:
        t.add_row(r["sweep_id"], r["name"] or "", r["grid_label"], f"{r['status'].get('completed', 0)}/{r['members']}",
                  status_cell(r["status"]))
    out_console.print(t)


@app.command("resume")
def resume(study_id: StudyId, home: Home = None, json_out: JsonFlag = False) -> None:
    """Queue again the members that failed, were cancelled or were lost."""
    store = open_store(home, reap=True)
    svc.spec_of(store, study_id)
    ids = sweeps.resume(store, study_id)
    schedule(store)
    if json_out:
        emit_json({"study_id": study_id, "resumed": ids})
    else:
        out_console.print(f"study {study_id}: {len(ids)} experiments queued again" if ids
                          else f"study {study_id}: nothing to resume")


@app.command("cancel")
def cancel(study_id: StudyId, wait: Annotated[float, typer.Option(
        "--wait", help="Seconds to wait for each running job to checkpoint and stop.")] = 120.0,
           home: Home = None, json_out: JsonFlag = False) -> None:
    """Stop a study: queued members are cancelled, running ones stop at a checkpoint (`resume` continues)."""
    store = open_store(home, reap=True)
    svc.spec_of(store, study_id)
    ids = sweeps.cancel(store, study_id, wait)
    if json_out:
        emit_json({"study_id": study_id, "cancelled": ids})
    else:
        out_console.print(f"study {study_id}: {len(ids)} experiments stopped; `ncalab study resume {study_id}` continues"
                          if ids else f"study {study_id}: nothing queued or running")
