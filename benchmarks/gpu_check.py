"""Everything that only a GPU can measure, in one prepared call that fits a short GPU loan.

  python benchmarks/gpu_check.py --out gpu.json             # one H100/H200: about 9 minutes
  python benchmarks/gpu_check.py --dry-run --out dry.json   # every part at toy sizes on a CPU
  python benchmarks/gpu_check.py --parts nca_engine,e2e_small --out more.json   # some parts only

The parts (PARTS, walked in order; each reuses a benchmark or ncalab's own API):
  environment     the device, torch and CUDA versions
  train_eager     paper-shape training (24 x 2048, sequence 1024, bf16) at the largest micro-batch
                  ncalab's memory model fits (halved on out-of-memory): tokens/s, MFU and the share
                  of step time spent waiting for the NCA engine (benchmarks/mfu.py's `measure`)
  train_compiled  the same with torch.compile
  nca_engine      the CUDA NCA engine's filtered tokens/s in the web and code bands, beside the CPU
                  engine on the same machine (benchmarks/nca_throughput.py)
  eval_sampling   batched sampling at paper shape (benchmarks/eval.py --paper-shape): tokens/s and
                  the extrapolated wall time of the paper's HumanEval protocol
  e2e_small       a `--scale small` experiment with reduced budgets through the job queue in a
                  temporary store: both arms' save_pretrained folders must load in transformers
  scaling_study   a reduced `ncalab study` (two widths above the CPU study's range, two budgets,
                  scratch and nca, one seed): its points pool with the CPU study's
                  (`ncalab study fit ID --points gpu.json`)
  distributed     with 2 or more GPUs: the training step under torchrun with DDP and with FSDP2,
                  and the fraction of one-GPU tokens/s each GPU keeps

Each part runs in a child process of its own (a fresh CUDA context; a crash or a hang ends only
that part), limited to the time left of --budget; a part whose estimate no longer fits is
skipped, saying so, and a part that fails records its error in one line. The JSON at --out is
rewritten after every part (a loan that ends early still leaves what was measured), the table
beside it (.txt) and on stdout, and each part's log in a folder beside it (.logs).

--dry-run runs every part at toy sizes on the CPU (the GPU engine through its torch backend,
DDP and FSDP2 as 2 gloo processes), so tests/test_gpu_check.py keeps the command working
between loans; its figures say nothing about a GPU. --in-process runs the parts in the calling
process instead of children (one start-up instead of one a part: the test's dry run); the
children's way is tested on its own there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
FINAL = ("completed", "failed", "lost", "cancelled")  # statuses an experiment ends in
TARGETS = (("train_eager", "mfu", ">=", 0.45), ("train_compiled", "mfu", ">=", 0.45),
           ("train_eager", "data_wait_fraction", "<=", 0.02), ("train_compiled", "data_wait_fraction", "<=", 0.02))


@dataclass(frozen=True)
class Sizes:
    """What the parts measure: the paper's shapes on a GPU, toy ones in a dry run."""

    layers: int
    d_model: int
    heads: int
    seq_len: int
    steps: int  # timed training steps (after 3 warm-up steps)
    max_micro: int  # the largest micro-batch tried on a GPU; the one used elsewhere
    engine: tuple[tuple[str, int], ...]  # (band, filtered tokens) per engine measurement
    engine_batch_rules: int  # candidates per batch of the GPU engine
    eval_args: tuple[str, ...] = ()  # benchmarks/eval.py's arguments
    e2e_sets: tuple[str, ...] = ()  # --set overrides of the `--scale small` experiment
    study_sizes: tuple[str, ...] = ()  # the reduced study's --size items
    study_budgets: tuple[int, ...] = ()
    study_sets: tuple[str, ...] = ()  # --set overrides of its `--scale tiny` base


FULL = Sizes(24, 2048, 32, 1024, 10, 64, (("web", 8_000_000), ("code", 2_000_000)), 16384,
             ("--paper-shape", "--samples", "16", "--new", "64"),
             ("stage1.tokens=1048576", "stage1.val_sequences=64", "stage2.tokens=2097152",
              "stage2.eval_tokens=131072"),
             # the CPU study's tiny family (4 layers, heads of 32) at two widths above its range
             # (64-192, docs/results.md), its data and stage 2 unchanged so the points pool with its
             ("model.d_model=384,768", "model.n_head=12,24"), (1_000_000, 4_000_000))
