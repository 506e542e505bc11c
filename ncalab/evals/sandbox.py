"""Running model-written Python in a separate process: a time limit, resource limits, no
network, no processes, and no writes outside its own temporary folder.

The child installs resource limits and an audit hook (PEP 578) before it compiles the
program; the hook refuses sockets, subprocesses, signals to other processes, and any file
written, removed or renamed outside the folder. The parent kills the child's whole process
group when the time is up. This stops the accidents model-written code makes (infinite
loops, stray files, runaway memory); it is not a security boundary against an adversary,
which is why running generated code is opt-in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

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


def run_python(program: str, timeout: float = 3.0, memory_mb: int = 1024, max_file_mb: int = 16) -> Outcome:
    """Run ``program`` in a fresh interpreter inside a temporary folder; passed when it exits 0."""
    with tempfile.TemporaryDirectory(prefix="ncalab-exec-") as folder:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": folder, "TMPDIR": folder,
               "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        args = [sys.executable, "-I", "-S", "-c", _GUARD, folder, str(memory_mb << 20), str(int(timeout) + 1),
                str(max_file_mb << 20)]
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=folder, env=env, start_new_session=True)
        try:
            _, err = proc.communicate(program.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return Outcome(False, "timeout", f"timed out after {timeout:g} s")
        finally:
            _kill(proc)  # whatever it left behind in its group
        if proc.returncode == 0:
            return Outcome(True, "passed")
        lines = err.decode(errors="replace").strip().splitlines()
        return Outcome(False, "failed", lines[-1][:300] if lines else f"exit code {proc.returncode}")


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
