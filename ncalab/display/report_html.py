"""A report (ncalab.services.report) as one self-contained HTML page: no script, no network, no
font to fetch; the figures are inline images (SVG, or PNG for NCA frames) as data: URIs, and a
content security policy keeps the page from loading anything else. Standard library only,
besides the figures themselves (ncalab.display.figures)."""

from __future__ import annotations

import base64
import io
import json
import time
from html import escape
from typing import TYPE_CHECKING

from ncalab.display import figures as F
from ncalab.display import probes as P
from ncalab.display.study import grid_table, study_renderables
from ncalab.display.summary import sandbox_words, si
from ncalab.services import report as R

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store

CSS = """
*{box-sizing:border-box}
body{margin:0;color:#1b1b1b;background:#fff;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1120px;margin:0 auto;padding:12px 16px 40px}
h1{font-size:1.45em;margin:.4em 0 .1em}h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:1em 0 .3em}p{margin:.4em 0}.sub{color:#555}
pre.study{overflow-x:auto;font:12px/1.35 ui-monospace,Menlo,Consolas,monospace;background:#fafafa;padding:8px}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,440px),1fr));gap:14px}
figure{margin:0;min-width:0}figure img{display:block;width:100%;height:auto}
figcaption{font-size:.85em;color:#555}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.88em;margin:.3em 0}
th,td{padding:3px 8px;border-bottom:1px solid #e3e3e3;text-align:right;vertical-align:top}
th:first-child,td:first-child,td.l,th.l{text-align:left}
table.ans td:last-child,table.ans th:last-child{text-align:left;min-width:14em}
table.cfg td,table.left td,table.left th{text-align:left;overflow-wrap:anywhere}table.cfg td:first-child{white-space:nowrap}
mark{background:#fff0a8}.yes{color:#1a7f37;font-weight:600}.no{color:#b42318;font-weight:600}
.banner{background:#eef5fc;border-left:4px solid #1f77b4;padding:8px 12px;margin:.8em 0}
.answer{font-size:1.05em}code{overflow-wrap:anywhere;font-size:.92em}
details summary{cursor:pointer;color:#1f4f82}
"""
# Nothing but inline styles and data: images, ever (a test checks the page loads nothing).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def write_report(store: Store, idents: list[str], out, frames: bool = True, background: bool = False) -> dict:
    """Gather, render and write the report of ``idents`` from ``store`` (read, never written) to
    the HTML file ``out``; returns where it went, its size and what is not finished yet."""
    out = R.check_out(out, ("html", "htm"))  # before any work
    return _write(R.gather(store, idents, frames=frames, background=background), out)


def write_report_at(home, idents: list[str], out, frames: bool = True) -> dict:
    """write_report for the store at ``home``, opened here. Where a second core can take it, a
    forked process reads the store while this one loads matplotlib: those two imports were most
    of a report's time, one after the other."""
    out = R.check_out(out, ("html", "htm"))
    if not R.can_fork():
        with R.open_store(home) as store:
            return write_report(store, idents, out, frames=frames)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
        reading = pool.submit(R.gather_at, home, idents, frames)
        F.load()
        rep = reading.result()
    if frames and not rep.strip:  # an experiment from before stage 1 kept its frames: draw them
        R.draw_strip(rep, background=True)
    return _write(rep, out)


def _write(rep: R.Report, out) -> dict:
    page = render(rep).encode()
    R.write_bytes(out, page)
    return {"out": str(out.resolve()), "bytes": len(page), "title": rep.title, "ids": rep.ids,
            "experiments": len(rep.members), "unfinished": [m.id for m in rep.unfinished],
            "unfinished_line": R.unfinished_line(rep)}


def render(rep: R.Report) -> str:
    """The whole page for a report."""
    figures = Figures()
    body = [_header(rep), _study(rep, figures), _answer(rep, figures), _curves(rep, figures), _stage1(rep, figures), _compute(rep),
            _probes(rep), _downstream(rep, figures), _members(rep), _config(rep), _footer(rep)]
    return figures.drawn_into(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(rep.title)}: ncalab report</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(b for b in body if b)}</main></body></html>\n")


