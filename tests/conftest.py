import contextlib
import os
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# Keep thread counts predictable on small CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "2")


ALL_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _own_cores_for_this_worker() -> None:
    """Under pytest-xdist (pyproject's addopts run one worker per core), give each worker its
    own cores; the jobs and subprocesses it starts inherit them. torch's threads spin while they
    wait for each other, so workers that share every core slow each other far more than they
    gain (benchmarks/contention.py measured 0.25x each for two jobs on 2 cores)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > len(ALL_CPUS):
        return  # more workers than cores: nothing to give each its own
    mine = ALL_CPUS[int(worker[2:]) % workers::workers]
    os.sched_setaffinity(0, mine)
    os.environ["OMP_NUM_THREADS"] = str(len(mine))


_own_cores_for_this_worker()


WARMING = pytest.StashKey[list]()


def pytest_configure(config):
    """On the controller, before xdist starts its workers: the numba kernels compiled once into
    their cache (tests/warm_kernels.py, two processes that the tests wait for, below). A worker
    has nothing to do."""
    if hasattr(config, "workerinput") or os.environ.get("NCALAB_TESTS_NO_WARMUP"):
        return
    import subprocess
    import sys

    import warm_kernels

    if not warm_kernels.cached():
        script = Path(warm_kernels.__file__)
        config.stash[WARMING] = [subprocess.Popen([sys.executable, str(script), part]) for part in ("engine", "tokens")]


def _kernels_warm(config) -> None:
    for p in config.stash.get(WARMING, []):
        p.wait()  # a failure here shows again, with its test, where the kernel is used
    config.stash[WARMING] = []


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    _kernels_warm(node.config)  # the controller hands out no test before the kernels are cached


def pytest_collection_finish(session):
    _kernels_warm(session.config)  # without xdist


def pytest_collection_modifyitems(session, config, items):
    """The files with the most long (slow) tests first, the rest in their order after them. xdist
    hands whole files to its two workers in this order (--dist loadfile), so the long files start
    early and the many short ones fill in at the end, instead of one long file running alone
    while the other worker waits (the order of names put test_tui_store_load, 135 s, last)."""
    slow = {}
    for item in items:
        slow[item.fspath] = slow.get(item.fspath, 0) + (item.get_closest_marker("slow") is not None)
    first = {path: i for i, path in enumerate(slow)}
    items.sort(key=lambda item: (-slow[item.fspath], first[item.fspath]))  # stable: a file's own order kept


# Skips: with their reason on a contributor's machine, never silent in CI (tests/skip_policy.py).
from skip_policy import pytest_make_collect_report, pytest_runtest_makereport  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _every_core_for_all_cores_tests(request):
    """A test marked all_cores (several processes of one experiment, each wanting a core) gets
    every core of the machine back for its duration, and its subprocesses with it."""
    if request.node.get_closest_marker("all_cores") is None or not ALL_CPUS:
        yield
        return
    mine, threads = os.sched_getaffinity(0), os.environ.get("OMP_NUM_THREADS")
    os.sched_setaffinity(0, ALL_CPUS)
    os.environ["OMP_NUM_THREADS"] = str(len(ALL_CPUS))
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)
        if threads is not None:
            os.environ["OMP_NUM_THREADS"] = threads

from ncalab.nca.config import NCAConfig  # noqa: E402

# Real data the tests read: small excerpts kept in the repository (tests/data/README.md says what
# each is, where it comes from and its licence). An environment variable may point a test run at a
# larger copy; nothing needs one.
TEST_DATA = Path(__file__).parent / "data"


def _data(env: str, name: str) -> Path:
    return Path(os.environ.get(env) or TEST_DATA / name)


WIKITEXT = _data("NCALAB_TEST_WIKITEXT", "wikitext2-valid-excerpt.txt")
GSM8K = _data("NCALAB_TEST_GSM8K", "gsm8k-train-excerpt.jsonl")
BBL = _data("NCALAB_TEST_BBL", "bigbench-lite")


@pytest.fixture
def cfg() -> NCAConfig:
    return NCAConfig()


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def ks_critical(n: int, m: int, alpha: float = 0.001) -> float:
    """Asymptotic critical value of the two-sample KS statistic at level alpha."""
    c = np.sqrt(-0.5 * np.log(alpha / 2))
    return float(c * np.sqrt((n + m) / (n * m)))


MICRO = [
    "--set", "model.n_layer=1", "--set", "model.d_model=32", "--set", "model.n_head=2",
    "--set", "nca.seq_len=128", "--set", "stage1.tokens=16384", "--set", "stage1.batch_size=8",
    "--set", "stage1.val_sequences=8", "--set", "stage2.tokens=32768", "--set", "stage2.seq_len=64",
    "--set", "stage2.batch_size=8", "--set", "stage2.eval_tokens=4096", "--set", "data.vocab_size=512", "--set", "data.val_fraction=0.2",
    "--set", "stage1.icl_sequences=4",
    # 4 evaluations a stage (and a checkpoint at each) instead of 8-10: at these budgets the
    # evaluations and their checkpoints cost as much as the training
    "--set", "stage1.eval_every=4096", "--set", "stage2.eval_every=8192",
]


@pytest.fixture(scope="session")
def code_corpus(tmp_path_factory) -> Path:  # noqa: D401
    """A slice of the standard library: real code, small enough to tokenize in a second."""
    src = Path(sysconfig.get_paths()["stdlib"])
    dst = tmp_path_factory.mktemp("code")
    for name in ("argparse.py", "ast.py", "inspect.py", "typing.py", "pathlib.py", "subprocess.py", "threading.py",
                 "logging/__init__.py", "email/message.py", "http/client.py", "collections/__init__.py", "json/decoder.py", "json/encoder.py", "textwrap.py", "csv.py", "shlex.py",
                 "fnmatch.py", "glob.py", "heapq.py", "bisect.py", "string.py", "base64.py", "calendar.py",
                 "difflib.py", "pprint.py", "tokenize.py", "dataclasses.py", "enum.py", "functools.py", "gzip.py"):
        shutil.copy(src / name, dst / name.replace("/", "_"))
    return dst


@pytest.fixture(scope="session")
def micro_lab(tmp_path_factory, code_corpus) -> Path:
    """A run store holding one finished micro experiment (MICRO on code_corpus, seed 0), trained
    once per test process. Never change it: tests take a copy (micro_home, copy_lab)."""
    from ncalab.cli.main import main

    home = tmp_path_factory.mktemp("micro-lab") / "h"
    assert main(["run", "--corpus", str(code_corpus), "--home", str(home), "--json", *MICRO]) == 0
    return home


@pytest.fixture(autouse=True)
def _no_store_url_of_the_user(monkeypatch):
    """A user's own database server is never the tests' store: tests that want PostgreSQL start
    one (store_backend). A fixture, not an import-time change: spawned processes import this file."""
    monkeypatch.delenv("NCALAB_STORE", raising=False)


@pytest.fixture(autouse=True)
def _a_machine_of_the_tests_own(monkeypatch, tmp_path_factory):
    """The jobs a test starts count one another, not the user's jobs on this machine (nor
    those of tests running beside it): a registry folder of each test's own (jobs/machine.py)."""
    monkeypatch.setenv("NCALAB_MACHINE_DIR", str(tmp_path_factory.mktemp("machine")))


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server of this test process (tests/pg.py), started on first use and
    stopped at the end of the session; the test is skipped, with the reason, where none can run."""
    import pg

    why = pg.unavailable()
    if why:
        pytest.skip(why)
    server = pg.PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


# The PostgreSQL twin of each store test is slow: a server database per test. The quick subset
# (-m "not slow") runs every store test on SQLite; the full suite (CI) runs both back ends.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store_backend(request, monkeypatch):
    """Each back end in turn for the test: SQLite (NCALAB_STORE unset) or a fresh database of the
    test server (NCALAB_STORE set, so every store the test and its subprocesses open is there).
    Yields the URL, or None for SQLite."""
    if request.param == "sqlite":
        monkeypatch.delenv("NCALAB_STORE", raising=False)
        yield None
        return
    url = request.getfixturevalue("pg_server").new_database()
    monkeypatch.setenv("NCALAB_STORE", url)
    yield url


def copy_lab(lab: Path, dst: Path) -> Path:
    """A store of its own: run folders are relative to the store, so a copied folder is whole."""
    return Path(shutil.copytree(lab, dst))


@pytest.fixture
def micro_home(micro_lab, tmp_path) -> Path:
    """A store of this test's own with one finished micro experiment in it."""
    return copy_lab(micro_lab, tmp_path / "h")


