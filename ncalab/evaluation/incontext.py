"""In-context evaluation of a stage-1 model (spec section 5).

NCA: given the true frames so far and the next frame's START token, the model decodes that
frame greedily; exact-frame and per-cell accuracy are reported per frame index, on held-out
rules of the training band and on held-out rules of the other bands. Dyck: the fraction of
the model's greedy next-token predictions that keep the sequence a valid prefix (the paper's
conditional validity).

Each function returns metric points {name, step, value}: for NCA, step is the 1-based index
of the predicted frame (the first one the model can predict is frame min_grid + 1).
"""

from __future__ import annotations

import numpy as np
import torch

from ncalab.data.dyck import continuation_validity
from ncalab.errors import NcalabError
from ncalab.nca.bands import REPORT_BINS, Band
from ncalab.nca.config import NCAConfig
from ncalab.nca.stream import FilteredSource
from ncalab.nca.tokens import patch_tokens_to_grids
from ncalab.train.generate import generate


def held_out_sequences(cfg: NCAConfig, band: Band, seed: int, n: int) -> np.ndarray:
    """n sequences (n, L + 1) of held-out rules (the stream's val split) in a band."""
    src = FilteredSource(cfg, band, seed, "val", batch_rules=512)
    out, have = [], 0
    while have < n:
        batch = src.next_batch(src.candidates_for(n - have)).tokens
        out.append(batch)
        have += len(batch)
    return np.concatenate(out)[:n].astype(np.int64)


def frame_accuracy(model, cfg: NCAConfig, seqs: np.ndarray, placement, batch_size: int = 16,
                   predict=None) -> dict[int, tuple[float, float]]:
    """{frame number: (exact-frame accuracy, per-cell accuracy)} of greedy next-frame decoding.

    ``predict(prefixes, n)`` returns n tokens per prefix; by default the model decodes greedily
    with its KV cache."""
    fl, ppf = cfg.frame_len, cfg.patches_per_frame
    limit = seqs.shape[1] if model is None else min(seqs.shape[1], model.config.max_position_embeddings)
    if predict is None:
        def predict(prefixes: np.ndarray, n: int) -> list[list[int]]:
            return generate(model, prefixes.tolist(), n, autocast=placement.autocast)
    frames = [f for f in range(max(cfg.min_grid, 1), seqs.shape[1] // fl + 1) if f * fl + ppf <= limit]
    out = {}
    for f in frames:
        start = f * fl + 1  # the first patch token of frame f, after its START
        exact, cells = 0, 0
        for i in range(0, len(seqs), batch_size):
            chunk = seqs[i : i + batch_size]
            pred = np.full((len(chunk), ppf), -1, dtype=np.int64)
            for r, toks in enumerate(predict(chunk[:, :start], ppf)):
                pred[r, : min(len(toks), ppf)] = toks[:ppf]
            e, c = _compare(pred, chunk[:, start : start + ppf], cfg)
            exact, cells = exact + e, cells + c
        out[f + 1] = (exact / len(seqs), cells / (len(seqs) * cfg.cells))
    return out


def _compare(pred: np.ndarray, target: np.ndarray, cfg: NCAConfig) -> tuple[int, int]:
    """(frames predicted exactly, cells predicted right); a token that is no patch (a
    delimiter) gets every cell of its patch wrong."""
    valid = (pred >= 0) & (pred < cfg.patch_vocab)
    pg = patch_tokens_to_grids(np.where(valid, pred, 0), cfg)
    tg = patch_tokens_to_grids(target, cfg)
    p = cfg.patch
    cell_valid = np.repeat(np.repeat(valid.reshape(-1, cfg.height // p, cfg.width // p), p, axis=1), p, axis=2)
    right = (pg == tg) & cell_valid
    return int(right.all(axis=(1, 2)).sum()), int(right.sum())


def nca_in_context(model, cfg: NCAConfig, band: Band, seed: int, n: int, placement) -> list[dict]:
    """Accuracy per frame on the training band ("icl_frame_acc", "icl_cell_acc") and on each
    report band that does not overlap it ("icl_frame_acc@0.5-1", ...)."""
    if n <= 0:
        return []
    bands = [("", band)] + [(f"@{lo:g}-{hi:g}", Band(lo, hi)) for _, lo, hi in REPORT_BINS if hi <= band.lo or lo >= band.hi]
    points = []
    for suffix, b in bands:
        try:
            seqs = held_out_sequences(cfg, b, seed, n)
        except NcalabError:
            continue  # a band these settings never reach (e.g. 0.5+ with 2 colours)
        for frame, (exact, cells) in frame_accuracy(model, cfg, seqs, placement).items():
            points += [{"name": f"icl_frame_acc{suffix}", "step": frame, "value": exact},
                       {"name": f"icl_cell_acc{suffix}", "step": frame, "value": cells}]
    return points


@torch.no_grad()
def dyck_validity(model, dyck_cfg, seqs: np.ndarray, placement, batch_size: int = 16) -> list[dict]:
    """Fraction of greedy next-token predictions, given the true prefix, that keep it valid."""
    was_training = model.training
    model.eval()
    valid, total = 0, 0
    device = next(model.parameters()).device
    try:
        for i in range(0, len(seqs), batch_size):
            inputs = torch.from_numpy(np.ascontiguousarray(seqs[i : i + batch_size, :-1]))
            with placement.autocast():
                logits = model(input_ids=inputs.to(device)).logits
            pred = logits.argmax(dim=-1).cpu().numpy()
            ok = continuation_validity(inputs.numpy(), pred, dyck_cfg)
            valid += int(ok.sum())
            total += ok.size
    finally:
        model.train(was_training)
    return [{"name": "dyck_validity", "step": 0, "value": valid / max(total, 1)}]
