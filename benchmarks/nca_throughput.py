"""NCA data throughput on 2 CPU threads: filtered tokens/s, rules scored/s and peak memory.

Baseline, in the same process: the straightforward implementation of the spec
(ncalab.nca.reference: conv2d on the wrap-padded one-hot, torch samplers, gzip module),
generating the same kind of filtered sequences rule by rule.

  python benchmarks/nca_throughput.py            # ~2 minutes; writes 164M tokens to a temp dir
  python benchmarks/nca_throughput.py --quick    # smaller counts, for a smoke run

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time

import numba
import torch

THREADS = 2
torch.set_num_threads(THREADS)
numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))

from ncalab.nca.bands import DOMAIN_BANDS  # noqa: E402
from ncalab.nca.config import NCAConfig  # noqa: E402
from ncalab.nca.corpus import write_corpus  # noqa: E402
from ncalab.nca.engine import RuleBatch  # noqa: E402
from ncalab.nca.reference import reference_initial_state, reference_rollout, reference_score  # noqa: E402
from ncalab.nca.rules import make_rules  # noqa: E402
from ncalab.nca.seeds import rule_seeds  # noqa: E402
from ncalab.nca.stream import FilteredSource, score_window  # noqa: E402


def filtered_tokens_per_s(cfg: NCAConfig, domain: str, tokens: int) -> tuple[float, float]:
    src = FilteredSource(cfg, DOMAIN_BANDS[domain], seed=123, batch_rules=4096)
    src.next_batch(256)  # warm caches
    src.rules_scored = src.rules_accepted = 0
    t0, done = time.perf_counter(), 0
    while done < tokens:
        done += len(src.next_batch()) * cfg.seq_len
    dt = time.perf_counter() - t0
    return done / dt, src.acceptance


def rules_scored_per_s(cfg: NCAConfig, n: int, batch: int = 4096) -> float:
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        seeds = rule_seeds(7, "train", start, batch)
        score_window(RuleBatch(seeds, seeds, cfg).frames(cfg.score_frames), cfg)
    return n / (time.perf_counter() - t0)


def baseline_tokens_per_s(cfg: NCAConfig, domain: str, n_rules: int) -> float:
    """Reference implementation: one rule at a time, full trajectory, score, keep if in band."""
    band = DOMAIN_BANDS[domain]
    kept = 0
    t0 = time.perf_counter()
    for s in range(n_rules):
        g = torch.Generator().manual_seed(s)
        rule = make_rules([s], cfg)
        frames = reference_rollout(rule, 0, reference_initial_state(cfg, g), cfg, cfg.frames_per_seq, g=g)
        kept += band.contains(reference_score(frames, cfg))
    return kept * cfg.seq_len / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small counts (a smoke run, not the figures)")
    args = ap.parse_args()
    cfg = NCAConfig()
    q = args.quick
    web, acc_web = filtered_tokens_per_s(cfg, "web", 4_000_000 if q else 40_000_000)
    code, acc_code = filtered_tokens_per_s(cfg, "code", 1_000_000 if q else 10_000_000)
    scored = rules_scored_per_s(cfg, 8192 if q else 81_920)
    base_web = baseline_tokens_per_s(cfg, "web", 40 if q else 150)

    # Memory while streaming the paper's stage-1 budget to disk.
    total = 4_000_000 if q else 164_000_000
    out = tempfile.mkdtemp(prefix="ncalab-bench-")
    try:
        res = write_corpus(out, cfg, DOMAIN_BANDS["web"], total, seed=9, force=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rows = [
        ("filtered tokens/s, web band (0.5, 1)", f"{web / 1e6:.2f} M", f"acceptance {acc_web:.3f}"),
        ("filtered tokens/s, code band (0.3, 0.4)", f"{code / 1e6:.2f} M", f"acceptance {acc_code:.3f}"),
        ("rules scored/s", f"{scored:,.0f}", ""),
        ("baseline (reference impl.) tokens/s, web", f"{base_web / 1e6:.3f} M", f"ratio {web / base_web:.1f}x"),
        (f"write {res.tokens / 1e6:.0f}M web tokens", f"{res.seconds:.1f} s", f"{res.tokens_per_s / 1e6:.2f} M/s"),
        ("peak RSS (whole process)", f"{peak_mib:,.0f} MiB", ""),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"NCA throughput on {THREADS} CPU threads ({os.cpu_count()} cores visible)")
    for a, b, c in rows:
        print(f"  {a:<{w}}  {b:>12}  {c}")
    print(json.dumps({
        "tokens_per_s_web": round(web), "tokens_per_s_code": round(code), "rules_scored_per_s": round(scored),
        "peak_rss_mib": round(peak_mib, 1), "baseline_tokens_per_s_web": round(base_web),
        "ratio_web": round(web / base_web, 2), "write_tokens": res.tokens, "write_seconds": round(res.seconds, 2),
        "quick": q,
    }))


if __name__ == "__main__":
    main()
