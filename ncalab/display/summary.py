"""An experiment's summary as a rich table (`ncalab run`, `ncalab runs show`, the TUI)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from ncalab.evaluation.isolation import DESCRIPTIONS
from ncalab.experiment.summary import ExperimentSummary

STAGE_LABEL = {"stage1": "stage 1", "nca": "stage 2, warm-started", "scratch": "stage 2, scratch"}


def as_summary(d: dict) -> ExperimentSummary:
    """A stored summary (any version) as the typed one."""
    return ExperimentSummary.from_dict(d)


def si(x: float | None, unit: str = "") -> str:
    """1.23e+15 -> '1.23 P' (FLOPs, parameters)."""
    if x is None:
        return "-"
    for factor, prefix in ((1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{prefix}{unit}"
    return f"{x:.3g}{unit}"


def summary_table(s: ExperimentSummary, title: str | None = None) -> Table:
    t = Table(title=title or f"experiment {s.experiment_id}  ({s.preset}, {s.scale}, seed {s.seed}, stage 1 on {s.source})")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("final val ppl, scratch", f"{s.ppl_scratch:.3f}")
    t.add_row(f"final val ppl, {s.source}-initialised", f"{s.ppl_nca:.3f}")
    verdict = f"[green]{s.source} better[/]" if s.gain > 0 else f"[red]{s.source} worse[/]"
    t.add_row(f"final-perplexity gain (1 - {s.source}/scratch)", f"{s.gain:+.4f}  {verdict}")
    t.add_row("convergence speedup", f"{s.speedup:.3f}x" if s.speedup else f"n/a: {s.source} never reached scratch's final ppl")
    for k, v in s.tokens_per_s.items():
        if v:
            t.add_row(f"tokens/s, {STAGE_LABEL.get(k, k)}", f"{v:,.0f}")
    if s.stage1_val_loss is not None:
        t.add_row("stage-1 val loss (held-out sequences)", f"{s.stage1_val_loss:.4f}")
    t.add_row("wall time", f"{s.wall_s:.1f} s")
    t.add_row("device", s.device)
    return t


def in_context_label(name: str) -> str:
    """'icl_cell_acc@0.5-1' -> 'cell accuracy, rules of band 0.5-1 (mean over frames)'."""
    base, _, band = name.partition("@")
    what = {"icl_frame_acc": "exact frames", "icl_cell_acc": "cells", "dyck_validity": "valid next tokens"}.get(base, base)
    if base == "dyck_validity":
        return what
    return f"{what}, {'band ' + band if band else 'training band'} (mean over frames)"


def compute_table(s: ExperimentSummary) -> Table | None:
    """Parameters, FLOPs, seconds and peak memory of each training stage (the budget behind
    the comparison); the GPU column only where a stage ran on one."""
    if not s.compute:
        return None
    gpu = any(c.peak_device_bytes is not None for c in s.compute.values())
    # collapsed padding: ten columns fit an 80-column terminal
    t = Table(title="compute: FLOPs = 6N + 12·L·d·T per token", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1),
              collapse_padding=True)
    for c in ("run", "params", "no emb", "FLOP/tok", "tokens", "FLOPs", "wall", "device", "peak GiB",
              *(["GPU GiB"] if gpu else [])):
        t.add_column(c, justify="left" if c == "run" else "right", no_wrap=True)
    for kind, c in s.compute.items():
        t.add_row(kind, si(c.params), si(c.params_no_embeddings), si(c.flops_per_token), si(c.tokens), si(c.flops),
                  _secs(c.wall_s), _secs(c.device_s), gib(c.peak_rss_bytes, unit=False),
                  *([gib(c.peak_device_bytes, unit=False)] if gpu else []))
    return t


def gib(x: float | None, unit: bool = True) -> str:
    """Bytes as GiB ('0.87 GiB', or '0.87' under a header that names the unit), '-' when not measured."""
    return "-" if x is None or x != x else f"{x / 2**30:.2f}" + (" GiB" if unit else "")


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} s" if x < 600 else f"{x / 60:.0f} min"


def in_context_table(s: ExperimentSummary) -> Table | None:
    """The stage-1 model in context: mean accuracy over frames per band (NCA), or Dyck validity."""
    if not s.in_context:
        return None
    t = Table(title="stage 1 in context: held-out rules, mean over frames", box=box.SIMPLE_HEAD, pad_edge=False)
    if "dyck_validity" in s.in_context:
        t.add_column("valid next tokens", justify="right")
        t.add_row(f"{s.in_context['dyck_validity']:.3f}")
        return t
    for c in ("rules", "exact frames", "cells"):
        t.add_column(c, justify="left" if c == "rules" else "right", no_wrap=True)
    bands = sorted({n.partition("@")[2] for n in s.in_context}, key=lambda b: (b != "", b))
    for band in bands:
        suffix = f"@{band}" if band else ""
        t.add_row(f"band {band}" if band else "training band", _num(s.in_context.get(f"icl_frame_acc{suffix}")),
                  _num(s.in_context.get(f"icl_cell_acc{suffix}")))
    return t


def compute_lines(summary: dict) -> list[str]:
    """Short lines for a narrow panel: FLOPs of each stage and the in-context figures."""
    s = as_summary(summary)
    out = []
    if s.compute:
        out.append("FLOPs " + "  ".join(f"{k} {si(c.flops)}" for k, c in s.compute.items()))
    for name, v in s.in_context.items():
        out.append(f"{in_context_label(name).replace(' (mean over frames)', '')}: {v:.3f}")
    return out


def downstream_table(summary) -> Table | None:
    """pass@k of each task for both arms, and their difference with a 95% interval over items."""
    s = summary if isinstance(summary, ExperimentSummary) else as_summary(summary)
    rows = [(task, k, v) for task, by_k in s.downstream.items() if task != "lm_eval" for k, v in by_k.items()]
    lm = s.downstream.get("lm_eval", {})
    if not rows and not lm:
        return None
    t = Table(title=f"downstream ({s.experiment_id}): pass@k, {s.source}-initialised vs scratch")
    for c in ("task", "k", s.source, "scratch", "difference (95% CI)", "items"):
        t.add_column(c, justify="left" if c == "task" else "right", no_wrap=True)
    for task, k, v in rows:
        diff = "-" if v["diff"] != v["diff"] else f"{v['diff']:+.3f} ± {v['ci']:.3f}"
        t.add_row(task, str(k), f"{v['nca']:.3f}", f"{v['scratch']:.3f}", diff, str(v["items"]))
    for metric, arms in lm.items():
        t.add_row(metric.removeprefix("lm_eval:"), "-", _num(arms.get("nca")), _num(arms.get("scratch")), "-", "-")
    ran = sorted({v["sandbox"] for _, _, v in rows if v.get("sandbox")})
    if ran:
        t.caption, t.caption_justify = f"model-written programs ran under: {', '.join(sandbox_words(w) for w in ran)}", "left"
    return t


def sandbox_words(way: str) -> str:
    """What an isolation name stored with HumanEval's results means."""
    return ", ".join(DESCRIPTIONS.get(w.strip(), w) for w in way.split(","))


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"
