"""Cards of the stage-1 sources side by side: each source's fixed sample drawn small (its grid,
its depth profile or its tokens) with the statistics the source defines (Families' compare)."""

from __future__ import annotations

import re

from rich.console import Group
from rich.markup import escape
from rich.text import Text
from textual.containers import Grid
from textual.widgets import Static

from ncalab.display.source_views import picture, stat_text
from ncalab.tui.text import Pairs

PICTURE_WIDTH = 30  # columns of a card's picture
PICTURE_LINES = 3


def card(view) -> Group:
    """One source's card: name and label, a picture of its first sequence, its statistics."""
    title = Text.from_markup(f"[b]{escape(view.name)}[/]  [dim]{escape(view.label)}[/]")
    if view.sequences is None:
        return Group(title, Text(view.note or "no sample", style="yellow"))
    pic = picture(view.name, view.sequences[0], view.grid, view.vocab_size or 2, PICTURE_WIDTH, PICTURE_LINES)
    stats = Pairs().add(*[f"[dim]{escape(str(key))}[/] {escape(stat_text(value))}" for key, value in view.stats.items()])
    return Group(title, pic, stats)



class SourceCards(Grid):
    """A grid of cards, one per source; ``show`` replaces them."""

    async def show(self, views: list) -> None:
        await self.remove_children()
        await self.mount_all([Static(card(v), classes="source-card", id=card_id(v.name)) for v in views])


def card_id(name: str) -> str:
    return "card-" + re.sub(r"[^\w-]", "_", name)
