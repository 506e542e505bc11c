"""A headless Chromium driven through the DevTools protocol over a pipe (--remote-debugging-pipe),
with the standard library only: load a page at a given viewport (a phone's included, which
--window-size cannot make), evaluate an expression, take a full-page screenshot, and collect
every console message, exception and log entry the page caused."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _above(fd: int, floor: int) -> int:
    """The same pipe end on a descriptor number above ``floor`` (the original closed)."""
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor + 1)
    os.close(fd)
    return new


class Browser:
    def __init__(self, binary: str, timeout: float = 60.0):
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="ncalab-chromium-")
        self._log = open(Path(self._profile.name) / "stderr.log", "wb")  # read back when it fails
        cmd_r, self._cmd_w = os.pipe()  # we write commands; chromium reads them on fd 3
        self._res_r, res_w = os.pipe()  # chromium writes answers on fd 4
        cmd_r, res_w = _above(cmd_r, 4), _above(res_w, 4)  # so that moving them to 3 and 4 overwrites neither
        args = ["--headless", "--remote-debugging-pipe", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                "--no-default-browser-check", f"--user-data-dir={self._profile.name}", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(0, "--no-sandbox")  # chromium refuses its sandbox as root (containers, CI)
        def onto_3_and_4():  # in the child, before exec; dup2's copies are inherited
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        # close_fds=False: it would close 3 and 4 after the move; Python's own descriptors are not
        # inheritable anyway, so nothing else leaks
        self.proc = subprocess.Popen([binary, *args], close_fds=False, preexec_fn=onto_3_and_4,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log)
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict] = []

    # ---- the protocol ------------------------------------------------------------------------------
    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            e = self._read()
            if e.get("method") == method:
                return e
            self.events.append(e)

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe: " + self.log_tail())
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    # ---- a page ------------------------------------------------------------------------------------
    def open(self, path: Path, width: int, height: int, mobile: bool = False) -> str:
        """Load a file at a viewport of width x height CSS pixels (scale 1); returns the session."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.send(domain, session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                          "mobile": mobile}, session)
        self.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session)
        self.wait_event("Page.loadEventFired")
        return session

    def evaluate(self, session: str, expression: str):
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                        session)
        if "exceptionDetails" in res:
            raise RuntimeError(f"evaluate: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, session: str, width: int, height: int) -> bytes:
        """The whole page (width x height CSS pixels), not only the viewport."""
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        res = self.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True},
                        session)
        return base64.b64decode(res["data"])

    def complaints(self) -> list[str]:
        """Console calls, uncaught exceptions and log entries (CSP refusals, failed loads) so far."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled":
                out.append(f"console.{p.get('type')}: {[a.get('value') for a in p.get('args', [])]}")
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('text')}")
            elif m == "Log.entryAdded":
                entry = p.get("entry", {})
                out.append(f"log {entry.get('level')} ({entry.get('source')}): {entry.get('text')}")
        return out

    def log_tail(self, lines: int = 8) -> str:
        self._log.flush()
        text = (Path(self._profile.name) / "stderr.log").read_text(errors="replace")
        return " | ".join(line for line in text.splitlines() if "dbus" not in line.lower())[-2000:] or "(no output)"

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        self._profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
