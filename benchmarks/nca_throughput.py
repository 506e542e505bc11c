"""NCA data throughput on 2 CPU threads: filtered tokens/s, rules scored/s and peak memory.

Baseline, in the same process: the straightforward implementation of the spec
(ncalab.nca.reference: conv2d on the wrap-padded one-hot, torch samplers, gzip module),
generating the same kind of filtered sequences rule by rule.

The code band is measured with fresh rules (nca.sims_per_rule=1, one trajectory per accepted
rule) and banked (sims_per_rule=10, as the paper's code: 10 trajectories per accepted rule),
and scoring with and without the kernel's early exit for grids that stop changing.

  python benchmarks/nca_throughput.py            # ~2-3 minutes; writes 164M tokens to a temp dir
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
from ncalab.nca.corpus import CorpusSpec, write_corpus  # noqa: E402
from ncalab.nca.engine import RuleBatch  # noqa: E402
from ncalab.nca.reference import reference_initial_state, reference_rollout, reference_score  # noqa: E402
from ncalab.nca.rules import make_rules  # noqa: E402
from ncalab.nca.seeds import rule_seeds  # noqa: E402
from ncalab.nca.stream import FilteredSource, score_window  # noqa: E402


# The authors' code, as measured side by side in issue 11 on the project's 2-core machine
# (tokens/s of filtered sequences of 1024 tokens); ratios against them are only meaningful on
# that machine.
PAPER_CODE_TOKENS_PER_S = {"web": 188_000, "code": 127_000}


def filtered_tokens_per_s(cfg: NCAConfig, domain: str, tokens: int, device: str = "cpu",
                          batch_rules: int = 4096) -> tuple[float, float]:
    src = FilteredSource(cfg, DOMAIN_BANDS[domain], seed=123, batch_rules=batch_rules, device=device)
    src.next_batch(256)  # warm caches
    src.rules_scored = src.rules_accepted = 0
    t0, done = time.perf_counter(), 0
    while done < tokens:
        done += len(src.next_batch()) * cfg.seq_len
    dt = time.perf_counter() - t0
    return done / dt, src.acceptance


def rules_scored_per_s(cfg: NCAConfig, n: int, batch: int = 4096) -> dict:
    """Candidates simulated for the scoring window and scored per second, with the kernel's early
    exit and without it (the two take turns on the same batches, in alternating order, so load
    drifts hit both alike); the seconds spent in the simulation alone; the fraction of candidates
    whose grid froze for good within the window and the fraction of the window's steps the early
    exit skipped (exact counts, unlike the timings)."""
    total = {True: 0.0, False: 0.0}
    sim = {True: 0.0, False: 0.0}
    frozen, skipped = 0, 0
    for i, start in enumerate(range(0, n, batch)):
        seeds = rule_seeds(7, "train", start, batch)
        for early_exit in ((True, False) if i % 2 == 0 else (False, True)):
            t0 = time.perf_counter()
            rb = RuleBatch(seeds, seeds, cfg, early_exit=early_exit)
            t1 = time.perf_counter()
            frames = rb.frames(cfg.score_frames)
            sim[early_exit] += time.perf_counter() - t1
            score_window(frames, cfg)
            total[early_exit] += time.perf_counter() - t0
            if early_exit:
                at = rb.frozen_at()
                frozen += int((at >= 0).sum())
                skipped += int((rb.steps_done - at[at >= 0]).sum())
    return {"scored": n / total[True], "scored_plain": n / total[False], "sim_s": sim[True],
            "sim_plain_s": sim[False], "frozen": frozen / n, "steps_skipped": skipped / (n * rb.steps_done)}


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
    banked, _ = filtered_tokens_per_s(cfg.replace(sims_per_rule=10), "code", 4_000_000 if q else 40_000_000)
    sc = rules_scored_per_s(cfg, 8192 if q else 81_920)
    scored, scored_plain, frozen, skipped = sc["scored"], sc["scored_plain"], sc["frozen"], sc["steps_skipped"]
    sim_s, sim_plain_s = sc["sim_s"], sc["sim_plain_s"]
    base_web = baseline_tokens_per_s(cfg, "web", 40 if q else 150)

    # Memory while streaming the paper's stage-1 budget to disk.
    total = 4_000_000 if q else 164_000_000
    out = tempfile.mkdtemp(prefix="ncalab-bench-")
    try:
        res = write_corpus(out, CorpusSpec(cfg, DOMAIN_BANDS["web"], total, seed=9), force=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rows = [
        ("filtered tokens/s, web band (0.5, 1)", f"{web / 1e6:.2f} M",
         f"acceptance {acc_web:.3f}; {web / PAPER_CODE_TOKENS_PER_S['web']:.1f}x the paper's code*"),
        ("filtered tokens/s, code band (0.3, 0.4), fresh rules", f"{code / 1e6:.2f} M",
         f"acceptance {acc_code:.3f}; {code / PAPER_CODE_TOKENS_PER_S['code']:.1f}x the paper's code*"),
        ("  ... banked: 10 trajectories per rule", f"{banked / 1e6:.2f} M",
         f"{banked / PAPER_CODE_TOKENS_PER_S['code']:.1f}x the paper's code* (which banks 10 per rule)"),
        ("rules scored/s", f"{scored:,.0f}",
         f"{frozen:.1%} froze within the scoring window; {skipped:.1%} of its steps skipped"),
        ("  ... without the early exit", f"{scored_plain:,.0f}",
         f"early exit: scoring-window simulation {sim_plain_s / sim_s:.2f}x faster"),
        ("baseline (reference impl.) tokens/s, web", f"{base_web / 1e6:.3f} M", f"ratio {web / base_web:.1f}x"),
        (f"write {res.tokens / 1e6:.0f}M web tokens", f"{res.seconds:.1f} s", f"{res.tokens_per_s / 1e6:.2f} M/s"),
        ("peak RSS (whole process)", f"{peak_mib:,.0f} MiB", ""),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"NCA throughput on {THREADS} CPU threads ({os.cpu_count()} cores visible)")
    for a, b, c in rows:
        print(f"  {a:<{w}}  {b:>12}  {c}")
    print(f"  * the authors' code as measured in issue 11 (web {PAPER_CODE_TOKENS_PER_S['web']:,}, code "
          f"{PAPER_CODE_TOKENS_PER_S['code']:,} tokens/s) on the project's machine; elsewhere compare the absolute figures")
    print(json.dumps({
        "tokens_per_s_web": round(web), "tokens_per_s_code": round(code), "rules_scored_per_s": round(scored),
        "tokens_per_s_code_banked": round(banked), "sims_per_rule_banked": 10,
        "rules_scored_per_s_no_early_exit": round(scored_plain), "early_exit_sim_speedup": round(sim_plain_s / sim_s, 3),
        "frozen_fraction": round(frozen, 4), "early_exit_steps_skipped": round(skipped, 4),
        "ratio_web_vs_paper": round(web / PAPER_CODE_TOKENS_PER_S["web"], 2),
        "ratio_code_vs_paper": round(code / PAPER_CODE_TOKENS_PER_S["code"], 2),
        "ratio_code_banked_vs_paper": round(banked / PAPER_CODE_TOKENS_PER_S["code"], 2),
        "peak_rss_mib": round(peak_mib, 1), "baseline_tokens_per_s_web": round(base_web),
        "ratio_web": round(web / base_web, 2), "write_tokens": res.tokens, "write_seconds": round(res.seconds, 2),
        "quick": q,
    }))


if __name__ == "__main__":
    main()
