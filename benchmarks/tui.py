"""The terminal lab's speed: first frame, live-view frames per second, opening Runs.

  python benchmarks/tui.py
Targets: first frame <= 0.5 s from process start (torch and numba load after it), >= 60 fps
at 12x12 and 64x64 (the median over three fixed rules, each the best of three runs) and for every other registered source
(Explore's live view of it, in the same 160x50 terminal), Runs with 1,000 experiments open in
<= 0.3 s. Baseline in the same run: the first frame if the engine were imported before the app
starts. The last line is one JSON object with first_frame_s, fps_12, fps_64, fps_<source> for
each source, runs_open_s.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time

LIVE_SEEDS = (0, 1, 2)  # the live view's fps is the median over the first rules of these streams
REPEATS = 3  # each fps is the best of this many runs (as timeit takes the least time): this
# project's 2-core machines run the same Python loop up to 2x slower from one second to the next

# The child prints the wall-clock time of its first frame; the parent subtracts the time it
# started the child (psutil's process start time is only as exact as the boot time, a second).
CHILD = r"""
import sys, time
if sys.argv[1] == "eager":
    import ncalab.nca.engine  # what the app would pay without lazy loading
from ncalab.tui.app import NcalabApp

class Probe(NcalabApp):
    def on_mount(self):
        super().on_mount()
        self.call_after_refresh(self.done)
    def done(self):
        print(time.time(), flush=True)
        self.exit()

Probe(home=sys.argv[2]).run(headless=True)
"""


def first_frame(mode: str, home: str) -> float:
    start = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD, mode, home], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1]) - start


async def live_fps(home: str, shape: str, frames: int = 120, seed: int = 0) -> float:
    """Frames a second while stepping the first rule of random stream `seed` (a fixed stream: a
    chaotic rule costs gzip and the drawing several times what a calm one does)."""
    from ncalab.tui.app import NcalabApp

    app = NcalabApp(home=home, autoplay=False, seed=seed)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = app.screen
        while screen.batch is None:
            await pilot.pause(0.05)
        screen.query_one("#shape").value = shape
        screen.load_rule()
        await pilot.pause(0.1)
        t = time.perf_counter()
        for _ in range(frames):
            screen.advance()
            await pilot.pause(0)  # let the frame render
        return frames / (time.perf_counter() - t)


async def source_fps(home: str, name: str, frames: int = 120) -> float | None:
    """Frames a second while Explore steps another stage-1 source's live view (ECA's space-time
    diagram scrolling a row a step, a Dyck language's depth profile four positions a step);
    None for a source that shows nothing here (Explore says why: a plugin that fails to sample)."""
    from ncalab.tui.app import NcalabApp
    from ncalab.tui.widgets.source_view import SourceView

    app = NcalabApp(home=home, autoplay=False, seed=0)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = app.screen
        while name not in screen.source_names:
            await pilot.pause(0.05)
        screen.query_one("#source").value = name
        view = screen.query_one("#source-view", SourceView)
        while screen.source != name:  # the choice taken: the view has started reading the source
            await pilot.pause(0.05)
        while screen.source_sample is None or len(view.pending) < 64:  # its first sequences read
            if view.source is None:  # it failed: Explore says why
                return None
            await pilot.pause(0.05)
        t = time.perf_counter()
        for _ in range(frames):
            view.advance()
            await pilot.pause(0)
        return frames / (time.perf_counter() - t)


async def runs_open(home: str) -> float:
    """From the key press to the first frame that draws the filled runs table."""
    from ncalab.tui.app import NcalabApp
    from ncalab.tui.widgets.run_table import RunTable

    drawn: list[float] = []
    render_line = RunTable.render_line

    def stamped(self, y):  # the table's first line drawn with every run in it
        if self.row_count >= 1000 and not drawn:
            drawn.append(time.perf_counter())
        return render_line(self, y)

    RunTable.render_line = stamped
    try:
        app = NcalabApp(home=home, autoplay=False)
        async with app.run_test(size=(120, 40)) as pilot:
            while app.screen.batch is None:  # a settled app: the engine has loaded behind Explore
                await pilot.pause(0.05)
            await pilot.pause(0.5)
            t = time.perf_counter()
            await pilot.press("r")
            while not drawn:
                await pilot.pause(0.005)
            return drawn[0] - t
    finally:
        RunTable.render_line = render_line


def main() -> None:
    from startup import thousand_experiments  # benchmarks/startup.py, beside this script

    home = tempfile.mkdtemp(prefix="ncalab-tui-bench-")
    thousand_experiments(home)
    lazy = min(first_frame("lazy", home) for _ in range(3))
    eager = min(first_frame("eager", home) for _ in range(3))
    def best(run) -> float | None:
        runs = [asyncio.run(run()) for _ in range(REPEATS)]
        return None if None in runs else max(runs)

    fps12 = statistics.median(best(lambda s=s: live_fps(home, "12 12 10 2", seed=s)) for s in LIVE_SEEDS)
    fps64 = statistics.median(best(lambda s=s: live_fps(home, "64 64 10 2", seed=s)) for s in LIVE_SEEDS)
    from ncalab.services.sources import choices

    shown = {c.name: best(lambda n=c.name: source_fps(home, n)) for c in choices()[0] if c.name != "nca"}
    sources = {n: f for n, f in shown.items() if f is not None}
    opens = sorted(asyncio.run(runs_open(home)) for _ in range(5))
    open_s, open_worst = opens[2], opens[-1]  # median of five fresh apps, and the slowest
    print(f"first frame (engine loads after it)   {lazy:6.2f} s   (target <= 0.5; eager imports: {eager:.2f} s)")
    print(f"live view, 12x12                       {fps12:6.0f} fps (target >= 60)")
    print(f"live view, 64x64                       {fps64:6.0f} fps (target >= 60)")
    for name, fps in shown.items():
        print(f"live view, source {name:<20} " + ("nothing to show (it failed to sample)" if fps is None else
                                                   f"{fps:6.0f} fps (target >= 60)"))
    print(f"open Runs with 1,000 experiments       {open_s:6.3f} s   (target <= 0.3; slowest of 5: {open_worst:.3f} s)")
    print(json.dumps({"first_frame_s": round(lazy, 3), "fps_12": round(fps12, 1), "fps_64": round(fps64, 1),
                      **{f"fps_{n}": round(f, 1) for n, f in sources.items()}, "runs_open_s": round(open_s, 3), "runs_open_worst_s": round(open_worst, 3), "baseline_first_frame_eager_s": round(eager, 3),
                      "ratio_first_frame": round(eager / lazy, 2)}))


if __name__ == "__main__":
    main()
