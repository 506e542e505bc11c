"""`ncalab runs plot`: an experiment's curves in the terminal or as a figure file.

Its own module, away from cli/browse.py: the figures and the report's series load matplotlib,
torch and SQLAlchemy, which `runs list` does without.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ncalab.cli.common import Home, JsonFlag, emit_json, out_console
from ncalab.display.figures import PLOT_FORMATS, curves_figure, save_figure
from ncalab.display.plots import curves_plot
from ncalab.services import runs as svc
from ncalab.services.report import Series, check_out
from ncalab.services.runstore import open_store

METRIC_LABEL = {"val_ppl": "validation perplexity", "val_loss": "validation loss", "train_loss": "training loss",
                "lr": "learning rate", "tokens_per_s": "tokens/s"}


def plot(idents: Annotated[list[str], typer.Argument(help="Experiment or run ids.")],
         metric: Annotated[str, typer.Option("--metric", help="val_ppl, val_loss, train_loss, lr, tokens_per_s.")] = "val_ppl",
         x: Annotated[str, typer.Option("--x", help="tokens, step or time.")] = "tokens",
         out: Annotated[Path | None, typer.Option("--out", help="Write the plot to a file instead: .png, .svg or "
                                                  ".pdf, a paper column wide (needs matplotlib).")] = None,
         home: Home = None, json_out: JsonFlag = False) -> None:
    """Curves in the terminal (or a figure file); an experiment overlays its NCA and scratch runs."""
    if out is not None:
        out = check_out(out, PLOT_FORMATS)  # before any work
    cs = svc.curves(open_store(home, reap=True), idents, metric, x)
    if out is not None:
        _plot_file(cs, metric, x, out, one=len(idents) == 1)
        return
    if json_out:
        emit_json({"metric": metric, "x": x, "curves": cs})
        return
    print(curves_plot(cs, min(out_console.width, 120), 24, xlabel=x, log_y=metric.endswith("ppl"),
                      title=f"{metric} against {x}", theme="pro"))


def _plot_file(cs: list[dict], metric: str, x: str, out: Path, one: bool) -> None:
    # one experiment: its scratch run dashed in grey, as in the report
    series = [Series(c["label"], c["x"], c["y"], kind="scratch" if one and c["label"].endswith("/scratch") else "")
              for c in cs]
    fig = curves_figure(series, xlabel={"time": "seconds"}.get(x, x), ylabel=METRIC_LABEL.get(metric, metric),
                        log_y=metric.endswith("ppl"))
    out_console.print(f"wrote {save_figure(fig, out)}")