# The one-layer model, NCA stream and Trainer that the trainer and checkpoint tests drive directly.
TINY_MODEL_KW = dict(n_layer=1, d_model=32, n_head=2)
TINY_SEQ_LEN = 128


def tiny_nca_trainer(ckpt_dir, should_stop=None, steps=8):
    """A Trainer of `steps` steps (4 sequences of 128 NCA tokens each) on CPU in fp32, with the
    metric points it logs collected in a list."""
    from ncalab.config import ModelConfig
    from ncalab.nca.bands import Band
    from ncalab.train.batches import NCABatches, nca_validation
    from ncalab.train.device import choose
    from ncalab.train.loop import StageSpec, Trainer, TrainerOptions
    from ncalab.train.model import build_model

    nca, band = NCAConfig(seq_len=TINY_SEQ_LEN), Band(0.5, 1.0)
    model = build_model(ModelConfig(**TINY_MODEL_KW), nca.vocab_size, nca.seq_len, seed=0)
    spec = StageSpec("t", steps * 4 * 128, 4 * 128, 3e-3, 0.1, 0.1, 0.0, 1.0, 0, n_evals=2)
    val = nca_validation(nca, band, 1, 8, 4)
    points = []
    tr = Trainer(model, spec, choose("cpu", "fp32"), NCABatches(nca, band, 1, 4, batch_rules=64), val,
                 TrainerOptions(on_metrics=points.extend, checkpoint_dir=ckpt_dir, should_stop=should_stop))
    return tr, points


