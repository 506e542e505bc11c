"""The paper's comparison of an NCA-initialised run with its scratch baseline (spec section 7)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


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


@dataclass
class StageCompute:
    """What one training stage cost: its model's size, FLOPs, seconds and peak memory."""

    params: int
    params_no_embeddings: int
    flops_per_token: int
    tokens: int
    flops: float
    wall_s: float | None = None  # the stage from start to end (evaluations and checkpoints included)
    device_s: float | None = None  # time in training steps
    peak_rss_bytes: float | None = None  # the most resident memory while it ran (a job's processes together)
    peak_device_bytes: float | None = None  # the most GPU memory torch held allocated (on a GPU)

    @classmethod
    def from_metrics(cls, m: dict) -> StageCompute | None:
        if "flops_per_token" not in m:
            return None  # a run of an older version
        return cls(params=int(m["params"]), params_no_embeddings=int(m["params_no_embeddings"]),
                   flops_per_token=int(m["flops_per_token"]), tokens=int(m["stage_tokens"]), flops=m["stage_flops"],
                   wall_s=m.get("stage_wall_s"), device_s=m.get("stage_device_s"),
                   peak_rss_bytes=m.get("stage_peak_rss_bytes"), peak_device_bytes=m.get("stage_peak_device_bytes"))


@dataclass
class ExperimentSummary:
    """The result of one experiment: what `ncalab run` prints, `--json` emits, the store keeps
    and the TUI shows. "nca" is the pre-pre-trained arm whatever its source."""

    experiment_id: str
    preset: str
    scale: str
    seed: int
    ppl_scratch: float
    ppl_nca: float
    gain: float
    speedup: float | None
    tokens_scratch_to_final: float | None
    tokens_nca_to_scratch_final: float | None
    nca_better: bool
    wall_s: float
    device: str
    tokens_per_s: dict[str, float | None]
    stage1_val_loss: float | None
    runs: dict[str, str]
    source: str = "nca"
    compute: dict[str, StageCompute] = field(default_factory=dict)
    in_context: dict[str, float] = field(default_factory=dict)  # mean over frames (NCA) or validity (Dyck)
    downstream: dict[str, dict] = field(default_factory=dict)  # task -> k -> {nca, scratch, diff, ci, items}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ExperimentSummary:
        """A stored summary, including those of older versions (missing fields get defaults)."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in d.items() if k in known}
        data["compute"] = {k: StageCompute(**v) for k, v in (d.get("compute") or {}).items()}
        for name in ("tokens_scratch_to_final", "tokens_nca_to_scratch_final", "speedup", "stage1_val_loss"):
            data.setdefault(name, None)
        data.setdefault("tokens_per_s", {})
        data.setdefault("runs", {})
        data.setdefault("wall_s", 0.0)
        data.setdefault("device", "")
        data.setdefault("nca_better", d.get("gain", 0) > 0)
        return cls(**data)


def in_context_means(points_by_name: dict[str, list[float]]) -> dict[str, float]:
    """Mean over frames of each in-context metric (frame numbers weigh alike)."""
    return {name: sum(v) / len(v) for name, v in sorted(points_by_name.items()) if v}
