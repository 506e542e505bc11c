"""The paper's comparison of an NCA-initialised run with its scratch baseline (spec section 7)."""

from __future__ import annotations


def first_reach(tokens: list[float], values: list[float], target: float) -> float | None:
    """Tokens at which a curve first reaches ``target`` (value <= target), interpolating
    linearly between evaluations; None if it never does."""
    for i, (t, v) in enumerate(zip(tokens, values)):
        if v <= target:
            if i == 0:
                return float(t)
            t0, v0 = tokens[i - 1], values[i - 1]
            if v0 == v:
                return float(t)
            return float(t0 + (t - t0) * (v0 - target) / (v0 - v))
    return None


def compare(scratch: tuple[list, list], nca: tuple[list, list]) -> dict:
    """Final perplexities, final-perplexity gain and convergence speedup.

    gain = 1 - ppl_nca / ppl_scratch. speedup = tokens scratch needed to reach its final
    perplexity / tokens the NCA model needed to first reach it; None when the NCA model never
    reached it within the budget (then it is slower by an unmeasured factor).
    """
    (ts, ps), (tn, pn) = scratch, nca
    ppl_scratch, ppl_nca = ps[-1], pn[-1]
    t_scratch = first_reach(ts, ps, ppl_scratch)
    t_nca = first_reach(tn, pn, ppl_scratch)
    speedup = (t_scratch / t_nca) if (t_nca and t_scratch) else None
    return {
        "ppl_scratch": ppl_scratch, "ppl_nca": ppl_nca, "gain": 1.0 - ppl_nca / ppl_scratch,
        "speedup": speedup, "tokens_scratch_to_final": t_scratch, "tokens_nca_to_scratch_final": t_nca,
        "nca_better": ppl_nca < ppl_scratch,
    }
