"""Rich tables the CLI prints and the TUI shows: one look for the same numbers."""

from __future__ import annotations

from rich import box
from rich.table import Table

from ncalab.config.grid import setting_label
from ncalab.config.keys import short
from ncalab.display.summary import si

STATUS_STYLE = {"completed": "green", "running": "cyan", "queued": "blue", "failed": "red", "lost": "magenta", "cancelled": "yellow"}

SWEEP_LEGEND = ("nca, scratch: held-out perplexity of the pre-pre-trained arm (whatever its stage-1 source) and of scratch; gain = 1 - ppl_nca/ppl_scratch on held-out text (> 0: NCA helped), mean±sd over seeds; won: seeds "
                "where NCA beat scratch; 95% CI: the gain paired by seed (each seed's arm against its own scratch run), t-interval; p: a paired t-test of the seeds' log perplexities (no interval or p from one seed); speedup: scratch tokens / NCA tokens to reach scratch's final ppl, (n) seeds "
                "where it did; s1 FLOPs: stage-1 compute; ★ best mean gain.")


def _ms(mean, sd, spec):
    if mean is None:
        return "-"
    return format(mean, spec) + ("" if sd is None else "±" + format(sd, spec.lstrip("+")))


def short_label(setting: dict) -> str:
    """Keys by their last part where that is unambiguous: 'reinit=attn lr=0.0003'."""
    last = [short(k) for k in setting]
    if len(set(last)) < len(last):
        return setting_label(setting)
    return setting_label({short(k): v for k, v in setting.items()})


def status_cell(counts: dict) -> str:
    """'done', or each unfinished status on its own line (so a narrow column never cuts one)."""
    pending = {k: v for k, v in counts.items() if k != "completed"}
    if not pending:
        return "[green]done[/]"
    return "\n".join(f"[{STATUS_STYLE.get(k, '')}]{v} {k}[/]" for k, v in sorted(pending.items()))


def sweep_table(tab: dict) -> Table:
    """The sweep's table: one row per setting, best mean gain first (CLI and TUI)."""
    t = Table(title=f"sweep {tab['sweep_id']}{' ' + tab['name'] if tab['name'] else ''}: {tab['preset']}/{tab['scale']}, "
                    f"seeds {', '.join(map(str, tab['seeds']))}; {tab['done']}/{tab['members']} done",
              box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, collapse_padding=True)
    labels = [("★ " if r["best"] else "  ") + short_label(r["setting"]) for r in tab["rows"]]
    flops = {r["stage1_flops"] for r in tab["rows"] if r.get("stage1_flops")}
    if len(flops) == 1:  # one stage-1 budget for every setting: say it once
        t.title += f"; stage 1 {si(flops.pop())} FLOPs"
    t.add_column("setting", min_width=min(32, max(map(len, labels), default=8)))
    paired = any(r.get("gain_ci") for r in tab["rows"])  # the paired columns once some setting has 2 seeds done
    cols = ["seeds", "nca", "scratch", "gain", *(["95% CI", "p"] if paired else []), "speedup", "won"]  # legend
    if len(flops) > 1:  # settings that change the stage-1 compute (sources, budgets, widths)
        cols.append("s1 FLOPs")
    for col in cols:
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("status", min_width=10)
    for label, r in zip(labels, tab["rows"]):
        gain = _ms(r["gain"], r["gain_sd"], "+.3f")
        if r["gain"] is not None:
            gain = f"[{'green' if r['gain'] > 0 else 'red'}]{gain}[/]"
        speed = _ms(r["speedup"], r["speedup_sd"], ".2f")
        if r["speedup_n"] < r["seeds_done"]:
            speed += f" ({r['speedup_n']})"
        ci = r.get("gain_ci")
        ci_text = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ("-" if not r["seeds_done"] else "1 seed")
        p = r.get("p_value")
        t.add_row(label, f"{r['seeds_done']}/{r['seeds']}",
                  _ms(r["ppl_nca"], r["ppl_nca_sd"], ".1f"), _ms(r["ppl_scratch"], r["ppl_scratch_sd"], ".1f"),
                  gain, *([ci_text, "-" if p is None else f"{p:.2g}"] if paired else []), speed,
                  f"{r['wins']}/{r['seeds_done']}",
                  *([si(r.get("stage1_flops"))] if len(flops) > 1 else []), status_cell(r["status"]))
    return t