TOY = Sizes(1, 32, 2, 64, 3, 4, (("web", 1024), ("code", 1024)), 64,
            ("--layers", "1", "--d-model", "32", "--heads", "2", "--samples", "4", "--new", "8", "--prompt", "16"),
            # no in-context evaluation and no compiling here: on 2 CPU cores each costs more than the rest
            ("model.n_layer=1", "model.d_model=32", "model.n_head=2", "nca.seq_len=128", "stage1.tokens=8192",
             "stage1.batch_size=8", "stage1.val_sequences=8", "stage1.icl_sequences=0", "stage2.tokens=8192",
             "stage2.seq_len=64", "stage2.batch_size=8", "stage2.eval_tokens=2048", "data.vocab_size=512",
             "data.val_fraction=0.2", "runtime.compile=false", "stage1.eval_every=4096", "stage2.eval_every=4096"),
            ("model.d_model=32,48", "model.n_head=2,2"), (4096, 8192),
            ("model.n_layer=1", "nca.seq_len=128", "stage1.tokens=8192", "stage1.batch_size=8",
             "stage1.val_sequences=8", "stage1.icl_sequences=0", "stage2.seq_len=64", "stage2.batch_size=8",
             "stage2.eval_tokens=2048", "data.vocab_size=512", "data.val_fraction=0.2", "stage1.eval_every=4096",
             "stage2.eval_every=4096"))


@dataclass
class Context:
    """What a part gets: its sizes, its time limit and the figures of the parts before it."""

    dry_run: bool
    sizes: Sizes
    seconds: float
    given: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    name: str
    run: Callable[[Context], dict]
    estimate_s: float  # on one H100/H200 at full size, start-up included
    toy_estimate_s: float  # in a dry run on a 2-core CPU
    needs: Callable[[bool, int], str | None]  # (dry run, GPUs) -> why it cannot run here, or None
    shown: tuple[str, ...] = ()  # its figures in the table


# ---------------------------------------------------------------- the parts


def environment(ctx: Context) -> dict:
    import platform

    import torch

    from ncalab.jobs.allocation import cores

    gpu = torch.cuda.is_available()
    props = torch.cuda.get_device_properties(0) if gpu else None
    return {"device_name": props.name if gpu else f"CPU: {cpu_name()}", "gpus": torch.cuda.device_count(),
            "gpu_memory_gib": round(props.total_memory / 2**30, 1) if gpu else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "python": platform.python_version(), "cpu": cpu_name(), "cpu_cores": cores()}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or "unknown"


def fitting_micro_batch(m, seq_len: int, limit: int) -> int:
    """The largest power-of-two micro-batch, up to `limit`, that ncalab's memory model
    (planning/memory.py: fp32 AdamW state, bf16 activations, logits) fits on GPU 0."""
    import torch

    from ncalab.planning.memory import HEADROOM, memory
    from ncalab.experiment.presets import resolve
    from ncalab.nca.config import NCAConfig

    cfg = resolve("code", "paper")
    cfg.model = m
    vocab = NCAConfig(seq_len=seq_len).vocab_size
    capacity = torch.cuda.get_device_properties(0).total_memory * HEADROOM
    micro = 1
    while micro * 2 <= limit and sum(memory(cfg, vocab, seq_len, micro * 2).values()) <= capacity:
        micro *= 2
    return micro


def training(ctx: Context, compile_: bool) -> dict:
    """benchmarks/mfu.py's measurement on NCA batches from the engine, one process."""
    import gc

    import torch
    from mfu import measure

    from ncalab.config import ModelConfig

    s = ctx.sizes
    m = ModelConfig(n_layer=s.layers, d_model=s.d_model, n_head=s.heads)
    gpu = torch.cuda.is_available()
    micro, halvings = (fitting_micro_batch(m, s.seq_len, s.max_micro) if gpu else s.max_micro), 0
    while True:
        try:
            res = measure(m, s.seq_len, micro, s.steps, compile_)
            break
        except torch.cuda.OutOfMemoryError:
            if micro == 1:
                raise
        micro, halvings = micro // 2, halvings + 1  # outside the except: the failed step's tensors are freed
        gc.collect()
        torch.cuda.empty_cache()
    return {**res, "micro_batch": micro, "halved_on_oom": halvings, "model": f"{s.layers}x{s.d_model}",
            "seq_len": s.seq_len, "compile": compile_}