# ---- the CLI as a user calls it ----------------------------------------------------------------

def cli(capsys, *args) -> tuple[int, str, str]:
    """``ncalab ARGS`` in this process: its exit code, stdout and stderr (what was printed
    before the call is dropped first, so the output is this command's alone)."""
    from ncalab.cli.main import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys, *args, stderr: str | None = None) -> dict:
    """``ncalab ARGS --json``: it must succeed and print exactly one JSON object on stdout and
    nothing else there (the README's promise); returns the object. ``stderr``: None leaves
    stderr alone; "" asks for none at all (no third-party progress bars or warnings); other
    text is what stderr must start with (its lines joined by spaces)."""
    import json

    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    if stderr is not None:
        assert (err == "") if not stderr else err.replace("\n", " ").startswith(stderr), err
    return json.loads(lines[0])


def cli_fails(capsys, *args) -> str:
    """``ncalab ARGS`` must fail with a clear error and no traceback; returns stderr."""
    rc, _, err = cli(capsys, *args)
    assert rc != 0, err
    assert "Traceback" not in err, err
    return err


# ---- store contents ---------------------------------------------------------------------------------

def metric_points(name: str, start: int, n: int, value=lambda i: 1.0 / (i + 1)) -> list[dict]:
    """Metric points ``start`` .. ``start + n - 1`` of one metric, as a trainer logs them:
    step i at i * 100 tokens."""
    return [{"name": name, "step": i, "tokens": i * 100, "wall_time": i * 0.5, "value": value(i)}
            for i in range(start, start + n)]


def plain_text(static, width: int = 118) -> str:
    """The text a Textual Static shows, as the terminal would (rich renderables included)."""
    from rich.console import Console

    with open(os.devnull, "w") as sink:
        console = Console(width=width, record=True, file=sink)
        console.print(static.content)
        return console.export_text()


# ---- other processes --------------------------------------------------------------------------

