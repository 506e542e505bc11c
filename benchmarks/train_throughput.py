"""Training tokens/s of ncalab's loop against a plain transformers loop, same process.

Baseline: LlamaForCausalLM + AdamW, fp32, `model(input_ids, labels=...)`, glibc's default
allocator (no tuning: see default_malloc). ncalab: the Trainer as `ncalab run` uses it (bf16
autocast where the CPU/GPU has it in hardware, eager attention in the training pass under bf16
on a CPU, fused AdamW, glibc malloc tuning, optional torch.compile). Same model shape and
initial weights, same batches.

  python benchmarks/train_throughput.py [--rounds 5 --steps 6] [--compile] [--threads N] [--d-model 128 --layers 4]
  python benchmarks/train_throughput.py --track tensorboard [--repeats 5]

Each loop is built (and with --compile compiled: compile_s, not counted in the rates) and
warmed up once; then `--rounds` rounds of `--steps` steps each of the baseline, of the loop as
it ran before the memory work (every position's logits at once, the whole batch in one pass)
and of the loop as it runs now (the loss in chunks of positions, train/headloss.py, and on a
CPU the micro-batch plan.cpu_micro_batch picks), in turn, so that load drifts hit all three
alike. `ratio` is the median over rounds of (now / the same round's baseline), with its range
(ratio_min, ratio_max); each loop's peak resident memory too. The baseline also runs on the
heap as ncalab tunes it (ratio_tuned_baseline: what the loop gains beyond the allocator; the
baseline's full logits make the untuned heap map and zero fresh pages every step). `ratio` (now) must stay within
3% of `ratio_before` (docs/benchmarks.md#memory).

With --track, it also times the ncalab loop with and without mirroring its metrics to that
tracker (ncalab.experiment.tracking, as `--track` does), evaluating and flushing metrics as a
tiny run does (about every tenth of the steps), the two interleaved `--repeats` times; the
medians give track_ratio (target: overhead = 1 - track_ratio under 0.02).

The last line is one JSON object with tokens_per_s, baseline_tokens_per_s and ratio, the same
before the memory work (tokens_per_s_before, ratio_before), the peak resident bytes of each
(peak_rss_bytes, peak_rss_bytes_before), tuned_baseline_tokens_per_s and ratio_tuned_baseline,
the rounds (ratio_min, ratio_max, ratios,
ratios_before, rounds, steps, threads, load_avg), compile_s with --compile, and track_ratio
with --track.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import ctypes.util
import json
import os
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


class Baseline:
    """The plain loop: LlamaForCausalLM + torch's default AdamW, fp32, HF's own loss."""

    def __init__(self, model, device):
        self.device = device
        self.model = model.to(device).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)

    def steps(self, data: torch.Tensor, first: int, n: int) -> tuple[int, float]:
        """(tokens, seconds) of ``n`` steps on batches ``first``, ``first + 1``, ..."""
        t, tokens = 0.0, 0
        for i in range(first, first + n):
            b = data[i % len(data)].to(self.device)
            t0 = time.perf_counter()
            out = self.model(input_ids=b, labels=b)
            out.loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            t += time.perf_counter() - t0
            tokens += b[:, :-1].numel()
        return tokens, t


class Ours:
    """ncalab's Trainer on the same model and batches, kept between rounds (compiled once)."""

    def __init__(self, model, data, placement, compile_: bool, micro: int = 0, chunked: bool = True):
        self.bpt = data.shape[1] * (data.shape[2] - 1)
        self.placement = placement
        self.tr = Trainer(model, self._spec(0), placement, FixedBatches(data), [],
                          TrainerOptions(compile=compile_, micro_batch_size=micro, chunked_loss=chunked))

    def _spec(self, steps: int) -> StageSpec:
        return StageSpec("bench", steps * self.bpt, self.bpt, 1e-3, 0.0, 1.0, 0.0, 1.0, 10**12, 1)

    def steps(self, n: int) -> tuple[int, float]:
        tr = self.tr
        before_s, before_tok = tr.train_seconds, tr.tokens
        tr.spec = self._spec(tr.step + n)
        tr.run()
        if self.placement.device.type == "cuda":
            torch.cuda.synchronize()
        return tr.tokens - before_tok, tr.train_seconds - before_s