def train_eager(ctx: Context) -> dict:
    return training(ctx, False)


def train_compiled(ctx: Context) -> dict:
    return training(ctx, True)


@contextmanager
def torch_backend_on_cpu():
    """A dry run without a GPU: the stream's rule batches take the torch backend, the path CUDA
    runs, on the CPU (RuleBatch would otherwise pick the numba kernel for a CPU)."""
    from functools import partial
    from unittest import mock

    from ncalab.nca import stream
    from ncalab.nca.engine import RuleBatch

    with mock.patch.object(stream, "RuleBatch", partial(RuleBatch, backend="torch")):
        yield


def nca_engine(ctx: Context) -> dict:
    import nca_throughput as bench  # pins 2 threads when imported; every core again below
    import numba
    import torch

    from ncalab.jobs.allocation import cores
    from ncalab.nca.config import NCAConfig

    numba.set_num_threads(min(cores(), numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(cores())
    gpu = torch.cuda.is_available()
    cfg = NCAConfig()
    out = {"gpu_engine": "cuda" if gpu else "torch backend on the CPU (dry run)", "cpu_threads": numba.get_num_threads()}
    for band, tokens in ctx.sizes.engine:
        with torch_backend_on_cpu() if not gpu else nullcontext():
            fast, accepted = bench.filtered_tokens_per_s(cfg, band, tokens, device="cuda" if gpu else "cpu",
                                                         batch_rules=ctx.sizes.engine_batch_rules)
        cpu, _ = bench.filtered_tokens_per_s(cfg, band, tokens)
        out.update({f"gpu_tokens_per_s_{band}": round(fast), f"cpu_tokens_per_s_{band}": round(cpu),
                    f"gpu_vs_cpu_{band}": round(fast / cpu, 3), f"acceptance_{band}": round(accepted, 4)})
    return out


def last_json(text: str, prefix: str = "") -> dict:
    """The last line of a benchmark's output that holds its JSON object."""
    for line in reversed(text.splitlines()):
        if line.startswith(prefix + "{"):
            return json.loads(line[len(prefix):])
    raise RuntimeError(f"no JSON line in the output: {text.strip().splitlines()[-1:]}")


class ScriptFailed(RuntimeError):
    """A benchmark that exited non-zero; what it printed before is kept (an earlier result in it)."""

    def __init__(self, message: str, stdout: str):
        super().__init__(message)
        self.stdout = stdout


def run_script(cmd: list[str], seconds: float, env: dict | None = None) -> str:
    """A benchmark's stdout; its output goes to this part's log; a failure raises its last line."""
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=max(seconds, 1), env=env)
    print(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}", flush=True)
    if done.returncode:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        script = next((Path(c).name for c in cmd if c.endswith(".py")), cmd[0])
        raise ScriptFailed(f"{script} exited with {done.returncode}: {last}", done.stdout)
    return done.stdout


def eval_sampling(ctx: Context) -> dict:
    out = run_script([sys.executable, str(BENCH / "eval.py"), *ctx.sizes.eval_args], ctx.seconds)
    return last_json(out)


def toy_corpus(folder: Path) -> str:
    """A few standard-library modules: real code a toy tokenizer learns in a second."""
    import sysconfig

    src = Path(sysconfig.get_paths()["stdlib"])
    folder.mkdir(parents=True)
    for name in ("argparse.py", "ast.py", "inspect.py", "typing.py", "pathlib.py", "subprocess.py", "textwrap.py",
                 "dataclasses.py", "functools.py", "difflib.py", "tokenize.py", "csv.py"):
        shutil.copy(src / name, folder / name)
    return str(folder)


def stop_if_running(store, exp_id: str) -> None:
    """Cancel the check's experiment if it is still queued or running (its job is detached)."""
    from ncalab.errors import NcalabError
    from ncalab.jobs import control, queue

    if store.get_experiment(exp_id).status not in ("queued", "running"):
        return
    try:
        control.cancel(store, exp_id, wait=20)
    except NcalabError:
        pass
    exp = store.get_experiment(exp_id)
    if exp.status == "running" and exp.pid:
        queue.signal_job(exp.pid, signal.SIGKILL)


def loaded_models(store, exp_id: str) -> dict:
    """Parameters of every run's save_pretrained folder, loaded with transformers and run once."""
    import torch
    from transformers import AutoModelForCausalLM

    params = {}
    for run in store.runs_of(exp_id):
        folder = store.run_dir(run) / "model"
        if folder.is_dir():
            model = AutoModelForCausalLM.from_pretrained(folder)
            with torch.no_grad():
                logits = model(input_ids=torch.zeros(1, 8, dtype=torch.long)).logits
            if not bool(torch.isfinite(logits).all()):
                raise RuntimeError(f"the {run.kind} model from {folder.name} gives non-finite logits")
            params[run.kind] = sum(p.numel() for p in model.parameters())
    missing = {"nca", "scratch"} - params.keys()
    if missing:
        raise RuntimeError(f"no loadable save_pretrained folder for {', '.join(sorted(missing))}")
    return params


def e2e_small(ctx: Context) -> dict:
    """`--scale small` with reduced budgets, queued as `ncalab run --detach` does (run here in a
    dry run), in a store of its own; waits for the job, then loads what it saved."""
    from ncalab.jobs import queue
    from ncalab.services.config import resolve_config
    from ncalab.services.launch import How, launch
    from ncalab.store import RunStore

    with tempfile.TemporaryDirectory(prefix="ncalab-gpu-check-") as tmp:
        home = Path(tmp) / "home"
        corpus = toy_corpus(Path(tmp) / "corpus") if ctx.dry_run else None
        cfg = resolve_config("code", "small", sets=list(ctx.sizes.e2e_sets), corpus=corpus, home=home)
        store = RunStore(home)
        t0 = time.monotonic()
        # in a dry run here, as the study's members: a job's start-up would be a third of the part
        # on a CPU (the queue's way is tests/test_jobs.py's)
        exp_id = launch(cfg, store, How.HERE if ctx.dry_run else How.BACKGROUND).experiment_id
        try:
            status = queue.wait_until(store, exp_id, FINAL, max(ctx.seconds - 40, 10))
        finally:
            stop_if_running(store, exp_id)
        wall = time.monotonic() - t0
        exp = store.get_experiment(exp_id)
        if status != "completed":
            log = queue.log_path(store, exp_id)
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise RuntimeError(f"the experiment ended {status} after {wall:.0f} s: {exp.error or tail}")
        params = loaded_models(store, exp_id)
        summary = exp.summary or {}
    rates = {k: round(v) for k, v in (summary.get("tokens_per_s") or {}).items() if v is not None}
    return {"wall_s": round(wall, 1), "ppl_nca": rounded(summary.get("ppl_nca"), 3),
            "ppl_scratch": rounded(summary.get("ppl_scratch"), 3), "gain": rounded(summary.get("gain"), 4),
            "stage_tokens_per_s": rates, "models_loaded": params, "device": summary.get("device"), "model": f"{cfg.model.n_layer}x{cfg.model.d_model}",
            "stage1_tokens": cfg.stage1.tokens, "stage2_tokens": cfg.stage2.tokens, "compile": cfg.runtime.compile}


def scaling_study(ctx: Context) -> dict:
    """A reduced scaling study (two widths above the CPU study's, two budgets, scratch and nca,
    one seed) through `ncalab study`'s service in a store of its own. Its points go into the
    report (figures.export), so `ncalab study fit CPU_STUDY --points gpu.json` extends the
    CPU fit's range of N with them."""
    from ncalab.jobs import queue
    from ncalab.services import study
    from ncalab.services.config import resolve_config
    from ncalab.store import RunStore

    s = ctx.sizes
    with tempfile.TemporaryDirectory(prefix="ncalab-gpu-study-") as tmp:
        home = Path(tmp) / "home"
        corpus = toy_corpus(Path(tmp) / "corpus") if ctx.dry_run else None
        base = resolve_config("code", "tiny", sets=list(s.study_sets), corpus=corpus, home=home)
        store = RunStore(home)
        t0 = time.monotonic()
        made = study.declare(store, base, list(s.study_sizes), list(s.study_budgets),
                             study.parse_arms("nca", base, matched_scale=False), [0])
        ids = made["experiments"]
        if ctx.dry_run:  # toy members run here, one after the other: two job processes' start-up would
            from ncalab.services.experiments import config_of, run_here  # be most of the part on a CPU

            for exp_id in ids:  # (the queue's way through a study is tests/test_study.py's)
                run_here(config_of(store.get_experiment(exp_id)).validate(), store, exp_id)
        else:
            queue.schedule(store)
        try:
            for exp_id in ids:
                queue.wait_until(store, exp_id, FINAL, max(ctx.seconds - 30 - (time.monotonic() - t0), 10))
        finally:
            for exp_id in ids:
                stop_if_running(store, exp_id)
        wall = time.monotonic() - t0
        ended = {store.get_experiment(e).status for e in ids}
        if ended != {"completed"}:
            raise RuntimeError(f"the study's experiments ended {', '.join(sorted(ended))} after {wall:.0f} s")
        export = study.export(store, made["study_id"])
        grid = study.grid(store, made["study_id"])
    losses = {f"{p['arm']} N={p['n']:.3g} D={p['d']:.3g}": round(p["loss"], 4) for p in export["points"]}
    return {"wall_s": round(wall, 1), "points": len(export["points"]), "sizes": [x["n"] for x in grid["sizes"]],
            "budgets": grid["budgets"], "losses": losses, "export": export}


def rounded(value, digits: int):
    return None if value is None else round(float(value), digits)


def mfu_command(s: Sizes, batch: int, extra: list[str]) -> list[str]:
    return [str(BENCH / "mfu.py"), *extra, "--layers", str(s.layers), "--d-model", str(s.d_model), "--heads",
            str(s.heads), "--seq-len", str(s.seq_len), "--batch", str(batch), "--steps", str(s.steps)]


def one_process(ctx: Context, gpus: int, env: dict) -> tuple[int, float]:
    """(micro-batch, tokens/s) of one process alone: the eager part's figures when it ran,
    else benchmarks/mfu.py at the micro-batch the memory model fits."""
    s = ctx.sizes
    eager = ctx.given.get("train_eager") or {}
    if gpus >= 2 and eager.get("tokens_per_s"):
        return eager["micro_batch"], eager["tokens_per_s"]
    if gpus >= 2:
        from ncalab.config import ModelConfig

        micro = fitting_micro_batch(ModelConfig(n_layer=s.layers, d_model=s.d_model, n_head=s.heads), s.seq_len,
                                    s.max_micro)
    else:
        micro = s.max_micro
    out = run_script([sys.executable, *mfu_command(s, micro, [])], ctx.seconds / 3, env)
    return micro, last_json(out)["tokens_per_s"]


def distributed(ctx: Context) -> dict:
    """The same training step under torchrun, DDP then FSDP2, at one process's micro-batch per
    GPU (in a dry run: 2 CPU processes over gloo, against one process with one thread)."""
    import torch

    gpus = torch.cuda.device_count()
    n = max(gpus, 2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if gpus < 2:
        env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on the CPU
    t0 = time.monotonic()
    micro, alone = one_process(ctx, gpus, env)
    out = {"processes": n, "backend": "nccl" if gpus >= 2 else "gloo (CPU)", "micro_batch_per_process": micro,
           "one_process_tokens_per_s": alone}
    left = ctx.seconds - (time.monotonic() - t0) - 5
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           *mfu_command(ctx.sizes, micro * n, ["--_rank-worker", "--parallel", "ddp,fsdp"])]
    failed = "no result"
    try:  # one launch, DDP then FSDP2: a launch's start-up costs about what one measurement does
        text = run_script(cmd, left, env)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        text, failed = getattr(e, "stdout", None) or "", one_line(e)
        text = text.decode(errors="replace") if isinstance(text, bytes) else text
    results = {r["parallel"]: r for r in (json.loads(line[7:]) for line in text.splitlines()
                                          if line.startswith("RESULT {"))}
    for kind in ("ddp", "fsdp"):
        res = results.get(kind)
        if res is None:
            out[f"{kind}_error"] = failed
            continue
        out.update({f"{kind}_tokens_per_s": res["tokens_per_s"], f"{kind}_mfu_per_gpu": round(res["mfu"] / n, 4),
                    f"{kind}_kept_per_gpu": round(res["tokens_per_s"] / n / alone, 3),
                    f"{kind}_data_wait_fraction": res["data_wait_fraction"]})
    if "ddp_tokens_per_s" not in out and "fsdp_tokens_per_s" not in out:
        raise RuntimeError(f"DDP: {out.get('ddp_error')}; FSDP2: {out.get('fsdp_error')}")
    return out


def needs_nothing(dry_run: bool, gpus: int) -> str | None:
    return None


def needs_gpu(dry_run: bool, gpus: int) -> str | None:
    return None if dry_run or gpus else "no CUDA GPU visible (--dry-run runs this part at toy size on the CPU)"


def needs_gpus(dry_run: bool, gpus: int) -> str | None:
    from ncalab.jobs.allocation import cores

    if gpus >= 2:
        return None
    if dry_run:
        return None if cores() >= 2 else "2 processes need 2 CPU cores; this process may use 1"
    return f"needs 2 or more GPUs; {gpus} visible"


PARTS = (
    Part("environment", environment, 15, 15, needs_nothing, ("device_name", "torch", "cuda", "gpus")),
    Part("train_eager", train_eager, 75, 30, needs_gpu,
         ("tokens_per_s", "mfu", "data_wait_fraction", "micro_batch", "peak_mem_gib")),
    Part("train_compiled", train_compiled, 130, 90, needs_gpu,
         ("tokens_per_s", "mfu", "data_wait_fraction", "micro_batch")),
    Part("nca_engine", nca_engine, 45, 30, needs_gpu,
         ("gpu_tokens_per_s_web", "cpu_tokens_per_s_web", "gpu_tokens_per_s_code", "cpu_tokens_per_s_code")),
    Part("eval_sampling", eval_sampling, 60, 30, needs_gpu, ("tokens_per_s", "ratio", "humaneval_protocol_hours")),
    Part("e2e_small", e2e_small, 150, 90, needs_gpu, ("wall_s", "ppl_nca", "ppl_scratch", "models_loaded")),
    Part("scaling_study", scaling_study, 180, 60, needs_gpu, ("wall_s", "points", "sizes")),
    Part("distributed", distributed, 180, 90, needs_gpus,
         ("processes", "ddp_kept_per_gpu", "fsdp_kept_per_gpu", "ddp_tokens_per_s", "fsdp_tokens_per_s")),
)
BY_NAME = {p.name: p for p in PARTS}


# ---------------------------------------------------------------- the walk


class PartFailed(Exception):
    pass


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:400]


