"""Operating-system isolation for model-written programs: Linux namespaces, without root.

Each program gets fresh user, mount, PID, network, IPC and UTS namespaces: no network (only a
loopback that is down), a PID space of its own (its parent and every other process invisible;
whatever it starts dies with it), and a root file system that holds only the interpreter and
the system's libraries, read-only, with a private size-limited /tmp as the only writable place.
The user's home, the run store and every other file are not there to read. The program runs
with no capabilities and no way to gain any (no_new_privs).

Two ways to set it up, the first that works on this machine (probed once per process):
- bubblewrap (`bwrap`), the well-kept tool Flatpak uses, when it is installed;
- otherwise util-linux's `unshare`, present on nearly every Linux, with the mounts done by a
  short Python prelude (JAIL) before the program runs: the same layout as bubblewrap's.
Where neither works (no user namespaces: some containers, macOS), there is none, and the
sandbox's own guard is all there is (see sandbox.py).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys

BWRAP, UNSHARE, NONE = "bubblewrap", "unshare", "none"
DESCRIPTIONS = {
    BWRAP: "namespaces via bubblewrap: no network, own PID space, read-only system, private /tmp",
    UNSHARE: "namespaces via unshare: no network, own PID space, read-only system, private /tmp",
    NONE: "none: an audit hook and resource limits only, not a security boundary",
}
UNSHARE_ARGS = ("--user", "--map-root-user", "--net", "--pid", "--fork", "--mount", "--ipc", "--uts", "--kill-child")
# pivot_root has no glibc wrapper: its system call number per architecture
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}


def interpreter() -> str:
    """The real interpreter (a virtual environment's python is a link to it)."""
    return os.path.realpath(sys.executable)


def system_roots() -> list[str]:
    """The folders the program sees, read-only: /usr and the interpreter's installation."""
    roots = ["/usr"]
    for p in (sys.base_prefix, sys.base_exec_prefix, os.path.dirname(os.path.dirname(interpreter()))):
        p = os.path.realpath(p)
        if not any(p == r or p.startswith(r + "/") for r in roots):
            roots.append(p)
    return roots


def top_links() -> list[tuple[str, str | None]]:
    """(/bin, its link target) for the merged-/usr links; target None: a real folder, bound."""
    out = []
    for name in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(name):
            out.append((name, os.readlink(name)))
        elif os.path.isdir(name):
            out.append((name, None))
    return out


# What starts either tool: it asks the kernel to kill it when ncalab's process dies
# (PR_SET_PDEATHSIG, kept across exec), then checks that its parent is still the process that
# started it, and only then becomes the tool. bwrap's --die-with-parent sets the same signal,
# but only once it runs: a parent killed in those first milliseconds left the program running
# with no one to end it (seen on a loaded CI machine). util-linux's setpriv and a shell do it
# in about 2 ms; where setpriv is missing, Python does it in about 12 ms.
CHECK_PARENT = '[ "$PPID" = "$0" ] || exit 70; exec "$@"'
DIE_WITH_PARENT = r'''
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0) != 0 or os.getppid() != int(sys.argv[1]):
    os._exit(70)
os.execvp(sys.argv[2], sys.argv[2:])
'''


def dies_with_this_process(way: str = "auto") -> list[str]:
    """The prefix that ties the command after it to this process's life (see DIE_WITH_PARENT);
    ``way``: "setpriv", "python" or "auto" (setpriv where it is installed)."""
    if way == "setpriv" or (way == "auto" and shutil.which("setpriv") and shutil.which("sh")):
        return ["setpriv", "--pdeathsig", "KILL", "--", "sh", "-c", CHECK_PARENT, str(os.getpid())]
    return [sys.executable, "-I", "-S", "-c", DIE_WITH_PARENT, str(os.getpid())]


def bwrap_command(tmp_mb: int) -> list[str]:
    cmd = [*dies_with_this_process(), "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
           "--cap-drop", "ALL", "--clearenv"]
    for root in system_roots():
        cmd += ["--ro-bind", root, root]
    for name, target in top_links():
        cmd += ["--symlink", target, name] if target is not None else ["--ro-bind", name, name]
    return cmd + ["--dev", "/dev", "--proc", "/proc", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp", "--chdir", "/tmp"]


def unshare_command() -> list[str]:
    """unshare kills its child when it ends (--kill-child); the prefix ends unshare when
    ncalab's process dies, killed with -9 or not."""
    return [*dies_with_this_process(), "unshare", *UNSHARE_ARGS]


# The unshare way's prelude, run as root of the new user namespace before anything of the
# program: the new root (a tmpfs on the empty folder given), the system read-only, /dev's safe
# nodes, /proc of the new PID space, a private /tmp; pivot_root, the old root detached; then
# every capability dropped. The folder, the read-only roots, the links and the /tmp size come
# in as JSON in the environment (NCALAB_JAIL), so the program's own arguments are untouched.
JAIL = r'''
def _jail():
    import ctypes, json, os
    spec = json.loads(os.environ.pop("NCALAB_JAIL"))
    R, libc = spec["root"], ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
    def check(ok, what):
        if not ok:
            e = ctypes.get_errno()
            raise OSError(e, f"sandbox set-up: {what}: {os.strerror(e)}")
    def mount(src, dst, fs, flags, data=None):
        check(libc.mount(src and src.encode(), dst.encode(), fs and fs.encode(), flags, data and data.encode()) == 0,
              f"mount {dst}")
    def bind_ro(src):
        dst = R + src
        os.makedirs(dst, exist_ok=True)
        mount(src, dst, None, BIND | REC)
        kept = os.statvfs(src).f_flag & (NOSUID | NODEV | NOEXEC | 1024 | 2048 | 4096)  # flags the kernel keeps locked
        mount(None, dst, None, BIND | REMOUNT | RDONLY | NOSUID | kept)
    mount(None, "/", None, REC | PRIVATE)
    mount("tmpfs", R, "tmpfs", NOSUID | NODEV, "size=1m,mode=755")
    for src in spec["roots"]:
        bind_ro(src)
    for name, target in spec["links"]:
        os.symlink(target, R + name) if target is not None else bind_ro(name)
    os.mkdir(R + "/dev")
    for node in ("null", "zero", "urandom", "random"):
        open(R + "/dev/" + node, "w").close()
        mount("/dev/" + node, R + "/dev/" + node, None, BIND)
    os.mkdir(R + "/proc")
    mount("proc", R + "/proc", "proc", NOSUID | NODEV | NOEXEC)
    os.mkdir(R + "/tmp")
    mount("tmpfs", R + "/tmp", "tmpfs", NOSUID | NODEV, f"size={spec['tmp_bytes']},mode=1777")
    os.mkdir(R + "/.old")
    os.chdir(R)
    check(libc.syscall(spec["pivot_root"], b".", b".old") == 0, "pivot_root")
    os.chdir("/")
    check(libc.umount2(b"/.old", 2) == 0, "detaching the old root")  # MNT_DETACH
    os.rmdir("/.old")
    mount(None, "/", None, REMOUNT | RDONLY | NOSUID | NODEV)
    os.chdir("/tmp")
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]
    check(libc.prctl(38, 1, 0, 0, 0) == 0, "no_new_privs")  # PR_SET_NO_NEW_PRIVS
    check(libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()) == 0, "dropping capabilities")
_jail()
del _jail
'''


def jail_spec(root: str, tmp_mb: int) -> str:
    import json

    return json.dumps({"root": root, "roots": system_roots(), "links": top_links(), "tmp_bytes": tmp_mb << 20,
                       "pivot_root": PIVOT_ROOT.get(platform.machine(), 155)})
