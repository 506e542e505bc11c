"""A few rules a stage-1 run trained on, with frames of their rollouts: the report's strip.

Stage 1 writes it beside its model (``rules.npz``) when it finishes, so a report reads numbers
instead of starting the simulator; a report of an experiment from before that draws the same
rules again (every stream takes its first in-band rules first, so they are the same ones).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ncalab.nca.bands import Band
from ncalab.nca.config import NCAConfig
from ncalab.nca.draw import RuleDraw, sample_rollout

FILE = "rules.npz"


def first_rules(cfg: NCAConfig, band: Band, stream: int, rules: int = 4, frames: int = 6) -> list[dict]:
    """The first ``rules`` rules of stream ``stream`` in ``band`` (the ones its training stream
    takes first), each with ``frames`` frames from the start of the scored trajectory. Raises
    NcalabError when the settings never reach the band."""
    draw = RuleDraw(cfg, band, stream, batch_rules=16)
    drawn = [draw.next() for _ in range(rules)]
    return [{"rule_seed": d.rule_seed, "score": d.score, "frames": sample_rollout(d.rule_seed, cfg, frames).frames,
             "alphabet": cfg.alphabet, "band": band.label(), "burn_in": cfg.burn_in, "dt": cfg.dt} for d in drawn]


def save(folder: Path, rows: list[dict]) -> Path:
    """Write the rows into ``folder`` (frames as one uint8 array, the rest as JSON); atomic."""
    path = Path(folder) / FILE
    meta = [{k: v for k, v in r.items() if k != "frames"} for r in rows]
    tmp = path.with_name(f".{FILE}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, frames=np.stack([r["frames"] for r in rows]).astype(np.uint8),
                            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    tmp.replace(path)
    return path


def load(folder: Path) -> list[dict] | None:
    """The rows saved in ``folder``, or None when there are none (or they cannot be read)."""
    path = Path(folder) / FILE
    try:
        with np.load(path, allow_pickle=False) as data:
            frames, meta = data["frames"], json.loads(data["meta"].tobytes())
    except (OSError, KeyError, ValueError):
        return None
    if len(meta) != len(frames):
        return None
    return [{**m, "frames": f} for m, f in zip(meta, frames)]
