"""Running model-written Python in a separate process, in two layers.

The outer layer is the operating system's, where the machine has it (ncalab.evaluation.isolation):
fresh namespaces with no network, a PID space of its own, and a file system holding only the
interpreter and the system's libraries, read-only, with a private /tmp; the user's files are
not there to read. The inner layer runs in every case: the child installs resource limits and
an audit hook (PEP 578) before it compiles the program; the hook refuses sockets,
subprocesses, signals to other processes, ctypes, and any file written, removed or renamed
outside its folder. The parent kills the child's whole process group when the time is up.

Alone, the inner layer stops the accidents model-written code makes (infinite loops, stray
files, runaway memory) but is not a security boundary: an audit hook can be walked around
from inside the interpreter, and nothing in it stops reading a file. Which layer ran is in
every Outcome, and `--require-isolation` refuses to run without the outer one.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from ncalab.errors import NcalabError
from ncalab.evaluation import isolation as iso
from ncalab.evaluation.isolation import NONE

_GUARD = r'''
import os, resource, sys
root = os.path.realpath(sys.argv[1]) + os.sep
memory, cpu, fsize = (int(x) for x in sys.argv[2:5])
source = sys.stdin.read()
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_PATHS = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.chmod": 1, "os.chown": 1, "os.truncate": 1,
          "os.rename": 2, "os.link": 2, "os.symlink": 2, "shutil.rmtree": 1, "shutil.copyfile": 2, "os.utime": 1}
_DENY = ("socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
         "os.kill", "os.killpg", "ctypes.", "os.setuid", "os.chroot", "os.startfile", "pty.", "resource.setrlimit")

def _inside(path):
    if isinstance(path, int):
        return True  # an open descriptor
    return os.path.realpath(os.fsdecode(path)).startswith(root)

def _hook(event, args):
    if event.startswith(_DENY):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open" and args[0] is not None:
        mode, flags = args[1] or "", args[2] or 0
        if (any(c in str(mode) for c in "wax+") or flags & _WRITE) and not _inside(args[0]):
            raise PermissionError(f"sandbox: writing {args[0]!r} outside the sandbox")
    elif event in _PATHS:
        for p in args[: _PATHS[event]]:
            if p is not None and not _inside(p):
                raise PermissionError(f"sandbox: {event} on {p!r} outside the sandbox")

sys.addaudithook(_hook)
del resource
exec(compile(source, "<candidate>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
'''


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # passed | failed | timeout
    detail: str = ""  # the last line of the error, for the stored per-item results
    isolation: str = NONE  # the operating-system layer it ran under (isolation.BWRAP, UNSHARE or NONE)


@functools.cache
def available() -> str:
    """The isolation this machine gives: BWRAP, UNSHARE or NONE, probed once per process by
    running a program that must not see a file the parent has just written."""
    if sys.platform != "linux":
        return NONE
    with tempfile.TemporaryDirectory(prefix="ncalab-probe-") as folder:
        marker = os.path.join(os.path.realpath(folder), "outside")
        open(marker, "w").close()
        probe = f"import os, sys\nsys.exit(3 if os.path.exists({marker!r}) else 0)"
        for way, tool in ((iso.BWRAP, "bwrap"), (iso.UNSHARE, "unshare")):
            if shutil.which(tool) is None:
                continue
            try:
                if run_python(probe, timeout=10, isolation=way).passed:
                    return way
            except (OSError, subprocess.SubprocessError):
                continue
    return NONE


def resolve(isolation: str = "auto", require: bool = False) -> str:
    """The isolation to run under: ``auto`` takes the best this machine has. ``require``
    refuses (one line) where there is none, instead of running with the inner layer alone."""
    way = available() if isolation == "auto" else isolation
    if way not in iso.DESCRIPTIONS:
        raise NcalabError(f"unknown isolation {isolation!r}; expected auto or one of {', '.join(iso.DESCRIPTIONS)}")
    if require and way == NONE:
        raise NcalabError("--require-isolation: this machine gives no operating-system isolation (neither bubblewrap "
                          "nor unshare can make user namespaces here); nothing was run")
    return way


def run_python(program: str, timeout: float = 3.0, memory_mb: int = 1024, max_file_mb: int = 16,
               isolation: str = "auto") -> Outcome:
    """Run ``program`` in a fresh interpreter with its own temporary folder, under ``isolation``
    (see resolve); passed when it exits 0."""
    way = resolve(isolation)
    tmp_mb = max(64, 4 * max_file_mb)  # the private /tmp: every file it writes together
    with tempfile.TemporaryDirectory(prefix="ncalab-exec-") as folder:
        inside = folder if way == NONE else "/tmp"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": inside, "TMPDIR": inside,
               "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
               "NCALAB_SANDBOX": f"{os.getpid()}:{folder}"}  # marks its processes (tests look for leftovers)
        limits = [inside, str(memory_mb << 20), str(int(timeout) + 1), str(max_file_mb << 20)]
        if way == iso.BWRAP:
            setenv = [a for k, v in env.items() for a in ("--setenv", k, v)]
            args = [*iso.bwrap_command(tmp_mb), *setenv, iso.interpreter(), "-I", "-S", "-c", _GUARD, *limits]
        elif way == iso.UNSHARE:  # the folder is only the mount point of the new root: it stays empty
            env["NCALAB_JAIL"] = iso.jail_spec(folder, tmp_mb)
            args = [*iso.unshare_command(), iso.interpreter(), "-I", "-S", "-c", iso.JAIL + _GUARD, *limits]
        else:
            args = [sys.executable, "-I", "-S", "-c", _GUARD, *limits]
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=folder, env=env, start_new_session=True)
        try:
            _, err = proc.communicate(program.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return Outcome(False, "timeout", f"timed out after {timeout:g} s", way)
        finally:
            _kill(proc)  # whatever it left behind in its group
        if proc.returncode == 0:
            return Outcome(True, "passed", isolation=way)
        lines = err.decode(errors="replace").strip().splitlines()
        return Outcome(False, "failed", lines[-1][:300] if lines else f"exit code {proc.returncode}", way)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
