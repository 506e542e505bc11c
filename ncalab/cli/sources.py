"""`ncalab sources`: every registered stage-1 source, built-in or plugin, with its settings."""

from __future__ import annotations

from typing import Annotated

import typer

from ncalab.cli.common import JsonFlag, emit_json, out_console
from ncalab.display.sources import sources_table
from ncalab.services.sources import describe


def sources(
    json_out: JsonFlag = False,
    sample: Annotated[bool, typer.Option("--sample/--no-sample", help="Make a short sample of each source.")] = True,
) -> None:
    """List the stage-1 sources, built-in and plugins, with their settings and a sample.

    Each row: name, origin (builtin or the installed distribution), settings with their defaults (--set KEY=VALUE), vocabulary and a short sample. Plugins register under the entry-point group ncalab.sources (docs/sources.md).
    """
    rows = describe(with_sample=sample)
    if json_out:
        emit_json({"sources": rows})
        return
    out_console.print(sources_table(rows))
