"""Make the README's images again, when the screens or the report change: Textual's own SVG
screenshots of Explore and Runs, and one report figure (an experiment's validation curves).

    python assets/make_images.py --home RUNS --experiment ID

RUNS is a run store with finished experiments; it is copied first (the app and the report only
read it, and the copy keeps even that away from it). The images land beside this script:
explore.svg, runs.svg (the Runs screen with ID selected) and report-curves.svg.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = (120, 36)  # wide enough for the Runs screen's side-by-side layout


async def _wait(pilot, condition, what: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # a widget of a screen that is not up yet
            pass
        if time.monotonic() > end:
            raise SystemExit(f"gave up waiting for {what}")
        await pilot.pause(0.2)


async def _quiet(pilot) -> None:
    """Until no worker of the app runs (what the screen reads is on it)."""
    await _wait(pilot, lambda: not any(w.is_running for w in pilot.app.workers), "the app's workers")


async def screenshots(home: Path, experiment: str) -> list[str]:
    from ncalab.tui.app import NcalabApp

    app = NcalabApp(home=home, seed=7, autoplay=False)
    async with app.run_test(size=SIZE) as pilot:
        await _wait(pilot, lambda: app.screen.batch is not None, "Explore's first rule")
        for _ in range(12):  # a dozen steps past the burn-in: the rule at work, not its first frame
            await pilot.press("s")
        await _quiet(pilot)
        made = [app.save_screenshot("explore.svg", str(HERE))]
        await pilot.press("r")
        await _wait(pilot, lambda: app.screen.selected, "the Runs table")
        for _ in range(len(app.screen._rows)):
            if app.screen.selected == experiment:
                break
            await pilot.press("down")
        if app.screen.selected != experiment:
            raise SystemExit(f"{experiment} is not in the store's Runs table")
        await pilot.pause(3.0)  # its details and curves load in a worker
        await _quiet(pilot)
        made.append(app.save_screenshot("runs.svg", str(HERE)))
    return made


def report_figure(home: Path, experiment: str) -> str:
    from ncalab.display import figures
    from ncalab.services import report

    with report.open_store(home) as store:
        rep = report.gather(store, [experiment], frames=False)
    fig = figures.curves_figure(report.curve_series(rep), title=f"{experiment}: held-out perplexity",
                                size=figures.PAGE)
    return str(figures.save_figure(fig, HERE / "report-curves.svg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="a run store with finished experiments")
    parser.add_argument("--experiment", required=True, help="the experiment to select and to draw")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ncalab-images-") as tmp:
        home = Path(tmp) / "runs"
        home.mkdir()
        for f in args.home.glob("ncalab.db*"):  # the database with its WAL: the screens read nothing else
            shutil.copy2(f, home / f.name)
        made = [report_figure(home, args.experiment)]
        made += asyncio.run(screenshots(home, args.experiment))
    for path in made:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