@contextlib.contextmanager
def processes(*jobs, join_timeout: float = 30.0):
    """Spawned processes, one per ``(target, args)``, each called as ``target(*args, q)`` with one
    queue ``q`` for all, started in order; yields q. On leaving (a failing test too) each is
    joined for ``join_timeout`` seconds and one still alive is terminated: no process outlives
    its test. Make a queue's Event or Barrier with mp.get_context("spawn") like this one."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, q)) for target, args in jobs]
    for p in procs:
        p.start()
    try:
        yield q
    finally:
        for p in procs:
            p.join(timeout=join_timeout)
            if p.is_alive():
                p.terminate()


@dataclass(frozen=True)
class Writes:
    """What one store-writer process does, as a training job would: batches of ``batch`` loss
    points (``metric_points``), each followed by a heartbeat, ``pause`` seconds apart, until
    ``points`` are written or ``seconds`` have passed (whichever is given)."""

    seconds: float | None = None
    points: int | None = None
    batch: int = 10
    pause: float = 0.0
    heartbeat: bool = True

    def more(self, n: int, end: float) -> bool:
        import time

        return n < self.points if self.points is not None else time.monotonic() < end


def store_writer(home: str, run_id: str, writes: Writes, stop, q) -> None:
    """A spawned writer (see ``writers``): puts ``(kind, run_id, points_written, message)`` on q,
    kind "ok", "failed" (the store gave up with an NcalabError) or "error" (anything else,
    "database is locked" above all). ``stop``, an Event or None, ends it early once set."""
    import time

    from ncalab.errors import NcalabError
    from ncalab.store import RunStore

    n, end = 0, time.monotonic() + (writes.seconds or 0.0)
    try:
        store = RunStore(home)
        while writes.more(n, end) and not (stop is not None and stop.is_set()):
            store.log_metrics(run_id, metric_points("loss", n, writes.batch))
            n += writes.batch
            if writes.heartbeat:
                store.heartbeat(run_id, step=n, tokens=n * 100)
            time.sleep(writes.pause)
        store.close()
        q.put(("ok", run_id, n, ""))
    except NcalabError as e:
        q.put(("failed", run_id, n, str(e)))
    except BaseException as e:  # noqa: BLE001 - reported to the test, which fails on it
        q.put(("error", run_id, n, f"{type(e).__name__}: {e}"))


def writers(home, run_ids, writes: Writes, *others, stop=None, join_timeout: float = 30.0):
    """One ``store_writer`` process per run (and any ``others`` (target, args) beside them), as
    ``processes`` starts them; yields the queue their results come back on. ``stop``: an Event
    of ``stop_event()`` that ends the writers early when the test sets it."""
    return processes(*others, *[(store_writer, (str(home), r, writes, stop)) for r in run_ids],
                     join_timeout=join_timeout)


def stop_event():
    """An Event that spawned processes (``processes``, ``writers``) can wait on."""
    import multiprocessing as mp

    return mp.get_context("spawn").Event()


# ---- waiting for what a test needs, never for a fixed time ------------------------------------

def wait_until(condition, what: str, timeout: float = 60.0, poll: float = 0.2, why=None):
    """Look at ``condition()`` every ``poll`` seconds until it returns something true, and return
    that; after ``timeout`` seconds fail, saying that ``what`` never happened (``why``: a callable
    whose text, e.g. a job's logs, is added to the failure)."""
    import time

    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"{what} never happened within {timeout:g} s" + (f"\n{why()}" if why else ""))
        time.sleep(poll)


async def _await_workers(app, end: float) -> None:
    """The app's workers running now, awaited (until ``end`` at the latest). A worker that was
    cancelled (an exclusive one replaced by a newer one) or failed ends the wait like one that
    finished: the condition the caller polls says whether it mattered (a failed worker stops
    the app, and Pilot raises its error when the test leaves it)."""
    import asyncio
    import time

    while any(w.is_running for w in app.workers) and time.monotonic() < end:
        waiting = asyncio.ensure_future(app.workers.wait_for_complete())
        # asyncio.wait never cancels what it waits for: a timeout here leaves the workers be.
        done, _ = await asyncio.wait({waiting}, timeout=max(0.0, end - time.monotonic()))
        if waiting in done and not waiting.cancelled():
            waiting.exception()  # WorkerCancelled or WorkerFailed: looked at, see above


async def until(pilot, condition, what: str, timeout: float = 30.0):
    """In a Pilot test: await the app's workers and let the messages they leave be processed
    (``pilot.pause()``), over and over, until ``condition()`` returns something true, and return
    that. After ``timeout`` seconds fail, saying that ``what`` never happened. A condition that
    raises (a widget of a screen that is not up yet) counts as not yet."""
    import time

    app, end, error = pilot.app, time.monotonic() + timeout, None
    while True:
        await _await_workers(app, end)
        await pilot.pause()
        try:
            value = condition()
            error = None
        except Exception as e:  # noqa: BLE001
            value, error = None, e
        if value:
            return value
        if time.monotonic() > end:
            seen = f" (the condition last raised {error!r})" if error is not None else ""
            pytest.fail(f"{what} never happened within {timeout:g} s{seen}")


async def settle(pilot, timeout: float = 30.0) -> None:
    """In a Pilot test: until no worker of the app is running any more after the messages that
    the finished ones left were processed (a message can start a worker: each round looks again)."""
    await until(pilot, lambda: not any(w.is_running for w in pilot.app.workers), "the app's workers finishing", timeout)


def make_schema_one(db) -> None:
    """Turn a fresh SQLite store into a schema-1 store, as ncalab 0.1 wrote it."""
    import sqlite3

    con = sqlite3.connect(db)
    for col in ("pid", "host", "heartbeat_at", "error"):
        con.execute(f"ALTER TABLE experiments DROP COLUMN {col}")
    con.execute("DROP INDEX ix_runs_reuse_key")
    for col in ("reuse_key", "source_run_id"):
        con.execute(f"ALTER TABLE runs DROP COLUMN {col}")
    con.execute("DROP TABLE sweeps")
    con.execute("UPDATE store_meta SET value='1' WHERE key='schema_version'")
    con.commit()
    con.close()
