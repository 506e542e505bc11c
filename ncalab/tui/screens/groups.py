"""What the Sweeps and Studies screens share: a list of groups of experiments (a study is a
sweep with a declaration) that refreshes live, and cancelling or resuming the selected one."""

from __future__ import annotations

from textual import work

from ncalab.errors import NcalabError
from ncalab.services import sweeps
from ncalab.tui.messages import Notice, StoreWritten
from ncalab.tui.widgets.run_table import RunTable

# Id, progress and status first (never cut); the grid and the name shorten or give way.
SHORTENED = ("grid", "name")


class GroupListScreen:
    """Mixed into a Screen whose `action_refresh` is a thread worker of the group REFRESH_GROUP,
    with `selected` (the highlighted group's id) and `_shown` (the list's rows)."""

    REFRESH_GROUP = "groups-refresh"

    def _refresh_live(self) -> None:
        """The timer's refresh, unless one is under way: replacing it would cancel it (refreshes
        slower than the timer would never show)."""
        if not any(w.node is self and w.group == self.REFRESH_GROUP and w.is_running for w in self.workers):
            self.action_refresh()

    def _list(self, rows: list[dict]) -> None:
        """The list: id, members done, the other statuses, the grid and the name of each group."""
        cells = [(r["sweep_id"], f"{r['status'].get('completed', 0)}/{r['members']}",
                  " ".join(f"{v} {k}" for k, v in sorted(r["status"].items()) if k != "completed") or "done",
                  r["grid_label"], r["name"] or "")
                 for r in rows]
        if cells != self._shown:
            self._shown = cells
            ids = [c[0] for c in cells]
            self.query_one(RunTable).set_rows(cells, ids.index(self.selected) if self.selected in ids else None)

    def _control_target(self) -> str | None:
        return self.selected

    def action_cancel(self) -> None:
        self._control("cancel")

    def action_resume(self) -> None:
        self._control("resume")

    @work(thread=True, group="groups-control")
    def _control(self, what: str) -> None:
        """Cancel or resume the selected group off the UI thread (cancel waits for checkpoints)."""
        group = self._control_target()
        if group is None:
            return
        try:
            store = self.app.stores.writer()
            if what == "cancel":
                ids = sweeps.cancel(store, group, 60)
                msg = f"{len(ids)} experiments stopped (u resumes)" if ids else "nothing queued or running"
            else:
                ids = sweeps.resume(store, group)
                msg = f"{len(ids)} experiments queued again" if ids else "nothing to resume"
            self.post_message(Notice(f"{group}: {msg}"))
        except NcalabError as e:
            self.post_message(Notice(str(e), severity="error"))
        self.post_message(StoreWritten(group, what))

    def on_store_written(self, message: StoreWritten) -> None:
        """The list again, after a cancel or resume (handled by name: Textual registers `@on`
        handlers only in its own classes, and this mixin is not one)."""
        self.action_refresh()
