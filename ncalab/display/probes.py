"""The skill probes of an experiment's models, each score with its chance level beside it
(`ncalab eval ID --probes`, `runs show`, the report, the TUI's Runs details).

A model's probes come as {"kind", "when", "scores": {probe: {acc, exact, chance, chance_exact}
or {"not_applicable": why}}}: from `services.evaluation.probes`, or read back from the stored
metrics `probe:<probe>:<when>:<measure>` of a run (stored_models).
"""

from __future__ import annotations

import math

from rich import box
from rich.table import Table

ORDER = ("recall", "copy", "brackets", "addition")  # evaluation/probes.py's PROBES, in order
MODELS = (("stage1", "end"), ("nca", "start"), ("nca", "end"), ("scratch", "start"), ("scratch", "end"))
LABEL = {"stage1": "stage 1", "nca": "warm", "scratch": "scratch"}


def stored_models(runs: list[dict]) -> list[dict]:
    """The probe scores in runs' latest metrics (rows of services.runs.details: kind, latest_metrics)."""
    found: dict[tuple[str, str], dict] = {}
    for r in runs:
        for name, value in (r.get("latest_metrics") or {}).items():
            parts = name.split(":")
            if len(parts) != 4 or parts[0] != "probe":
                continue
            _, probe, when, measure = parts
            found.setdefault((r["kind"], when), {}).setdefault(probe, {})[measure] = value
    out = []
    for (kind, when), scores in found.items():
        for row in scores.values():
            if _nan(row.get("acc")):
                row["not_applicable"] = "its vocabulary is too small"
        out.append({"kind": kind, "when": when, "scores": scores})
    return sorted(out, key=lambda m: MODELS.index((m["kind"], m["when"])) if (m["kind"], m["when"]) in MODELS else 99)


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _probes(models: list[dict]) -> list[str]:
    names = {p for m in models for p in m["scores"]}
    return [p for p in ORDER if p in names] + sorted(names - set(ORDER))


def _rows(models: list[dict]) -> list[tuple[str, str, float | None, list[tuple[float | None, float | None, str]]]]:
    """(probe, measure, chance of the row, [(score, its model's chance, "n/a", "-" (not probed) or "")
    per model])."""
    out = []
    for probe in _probes(models):
        got = [m["scores"].get(probe, {}) for m in models]
        multi = any(not _nan(g.get("chance_exact")) and not _nan(g.get("chance"))
                    and g["chance_exact"] < g["chance"] * (1 - 1e-9) for g in got)  # items of several answer tokens
        for measure, chance_key in (("acc", "chance"), *([("exact", "chance_exact")] if multi else [])):
            cells = [(g.get(measure), g.get(chance_key), "n/a" if "not_applicable" in g else "-" if not g else "")
                     for g in got]
            language = [c for g, (_, c, na) in zip(models, cells) if g["kind"] != "stage1" and not na and not _nan(c)]
            anyone = [c for _, c, na in cells if not na and not _nan(c)]
            chance = language[0] if language else (anyone[0] if anyone else None)
            out.append((probe, "exact" if measure == "exact" else "", chance, cells))
    return out


def _cell(score, chance, missing: str, row_chance) -> str:
    if missing or _nan(score):
        return missing or "n/a"
    text = f"{score:.3f}"
    if not _nan(chance) and (row_chance is None or abs(chance - row_chance) > 1e-12):
        text += f" (chance {_chance(chance)})"
    return text


def _chance(x) -> str:
    return "-" if _nan(x) else f"{x:.3f}" if x >= 1e-3 else f"{x:.1e}"


def model_label(m: dict, sep: str = " ") -> str:
    return LABEL.get(m["kind"], m["kind"]) + sep + m["when"]


def probes_table(models: list[dict], title: str = "skill probes") -> Table | None:
    """One row per probe (and its exact match where an item has several answer tokens), one column
    per model, the chance level first (a model whose chance differs has its own beside its score)."""
    if not models:
        return None
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    t.add_column("probe", no_wrap=True)
    t.add_column("chance", justify="right", no_wrap=True, min_width=7)
    for m in models:
        t.add_column(model_label(m, "\n"), justify="right", no_wrap=True)
    for probe, measure, chance, cells in _rows(models):
        t.add_row(_label(probe, measure), _chance(chance), *[_cell(s, c, na, chance) for s, c, na in cells])
    t.caption = ("per-token accuracy at the answers (argmax over the answer alphabet), and the share of items "
                 "with every answer token right (exact); chance: a uniform guess")
    t.caption_justify = "left"
    return t


def _label(probe: str, measure: str) -> str:
    return f"{probe} {measure}" if measure else probe


def probe_rows(models: list[dict]) -> list[list[str]]:
    """For a narrow panel: one row per probe (per-token accuracy), its chance first, then each
    model's score, an arm's as start -> end, as short items that a panel flows whole."""
    out = []
    for probe, measure, chance, cells in _rows(models):
        if measure:
            continue  # exact match: in the table of runs show and the report
        by: dict[str, dict[str, str]] = {}
        for m, (sc, c, na) in zip(models, cells):
            by.setdefault(m["kind"], {})[m["when"]] = _cell(sc, c, na, chance)
        items = [f"{probe} (chance {_chance(chance)})"]
        for kind, whens in by.items():
            text = " → ".join(whens[w] for w in ("start", "end") if w in whens)
            items.append(f"{LABEL.get(kind, kind)} {text}")
        out.append(items)
    return out


def html_rows(models: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows as plain text, for the report."""
    head = ["probe", "chance", *[model_label(m) for m in models]]
    rows = [[_label(probe, measure), _chance(chance), *[_cell(s, c, na, chance) for s, c, na in cells]]
            for probe, measure, chance, cells in _rows(models)]
    return head, rows