class Figures:
    """A page's figures, drawn once its text is assembled: where a second core can take it, every
    other one in a forked process (drawing them is most of a report's time once the store is read)."""

    def __init__(self) -> None:
        self.jobs: list[tuple] = []  # (figure function, args, kwargs, alt, caption)

    def svg(self, make, *args, alt: str, caption: str = "", **kwargs) -> str:
        """A mark where ``make(*args, **kwargs)`` will be drawn (nothing, if it returns None)."""
        self.jobs.append((make, args, kwargs, alt, caption))
        return f"<!--figure {len(self.jobs) - 1}-->"

    def drawn_into(self, page: str) -> str:
        drawn = self._draw_all()
        for i, ((_, _, _, alt, caption), data) in enumerate(zip(self.jobs, drawn)):
            page = page.replace(f"<!--figure {i}-->", "" if data is None else _img(data, "image/svg+xml", alt, caption))
        return page

    def _draw_all(self) -> list[bytes | None]:
        jobs = [j[:3] for j in self.jobs]
        if len(jobs) < 2 or not R.can_fork():
            return _draw_many(jobs)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
            theirs = pool.submit(_draw_many, jobs[1::2])
            mine = _draw_many(jobs[0::2])
            theirs = theirs.result()
        return [(mine if i % 2 == 0 else theirs)[i // 2] for i in range(len(jobs))]


def _draw_many(jobs: list[tuple]) -> list[bytes | None]:
    out = []
    for make, args, kwargs in jobs:
        fig = make(*args, **kwargs)
        # text as SVG text, not glyph outlines: half the bytes, and the page's own fonts read it
        out.append(None if fig is None else F.figure_bytes(fig, "svg", text_as_paths=False))
    return out


# ---- pieces --------------------------------------------------------------------------------------

def _img(data: bytes, mime: str, alt: str, caption: str = "") -> str:
    uri = f"data:{mime};base64,{base64.b64encode(data).decode()}"
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{escape(alt)}">{cap}</figure>'


def _figs(*figs: str) -> str:
    """Figures side by side where the page is wide enough, one under another where not."""
    figs = [f for f in figs if f]
    return f'<div class="figs">{"".join(figs)}</div>' if figs else ""


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """Cells are HTML already (escape what comes from the store before)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table></div>'


def _num(v, spec: str = ".3f") -> str:
    return "-" if v is None or v != v else format(v, spec)


def _when(t: float | None) -> str:
    return "-" if not t else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _header(rep: R.Report) -> str:
    first = rep.members[0] if rep.members else None
    preset = f"{rep.config.get('preset')}/{rep.config.get('scale')}"
    seeds = sorted({m.seed for m in rep.members})
    sub = f"{preset}; seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds)) or '-'}"
    if first is not None and len(rep.members) == 1:
        sub += f"; {first.status}" + (f"; {escape(first.name)}" if first.name else "")
    line = R.unfinished_line(rep)
    banner = f'<p class="banner">{escape(line)}</p>' if line else ""
    notes = "".join(f'<p class="banner">{escape(n)}</p>' for n in rep.notes)
    return f"<h1>{escape(rep.title)}</h1><p class=\"sub\">{escape(sub)}</p>{banner}{notes}"


# ---- the question and the answer -------------------------------------------------------------------

def _question(rep: R.Report) -> str:
    src = rep.source
    what = ("each of " + ", ".join(dict.fromkeys(src["swept"]))) if src.get("swept") else _source_words(src)
    return (f"Does a language model first trained on {what} and then on <code>{escape(str(src['stage2_corpus']))}"
            f"</code> reach a lower held-out perplexity than the same model trained from scratch on the same "
            f"stage-2 tokens?")


def _source_words(src: dict) -> str:
    if src["source"] == "nca":
        return f"NCA data ({si(src['tokens'])} tokens, complexity band {src['band']})"
    corpus = f" from <code>{escape(str(src['corpus']))}</code>" if src.get("corpus") else ""
    return f"{escape(src['source'])} data{corpus} ({si(src['tokens'])} tokens)"


def _answer(rep: R.Report, figures: Figures) -> str:
    rows = []
    for g in rep.groups:
        v = g.verdict
        met = '<span class="yes">met</span>' if v["met"] else '<span class="no">not met</span>'
        rows.append([escape(g.label) or "this experiment", f"{v['seeds']}/{len(g.members)}",
                     _mean(v["ppl_nca"], ".2f"), _mean(v["ppl_scratch"], ".2f"), _gain(v["gain"]),
                     *_paired(v.get("paired")), _speed(v["speedup"], v["seeds"]), f"{v['wins']}/{v['seeds']}",
                     f"{met}: {escape(v['why'])}"])
    head = ["setting", "seeds done", "ppl warm", "ppl scratch", "gain [mean ± 2 SE]", "95% CI paired by seed", "p",
            "speedup", "beat scratch", "the rule"]
    fig = ""
    if len(rep.groups) > 1 or any(len(g.members) > 1 for g in rep.groups):
        fig = _figs(figures.svg(F.gain_figure, rep.groups, alt="gain of each setting",
                                caption="Gain per setting: each seed, the mean and mean ± 2 standard errors; right "
                                        "of the dashed line the warm start beat scratch."))
    return (f"<h2>The question and the answer</h2><p>{_question(rep)}</p>"
            f'<p class="answer">{_answer_line(rep)}</p>{_table(head, rows, "ans")}'
            f"<p class=\"sub\">The rule the sweeps use: {escape(R.RULE)}. Gain = 1 - ppl<sub>warm</sub> / "
            f"ppl<sub>scratch</sub> on held-out text; speedup = tokens scratch needed to reach its final perplexity "
            f"/ tokens the warm start needed to reach it.</p>{fig}")


def _study(rep: R.Report, figures: Figures) -> str:
    """A scaling study's answers first (each crossover), the two figures, then the laws and the
    measurements as `ncalab study show` prints them; for a study with nothing fitted yet, why."""
    if rep.study is None:
        return ""

    part, ans = rep.study, rep.study["answers"]
    tables = [grid_table(part["grid"])]
    if ans is None:
        lines = f'<p class="answer">No answers yet: {escape(part["reason"])}</p>'
        laws = {}
    else:  # the crossover lines come first, one per pair; the rest is the CLI's tables and reasons
        shown = study_renderables(ans)
        lines = "".join(f'<p class="answer">{escape(str(t))}</p>' for t in shown[:len(ans.pairs)])
        tables += shown[len(ans.pairs):]
        laws = {arm: (a.fit.law if a.fitted else None) for arm, a in ans.fits.items()}
    figs = _figs(figures.svg(F.study_loss_figure, part["grid"], laws, alt="held-out loss against D for each size and arm",
                             caption="Held-out loss against stage-2 tokens D: each seed (dots), the mean (circles) "
                                     "and the arm's fitted law at that size (dashed)."),
                 figures.svg(F.study_transfer_figure, part["curves"], alt="D_T / D against N",
                             caption="Effective data transferred as a multiple of D, along D = ratio x N, with its 95% "
                                     "paired bootstrap band; the shaded span is the fitted grid, right of it is "
                                     "extrapolation.") if part["curves"] else "")
    return (f"<h2>The scaling study</h2><p>Where would the warm start begin to help? Each arm's law L(N, D) = E + "
            f"A/N<sup>alpha</sup> + B/D<sup>beta</sup>, the tokens a warm start saves or costs (D_T) and the "
            f"crossover.</p>{lines}{figs}<pre class=\"study\">{escape(_plain_tables(tables))}</pre>")


def _plain_tables(renderables) -> str:
    """Rich tables as the CLI prints them, as plain text for a <pre> block."""
    from rich.console import Console

    console = Console(width=150, record=True, file=io.StringIO(), color_system=None)
    for r in renderables:
        console.print(r)
    return console.export_text()


def _answer_line(rep: R.Report) -> str:
    done = [g for g in rep.groups if g.verdict["seeds"]]
    if not done:
        return "No answer yet: no experiment has finished."
    best = max(done, key=lambda g: g.verdict["gain"]["mean"])
    v = best.verdict
    gain = v["gain"]["mean"]
    word = "better than" if gain > 0 else "worse than"
    who = f"The best setting ({escape(best.label)})" if len(rep.groups) > 1 else "The warm-started model"
    verdict = ("meets the rule: the warm start helped." if v["met"] else
               f"does not meet the rule ({escape(v['why'])}), so this is no evidence that the warm start helps.")
    return (f"<b>{who} is {word} scratch</b>: gain {_gain(v['gain'])} over {v['seeds']} seed"
            f"{'s' if v['seeds'] != 1 else ''}; it {verdict}")


def _mean(iv: dict, spec: str) -> str:
    if iv["mean"] is None:
        return "-"
    return _num(iv["mean"], spec) + ("" if iv["sd"] is None else f" ± {_num(iv['sd'], spec)}")


def _paired(p: dict | None) -> tuple[str, str]:
    """The gain's 95% t-interval paired by seed and the paired t-test's p, or why there is none."""
    if not p or not p.get("gain_ci"):
        return escape((p or {}).get("paired_note") or "-"), "-"
    lo, hi = p["gain_ci"]
    return f"[{lo:+.4f}, {hi:+.4f}]", "-" if p["p_value"] is None else f"{p['p_value']:.2g}"


def _gain(iv: dict) -> str:
    if iv["mean"] is None:
        return "-"
    if iv["lo"] is None:
        return f"{iv['mean']:+.4f} (one seed: no interval)"
    return f"{iv['mean']:+.4f} [{iv['lo']:+.4f}, {iv['hi']:+.4f}]"


def _speed(iv: dict, seeds: int) -> str:
    if iv["n"] == 0:
        return "n/a: never reached scratch's final ppl" if seeds else "-"
    text = f"{iv['mean']:.2f}x" + ("" if iv["lo"] is None else f" [{iv['lo']:.2f}, {iv['hi']:.2f}]")
    return text + (f" ({iv['n']} of {seeds} reached it)" if iv["n"] < seeds else "")


# ---- curves, stage 1 ----------------------------------------------------------------------------------

def _curves(rep: R.Report, figures: Figures) -> str:
    series = R.curve_series(rep)
    if not series:
        return "<h2>Validation curves</h2><p>No validation point stored yet.</p>"
    band = " Lines are the mean over seeds, the band their range." if any(s.lo for s in series) else ""
    return "<h2>Validation curves</h2>" + _figs(figures.svg(
        F.curves_figure, series, title="stage 2: held-out perplexity", size=F.PAGE, fixed=True,
        alt="validation perplexity against tokens",
        caption="Held-out perplexity (log axis) against stage-2 tokens; scratch dashed." + band))


def _stage1(rep: R.Report, figures: Figures) -> str:
    parts = ["<h2>Stage 1</h2>", f"<p>{_source_para(rep)}</p>"]
    figs = []
    s1 = R.stage1_series(rep)
    if s1:
        figs.append(figures.svg(F.curves_figure, s1, ylabel="stage-1 validation loss", log_y=False,
                                title="stage 1: held-out loss", size=F.PAGE, fixed=True, alt="stage-1 validation loss",
                                caption="Held-out loss of the stage-1 model against its tokens."))
    icl = R.icl_series(rep)
    if icl:
        figs.append(figures.svg(F.icl_figure, icl, fixed=True, alt="in-context accuracy per frame",
                                caption="The stage-1 model in context: accuracy on held-out rules at each frame of "
                                        "the sequence."))
    parts.append(_figs(*figs))
    if rep.wait_strip():
        parts.append(_strip(rep))
    elif rep.strip_note:
        parts.append(f"<p class=\"sub\">{escape(rep.strip_note)}</p>")
    return "".join(parts)


def _source_para(rep: R.Report) -> str:
    src = rep.source
    if src.get("swept"):
        return f"The swept sources: {escape(', '.join(src['swept']))}; {si(src['tokens'])} stage-1 tokens each."
    text = f"Stage 1 trained on {_source_words(src)}"
    if src["source"] == "nca":
        text += (f": {src['grid']} grids, {src['alphabet']} colours, {src['patch']}x{src['patch']} patches per token, "
                 f"rules drawn from stream seed {src['seed']}")
    return text + "."


def _strip(rep: R.Report) -> str:
    first = rep.strip[0]
    img = F.strip_image([r["frames"] for r in rep.strip], first["alphabet"], cell=6)
    rules = "; ".join(f"rule {r['rule_seed']} (score {r['score']:.3f})" for r in rep.strip)
    caption = (f"The first {len(rep.strip)} rules of the stage-1 stream in band {first['band']} (stage 1 trained on "
               f"them), one per row; frames from t={first['burn_in']} every {first['dt']} step(s), in the TUI's "
               f"colours. {rules}.")
    return "<h3>Rules it trained on</h3>" + _img(F.png_bytes(img), "image/png", "NCA frames", caption).replace(
        "<img ", '<img style="width:auto;max-width:100%;image-rendering:pixelated" ')


# ---- compute, downstream ------------------------------------------------------------------------------

def _compute(rep: R.Report) -> str:
    rows = []
    for g in rep.groups:
        for kind in ("stage1", "nca", "scratch"):
            cs = [m.compute[kind] for m in g.members if kind in m.compute]
            if not cs:
                continue
            mean = lambda attr: _avg([getattr(c, attr) for c in cs])  # noqa: E731
            label = (escape(g.label) + ": " if len(rep.groups) > 1 else "") + kind
            rows.append([label, si(cs[0].params), si(cs[0].params_no_embeddings), si(cs[0].flops_per_token),
                         si(mean("tokens")), si(mean("flops")), _secs(mean("wall_s")), _secs(mean("device_s"))])
    if not rows:
        return "<h2>Compute</h2><p>No stage has logged its compute yet (or the experiments predate it).</p>"
    note = "mean over seeds; " if any(len(g.members) > 1 for g in rep.groups) else ""
    return ("<h2>Compute</h2>" + _table(["run", "params", "without embeddings", "FLOP/token", "tokens", "FLOPs",
                                          "wall", "device"], rows)
            + f'<p class="sub">{note}FLOPs = 6N + 12·L·d·T per token; wall: the stage from start to end, device: '
              "time in training steps.</p>")


def _probes(rep: R.Report) -> str:
    """Each experiment's skill probes: every model's score with its chance level (nothing when none
    were run)."""
    parts = []
    for g in rep.groups:
        for m in g.members:
            head, rows = P.html_rows(P.stored_models(m.probes))
            if rows:
                who = " ".join(x for x in (g.label, f"seed {m.seed}") if x) if len(rep.members) > 1 else ""
                parts.append((f"<h3>{escape(who)}</h3>" if who else "")
                             + _table([escape(h) for h in head], [[escape(c) for c in r] for r in rows]))
    if not parts:
        return ""
    return ("<h2>Skill probes</h2>" + "".join(parts)
            + '<p class="sub">Held-out synthetic items, no training: per-token accuracy at the answers (the argmax over '
              "the answer alphabet) and, where an item has several answer tokens, the share of items with all of them "
              "right (exact); chance is a uniform guess over that alphabet. Stage 1 after stage 1; both language models "
              "at the start (the transferred and the fresh model) and the end of stage 2.</p>")


def _avg(vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def _secs(x) -> str:
    return "-" if x is None else f"{x:.0f} s" if x < 600 else f"{x / 60:.0f} min"


def _downstream(rep: R.Report, figures: Figures) -> str:
    rows, points, sandboxes = [], [], set()
    for g in rep.groups:
        for m in g.members:
            for task, by_k in (m.summary.downstream if m.summary else {}).items():
                if task == "lm_eval":
                    continue
                for k, v in by_k.items():
                    who = " ".join(x for x in (g.label, f"seed {m.seed}") if x)
                    rows.append([escape(who), escape(task), str(k), _num(v["nca"]), _num(v["scratch"]),
                                 "-" if v["diff"] != v["diff"] else f"{v['diff']:+.3f} ± {v['ci']:.3f}", str(v["items"])])
                    points.append((f"{task} pass@{k}, {who}", v["diff"], v["ci"]))
                    if v.get("sandbox"):
                        sandboxes.add(v["sandbox"])
    if not rows:
        return "<h2>Downstream</h2><p>No downstream evaluation stored (<code>ncalab eval ID --task ...</code>).</p>"
    fig = figures.svg(F.downstream_figure, points, alt="downstream pass@k differences",
                      caption="pass@k of the warm-started model minus scratch's, with the 95% interval over items.")
    ran = ("<p class=\"sub\">Model-written programs ran under: "
           + escape("; ".join(sandbox_words(w) for w in sorted(sandboxes))) + ".</p>") if sandboxes else ""
    return ("<h2>Downstream</h2>" + _table(["experiment", "task", "k", "warm", "scratch", "difference (95% CI)",
                                            "items"], rows) + ran + _figs(fig))


# ---- members, config, footer --------------------------------------------------------------------------

def _members(rep: R.Report) -> str:
    if len(rep.members) == 1 and not rep.unfinished:
        return ""
    rows = []
    for g in rep.groups:
        for m in g.members:
            runs = ", ".join(f"{r['kind']} {r['status']}" + (f" {r['tokens']:,}/{r['total_tokens']:,}"
                                                             if r["status"] == "running" else "") for r in m.runs)
            gain = f"{m.summary.gain:+.4f}" if m.summary else "-"
            rows.append([escape(m.id), escape(g.label), str(m.seed), escape(m.status), gain, escape(runs) or "-"])
    table = _table(["experiment", "setting", "seed", "status", "gain", "runs"], rows, "left")
    opened = " open" if rep.unfinished else ""
    return f"<h2>Experiments</h2><details{opened}><summary>{len(rows)} experiments</summary>{table}</details>"


def _config(rep: R.Report) -> str:
    preset = f"{rep.config.get('preset')}/{rep.config.get('scale')}"
    differs = set(rep.differs)
    keys = [k for k in rep.config if k in differs] + [k for k in rep.config if k not in differs]
    rows = []
    for k in keys:
        value = escape(json.dumps(rep.config[k], default=str))
        rows.append([f"<mark>{escape(k)}</mark>" if k in differs else escape(k),
                     f"<mark>{value}</mark>" if k in differs else value])
    what = "the sweep's base config" if rep.kind == "sweep" else "the config" + (
        " of the first experiment" if len(rep.members) > 1 else "")
    swept = f"<p>Swept (or differing between the experiments): {escape(', '.join(rep.swept))}.</p>" if rep.swept else ""
    return (f"<h2>Config</h2>{swept}<p>{what}; highlighted: the {len(differs)} keys that differ from the {preset} "
            f"preset.</p><details><summary>all {len(rows)} keys</summary>{_table(['key', 'value'], rows, 'cfg')}"
            f"</details>" + _table(["key", "value"], [r for r, k in zip(rows, keys) if k in differs], "cfg"))


def _footer(rep: R.Report) -> str:
    return (f'<p class="sub" style="margin-top:2em">Made by ncalab {escape(rep.version)} on {_when(rep.made_at)} '
            f"from the run store <code>{escape(rep.home)}</code>, read-only: <code>ncalab report "
            f"{escape(' '.join(rep.ids))}</code>.</p>")