def ncalab_tokens_per_s(model, data, steps, warmup, placement, compile_: bool, micro: int = 0,
                        chunked: bool = True) -> float:
    """Tokens/s of ``steps`` steps of the ncalab loop after ``warmup`` untimed ones."""
    ours = Ours(model, data, placement, compile_, micro, chunked)
    ours.steps(warmup)
    tokens, seconds = ours.steps(steps)
    return tokens / seconds


def cpu_micro_batch(args) -> int:
    """The micro-batch `ncalab run` takes on a CPU for this shape (0: the whole batch)."""
    from ncalab.planning.memory import cpu_micro_batch as choose
    from ncalab.services.config import resolve_config

    cfg = resolve_config("code", "tiny", None, [f"model.n_layer={args.layers}", f"model.d_model={args.d_model}",
                                                 f"model.n_head={args.heads}", f"stage2.seq_len={args.seq}",
                                                 f"stage2.batch_size={args.batch}"])
    micro = choose(cfg, "stage2", args.seq)
    return 0 if micro >= args.batch else micro


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4


@contextlib.contextmanager
def default_malloc():
    """glibc's allocator as an untuned process runs it, for the baseline's steps, then ncalab's
    tuning (train/device.py) back. Settings once changed cannot be returned to glibc's own
    sliding threshold, so this takes where that threshold settles in a training loop (its
    ceiling: blocks up to 32 MiB from the heap, trimmed above 64 MiB), the kindest state to
    the baseline (measured within 2% of the tuned heap at the default shape; a fresh process
    was about 5% slower)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        yield
        return
    for k, v in ((_M_MMAP_MAX, 65536), (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20), (_M_TOP_PAD, 128 << 10)):
        mallopt(k, v)
    try:
        yield
    finally:
        devices.tune_glibc_malloc()


def interleaved(model, data, args, placement) -> dict:
    """The baseline, the loop before the memory work and the loop now, built once (compiled
    once, timed apart), then ``args.rounds`` rounds of ``args.steps`` steps each, in turn, so
    that the machine's load drifts through all three alike: per-round tokens/s, ratios to the
    same round's baseline, and the peak resident bytes of each (from a heap handed back and a
    reset peak before each of its runs)."""
    from ncalab.train import memory

    micro = cpu_micro_batch(args) if placement.device.type == "cpu" else 0
    ways = {"before": {"micro": 0, "chunked": False}, "now": {"micro": micro, "chunked": True}}
    base = Baseline(copy.deepcopy(model), placement.device)
    with default_malloc():
        base.steps(data, 0, args.warmup)
    tuned_base = Baseline(copy.deepcopy(model), placement.device)  # the same loop on ncalab's tuned heap
    tuned_base.steps(data, 0, args.warmup)
    loops, setup_s = {}, {}
    for name, way in ways.items():
        t0 = time.perf_counter()
        loops[name] = Ours(copy.deepcopy(model), data, placement, args.compile, **way)
        loops[name].steps(args.warmup)  # compiles here, with --compile
        setup_s[name] = time.perf_counter() - t0
    rates: dict[str, list[float]] = {k: [] for k in ("baseline", "tuned_baseline", *ways)}
    peaks: dict[str, int] = {k: 0 for k in ways}
    first = args.warmup
    for r in range(args.rounds):
        with default_malloc():
            tokens, seconds = base.steps(data, first, args.steps)
        rates["baseline"].append(tokens / seconds)
        tokens, seconds = tuned_base.steps(data, first, args.steps)
        rates["tuned_baseline"].append(tokens / seconds)
        first += args.steps
        for name, loop in loops.items():
            memory.release()
            memory.reset_peak()
            tokens, seconds = loop.steps(args.steps)
            rates[name].append(tokens / seconds)
            peaks[name] = max(peaks[name], memory.resident_peak())
        print(f"  round {r + 1}/{args.rounds}: baseline {rates['baseline'][-1]:,.0f}, ncalab {rates['now'][-1]:,.0f} "
              f"tokens/s ({rates['now'][-1] / rates['baseline'][-1]:.2f}x)", flush=True)
    ratios = {k: [o / b for o, b in zip(rates[k], rates["baseline"])] for k in ways}
    tuned_ratios = [o / b for o, b in zip(rates["now"], rates["tuned_baseline"])]
    step_s = {k: args.steps * data.shape[1] * (data.shape[2] - 1) / statistics.median(rates[k]) / args.steps for k in ways}
    # compile time: what the warm-up took beyond its steps at the steady rate
    compile_s = {k: max(0.0, setup_s[k] - args.warmup * step_s[k]) for k in ways} if args.compile else {}
    return {"tokens_per_s": statistics.median(rates["now"]), "tokens_per_s_before": statistics.median(rates["before"]),
            "baseline_tokens_per_s": statistics.median(rates["baseline"]),
            "tuned_baseline_tokens_per_s": statistics.median(rates["tuned_baseline"]),
            "ratio_tuned_baseline": statistics.median(tuned_ratios),
            "ratio": statistics.median(ratios["now"]), "ratio_before": statistics.median(ratios["before"]),
            "ratio_min": min(ratios["now"]), "ratio_max": max(ratios["now"]), "ratios": ratios["now"],
            "ratios_before": ratios["before"], "peak_rss_bytes": peaks["now"], "peak_rss_bytes_before": peaks["before"],
            "micro_batch": micro, "compile_s": compile_s.get("now"), "compile_s_before": compile_s.get("before")}


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
    ap.add_argument("--steps", type=int, default=6, help="steps of each loop per round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--compile", action="store_true", help="torch.compile the ncalab model")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the baseline, the loop before and now")
    ap.add_argument("--threads", type=int, default=0, help="torch's CPU threads (0: its default)")
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

    if args.threads:
        torch.set_num_threads(args.threads)
    tuned = devices.tune_glibc_malloc()
    both = interleaved(model, data, args, placement)
    ours, before, base = both["tokens_per_s"], both["tokens_per_s_before"], both["baseline_tokens_per_s"]
    mib = 1 << 20
    print(f"model d={args.d_model} layers={args.layers} vocab={args.vocab} batch {args.batch}x{args.seq} on {placement.label}, "
          f"{torch.get_num_threads()} threads; medians of {args.rounds} interleaved rounds of {args.steps} steps")
    print(f"  baseline (fp32 HF loop)   {base:12,.0f} tokens/s   (glibc's default allocator)")
    print(f"  the same, tuned heap      {both['tuned_baseline_tokens_per_s']:12,.0f} tokens/s   (ncalab's malloc tuning; "
          f"ncalab's loop {both['ratio_tuned_baseline']:.2f}x this)")
    print(f"  ncalab loop               {ours:12,.0f} tokens/s   (malloc tuning {'on' if tuned else 'off'}, compile {'on' if args.compile else 'off'}; "
          f"peak {both['peak_rss_bytes'] / mib:,.0f} MiB, micro-batch {both['micro_batch'] or args.batch})")
    print(f"  before the memory work    {before:12,.0f} tokens/s   (peak {both['peak_rss_bytes_before'] / mib:,.0f} MiB)")
    print(f"  ratio                     {both['ratio']:12.2f}x   (rounds {both['ratio_min']:.2f}-{both['ratio_max']:.2f}; "
          f"before {both['ratio_before']:.2f}x: {both['ratio'] / both['ratio_before'] - 1:+.1%})")
    if args.compile:
        print(f"  compile time              {both['compile_s']:12.1f} s      (not in the rates; before the memory work "
              f"{both['compile_s_before']:.1f} s)")
    result = {"tokens_per_s": round(ours), "baseline_tokens_per_s": round(base), "ratio": round(both["ratio"], 3),
              "tokens_per_s_before": round(before), "ratio_before": round(both["ratio_before"], 3),
              "peak_rss_bytes": both["peak_rss_bytes"], "peak_rss_bytes_before": both["peak_rss_bytes_before"],
              "micro_batch": both["micro_batch"], "device": str(placement.device), "bf16": placement.amp_dtype is not None,
              "compile": args.compile, "d_model": args.d_model, "layers": args.layers,
              "tuned_baseline_tokens_per_s": round(both["tuned_baseline_tokens_per_s"]),
              "ratio_tuned_baseline": round(both["ratio_tuned_baseline"], 3), "ratio_min": round(both["ratio_min"], 3), "ratio_max": round(both["ratio_max"], 3),
              "ratios": [round(r, 3) for r in both["ratios"]], "ratios_before": [round(r, 3) for r in both["ratios_before"]],
              "rounds": args.rounds, "steps": args.steps, "threads": torch.get_num_threads(),
              "compile_s": None if both["compile_s"] is None else round(both["compile_s"], 1),
              "load_avg": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
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
