"""Validation loss and perplexity: token-weighted mean cross-entropy over held-out batches."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ncalab.nca.tokens import IGNORE_INDEX
from ncalab.train.headloss import chunked_loss_sum, splits_head


def loss_sum(model, inputs: torch.Tensor, targets: torch.Tensor, chunked: bool = True, body=None,
             chunk_fn=None) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the non-ignored targets, and their count. `chunked`: without
    the full logits where the model allows it (train/headloss.py), to keep memory down;
    `body` and `chunk_fn`: compiled parts for the chunked way (headloss.chunked_loss_sum)."""
    if chunked and splits_head(model):
        return chunked_loss_sum(model, inputs, targets, body, chunk_fn), int((targets != IGNORE_INDEX).sum())
    logits = model(input_ids=inputs).logits
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, int((targets != IGNORE_INDEX).sum())


@torch.no_grad()
def evaluate(model, batches, placement, chunked: bool = True) -> dict[str, float]:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for inputs, targets in batches:
        with placement.autocast():
            s, n = loss_sum(model, inputs.to(placement.device), targets.to(placement.device), chunked)
        total += float(s)
        count += n
    model.train(was_training)
    loss = total / max(count, 1)
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}
