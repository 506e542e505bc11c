"""`ncalab store ...`: where the run store is, and copies of it (to another database, or a backup)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ncalab.cli.common import Home, JsonFlag, emit_json, err_console, out_console
from ncalab.services.runstore import backup_store, copy_store_to, store_info

app = typer.Typer(help="The run store's database: where it is, copy it to another one, back it up.",
                  no_args_is_help=True)


def _rows_line(fp: dict) -> str:
    rows = fp["rows"]
    return (f"{rows['experiments']:,} experiments, {rows['runs']:,} runs, {rows['metric_points']:,} metric points, "
            f"{rows['eval_items']:,} evaluation items, {rows['sweeps']:,} sweeps; points sha256 {fp['points_sha256'][:16]}")


@app.command()
def info(home: Home = None, json_out: JsonFlag = False) -> None:
    """Which database the store is (never its password), its schema, and what it holds."""
    d = store_info(home)
    if json_out:
        emit_json(d)
        return
    out_console.print(f"{d['backend']} {d['database']} (schema {d['schema_version']}); run folders in {d['home']}")
    out_console.print(_rows_line(d))


@app.command()
def copy(to: Annotated[str, typer.Option("--to", help="The database to copy into: postgresql+psycopg://USER@HOST:PORT/DB, "
                                                      "sqlite:///PATH or a file path. It must hold no store yet.")],
         home: Home = None, json_out: JsonFlag = False) -> None:
    """Copy every row of the store into another, empty database (SQLite to PostgreSQL and back), verified."""
    result, store_home = copy_store_to(home, to)
    if json_out:
        emit_json(result)
        return
    out_console.print(f"copied {result['from']} to {result['to']} in {result['seconds']} s, verified: {_rows_line(result)}")
    if result["running"]:
        err_console.print(f"{result['running']} experiments were running: what they write from now on goes to "
                          "the source only")
    out_console.print(f"to use it: NCALAB_STORE={result['to']} (the run folders stay in {store_home})")


@app.command()
def backup(path: Annotated[Path, typer.Argument(help="A new file for the copy, or a folder to put ncalab-<time>.db in.")],
           home: Home = None, json_out: JsonFlag = False) -> None:
    """A consistent copy of an SQLite store, taken while jobs write to it (SQLite's online backup), verified."""
    d = backup_store(home, path)
    if json_out:
        emit_json(d)
        return
    out_console.print(f"backed up {d['from']} to {d['to']} in {d['seconds']} s, verified: {_rows_line(d)}")