def child_env() -> dict:
    """The children import ncalab from this checkout even when it is not installed."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""), "PYTHONUNBUFFERED": "1"}


def last_log_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1][:400] if lines else "no output"


def in_child(name: str, ctx: Context, log: Path) -> dict:
    """Run one part in a process group of its own, killed when its time is up."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-part-") as tmp:
        io = Path(tmp) / "context.json"
        io.write_text(json.dumps({"seconds": ctx.seconds, "given": ctx.given}))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_part", name, "--_io", str(io)]
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd + (["--dry-run"] if ctx.dry_run else []), stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=child_env())
            try:
                code = proc.wait(timeout=ctx.seconds)
            except subprocess.TimeoutExpired:
                raise PartFailed(f"timed out after {ctx.seconds:.0f} s, the time left of the budget") from None
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        result = Path(tmp) / "result.json"
        if not result.exists():
            raise PartFailed(f"exited with code {code} before writing a result: {last_log_line(log)}")
        data = json.loads(result.read_text())
    if "error" in data:
        raise PartFailed(data["error"])
    return data["figures"]


def in_this_process(name: str, ctx: Context, log: Path) -> dict:
    """Run one part here (--in-process): its output to its log, its error as the part's; no time
    limit and no isolation, but no process start-up (torch and transformers imported once)."""
    import contextlib

    with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            return BY_NAME[name].run(ctx)
        except Exception as e:  # noqa: BLE001 - recorded as the part's one-line error
            traceback.print_exc()
            raise PartFailed(one_line(e)) from None


