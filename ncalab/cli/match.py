"""`ncalab match`: which NCA complexity band suits a corpus (the gzip statistic of both, side by side)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ncalab.cli.common import Home, JsonFlag, NCASets, emit_json, nca_config, out_console
from ncalab.config import DataConfig
from ncalab.display.plots import distributions_plot
from ncalab.errors import NcalabError
from ncalab.services.match import match_corpus
from ncalab.services.runstore import cache_folder

_STUDIED = ("0.0-0.3", "0.3-0.4", "0.4-0.5", "0.5-1.0")


def match(
    ctx: typer.Context,
    corpus: Annotated[str, typer.Option("--corpus", help="python-stdlib, a local path, or hf:NAME[:CONFIG].")],
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="A transformers tokenizer (e.g. gpt2) instead of a BPE trained on the corpus.")] = None,
    vocab_size: Annotated[int, typer.Option("--vocab-size", help="Vocabulary of the BPE trained on the corpus (the anchors were measured at 4096).")] = 4096,
    windows: Annotated[int, typer.Option("--windows", help="Windows of the corpus to score (its first ones).")] = 1000,
    rules: Annotated[int, typer.Option("--rules", help="Random NCA rules scored for the comparison.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the NCA rule stream.")] = 0,
    set_: NCASets = None, home: Home = None, json_out: JsonFlag = False,
) -> None:
    """Measure a corpus with the bands' gzip statistic, beside random NCA rules, and recommend a band."""
    if vocab_size < 257:
        raise NcalabError(f"--vocab-size must be at least 257, got {vocab_size}")
    cache = cache_folder(home)
    data = DataConfig(corpus=corpus, tokenizer=tokenizer, vocab_size=vocab_size)
    res = match_corpus(data, cache, nca_config(ctx, set_), rules=rules, seed=seed, windows=windows)
    if json_out:
        emit_json(res)
        return
    _print(res)


def _row(name: str, s: dict) -> list[str]:
    return [name, *(f"{s['bins'][b]:.2f}" for b in _STUDIED), f"{s['median']:.3f}", f"{s['p10']:.3f}-{s['p90']:.3f}"]


def _print(res: dict) -> None:
    st, band = res["statistic"], res["band"]
    out_console.print(f"[bold]{res['corpus']}[/]: {res['windows']:,} windows of {res['window']} tokens "
                      f"({res['tokens']:,} tokens, tokenizer {res['tokenizer']})")
    table = Table(title=f"gzip score: share in each band ({res['windows']:,} corpus windows, {res['nca']['rules']:,} NCA rules)")
    for col in ("", *_STUDIED, "median", "p10-p90"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row(*_row("corpus", st))
    table.add_row(*_row("NCA rules", res["nca"]))
    out_console.print(table)
    anchors = Table(title="calibration: the paper's domains, measured with the same statistic")
    for col in ("domain", "measured on", "median", "band"):
        anchors.add_column(col)
    for d, a in sorted(res["anchors"].items(), key=lambda kv: kv[1]["statistic"]):
        anchors.add_row(d, a["corpus"], f"{a['statistic']:.3f}", f"{a['band'][0]:g}-{a['band'][1]:g}")
    anchors.add_row("[b]this corpus[/]", "", f"[b]{st['median']:.3f}[/]", f"[b]{band[0]:g}-{band[1]:g}[/]")
    out_console.print(anchors)
    print(distributions_plot([{"label": "this corpus", "values": res["scores"]},
                              {"label": "NCA rules", "values": res["nca"]["scores"]}],
                             min(out_console.width, 100), 14, marks=[0.3, 0.4, 0.5]))
    like = f" (like {', '.join(res['like'])})" if res["like"] else ""
    out_console.print(f"recommended band: [bold]{band[0]:g}-{band[1]:g}[/]{like}; maps to NCA score "
                      f"{res['mapped_score']:.3f}. Use it: --set stage1.band={band[0]:g}:{band[1]:g}, "
                      "or --set stage1.band=match")
