"""`ncalab store ...`: where the run store is, and copies of it (to another database, or a backup)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ncalab.cli.common import Home, JsonFlag, emit_json, err_console, out_console
from ncalab.errors import NcalabError

app = typer.Typer(help="The run store's database: where it is, copy it to another one, back it up.",
                  no_args_is_help=True)


def _rows_line(fp: dict) -> str:
    rows = fp["rows"]
    return (f"{rows['experiments']:,} experiments, {rows['runs']:,} runs, {rows['metric_points']:,} metric points, "
            f"{rows['eval_items']:,} evaluation items, {rows['sweeps']:,} sweeps; points sha256 {fp['points_sha256'][:16]}")


@app.command()
def info(home: Home = None, json_out: JsonFlag = False) -> None:
    """Which database the store is (never its password), its schema, and what it holds."""
    from ncalab.store import RunStore

    with RunStore(home) as store:
        fp = store.fingerprint()
        d = {"database": store.where, "backend": store.backend.name, "home": str(store.home),
             "schema_version": store.get_meta("schema_version"), **fp}
    if json_out:
        emit_json(d)
        return
    out_console.print(f"{d['backend']} {d['database']} (schema {d['schema_version']}); run folders in {d['home']}")
    out_console.print(_rows_line(fp))


@app.command()
def copy(to: Annotated[str, typer.Option("--to", help="The database to copy into: postgresql+psycopg://USER@HOST:PORT/DB, "
                                                      "sqlite:///PATH or a file path. It must hold no store yet.")],
         home: Home = None, json_out: JsonFlag = False) -> None:
    """Copy every row of the store into another, empty database (SQLite to PostgreSQL and back), verified."""
    from ncalab.store import RunStore
    from ncalab.store.transfer import copy_store

    with RunStore(home) as store:
        t = time.perf_counter()
        result = copy_store(store, to)
        result["seconds"] = round(time.perf_counter() - t, 2)
        result["from"] = store.where
    if json_out:
        emit_json(result)
        return
    out_console.print(f"copied {result['from']} to {result['to']} in {result['seconds']} s, verified: {_rows_line(result)}")
    if result["running"]:
        err_console.print(f"{result['running']} experiments were running: what they write from now on goes to "
                          "the source only")
    out_console.print(f"to use it: NCALAB_STORE={result['to']} (the run folders stay in {store.home})")


@app.command()
def backup(path: Annotated[Path, typer.Argument(help="A new file for the copy, or a folder to put ncalab-<time>.db in.")],
           home: Home = None, json_out: JsonFlag = False) -> None:
    """A consistent copy of an SQLite store, taken while jobs write to it (SQLite's online backup), verified."""
    from ncalab.store.backup import backup_sqlite
    from ncalab.store.connection import default_home, store_url

    root = Path(home if home is not None else default_home()).expanduser().resolve()
    url = store_url(root)
    if url.get_backend_name() != "sqlite":
        raise NcalabError("`ncalab store backup` copies an SQLite store; back up a PostgreSQL one with the server's "
                          "pg_dump, or copy it to a file with `ncalab store copy --to PATH`")
    db = Path(url.database)
    if not db.is_file():
        raise NcalabError(f"no run store at {db}")
    dest = path.expanduser().resolve()
    if dest.is_dir():
        dest = dest / f"ncalab-{time.strftime('%Y%m%d-%H%M%S')}.db"
    t = time.perf_counter()
    fp = backup_sqlite(db, dest)
    seconds = round(time.perf_counter() - t, 2)
    if json_out:
        emit_json({"from": str(db), "to": str(dest), "seconds": seconds, **fp})
        return
    out_console.print(f"backed up {db} to {dest} in {seconds} s, verified: {_rows_line(fp)}")
