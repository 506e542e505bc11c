"""`ncalab report`: one self-contained HTML page for an experiment, several, or a sweep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ncalab.cli.common import Home, JsonFlag, emit_json, out_console
from ncalab.display.report_html import write_report_at


def report(
    idents: Annotated[list[str], typer.Argument(help="Experiment ids (several are grouped by setting), or one sweep id.")],
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")] = Path("report.html"),
    frames: Annotated[bool, typer.Option("--frames/--no-frames", help="Draw a strip of the NCA rules stage 1 "
                                         "trained on (simulates a few rules).")] = True,
    home: Home = None, json_out: JsonFlag = False,
) -> None:
    """Write one self-contained HTML report of experiments or a sweep.

    The answer first (gain, speedup, the sweeps' rule), then curves, stage 1, compute, downstream and config, from the run store alone (it never writes to the store).
    """
    start = time.perf_counter()
    made = write_report_at(home, idents, out, frames=frames)  # checks the path before any work
    seconds = time.perf_counter() - start
    if json_out:
        emit_json({**made, "seconds": round(seconds, 3)})
        return
    line = made["unfinished_line"]
    out_console.print(f"wrote {out} ({made['bytes'] / 1024:.0f} kB, {seconds:.1f} s): {made['title']}"
                      + (f" [yellow]({line.split('.')[0].lower()})[/]" if line else ""))
