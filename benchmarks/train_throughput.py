"""Training tokens/s of ncalab's loop against a plain transformers loop, same process.

Baseline: LlamaForCausalLM + AdamW, fp32, `model(input_ids, labels=...)`, no allocator tuning.
ncalab: the Trainer as `ncalab run` uses it (bf16 autocast where the CPU/GPU supports it,
sdpa attention, fused AdamW on CUDA, glibc malloc tuning, optional torch.compile).
Same model shape and initial weights, same batches.

  python benchmarks/train_throughput.py [--steps 12] [--compile] [--d-model 128 --layers 4]
  python benchmarks/train_throughput.py --track tensorboard [--repeats 5]

It also times the loop as it ran before the memory work (every position's logits at once, the
whole batch in one pass) beside the loop as it runs now (the loss in chunks of positions,
train/headloss.py, and on a CPU the micro-batch plan.cpu_micro_batch picks), interleaved
`--rounds` times, with each one's peak resident memory: `ratio` (now) must stay within 3% of
`ratio_before` (docs/benchmarks.md#memory).

With --track, it also times the ncalab loop with and without mirroring its metrics to that
tracker (ncalab.experiment.tracking, as `--track` does), evaluating and flushing metrics as a
tiny run does (about every tenth of the steps), the two interleaved `--repeats` times; the
medians give track_ratio (target: overhead = 1 - track_ratio under 0.02).

The last line is one JSON object with tokens_per_s, baseline_tokens_per_s and ratio, the same
before the memory work (tokens_per_s_before, ratio_before), the peak resident bytes of each
(peak_rss_bytes, peak_rss_bytes_before), and track_ratio with --track.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ncalab.config import ModelConfig
from ncalab.train import device as devices
from ncalab.train.loop import StageSpec, Trainer, TrainerOptions
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


def ncalab_tokens_per_s(model, data, steps, warmup, placement, compile_: bool, micro: int = 0,
                        chunked: bool = True) -> float:
    bpt = data.shape[1] * (data.shape[2] - 1)
    spec = StageSpec("bench", (warmup + steps) * bpt, bpt, 1e-3, 0.0, 1.0, 0.0, 1.0, 10**12, 1)
    tr = Trainer(model, spec, placement, FixedBatches(data), [],
                 TrainerOptions(compile=compile_, micro_batch_size=micro, chunked_loss=chunked))
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


def cpu_micro_batch(args) -> int:
    """The micro-batch `ncalab run` takes on a CPU for this shape (0: the whole batch)."""
    from ncalab.planning.memory import cpu_micro_batch as choose
    from ncalab.services.config import resolve_config

    cfg = resolve_config("code", "tiny", None, [f"model.n_layer={args.layers}", f"model.d_model={args.d_model}",
                                                 f"model.n_head={args.heads}", f"stage2.seq_len={args.seq}",
                                                 f"stage2.batch_size={args.batch}"])
    micro = choose(cfg, "stage2", args.seq)
    return 0 if micro >= args.batch else micro


def before_and_now(model, data, args, placement) -> dict:
    """Tokens/s and peak resident bytes of the loop before the memory work and now, `args.rounds`
    times interleaved (medians), each from a heap handed back and a reset peak."""
    from ncalab.train import memory

    micro = cpu_micro_batch(args) if placement.device.type == "cpu" else 0
    ways = {"before": {"micro": 0, "chunked": False}, "now": {"micro": micro, "chunked": True}}
    rates: dict[str, list[float]] = {k: [] for k in ways}
    peaks: dict[str, int] = {k: 0 for k in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            memory.release()
            memory.reset_peak()
            rates[name].append(ncalab_tokens_per_s(copy.deepcopy(model), data, args.steps, args.warmup, placement,
                                                   args.compile, **way))
            peaks[name] = max(peaks[name], memory.resident_peak())
    return {"tokens_per_s": statistics.median(rates["now"]), "tokens_per_s_before": statistics.median(rates["before"]),
            "peak_rss_bytes": peaks["now"], "peak_rss_bytes_before": peaks["before"], "micro_batch": micro}


def mirrored_tokens_per_s(model, data, steps: int, placement, mirror) -> float:
    """Tokens/s of the ncalab loop whose metric points go to ``mirror`` (None: nowhere), with an
    evaluation (and so a flush of the points) about every tenth of the steps, like a real stage."""
    bpt = data.shape[1] * (data.shape[2] - 1)
    every = max(1, steps // 10) * bpt
    spec = StageSpec("bench", steps * bpt, bpt, 1e-3, 0.0, 1.0, 0.0, 1.0, every, 1)
    val = [(data[0][:2, :-1], data[0][:2, 1:])]
    on_metrics = (lambda pts: mirror.points("bench", pts)) if mirror is not None else None
    tr = Trainer(model, spec, placement, FixedBatches(data), val, TrainerOptions(on_metrics=on_metrics))
    tr.run()
    if placement.device.type == "cuda":
        torch.cuda.synchronize()
    return tr.tokens / tr.train_seconds


def tracking_overhead(model, data, steps: int, repeats: int, placement, tracker: str) -> tuple[float, float, float, str]:
    """(median tokens/s without, with mirroring to ``tracker``, interleaved so load drifts hit both
    alike; and the mirror thread's CPU seconds per second of tracked training, which load does not blur)."""
    from ncalab.experiment.tracking import Destination, Mirror

    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        dest = Destination("e-bench", Path(tmp) / "experiment", Path(tmp), None)
        mirror = Mirror([tracker], dest, notes.append)
        mirrored_tokens_per_s(copy.deepcopy(model), data, 2, placement, mirror)  # the tracker starts (imports) here
        time.sleep(0.5)
        plain, tracked, cpu0 = [], [], mirror.cpu_seconds
        for _ in range(repeats):
            plain.append(mirrored_tokens_per_s(copy.deepcopy(model), data, steps, placement, None))
            tracked.append(mirrored_tokens_per_s(copy.deepcopy(model), data, steps, placement, mirror))
        time.sleep(0.5)  # the last batch is mirrored
        cpu_share = (mirror.cpu_seconds - cpu0) / (repeats * steps * data.shape[1] * (data.shape[2] - 1) / statistics.mean(tracked))
        mirror.close()
    if mirror.failed or notes:
        raise SystemExit(f"the {tracker} tracker failed: {'; '.join(notes)}")
    return statistics.median(plain), statistics.median(tracked), cpu_share, f"{len(plain)} x {steps} steps"


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
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs of the loop before and now")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"), help="the ncalab loop's (runtime.dtype)")
    ap.add_argument("--track", choices=("tensorboard", "mlflow", "wandb"), help="also time mirroring to this tracker")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved runs with and without --track")
    ap.add_argument("--track-steps", type=int, default=40, help="steps of each run with and without --track")
    args = ap.parse_args()

    placement = devices.choose(args.device, args.dtype)
    m = ModelConfig(n_layer=args.layers, d_model=args.d_model, n_head=args.heads)
    model = build_model(m, args.vocab, args.seq, seed=0)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, args.vocab, (args.warmup + args.steps, args.batch, args.seq + 1), generator=g)

    base = baseline_tokens_per_s(copy.deepcopy(model), data, args.steps, args.warmup, placement.device)
    tuned = devices.tune_glibc_malloc()
    both = before_and_now(model, data, args, placement)
    ours, before = both["tokens_per_s"], both["tokens_per_s_before"]
    mib = 1 << 20
    print(f"model d={args.d_model} layers={args.layers} vocab={args.vocab} batch {args.batch}x{args.seq} on {placement.label}")
    print(f"  baseline (fp32 HF loop)   {base:12,.0f} tokens/s")
    print(f"  ncalab loop               {ours:12,.0f} tokens/s   (malloc tuning {'on' if tuned else 'off'}, compile {'on' if args.compile else 'off'}; "
          f"peak {both['peak_rss_bytes'] / mib:,.0f} MiB, micro-batch {both['micro_batch'] or args.batch})")
    print(f"  before the memory work    {before:12,.0f} tokens/s   (peak {both['peak_rss_bytes_before'] / mib:,.0f} MiB)")
    print(f"  ratio                     {ours / base:12.2f}x   (before {before / base:.2f}x: {ours / before - 1:+.1%})")
    result = {"tokens_per_s": round(ours), "baseline_tokens_per_s": round(base), "ratio": round(ours / base, 3),
              "tokens_per_s_before": round(before), "ratio_before": round(before / base, 3),
              "peak_rss_bytes": both["peak_rss_bytes"], "peak_rss_bytes_before": both["peak_rss_bytes_before"],
              "micro_batch": both["micro_batch"], "device": str(placement.device), "bf16": placement.amp_dtype is not None,
              "compile": args.compile, "d_model": args.d_model, "layers": args.layers}
    if args.track:
        g2 = torch.Generator().manual_seed(1)
        tdata = torch.randint(0, args.vocab, (args.track_steps, args.batch, args.seq + 1), generator=g2)
        plain, tracked, cpu, runs = tracking_overhead(model, tdata, args.track_steps, args.repeats, placement, args.track)
        print(f"  without --track           {plain:12,.0f} tokens/s   (median of {runs})")
        print(f"  with --track {args.track:<12} {tracked:12,.0f} tokens/s   overhead {1 - tracked / plain:+.2%} (target < 2%)")
        print(f"  mirror thread CPU time    {cpu:12.3%} of the tracked training time")
        result.update({"track": args.track, "untracked_tokens_per_s": round(plain), "tracked_tokens_per_s": round(tracked),
                       "track_ratio": round(tracked / plain, 4), "track_overhead": round(1 - tracked / plain, 4),
                       "track_cpu_share": round(cpu, 5)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
