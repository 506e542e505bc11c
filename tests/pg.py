"""A real PostgreSQL server for the tests: initdb into a temporary folder, a free local port,
stopped and removed at the end. Debian's postgresql package provides the binaries (CI installs
it); where they or the psycopg driver are absent, `unavailable()` says why and the tests that
need a server are skipped with that reason."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

USER = "ncalab"


def _bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file():
            return Path(d)
    return None


def unavailable() -> str | None:
    """Why no server can be started here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed (pip install 'ncalab[postgres]')"
    if _bin_dir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found (apt-get install postgresql)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One server for a test session; `new_database()` gives each test an empty database."""

    def __init__(self):
        self.bin = _bin_dir()
        self.password = secrets.token_hex(8)
        self.root = Path(tempfile.mkdtemp(prefix="ncalab-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        # The server refuses to run as root: then it runs as an ordinary user that owns its folder.
        self._as = {}
        if os.geteuid() == 0:
            user = _unprivileged_user()
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.port = 0
        self._initdb()

    def _run(self, *args: str, timeout: float = 120) -> None:
        cp = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
                            cwd=self.root, **self._as)
        if cp.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {cp.stderr.strip() or cp.stdout.strip()}")

    def _initdb(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as:
            os.chown(pwfile, self._as["user"], self._as["group"])
        self._run("initdb", "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile), "-A", "scram-sha-256",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        pwfile.unlink()

    def start(self, port: int | None = None, durable: bool = False) -> None:
        """Start (again, on the same port once it has one). fsync off unless ``durable``: the tests
        need speed, not durability; a benchmark measures the server as it is deployed."""
        fast = "" if durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        for _ in range(3):  # a free port can be taken by someone else before the server binds it
            self.port = port or self.port or _free_port()
            opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300" + fast
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", opts, "start")
                return
            except RuntimeError:
                if port:
                    raise
                self.port = 0
        raise RuntimeError(f"the test PostgreSQL server did not start: {self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text().splitlines()[-5:])
        except OSError:
            return ""

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql+psycopg://{USER}:{pw}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """An empty database of its own; its URL (with the password)."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=self.password,
                             dbname="postgres", autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run the server as")
