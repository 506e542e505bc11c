"""Batched decoding with the KV cache: greedy or sampled (temperature, top-p), prompts of any
lengths (left-padded), each row stopping at its own end token.

One forward pass per new token for the whole batch, over the cached keys and values, instead
of re-reading the prompt every step (what the paper's evaluation code does).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch


def _cache_argument(model) -> str:
    """transformers 5.x names the KV cache `cache`; 4.x named it `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _last_logits_argument(model) -> dict:
    """Asks the forward pass for the last position's logits only (transformers 4.50 on:
    logits_to_keep; 4.45 to 4.49: num_logits_to_keep): a prompt's full logits are positions x
    vocabulary, 320 MB for 16 NCA prompts of 500 tokens, and decoding reads one row of them."""
    params = inspect.signature(model.forward).parameters
    return next(({a: 1} for a in ("logits_to_keep", "num_logits_to_keep") if a in params), {})


def _pad_left(prompts: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if len(p):
            ids[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
            mask[i, width - len(p):] = 1
    return ids, mask


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy at temperature 0 (the default), else drawn from the
    top-p nucleus at this temperature, with ``generator`` (on the CPU) when given."""

    temperature: float = 0.0
    top_p: float = 1.0
    generator: torch.Generator | None = None


def _choose(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Next token per row: argmax at temperature 0, else a draw from the top-p nucleus."""
    logits = logits.float()
    if sampling.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = sorted_p.cumsum(dim=-1) - sorted_p >= sampling.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    generator = sampling.generator
    return torch.multinomial(probs.cpu() if generator is not None else probs, 1, generator=generator).view(-1).to(logits.device)


@torch.no_grad()
def generate(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, *, sampling: Sampling = Sampling(),
             stop_ids: Sequence[int] = (), pad_id: int = 0, autocast: Callable | None = None,
             done: Callable[[int, list[int]], bool] | None = None) -> list[list[int]]:
    """New tokens for each prompt (without the prompt), cut after a stop id.

    ``done(row, tokens)`` may end a row early (e.g. a stop string in the decoded text); a
    finished row keeps being fed a pad token, which its later outputs never see.
    """
    device = next(model.parameters()).device
    ids, mask = _pad_left(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(dim=-1) - 1).clamp_min(0)
    out: list[list[int]] = [[] for _ in prompts]
    finished = torch.zeros(len(prompts), dtype=torch.bool)
    stop = set(int(s) for s in stop_ids)
    was_training = model.training
    model.eval()
    past, cache_arg, last_only = None, _cache_argument(model), _last_logits_argument(model)
    step_ids, step_pos = ids, positions
    try:
        for _ in range(max_new_tokens):
            with autocast() if autocast else nullcontext():
                res = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, use_cache=True,
                            **{cache_arg: past}, **last_only)
            past = res["cache"] if "cache" in res else res["past_key_values"]
            nxt = _choose(res.logits[:, -1], sampling)
            for i, t in enumerate(nxt.tolist()):
                if finished[i]:
                    continue
                out[i].append(t)
                if t in stop or (done is not None and done(i, out[i])):
                    finished[i] = True
            if bool(finished.all()):
                break
            step_ids = torch.where(finished.to(device), torch.full_like(nxt, pad_id), nxt)[:, None]
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    finally:
        model.train(was_training)
    return [o[:-1] if o and o[-1] in stop else o for o in out]
