"""Entry point of the `ncalab` command: sub-commands, and one-line errors instead of tracebacks."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from ncalab import __version__
from ncalab.cli import browse, evaluate, match, nca, report, run, sources, store_cmd, study, sweep
from ncalab.cli.quiet import quiet_third_party, verbose_requested
from ncalab.errors import NcalabError

app = typer.Typer(
    help="ncalab: a terminal lab for NCA pre-pre-training of language models. Without a command: the TUI.",
    pretty_exceptions_enable=False, add_completion=False,
)
app.add_typer(nca.app, name="nca")
app.command("run")(run.run)
app.command("eval")(evaluate.eval_)
app.command("match")(match.match)
app.add_typer(browse.app, name="runs")
app.add_typer(sweep.app, name="sweep")
app.add_typer(study.app, name="study")
app.add_typer(store_cmd.app, name="store")
app.command("report")(report.report)
app.command("sources")(sources.sources)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ncalab {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Also show other libraries' progress bars, log lines and warnings (off: only ncalab's own output).")] = False,
    store: Annotated[str | None, typer.Option("--store", envvar="NCALAB_STORE", show_envvar=False, help="The run store's database URL, e.g. postgresql+psycopg://USER@HOST/DB (default: SQLite in the home folder).")] = None,
    home: Annotated[Path | None, typer.Option("--home", help="Run store folder of the terminal lab and of the command that follows (default $NCALAB_HOME, else ./runs).")] = None,
) -> None:
    quiet_third_party(verbose or verbose_requested())
    if home is not None:
        from ncalab.services.runstore import use_home

        use_home(home)  # before the command parses its own --home, whose default is NCALAB_HOME
    if store:
        from ncalab.services.runstore import use_store_url

        use_store_url(store)  # checked now; then every store of this command and the jobs it starts
    if ctx.invoked_subcommand is None:  # plain `ncalab`: the terminal lab
        from ncalab.tui.app import run_app

        run_app()


# Typer 0.29 vendors its own click (typer._click); older ones use click itself. Catch both.
_EXIT = (click.exceptions.Exit, typer.Exit)
_ABORT = (click.exceptions.Abort, typer.Abort)
_USAGE = (click.ClickException, *((typer.TyperException,) if hasattr(typer, "TyperException") else ()))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every failure a user can cause ends in one line on stderr and exit code != 0."""
    before = os.environ.get("NCALAB_STORE")
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="ncalab")
        return rv if isinstance(rv, int) else 0
    except NcalabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except _EXIT as e:
        return e.exit_code
    except _USAGE as e:
        e.show()
        return e.exit_code
    except _ABORT:
        print("aborted", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug of ours: still one line, the traceback on request
        if os.environ.get("NCALAB_DEBUG"):
            raise
        print(f"internal error: {type(e).__name__}: {_masked(e)} (set NCALAB_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
    finally:  # --store holds for this command only (main runs many times in one test process)
        if before is None:
            os.environ.pop("NCALAB_STORE", None)
        else:
            os.environ["NCALAB_STORE"] = before


def _masked(e: Exception) -> str:
    """An unexpected error's text, with any database password in it masked."""
    from ncalab.services.runstore import masked

    return masked(str(e))


def run() -> None:
    code = main()
    # The process ends here: skip the collector's last pass over every imported module's objects
    # (half a second after a command that loaded matplotlib and SQLAlchemy, e.g. `ncalab report`).
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
