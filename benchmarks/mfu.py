"""Training throughput and model FLOPs utilisation (MFU) on one device.

MFU = achieved FLOP/s / peak FLOP/s, with nanoGPT's estimate of the FLOPs per token
(6N + 12·L·d·T; ncalab.planning.compute) and the peak from a table of known GPUs (on a
CPU, this CPU's measured matmul rate at the precision training uses: bf16 where it has bf16
instructions, else fp32). Runs the Trainer as `ncalab run` does, on NCA
stage-1 batches from the addressable stream through the background prefetcher, so
`data_wait_fraction` is the share of step time spent waiting for NCA data.

  python benchmarks/mfu.py                 # the paper's shape (24 x 2048, sequence 1024) on a GPU;
                                           # a 4 x 128 model on a CPU
  python benchmarks/mfu.py --compile       # with torch.compile too
  python benchmarks/mfu.py --ranks 2       # CPU: 2 processes x 1 thread against 1 process x 2 threads

The last line is one JSON object with tokens_per_s, mfu, data_wait_fraction and peak_mem_gib
(with --compile: compiled_tokens_per_s and compiled_mfu; with --ranks: the scaling figures).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from ncalab.config import ModelConfig
from ncalab.planning.compute import model_compute
from ncalab.planning.plan import GPUS
from ncalab.nca.bands import DOMAIN_BANDS
from ncalab.nca.config import NCAConfig
from ncalab.nca.indexed import IndexedNCAStream
from ncalab.nca.tokens import make_example
from ncalab.train import device as devices
from ncalab.train.batches import IndexedBatches, Prefetcher
from ncalab.train.distributed import World
from ncalab.train.loop import StageSpec, Trainer, TrainerOptions
from ncalab.train.model import build_model


def gpu_peak() -> tuple[float, str]:
    name = torch.cuda.get_device_name().lower()
    for key, (peak, _) in GPUS.items():
        if key.split("-")[0] in name.replace(" ", ""):
            return peak, key
    return devices.measured_matmul_flops(size=4096), "measured"


def measure(m: ModelConfig, seq_len: int, batch: int, steps: int, compile_: bool, world=None,
            parallel: str = "ddp") -> dict:
    placement = devices.choose("auto", "auto")
    nca = NCAConfig(seq_len=seq_len)
    stream = IndexedNCAStream(nca, DOMAIN_BANDS["web"], seed=0)
    rank, size = (world.rank, world.size) if world else (0, 1)
    batches = Prefetcher(IndexedBatches(lambda s, n: stream.sequences(s, n)[0], batch, rank, size,
                                        example=lambda seqs: make_example(seqs, nca)))
    model = build_model(m, nca.vocab_size, seq_len, seed=0)
    warm = 3
    spec = StageSpec("mfu", (steps + warm) * batch * seq_len, batch * seq_len, 1e-4, 0.0, 0.1, 0.0, 1.0, 0, 1)
    val = [(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))]
    options = TrainerOptions(compile=compile_, world=world or World(), parallel=parallel)
    trainer = Trainer(model, spec, placement, batches, val, options)
    times: list[float] = []
    trainer.on_progress = lambda tokens, metrics: times.append(time.perf_counter())
    if placement.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.run()
    batches.close()
    step_s = (times[-1] - times[warm - 1]) / steps
    tokens_per_s = batch * seq_len / step_s
    fpt = model_compute(m, nca.vocab_size, seq_len).flops_per_token
    peak, source = gpu_peak() if placement.device.type == "cuda" else (devices.measured_matmul_flops(placement, 512), "measured")
    return {"tokens_per_s": round(tokens_per_s), "mfu": round(tokens_per_s * fpt / peak, 4),
            "data_wait_fraction": round(trainer.data_seconds / trainer.train_seconds, 4),
            "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if placement.device.type == "cuda" else None,
            "peak_flops": peak, "peak_from": source, "device": placement.label}


def main() -> None:
    ap = argparse.ArgumentParser()
    gpu = torch.cuda.is_available()
    ap.add_argument("--layers", type=int, default=24 if gpu else 4)
    ap.add_argument("--d-model", type=int, default=2048 if gpu else 128)
    ap.add_argument("--heads", type=int, default=32 if gpu else 4)
    ap.add_argument("--seq-len", type=int, default=1024 if gpu else 512)
    ap.add_argument("--batch", type=int, default=8 if gpu else 8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--ranks", type=int, default=0, help="CPU scaling: this many processes x 1 thread")
    ap.add_argument("--parallel", default="ddp",
                    help="with --ranks: how the processes split the work (ddp or fsdp; a worker takes ddp,fsdp)")
    ap.add_argument("--_rank-worker", dest="worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.parallel or set(args.parallel.split(",")) - {"ddp", "fsdp"}:
        ap.error(f"--parallel takes ddp, fsdp or ddp,fsdp, not {args.parallel!r}")
    m = ModelConfig(n_layer=args.layers, d_model=args.d_model, n_head=args.heads)
    if args.worker:  # one process of the --ranks measurement, under torchrun
        from ncalab.train.distributed import from_environment, shutdown

        torch.set_num_threads(1)
        world = from_environment()
        # one launch measures each way in turn: a torchrun start-up (every rank importing torch and
        # transformers) costs about as much as a short measurement
        for kind in args.parallel.split(","):
            res = measure(m, args.seq_len, args.batch, args.steps, False, world, kind)
            if world.main:
                print("RESULT " + json.dumps({**res, "parallel": kind}), flush=True)
        shutdown(world)
        return
    out = measure(m, args.seq_len, args.batch, args.steps, False)
    print(f"{m.n_layer}x{m.d_model}, sequence {args.seq_len}, batch {args.batch}: {out['tokens_per_s']:,} tokens/s, "
          f"MFU {out['mfu']:.3f} (peak {out['peak_flops'] / 1e12:.1f} TFLOP/s, {out['peak_from']}), "
          f"waiting for data {out['data_wait_fraction']:.1%}, on {out['device']}")
    if args.compile:
        c = measure(m, args.seq_len, args.batch, args.steps, True)
        out.update(compiled_tokens_per_s=c["tokens_per_s"], compiled_mfu=c["mfu"],
                   compiled_data_wait_fraction=c["data_wait_fraction"])
        print(f"  with torch.compile: {c['tokens_per_s']:,} tokens/s, MFU {c['mfu']:.3f}")
    if args.ranks:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.ranks}",
               __file__, "--_rank-worker", "--layers", str(args.layers), "--d-model", str(args.d_model),
               "--heads", str(args.heads), "--seq-len", str(args.seq_len), "--batch", str(args.batch),
               "--steps", str(args.steps), "--parallel", args.parallel]
        text = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        ranked = json.loads(next(line for line in text.splitlines() if line.startswith("RESULT "))[7:])
        torch.set_num_threads(args.ranks)
        alone = measure(m, args.seq_len, args.batch, args.steps, False)
        out.update(ranks=args.ranks, ranks_tokens_per_s=ranked["tokens_per_s"], threads_tokens_per_s=alone["tokens_per_s"],
                   ranks_vs_threads=round(ranked["tokens_per_s"] / alone["tokens_per_s"], 3))
        print(f"  {args.ranks} processes x 1 thread: {ranked['tokens_per_s']:,} tokens/s; 1 process x {args.ranks} "
              f"threads: {alone['tokens_per_s']:,} tokens/s (ratio {out['ranks_vs_threads']})")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
