"""`ncalab run` and `ncalab eval`: experiments in the foreground, with progress bars."""

from __future__ import annotations

import json

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ncalab.cli.common import JsonFlag, emit_json, err_console, out_console
from ncalab.errors import NcalabError

STAGE_LABEL = {"stage1": "stage 1  NCA", "nca": "stage 2  NCA-init", "scratch": "stage 2  scratch"}


class RichReporter:
    """Progress bars on stderr, one per stage."""

    def __init__(self, bars: Progress):
        self.bars = bars
        self.tasks: dict[str, TaskID] = {}

    def stage(self, name, total_tokens):
        self.bars.start()  # lazily: bad input fails before any bar is drawn
        self.tasks[name] = self.bars.add_task(STAGE_LABEL.get(name, name), total=total_tokens, info="")

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


def print_summary(s: dict) -> None:
    t = Table(title=f"experiment {s['experiment_id']}  ({s['preset']}, {s['scale']}, seed {s['seed']})")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("final val ppl, scratch", f"{s['ppl_scratch']:.3f}")
    t.add_row("final val ppl, NCA-initialised", f"{s['ppl_nca']:.3f}")
    verdict = "[green]NCA better[/]" if s["gain"] > 0 else "[red]NCA worse[/]"
    t.add_row("final-perplexity gain (1 - nca/scratch)", f"{s['gain']:+.4f}  {verdict}")
    sp = s["speedup"]
    t.add_row("convergence speedup", f"{sp:.3f}x" if sp else "n/a: NCA never reached scratch's final ppl")
    for k, v in s["tokens_per_s"].items():
        t.add_row(f"tokens/s, {STAGE_LABEL[k]}", f"{v:,.0f}")
    t.add_row("stage-1 val loss (held-out rules)", f"{s['stage1_val_loss']:.4f}")
    t.add_row("wall time", f"{s['wall_s']:.1f} s")
    t.add_row("device", s["device"])
    out_console.print(t)


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
        summary = run_experiment(cfg, store, name=name)
        emit_json(summary)
        return
    progress = _progress()
    try:
        summary = run_experiment(cfg, store, RichReporter(progress), name=name)
    finally:
        progress.stop()
    print_summary(summary)


def eval_(
    target: Annotated[str, typer.Argument(help="An experiment id, a run id, or a checkpoint folder.")],
    corpus: Annotated[str, typer.Option("--corpus", help="python-stdlib, a local path, or hf:NAME[:CONFIG].")],
    split: Annotated[str, typer.Option("--split", help="val (the corpus's held-out documents) or all.")] = "val",
    tokens: Annotated[int, typer.Option("--tokens", help="Tokens to evaluate on.")] = 65_536,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Context length (capped at the model's).")] = 256,
    val_fraction: Annotated[float | None, typer.Option("--val-fraction", help="Held-out share of documents (default: the run's, else 0.02).")] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    home: Annotated[Path | None, typer.Option("--home", envvar="NCALAB_HOME")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Perplexity of trained language models on any corpus."""
    from ncalab.services.experiments import evaluate_checkpoint

    if tokens <= 0:
        raise NcalabError("--tokens must be positive")
    targets, run_fraction = _resolve_targets(target, home)
    frac = val_fraction if val_fraction is not None else (run_fraction or 0.02)
    results = [dict(evaluate_checkpoint(p, corpus, tokens, seq_len, device=device, split=split, val_fraction=frac), label=label)
               for label, p in targets]
    if json_out:
        emit_json(results[0] if len(results) == 1 else {"results": results})
        return
    t = Table(title=f"perplexity on {corpus} ({split})")
    for c in ("model", "tokens", "loss", "ppl"):
        t.add_column(c, justify="right" if c != "model" else "left")
    for r in results:
        t.add_row(r["label"], f"{r['tokens']:,}", f"{r['loss']:.4f}", f"{r['ppl']:.3f}")
    out_console.print(t)


def _resolve_targets(target: str, home) -> tuple[list[tuple[str, Path]], float | None]:
    """(label, checkpoint folder) pairs, and the held-out fraction the run trained with."""
    p = Path(target)
    if p.is_dir():
        return [(str(p), p)], None
    from ncalab.store import RunStore

    store = RunStore(home)
    if target.startswith("e-"):
        exp = store.get_experiment(target)
        runs = [r for r in store.runs_of(exp.id) if r.kind in ("nca", "scratch")]
        out = [(f"{target}/{r.kind}", store.run_dir(r) / "model") for r in runs if (store.run_dir(r) / "model").exists()]
        if not out:
            raise NcalabError(f"experiment {target} has no finished language models")
        return out, json.loads(exp.config_json)["data"]["val_fraction"]
    if target.startswith("r-"):
        r = store.get_run(target)
        return [(f"{r.id} ({r.kind})", store.run_dir(r) / "model")], json.loads(r.config_json)["data"]["val_fraction"]
    raise NcalabError(f"{target} is neither a checkpoint folder nor an experiment (e-...) or run (r-...) id")
