"""Text the screens share: label-value pairs that never break apart, and a band's share of rules."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from ncalab.lazy import np

Item = str | Text  # a str is rich markup


class Pairs:
    """Rows of items ("label value" pairs, mostly) flowed into the width the panel has.

    Each row starts a new line and its items fill lines left to right, two spaces apart; an
    item that does not fit goes to the next line whole, so a label never ends one line with its
    value on the next (as plain word wrapping does). Only an item wider than the whole panel
    folds, and then on its own lines.
    """

    def __init__(self, rows: list[list[Item]] | None = None, gap: int = 2):
        self.rows: list[list[Text]] = []
        self.gap = gap
        for row in rows or []:
            self.add(*row)

    def add(self, *items: Item) -> Pairs:
        self.rows.append([Text.from_markup(i) if isinstance(i, str) else i for i in items if i is not None])
        return self

    def lines(self, width: int) -> list[Text]:
        out = []
        for row in self.rows:
            line = Text()
            for item in row:
                if line.cell_len and line.cell_len + self.gap + item.cell_len > width:
                    out.append(line)
                    line = Text()
                if line.cell_len:
                    line.append(" " * self.gap)
                line.append_text(item)
            out.append(line)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.lines(options.max_width)


def share_line(in_band: int, scored: int, band_label: str) -> str:
    """'11% of 512 random rules score in 0.3-0.4' (what a band leaves out stays in sight)."""
    if not scored:
        return f"share of random rules in {band_label}: not measured yet"
    return f"{in_band / scored:.0%} of {scored:,} random rules score in {band_label}"


def histogram_text(scores: np.ndarray, lo: float, hi: float, bins: int = 14, width: int = 24) -> str:
    """A sideways histogram of scores in [0, 0.7] (bins of 0.05, so band edges fall on bin
    edges); bins inside the band are highlighted; the last line is the band's share."""
    counts, edges = np.histogram(scores, bins=bins, range=(0.0, 0.7))
    top = max(int(counts.max()), 1)
    lines = []
    for c, a, b in zip(counts, edges, edges[1:]):
        inside = a >= lo - 1e-9 and b <= hi + 1e-9
        bar = "█" * max(0, round(c / top * width))
        lines.append(f"{a:4.2f} {'[b green]' if inside else '[dim]'}{bar}[/] {c}")
    inside = int(((scores > lo) & (scores < hi)).sum())
    lines.append(share_line(inside, len(scores), f"{lo:g}-{hi:g}"))
    return "\n".join(lines)