def attempt(part: Part, ctx: Context, gpus: int, logs: Path, in_process: bool = False) -> dict:
    """One part's entry in the report: its figures, or why it was skipped or failed."""
    reason = part.needs(ctx.dry_run, gpus)
    if reason:
        return {"status": "skipped", "reason": reason}
    need = part.toy_estimate_s if ctx.dry_run else part.estimate_s
    if need > ctx.seconds:
        return {"status": "skipped", "reason": f"needs about {need:.0f} s and {max(ctx.seconds, 0):.0f} s of the "
                                               f"budget are left; run it alone with --parts {part.name}"}
    t0 = time.monotonic()
    try:
        figures = (in_this_process if in_process else in_child)(part.name, ctx, logs / f"{part.name}.log")
    except PartFailed as e:
        return {"status": "failed", "seconds": round(time.monotonic() - t0, 1), "error": str(e)}
    return {"status": "ok", "seconds": round(time.monotonic() - t0, 1), "figures": figures}


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()  # counts devices without making a CUDA context here


def walk(parts: list[Part], dry_run: bool, budget: float, out: Path, in_process: bool = False) -> dict:
    logs = out.with_suffix(".logs")
    logs.mkdir(parents=True, exist_ok=True)
    report = {"check": "benchmarks/gpu_check.py", "dry_run": dry_run, "date": datetime.now(UTC).isoformat(
        timespec="seconds"), "budget_s": budget, "device": {}, "parts": {}}
    gpus, t0 = visible_gpus(), time.monotonic()
    for part in parts:
        left = budget - (time.monotonic() - t0)
        given = {k: v.get("figures", {}) for k, v in report["parts"].items()}
        print(f"[{time.monotonic() - t0:5.0f} s] {part.name} ...", flush=True)
        entry = attempt(part, Context(dry_run, TOY if dry_run else FULL, left, given), gpus, logs, in_process)
        report["parts"][part.name] = entry
        print(f"          {entry['status']}: {entry.get('reason') or entry.get('error') or entry['seconds']}", flush=True)
        if part.name == "environment":
            report["device"] = entry.get("figures", {})
        report["wall_s"] = round(time.monotonic() - t0, 1)
        report["targets"] = targets(report["parts"])
        out.write_text(json.dumps(report, indent=1) + "\n")
    return report


