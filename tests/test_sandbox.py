"""Model-written code under operating-system isolation (ncalab/evaluation/isolation.py, sandbox.py):
hostile programs tried under each way this machine offers, the harm checked from outside.

Each program tries one harm; what is asserted is that the harm did not happen (a file outside
unchanged, a secret absent from every output, a process alive, nothing left running), not
only that the program failed."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ncalab.errors import NcalabError
from ncalab.evaluation import humaneval, isolation, sandbox

WAYS = (isolation.BWRAP, isolation.UNSHARE)


def _works(way: str) -> bool:
    tool = {"bubblewrap": "bwrap", "unshare": "unshare"}[way]
    if sys.platform != "linux" or subprocess.run(["which", tool], capture_output=True).returncode:
        return False
    return sandbox.run_python("pass", timeout=20, isolation=way).passed


@pytest.fixture(params=WAYS)
def way(request):
    if not _works(request.param):
        pytest.skip("user namespaces are not available on this machine")
    return request.param


@pytest.fixture
def secret():
    """A file in the user's real home that no program may read, removed afterwards."""
    path = Path.home() / f".ncalab-test-secret-{uuid.uuid4().hex[:8]}"
    value = f"SECRET-{uuid.uuid4().hex}"
    path.write_text(value)
    yield path, value
    path.unlink(missing_ok=True)


def _sandboxed_processes() -> set[int]:
    """Processes the sandbox started for this test process (their environment says so)."""
    return _sandboxed_processes_of(os.getpid())


def test_a_secret_in_the_home_never_reaches_any_output(way, secret):
    path, value = secret
    for program in (f"raise SystemExit(open({str(path)!r}).read())",
                    f"import sys\nsys.stderr.write(open({str(path)!r}).read())\nsys.exit(1)"):
        out = sandbox.run_python(program, isolation=way)
        assert value not in out.detail and out.isolation == way
    # nor can it list the home to find what is there
    listed = sandbox.run_python(f"import os\nraise SystemExit(str(os.listdir({str(path.parent)!r})))", isolation=way)
    assert path.name not in listed.detail
    # the inner layer alone cannot stop it: this is why the outer one exists
    assert value in sandbox.run_python(f"raise SystemExit(open({str(path)!r}).read())", isolation="none").detail


@pytest.mark.parametrize("action", [
    "open(TARGET, 'w').write('changed')",
    "import os\nos.remove(TARGET)",
    "import os\nos.rename(TARGET, TARGET + '.moved')",
    "import shutil\nshutil.rmtree(os.path.dirname(TARGET))",
    "import importlib\nimportlib.import_module('subprocess').run(['rm', '-f', TARGET])",
    "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]"
    ".__init__.__globals__['system']('rm -f ' + TARGET)",
    "__builtins__.__import__('os').system('rm -f ' + TARGET)",
    "import ctypes\nctypes.CDLL(None).unlink(TARGET.encode())",
])
def test_files_outside_stay_as_they_were(way, tmp_path, action):
    target = tmp_path / "outside.txt"
    target.write_text("original")
    program = f"import os\nTARGET = {str(target)!r}\n{action}\n"
    sandbox.run_python(program, isolation=way)
    assert target.read_text() == "original" and sorted(p.name for p in tmp_path.iterdir()) == ["outside.txt"]


def test_no_network(way):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        for program in (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
                        f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))"):
            out = sandbox.run_python(program, isolation=way)
            assert not out.passed
            with pytest.raises(OSError):  # nothing connected
                server.accept()
    finally:
        server.close()


