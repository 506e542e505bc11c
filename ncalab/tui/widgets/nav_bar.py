"""The top line of every screen: the keys that go to each screen (the current one lit), help
and quit. The footer below is then left to the screen's own keys, so both fit at 80 columns."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.events import Click
from textual.widget import Widget

# binding id -> the mode it opens (None: an app action)
NAV = {"go.explore": "explore", "go.families": "families", "go.launch": "launch", "go.runs": "runs",
       "go.sweeps": "sweeps", "go.studies": "studies", "help": None, "quit": None}
TITLE = " ncalab "


class NavBar(Widget):
    DEFAULT_CSS = """
    NavBar { dock: top; height: 1; background: $panel; color: $text; }
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        self.mode = mode
        self.item_spans: list[tuple[int, int, str]] = []  # (start, end, action) of each item, for clicks

    def _items(self) -> list[tuple[str, str, str, bool]]:
        """(key, label, action, current) in NAV's order, with the keys as the user mapped them."""
        found = {}
        for active in self.screen.active_bindings.values():
            b = active.binding
            if b.id in NAV and b.id not in found:
                found[b.id] = (self.app.get_key_display(b), b.description, b.action, NAV[b.id] == self.mode)
        return [found[i] for i in NAV if i in found]

    def render(self) -> Text:
        items = self._items()
        width = sum(cell_len(f" {key} {label} ") for key, label, _, _ in items)
        # the keys come first: at 80 columns the title gives way to them
        text = Text(TITLE if width + len(TITLE) <= self.size.width else "", style="bold")
        self.item_spans = []
        for key, label, action, current in items:
            start = text.cell_len
            text.append(f" {key} ", style="bold reverse" if current else "bold")
            text.append(f"{label} ", style="reverse" if current else "")
            self.item_spans.append((start, text.cell_len, action))
        return text

    async def on_click(self, event: Click) -> None:
        for start, end, action in self.item_spans:
            if start <= event.x < end:
                await self.app.run_action(action)
                return
