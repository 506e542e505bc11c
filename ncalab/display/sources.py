"""The table of stage-1 sources (`ncalab sources`)."""

from __future__ import annotations

from rich import box
from rich.table import Table


def sources_table(rows: list[dict]) -> Table:
    t = Table(box=box.SIMPLE_HEAD, title="stage-1 sources (--set stage1.source=NAME)")
    t.add_column("name")
    t.add_column("origin")
    t.add_column("settings (defaults)", no_wrap=True)
    t.add_column("vocabulary", justify="right")
    t.add_column("sample", overflow="fold", min_width=16)
    for r in rows:
        key = r["settings_key"]
        settings = "\n".join(f"{key}.{k}={_short(v)}" for k, v in r["settings"].items()) if key else "-"
        sample = " ".join(map(str, r["sample"])) + " ..." if r["sample"] else (r["note"] or "-")
        t.add_row(f"[bold]{r['name']}[/]\n{r['label']}", r["origin"], settings,
                  "-" if r["vocab_size"] is None else f"{r['vocab_size']:,}", sample)
    return t


def _short(value) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
