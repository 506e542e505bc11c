"""Training tokens/s of ncalab's loop against a plain transformers loop, same process.

Baseline: LlamaForCausalLM + AdamW, fp32, `model(input_ids, labels=...)`, no allocator tuning.
ncalab: the Trainer as `ncalab run` uses it (bf16 autocast where the CPU/GPU supports it,
sdpa attention, fused AdamW on CUDA, glibc malloc tuning, optional torch.compile).
Same model shape and initial weights, same batches.

  python benchmarks/train_throughput.py [--steps 12] [--compile] [--d-model 128 --layers 4]

The last line is one JSON object with tokens_per_s, baseline_tokens_per_s and ratio.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from ncalab.config import ModelConfig
from ncalab.train import device as devices
from ncalab.train.loop import StageSpec, Trainer
from ncalab.train.model import build_model


class FixedBatches:
    """The same pre-drawn batches, in order, for both loops."""

    def __init__(self, data: torch.Tensor):
        self.data, self.i = data, 0

    def next(self):
        b = self.data[self.i % len(self.data)]
        self.i += 1
        return b[:, :-1], b[:, 1:]

    def state_dict(self):
        return {"i": self.i}


def baseline_tokens_per_s(model, data: torch.Tensor, steps: int, warmup: int, device) -> float:
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t, n = 0.0, 0
    for i in range(warmup + steps):
        b = data[i % len(data)].to(device)
        t0 = time.perf_counter()
        out = model(input_ids=b, labels=b)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            t += time.perf_counter() - t0
            n += b[:, :-1].numel()
    return n / t


def ncalab_tokens_per_s(model, data, steps, warmup, placement, compile_: bool) -> float:
    bpt = data.shape[1] * (data.shape[2] - 1)
    spec = StageSpec("bench", (warmup + steps) * bpt, bpt, 1e-3, 0.0, 1.0, 0.0, 1.0, 10**12, 1)
    tr = Trainer(model, spec, placement, FixedBatches(data), [], compile=compile_)
    # time only the post-warm-up steps: run warm-up steps first
    tr.spec = StageSpec("bench", warmup * bpt, bpt, 1e-3, 0.0, 1.0, 0.0, 1.0, 10**12, 1)
    tr.run()
    if placement.device.type == "cuda":
        torch.cuda.synchronize()
    before_s, before_tok = tr.train_seconds, tr.tokens
    tr.spec = spec
    tr.run()
    if placement.device.type == "cuda":
        torch.cuda.synchronize()
    return (tr.tokens - before_tok) / (tr.train_seconds - before_s)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--compile", action="store_true", help="torch.compile the ncalab model")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    placement = devices.choose(args.device, "auto")
    m = ModelConfig(n_layer=args.layers, d_model=args.d_model, n_head=args.heads)
    model = build_model(m, args.vocab, args.seq, seed=0)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, args.vocab, (args.warmup + args.steps, args.batch, args.seq + 1), generator=g)

    base = baseline_tokens_per_s(copy.deepcopy(model), data, args.steps, args.warmup, placement.device)
    tuned = devices.tune_glibc_malloc()
    ours = ncalab_tokens_per_s(copy.deepcopy(model), data, args.steps, args.warmup, placement, args.compile)
    print(f"model d={args.d_model} layers={args.layers} vocab={args.vocab} batch {args.batch}x{args.seq} on {placement.label}")
    print(f"  baseline (fp32 HF loop)   {base:12,.0f} tokens/s")
    print(f"  ncalab loop               {ours:12,.0f} tokens/s   (malloc tuning {'on' if tuned else 'off'}, compile {'on' if args.compile else 'off'})")
    print(f"  ratio                     {ours / base:12.2f}x")
    print(json.dumps({"tokens_per_s": round(ours), "baseline_tokens_per_s": round(base), "ratio": round(ours / base, 3),
                      "device": str(placement.device), "bf16": placement.amp_dtype is not None, "compile": args.compile,
                      "d_model": args.d_model, "layers": args.layers}))


if __name__ == "__main__":
    main()
