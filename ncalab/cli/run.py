"""`ncalab run` and `ncalab eval`: experiments in the foreground, with progress bars."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ncalab.cli.common import (
    ConfigFile,
    Corpus,
    Detach,
    Device,
    Executor,
    GpusPerNode,
    Home,
    JsonFlag,
    MaxJobs,
    Name,
    Nodes,
    NProc,
    Partition,
    Preset,
    Scale,
    Sets,
    SlurmArg,
    TimeLimit,
    Track,
    emit_json,
    err_console,
    out_console,
    scale_settings,
    track_setting,
)
from ncalab.config import flatten
from ncalab.config.keys import help_of
from ncalab.display.summary import compute_table, downstream_table, in_context_table, si, summary_table
from ncalab.services.config import resolve_config
from ncalab.services.jobs import log_path, set_max_jobs
from ncalab.services.launch import How, launch
from ncalab.services.plan import plan_stages, refuse_unfit
from ncalab.services.progress import SilentReporter, progress_text, stage_labels
from ncalab.services.runstore import open_store


class RichReporter:
    """Progress bars on stderr, one per stage."""

    def __init__(self, bars: Progress, source: str = "nca"):
        self.bars, self.labels = bars, stage_labels(source)
        self.tasks: dict[str, TaskID] = {}

    def stage(self, name, total, unit="tokens"):
        self.bars.start()  # lazily: bad input fails before any bar is drawn
        self.tasks[name] = self.bars.add_task(self.labels.get(name, name), total=total, info="",
                                              unit="tok" if unit == "tokens" else unit)

    def progress(self, event):
        self.bars.update(self.tasks[event.stage], completed=event.done, info=progress_text(event))

    def done(self, name, result):
        self.bars.update(self.tasks[name], completed=self.bars.tasks[self.tasks[name]].total)

    def note(self, text):
        self.bars.start()
        from rich.markup import escape

        self.bars.console.print(f"[dim]{escape(text)}[/]")  # a path or an error may hold [brackets]


class WarningReporter(SilentReporter):
    """--json: stdout holds the JSON alone, warnings (a tracker that failed) still reach stderr."""

    def note(self, text):
        if text.startswith("warning:"):
            err_console.print(text, markup=False, highlight=False)


@contextmanager
def foreground_reporter(json_out: bool, source: str):
    """What a command running stages in the foreground reports through: progress bars on
    stderr, or, under --json, warnings only (stdout keeps its one JSON object)."""
    if json_out:
        yield WarningReporter()
        return
    bars = _progress_bars()
    try:
        yield RichReporter(bars, source)
    finally:
        bars.stop()


def _progress_bars() -> Progress:
    return Progress(TextColumn("{task.description:<18}"), BarColumn(bar_width=28),
                    TextColumn("{task.completed:>11,}/{task.total:,} {task.fields[unit]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[info]}"), console=err_console)


def print_plan(cfg, gpu: str, mfu: float, json_out: bool) -> None:
    """Per stage: parameters, FLOPs, memory per GPU and time; refuse what cannot fit."""
    plans = plan_stages(cfg, gpu, mfu)
    if json_out:
        emit_json({"gpu": gpu, "mfu": mfu, "nproc": cfg.runtime.nproc, "parallel": cfg.runtime.parallel,
                   "stages": [p.to_dict() for p in plans]})
    else:
        for p in plans:
            t = Table(title=f"{p.stage}: {si(p.params)} parameters ({si(p.params_no_embeddings)} without embeddings), "
                            f"{si(p.flops_per_token)} FLOPs/token x {si(p.tokens)} tokens = {si(p.flops)} FLOPs; "
                            f"{p.hours:,.1f} h on {cfg.runtime.nproc} x {gpu} at MFU {mfu:g}")
            where = "resident memory per process" if gpu == "cpu" else "memory per GPU"  # a CPU's plan: planning/footprint.py
            t.add_column(f"{where} (micro-batch {p.micro_batch}, {cfg.runtime.parallel})")
            t.add_column("GiB", justify="right")
            for part, b in p.memory.items():
                t.add_row(part, f"{b / 2**30:,.2f}")
            t.add_row("[bold]total[/]", f"[bold]{p.memory_total / 2**30:,.2f}[/]")
            out_console.print(t)
    refuse_unfit(cfg, plans, gpu, mfu)  # after the table: it shows what does not fit


def print_explained(cfg) -> None:
    """The keys and values --print-config prints, one a line, each with the help on its field
    (ncalab.config.sections.option): `KEY = VALUE  # help`, the value as JSON."""
    import json
    import sys

    values = {key: json.dumps(v, ensure_ascii=False) for key, v in flatten(cfg.to_dict()).items()}
    key_width, value_width = max(map(len, values)), min(24, max(map(len, values.values())))
    for key, text in values.items():
        note = help_of(cfg, key)
        line = f"{key:<{key_width}} = {text:<{value_width}}  # {note}" if note else f"{key:<{key_width}} = {text}"
        sys.stdout.write(line + "\n")


def print_summary(s) -> None:
    out_console.print(summary_table(s))
    for table in (in_context_table(s), compute_table(s), downstream_table(s)):
        if table is not None:
            out_console.print(table)


def run(
    preset: Preset = "code", scale: Scale = "tiny", corpus: Corpus = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the whole experiment.")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="A transformers tokenizer (e.g. gpt2) instead of a BPE trained on the corpus.")] = None,
    reinit: Annotated[str | None, typer.Option("--reinit", help="Also re-initialise at transfer: any of attn,mlp,norm.")] = None,
    config: ConfigFile = None, set_: Sets() = None, device: Device = None, name: Name("experiment") = None,
    home: Home = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config and exit.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Print the resolved config one setting a line, KEY = VALUE (as JSON) with its help after #, and exit.")] = False,
    detach: Detach() = False, max_jobs: MaxJobs = None, track: Track = None,
    nproc: NProc = None, executor: Executor = None, nodes: Nodes = None, gpus_per_node: GpusPerNode = None,
    partition: Partition = None, time_limit: TimeLimit = None, slurm_arg: SlurmArg = None,
    plan: Annotated[bool, typer.Option("--plan", help="Print what each stage costs (parameters, FLOPs, memory per GPU or, with --gpu cpu, resident memory; time) and whether it fits; run nothing.")] = False,
    gpu: Annotated[str, typer.Option("--gpu", help="The GPU a --plan is for: h100, h200, a100, a100-40gb, l40s, a10, rtx4090, v100 or cpu.")] = "h100",
    mfu: Annotated[float, typer.Option("--mfu", help="The model FLOPs utilisation a --plan assumes.")] = 0.4,
    json_out: JsonFlag = False,
) -> None:
    """Run one experiment: NCA pre-pre-training, transfer, language pre-training and the scratch baseline."""
    sets = (set_ or []) + track_setting(track) + scale_settings(nproc, executor, nodes, gpus_per_node, partition,
                                                                time_limit, slurm_arg)
    cfg = resolve_config(preset, scale, config, sets, corpus=corpus, seed=seed, tokenizer=tokenizer,
                         reinit=reinit, device=device, home=home)
    if explain:
        print_explained(cfg)
        return
    if print_config:
        emit_json(cfg.to_dict())
        return
    if plan:
        print_plan(cfg, gpu, mfu, json_out)
        return
    if (cfg.runtime.nproc > 1 or cfg.runtime.executor != "local") and not detach:
        detach = True  # several processes run under torchrun (or on a cluster), as a background job
        where = "on the cluster" if cfg.runtime.executor != "local" else "under torchrun"
        err_console.print(f"{cfg.runtime.world} processes: starting a background job {where}")

    store = open_store(home)
    if detach:
        if max_jobs is not None:
            set_max_jobs(store, max_jobs)
        job = launch(cfg, store, How.BACKGROUND, name=name)
        if json_out:
            emit_json({"experiment_id": job.experiment_id, "status": job.status,
                       "log": str(log_path(store, job.experiment_id))})
        else:
            out_console.print(f"{job.experiment_id} {job.status}; follow it with `ncalab runs tail {job.experiment_id}`")
        return
    with foreground_reporter(json_out, cfg.stage1.source) as reporter:
        summary = launch(cfg, store, How.HERE, name=name, reporter=reporter).summary
    if json_out:
        emit_json(summary.to_dict())
        return
    print_summary(summary)
