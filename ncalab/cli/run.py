"""`ncalab run` and `ncalab eval`: experiments in the foreground, with progress bars."""

from __future__ import annotations


from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ncalab.cli.common import JsonFlag, emit_json, err_console, out_console

def stage_labels(source: str) -> dict[str, str]:
    short = {"nca": "NCA", "dyck": "Dyck", "shuffle_dyck": "shuffle-Dyck", "text": "text"}.get(source, source)
    return {"stage1": f"stage 1  {short}", "nca": f"stage 2  {short}-init", "scratch": "stage 2  scratch"}


class RichReporter:
    """Progress bars on stderr, one per stage."""

    def __init__(self, bars: Progress, source: str = "nca"):
        self.bars, self.labels = bars, stage_labels(source)
        self.tasks: dict[str, TaskID] = {}

    def stage(self, name, total_tokens):
        self.bars.start()  # lazily: bad input fails before any bar is drawn
        self.tasks[name] = self.bars.add_task(self.labels.get(name, name), total=total_tokens, info="")

    def progress(self, name, tokens, metrics):
        bits = [f"loss {metrics['train_loss']:.3f}"]
        if "val_ppl" in metrics and name != "stage1":
            bits.append(f"val ppl {metrics['val_ppl']:.2f}")
        elif "val_loss" in metrics:
            bits.append(f"val loss {metrics['val_loss']:.3f}")
        bits.append(f"{metrics.get('tokens_per_s', 0):,.0f} tok/s")
        self.bars.update(self.tasks[name], completed=tokens, info="  ".join(bits))

    def done(self, name, result):
        self.bars.update(self.tasks[name], completed=self.bars.tasks[self.tasks[name]].total)

    def note(self, text):
        self.bars.start()
        self.bars.console.print(f"[dim]{text}[/]")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description:<18}"), BarColumn(bar_width=28),
                    TextColumn("{task.completed:>11,}/{task.total:,} tok"), TimeElapsedColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), console=err_console)


def print_summary(s) -> None:
    from ncalab.display.summary import compute_table, downstream_table, in_context_table, summary_table

    out_console.print(summary_table(s))
    for table in (in_context_table(s), compute_table(s), downstream_table(s)):
        if table is not None:
            out_console.print(table)


def run(
    preset: Annotated[str, typer.Option("--preset", help="Target domain code, math or web, or a saved rule family.")] = "code",
    scale: Annotated[str, typer.Option("--scale", help="tiny (laptop), small (one GPU) or paper.")] = "tiny",
    corpus: Annotated[str | None, typer.Option("--corpus", help="python-stdlib, a local path, or hf:NAME[:CONFIG].")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the whole experiment.")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="A transformers tokenizer (e.g. gpt2) instead of a BPE trained on the corpus.")] = None,
    reinit: Annotated[str | None, typer.Option("--reinit", help="Also re-initialise at transfer: any of attn,mlp,norm.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="A TOML or JSON file of settings (sections model, nca, stage1, transfer, stage2, data, runtime).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override one setting, e.g. --set stage1.lr=3e-4 (repeatable).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for the experiment.")] = None,
    home: Annotated[Path | None, typer.Option("--home", envvar="NCALAB_HOME", help="Run store folder (default ./runs).")] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Queue it as a background job and return at once.")] = False,
    max_jobs: Annotated[int | None, typer.Option("--max-jobs", help="Background jobs at once (stored; default 1 per GPU, 1 on CPU).")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Run one experiment: NCA pre-pre-training, transfer, language pre-training and the scratch baseline."""
    from ncalab.services.config import resolve_config

    cfg = resolve_config(preset, scale, config, set_ or [], corpus=corpus, seed=seed, tokenizer=tokenizer,
                         reinit=reinit, device=device, home=home)
    if print_config:
        emit_json(cfg.to_dict())
        return
    from ncalab.services.experiments import run_experiment
    from ncalab.store import RunStore

    store = RunStore(home)
    if detach:
        from ncalab.jobs import queue
        from ncalab.services.experiments import submit

        if max_jobs is not None:
            queue.set_max_jobs(store, max_jobs)
        exp = submit(cfg, store, name)
        started = queue.schedule(store)
        state = "running" if exp.id in started else "queued"
        if json_out:
            emit_json({"experiment_id": exp.id, "status": state, "log": str(queue.log_path(store, exp.id))})
        else:
            out_console.print(f"{exp.id} {state}; follow it with `ncalab runs tail {exp.id}`")
        return
    if json_out:
        emit_json(run_experiment(cfg, store, name=name).to_dict())
        return
    progress = _progress()
    try:
        summary = run_experiment(cfg, store, RichReporter(progress, cfg.stage1.source), name=name)
    finally:
        progress.stop()
    print_summary(summary)