def targets(parts: dict) -> list[dict]:
    rows = []
    for name, figure, op, goal in TARGETS:
        value = parts.get(name, {}).get("figures", {}).get(figure)
        met = None if value is None else (value >= goal if op == ">=" else value <= goal)
        rows.append({"part": name, "figure": figure, "target": f"{op} {goal}", "value": value, "met": met})
    return rows


def table(report: dict) -> str:
    head = (f"GPU check ({'dry run, toy sizes' if report['dry_run'] else 'full sizes'}) on "
            f"{report['device'].get('device_name', '?')}, {report['date']}, {report['wall_s']:.0f} s")
    lines = [head, ""]
    for name, entry in report["parts"].items():
        figures = entry.get("figures", {})
        shown = ", ".join(f"{k}={figures[k]}" for k in BY_NAME[name].shown if figures.get(k) is not None)
        what = shown if entry["status"] == "ok" else entry.get("reason") or entry.get("error")
        lines.append(f"{name:<15} {entry['status']:<8} {entry.get('seconds', ''):>6}  {what}")
    lines.append("")
    for t in report["targets"]:
        verdict = "not measured" if t["met"] is None else ("met" if t["met"] else "NOT met")
        lines.append(f"target {t['part']}.{t['figure']} {t['target']}: {t['value']} ({verdict})")
    return "\n".join(lines)


