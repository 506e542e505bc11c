"""`ncalab nca ...`: sample, score and generate NCA data headless."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.columns import Columns
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ncalab.cli.common import (
    Alphabet,
    BurnIn,
    ChannelWrap,
    Dt,
    Height,
    IdentityBias,
    JsonFlag,
    NCASets,
    Patch,
    SeqLen,
    Temperature,
    Width,
    emit_json,
    err_console,
    nca_config,
    out_console,
)
from ncalab.display.figures import ROLLOUT_FORMATS, save_rollout
from ncalab.display.grids import grid_text, palette
from ncalab.services.explore import complexity_survey, sample_rollout
from ncalab.services.nca import DOMAIN_BANDS, NCAConfig, corpus_band, corpus_stats, export_corpus, generate_corpus
from ncalab.services.report import check_out

app = typer.Typer(help="Explore NCA rules and write NCA corpora.", no_args_is_help=True)
_D = NCAConfig()


@app.command()
def sample(
    ctx: typer.Context,
    seed: Annotated[int, typer.Option("--seed", help="Rule seed.")] = 0,
    sim_seed: Annotated[int | None, typer.Option("--sim-seed", help="Simulation seed (default: the rule seed).")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Frames to record after the burn-in.")] = 10,
    animate: Annotated[bool, typer.Option("--animate", help="Play the frames in place instead of listing them.")] = False,
    fps: Annotated[float, typer.Option("--fps", help="Frames per second with --animate (and of a .gif).")] = 8.0,
    out: Annotated[Path | None, typer.Option("--out", help="Write the rollout to a file instead: .png (a strip of "
                                             "the frames) or .gif (animated), in the TUI's colours.")] = None,
    height: Height = _D.height, width: Width = _D.width, alphabet: Alphabet = _D.alphabet, patch: Patch = _D.patch,
    temperature: Temperature = _D.temperature, identity_bias: IdentityBias = _D.identity_bias,
    burn_in: BurnIn = _D.burn_in, dt: Dt = _D.dt, channel_wrap: ChannelWrap = _D.channel_wrap, set_: NCASets = None,
    json_out: JsonFlag = False,
) -> None:
    """Show one rule's rollout in colour, with its complexity score and statistics."""
    cfg = nca_config(ctx, set_)  # the NCA flags, read from ctx
    if out is not None:
        out = check_out(out, ROLLOUT_FORMATS)  # before any work
    ro = sample_rollout(seed, cfg, steps, sim_seed)
    if out is not None:
        written = save_rollout(ro.frames, cfg.alphabet, out, fps)
        if json_out:
            emit_json({**ro.to_dict(with_frames=False), "out": str(written)})
        else:
            out_console.print(f"wrote {written}: rule {ro.rule_seed}, {len(ro.frames)} frames")
        return
    if json_out:
        emit_json(ro.to_dict())
        return
    colours = palette(cfg.alphabet)
    title = f"rule {ro.rule_seed}  sim {ro.sim_seed}  {cfg.height}x{cfg.width}  C={cfg.alphabet}"
    if animate:
        from rich.live import Live

        with Live(console=out_console, refresh_per_second=max(fps, 1)) as live:
            for i, fr in enumerate(ro.frames):
                step = cfg.burn_in + i * cfg.dt
                live.update(Panel(grid_text(fr, colours), title=f"{title}  t={step}", expand=False))
                time.sleep(1.0 / fps)
    else:
        panels = [Panel(grid_text(fr, colours), title=f"t={cfg.burn_in + i * cfg.dt}", expand=False) for i, fr in enumerate(ro.frames)]
        out_console.print(f"[bold]{title}[/]")
        out_console.print(Columns(panels))
    table = Table(show_header=False, box=None)
    score = "n/a (fewer frames than the scoring window)" if ro.score != ro.score else f"{ro.score:.4f}"
    table.add_row("gzip score", score)
    for k, v in ro.stats.items():
        table.add_row(k.replace("_", " "), f"{v:.4g}")
    out_console.print(table)


@app.command()
def complexity(
    ctx: typer.Context,
    rules: Annotated[int, typer.Option("--rules", help="How many random rules to score.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the rule stream.")] = 0,
    height: Height = _D.height, width: Width = _D.width, alphabet: Alphabet = _D.alphabet, patch: Patch = _D.patch,
    temperature: Temperature = _D.temperature, identity_bias: IdentityBias = _D.identity_bias,
    burn_in: BurnIn = _D.burn_in, dt: Dt = _D.dt, channel_wrap: ChannelWrap = _D.channel_wrap, set_: NCASets = None,
    json_out: JsonFlag = False,
) -> None:
    """Score random rules: deciles of the gzip score and the fraction in each band."""
    cfg = nca_config(ctx, set_)  # the NCA flags, read from ctx
    t0 = time.perf_counter()
    res = complexity_survey(rules, seed, cfg)
    if json_out:
        emit_json(res)
        return
    dt_s = time.perf_counter() - t0
    out_console.print(f"[bold]{rules}[/] rules scored in {dt_s:.2f}s ({rules / dt_s:,.0f}/s)  mean score {res['mean']:.3f}")
    dec = Table(title="deciles of the gzip score")
    for i in range(1, 10):
        dec.add_column(f"p{i * 10}", justify="right")
    dec.add_row(*[f"{d:.3f}" for d in res["deciles"]])
    out_console.print(dec)
    bands = Table(title="fraction of rules per band")
    bands.add_column("band")
    bands.add_column("fraction", justify="right")
    bands.add_column("")
    for name, frac in res["bands"].items():
        bands.add_row(name, f"{frac:.3f}", "█" * round(frac * 40))
    out_console.print(bands)


