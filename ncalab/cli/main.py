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
from ncalab.cli.groups import CommandTable, lazy_group
from ncalab.cli.quiet import quiet_third_party, verbose_requested
from ncalab.errors import NcalabError
from ncalab.services.runstore import masked, use_home, use_store_url

# The sub-commands: name -> (module, its Typer app or command function, the help line `ncalab
# --help` shows). A command's module is imported only when it runs or shows its own help, so the
# quick commands import none of them; tests/test_layers.py checks each line against the command's.
COMMANDS: CommandTable = {
    "run": ("ncalab.cli.run", "run",
            "Run one experiment: NCA pre-pre-training, transfer, language pre-training and the scratch baseline."),
    "eval": ("ncalab.cli.evaluate", "eval_",
             "Evaluate trained models: perplexity, in-context accuracy, skill probes or downstream tasks."),
    "match": ("ncalab.cli.match", "match",
              "Measure a corpus with the bands' gzip statistic, beside random NCA rules, and recommend a band."),
    "report": ("ncalab.cli.report", "report", "Write one self-contained HTML report of experiments or a sweep."),
    "sources": ("ncalab.cli.sources", "sources",
                "List the stage-1 sources, built-in and plugins, with their settings and a sample."),
    "nca": ("ncalab.cli.nca", "app", "Explore NCA rules and write NCA corpora."),
    "runs": ("ncalab.cli.browse", "app", "Browse, compare, plot, export and tidy the runs in the store."),
    "sweep": ("ncalab.cli.sweep", "app",
              "Sweeps: run a grid of settings over seeds, as experiments grouped in the store."),
    "study": ("ncalab.cli.study", "app",
              ("Scaling studies: where would a stage-1 source start to help? A fitted law per arm, the tokens a "
               "warm start saves or costs, and the crossover.")),
    "store": ("ncalab.cli.store_cmd", "app", "The run store's database: where it is, copy it to another one, back it up."),
}


app = typer.Typer(
    cls=lazy_group(COMMANDS),
    help="ncalab: a terminal lab for NCA pre-pre-training of language models. Without a command: the TUI.",
    pretty_exceptions_enable=False, add_completion=False,
)


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
        use_home(home)  # before the command parses its own --home, whose default is NCALAB_HOME
    if store:
        use_store_url(store)  # checked now; then every store of this command and the jobs it starts
    if ctx.invoked_subcommand is None:  # plain `ncalab`: the terminal lab
        from ncalab.tui.app import run_app  # the TUI's module only when it opens: textual is 0.2 s of start-up

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
    return masked(str(e))


def run() -> None:
    code = main()
    # The process ends here: skip the collector's last pass over every imported module's objects
    # (half a second after a command that loaded matplotlib and SQLAlchemy, e.g. `ncalab report`).
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
