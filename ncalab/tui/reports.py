"""Writing an HTML report from a screen (Runs: an experiment's, Sweeps: a sweep's), the report
`ncalab report IDENT --out report-IDENT.html` writes."""

from __future__ import annotations

from textual.screen import Screen

from ncalab.display.report_html import write_report
from ncalab.errors import NcalabError
from ncalab.tui.messages import Notice


def write_report_in_background(screen: Screen, ident: str) -> None:
    """Write the report of `ident` into the current folder (never the store) from the app's
    read-only store, in a worker; a notification says where it went (or why it could not be
    written)."""

    def write() -> None:
        from pathlib import Path

        try:
            store = screen.app.stores.reader()
            if store is None:
                raise NcalabError("no run store yet")
            made = write_report(store, [ident], Path(f"report-{ident}.html"))
            note = " (not finished: it shows what exists)" if made["unfinished"] else ""
            screen.post_message(Notice(f"report of {ident}{note}: {made['out']}", timeout=12))
        except NcalabError as e:
            screen.post_message(Notice(str(e), severity="error"))

    screen.notify(f"writing the report of {ident}...")
    screen.run_worker(write, thread=True, group="report", exclusive=False)
