"""`ncalab runs cancel`, `resume` and `tail`: the commands that reach an experiment's job.

Their own module, away from cli/browse.py: stopping, launching and following a job load torch
and SQLAlchemy, which `runs list` does without.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ncalab.cli.common import Home, JsonFlag, emit_json, out_console
from ncalab.services import runs as svc
from ncalab.services.jobs import cancel as stop
from ncalab.services.jobs import follow_log
from ncalab.services.launch import resume as launch_again
from ncalab.services.runstore import open_store


def cancel(ident: Annotated[str, typer.Argument(help="Experiment id.")], home: Home = None,
           wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the job to checkpoint and stop.")] = 120.0,
           json_out: JsonFlag = False) -> None:
    """Stop an experiment gracefully: its job writes a checkpoint, then the status is cancelled."""
    status = stop(open_store(home, reap=True), ident, wait)
    if json_out:
        emit_json({"experiment_id": ident, "status": status})
    else:
        out_console.print(f"{ident} {status}")


def resume(ident: Annotated[str, typer.Argument(help="Experiment id.")], home: Home = None, json_out: JsonFlag = False) -> None:
    """Continue a cancelled, failed or lost experiment from its last checkpoints (in the background)."""
    status = launch_again(open_store(home, reap=True), ident).status
    if json_out:
        emit_json({"experiment_id": ident, "status": status})
    else:
        out_console.print(f"{ident} {status}; follow it with `ncalab runs tail {ident}`")


def tail(ident: Annotated[str, typer.Argument(help="Experiment id.")], home: Home = None,
         follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep following until the job ends.")] = True) -> None:
    """Show an experiment's job log and follow it live until the job ends."""
    store = open_store(home, reap=True)
    for line in follow_log(store, svc.resolve_experiment(store, ident).id, follow):
        typer.echo(line, nl=False)