@app.command()
def generate(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the corpus into.")],
    tokens: Annotated[int, typer.Option("--tokens", help="Training tokens to write (whole sequences).")],
    domain: Annotated[str | None, typer.Option("--domain", help=f"Band preset: {', '.join(DOMAIN_BANDS)}.")] = None,
    band: Annotated[str | None, typer.Option("--band", help="Custom band LO:HI (keeps LO < score < HI).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the rule stream.")] = 0,
    val_sequences: Annotated[int, typer.Option("--val-sequences", help="Sequences from held-out rules.")] = 64,
    force: Annotated[bool, typer.Option("--force", help="Replace the corpus files in a non-empty --out.")] = False,
    sims_per_rule: Annotated[int, typer.Option("--sims-per-rule", help="Trajectories per accepted rule, from different initial states (the paper's rule bank: 10).")] = 1,
    height: Height = _D.height, width: Width = _D.width, alphabet: Alphabet = _D.alphabet, patch: Patch = _D.patch,
    temperature: Temperature = _D.temperature, identity_bias: IdentityBias = _D.identity_bias,
    burn_in: BurnIn = _D.burn_in, dt: Dt = _D.dt, channel_wrap: ChannelWrap = _D.channel_wrap, seq_len: SeqLen = _D.seq_len,
    set_: NCASets = None,
    json_out: JsonFlag = False,
) -> None:
    """Write a band-filtered NCA corpus: memory-mappable shards plus a manifest."""
    the_band = corpus_band(domain, band)
    cfg = nca_config(ctx, set_)  # the NCA flags and --sims-per-rule, read from ctx
    what = {"val_sequences": val_sequences, "domain": domain, "force": force}
    if json_out:
        res = generate_corpus(out, cfg, the_band, tokens, seed, **what)
        emit_json(res.to_dict())
        return
    cols = [TextColumn("[bold]generating"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} tokens"), TimeRemainingColumn()]
    progress = Progress(*cols, console=err_console)
    task = progress.add_task("gen", total=-(-tokens // cfg.seq_len) * cfg.seq_len if tokens > 0 else 0)

    def on_progress(done: int, total: int) -> None:
        progress.start()  # only once the inputs have been checked and writing has begun
        progress.update(task, completed=done, total=total)

    try:
        res = generate_corpus(out, cfg, the_band, tokens, seed, **what, on_progress=on_progress)
    finally:
        progress.stop()
    out_console.print(
        f"wrote {res.tokens:,} tokens ({res.sequences:,} sequences) to {res.out} in {res.seconds:.2f}s "
        f"({res.tokens_per_s / 1e6:.2f}M tokens/s); rules scored {res.rules_scored:,}, accepted {res.rules_accepted:,} "
        f"({res.rules_accepted / max(res.rules_scored, 1):.1%})"
    )


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="A corpus folder written by `ncalab nca generate`.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the dataset (parquet shards and a dataset card).")],
    fmt: Annotated[str, typer.Option("--format", help="parquet (a Hugging Face dataset).")] = "parquet",
    force: Annotated[bool, typer.Option("--force", help="Replace the export files in a non-empty --out.")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Write a corpus as a Hugging Face dataset: parquet shards and a dataset card.

    The shards hold rule_seed, sim_seed, score and tokens; the README.md is the dataset card. `datasets.load_dataset("parquet", ...)` reads it, and `ncalab run --set stage1.corpus=OUT` trains stage 1 on it.
    """
    res = export_corpus(path, out, fmt, force=force)
    if json_out:
        emit_json(res)
        return
    counts = ", ".join(f"{n:,} {split}" for split, n in res["splits"].items())
    out_console.print(f"wrote {counts} sequences in {res['files']} parquet files and a dataset card to {res['out']}")


@app.command()
def stats(
    path: Annotated[Path, typer.Argument(help="A corpus folder written by `ncalab nca generate`.")],
    split: Annotated[str, typer.Option("--split", help="train or val.")] = "train",
    sample_n: Annotated[int, typer.Option("--sample", help="Trajectories to decode for per-trajectory statistics.")] = 2000,
    json_out: JsonFlag = False,
) -> None:
    """Statistics of a written corpus."""
    res = corpus_stats(path, split, sample=sample_n)
    if json_out:
        emit_json(res)
        return
    t = Table(title=f"{path} ({split})", show_header=False)
    band = res["band"]
    rows = [
        ("sequences", f"{res['sequences']:,}"), ("tokens", f"{res['tokens']:,}"),
        ("unique rules", f"{res['unique_rules']:,}"),
        ("band", f"{band[0]:g} < score < {band[1]:g}" if band else "none"), ("domain", str(res["domain"] or "-")),
        ("distinct tokens", f"{res['distinct_tokens']:,} of {res['vocab_size']:,}"),
        ("unigram entropy", f"{res['unigram_entropy_bits']:.3f} bits"),
        ("score mean ± sd", f"{res['score']['mean']:.4f} ± {res['score']['sd']:.4f}"),
    ]
    for k, v in res["trajectory"].items():
        rows.append((k.replace("_", " ") + f" (n={res['sampled_trajectories']})", f"{v['mean']:.4g} ± {v['sd']:.3g}"))
    for k, v in rows:
        t.add_row(k, v)
    out_console.print(t)