def test_other_processes_cannot_be_signalled(way):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for program in (f"import os\nos.kill({victim.pid}, 9)", "import os\nos.kill(os.getppid(), 9)",
                        f"import ctypes\nctypes.CDLL(None).kill({victim.pid}, 9)",
                        "import signal, os\nos.killpg(0, signal.SIGKILL)"):
            sandbox.run_python(program, isolation=way)
            assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_bombs_and_runaways_are_stopped_and_leave_nothing_behind(way):
    before = _sandboxed_processes()
    programs = {
        "fork bomb": "import os\nwhile True:\n    os.fork()",
        "memory bomb": "x = []\nwhile True:\n    x.append(bytearray(1 << 26))",
        "busy loop": "while True:\n    pass",
        "huge file": "with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 20))",
        "a thread left running": "import threading\ndef spin():\n    while True:\n        pass\n"
                                 "threading.Thread(target=spin).start()",
        "its own limits raised": "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n"
                                 "x = bytearray(4 << 30)",
    }
    for name, program in programs.items():
        t0 = time.monotonic()
        out = sandbox.run_python(program, timeout=1.5, memory_mb=256, max_file_mb=8, isolation=way)
        assert not out.passed and time.monotonic() - t0 < 10, (name, out)
    time.sleep(0.2)
    assert _sandboxed_processes() - before == set()  # no process of theirs outlives them


def test_humaneval_scores_the_same_under_either_layer(way):
    problems = humaneval.load_problems()
    for p in problems[:3]:
        for layer in (way, "none"):
            assert humaneval.check(p, p.canonical_solution, timeout=10, isolation=layer).passed, (p.task_id, layer)
            assert not humaneval.check(p, "    return None\n", timeout=10, isolation=layer).passed


def test_without_isolation_require_refuses_in_one_line_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "available", lambda: isolation.NONE)
    with pytest.raises(NcalabError, match="--require-isolation") as e:
        sandbox.resolve("auto", require=True)
    assert "\n" not in str(e.value)
    assert sandbox.resolve("auto") == isolation.NONE  # allowed without the flag (the eval warns)
    with pytest.raises(NcalabError, match="unknown isolation"):
        sandbox.run_python("pass", isolation="chroot")


def test_a_program_dies_with_the_process_that_ran_it(way, tmp_path):
    """ncalab's process killed with -9 mid-program: the sandboxed program ends too."""
    script = (f"import os, sys\nsys.path.insert(0, {str(Path(__file__).parent.parent)!r})\n"
              "from ncalab.evaluation.sandbox import run_python\n"
              f"run_python('while True:\\n    pass', timeout=60, isolation={way!r})\n")
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not (mine := _sandboxed_processes_of(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert mine, "the program never started"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(mine) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(mine)
    finally:
        parent.kill()


def _sandboxed_processes_of(pid: int) -> set[int]:
    """Processes the sandbox started for the process ``pid``."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"NCALAB_SANDBOX={pid}:".encode() in (entry / "environ").read_bytes():
                    out.add(int(entry.name))
            except OSError:
                continue
    return out


def _alive(pids: set[int]) -> bool:
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if state != "Z":
            return True
    return False


@pytest.mark.parametrize("guard", ["setpriv", "python"])
def test_the_launch_guard_ties_a_command_to_the_process_that_started_it(guard):
    """The prefix before bwrap and unshare: a command it started dies with the starter killed -9,
    and a command whose starter is not the one named never runs (the race a parent killed in
    the first milliseconds left open)."""
    if sys.platform != "linux" or (guard == "setpriv" and not shutil.which("setpriv")):
        pytest.skip("setpriv is not installed")
    stranger = [*isolation.dies_with_this_process(guard)[:-1], "1"]  # names init as the starter
    marker = Path(f"/tmp/ncalab-guard-{uuid.uuid4().hex[:8]}")
    assert subprocess.run([*stranger, "touch", str(marker)], timeout=30).returncode == 70
    assert not marker.exists()

    starter = subprocess.Popen([sys.executable, "-c", (
        f"import subprocess, sys, time\nsys.path.insert(0, {str(Path(__file__).parent.parent)!r})\n"
        "from ncalab.evaluation.isolation import dies_with_this_process\n"
        f"p = subprocess.Popen([*dies_with_this_process({guard!r}), 'sleep', '120'])\n"
        "print(p.pid, flush=True)\ntime.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        child = int(starter.stdout.readline())
        deadline = time.monotonic() + 30
        while _comm(child) != "sleep" and time.monotonic() < deadline:  # the guard has become sleep
            time.sleep(0.05)
        assert _comm(child) == "sleep"
        starter.kill()
        starter.wait()
        deadline = time.monotonic() + 10
        while _alive({child}) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive({child})
    finally:
        starter.kill()


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