def child_main(name: str, io: Path, dry_run: bool) -> int:
    spec = json.loads(io.read_text())
    ctx = Context(dry_run, TOY if dry_run else FULL, spec["seconds"], spec["given"])
    result = io.with_name("result.json")
    try:
        figures = BY_NAME[name].run(ctx)
    except Exception as e:  # noqa: BLE001 - recorded as the part's one-line error
        traceback.print_exc()
        result.write_text(json.dumps({"error": one_line(e)}))
        return 1
    result.write_text(json.dumps({"figures": figures}))
    return 0


def chosen(text: str | None) -> list[Part]:
    if not text:
        return list(PARTS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown part {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    return [p for p in PARTS if p.name == "environment" or p.name in names]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check.json", help="the JSON report (the table goes beside it, .txt)")
    ap.add_argument("--dry-run", action="store_true", help="every part at toy sizes, on the CPU where there is no GPU")
    ap.add_argument("--budget", type=float, default=None, help="seconds for all parts (default 540; dry run 600)")
    ap.add_argument("--parts", default=None, help="comma-separated parts to run (the environment always runs)")
    ap.add_argument("--in-process", action="store_true",
                    help="run the parts in this process, one after the other: quicker (one start-up), but without a "
                         "time limit per part or isolation from a part that crashes")
    ap.add_argument("--_part", dest="part", help=argparse.SUPPRESS)
    ap.add_argument("--_io", dest="io", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part:
        sys.exit(child_main(args.part, Path(args.io), args.dry_run))
    budget = args.budget if args.budget is not None else (600.0 if args.dry_run else 540.0)
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    report = walk(chosen(args.parts), args.dry_run, budget, out, args.in_process)
    text = table(report)
    out.with_suffix(".txt").write_text(text + "\n")
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
