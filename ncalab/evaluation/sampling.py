"""What a language model says to an item: sampled completions (the task's temperature and
top-p), or the log-probability of each option of a multiple-choice item."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextlib import nullcontext

import torch

from ncalab.evaluation.tasks import Item
from ncalab.train.generate import Sampling, _pad_left, generate


@torch.no_grad()
def sample(model, tok, item: Item, sec, seed: int, placement, batch: int = 64) -> list[str]:
    """`sec.samples` completions of one item (temperature and top-p of the task's protocol), the
    prompt cut from the left to leave room for `sec.max_tokens` within the model's context."""
    ids = tok(item.prompt, add_special_tokens=False)["input_ids"]
    context = model.config.max_position_embeddings
    new = min(sec.max_tokens, max(1, context // 2))
    ids = ids[-(context - new):]
    sampling = Sampling(sec.temperature, sec.top_p, torch.Generator().manual_seed(seed))
    out: list[str] = []
    while len(out) < sec.samples:
        n = min(batch, sec.samples - len(out))
        got = generate(model, [ids] * n, min(new, context - len(ids)), sampling=sampling,
                       stop_ids=[tok.eos_token_id], pad_id=tok.eos_token_id,
                       autocast=placement.autocast, done=lambda row, toks: item.stop(tok.decode(toks[-24:])))
        out += [tok.decode(g) for g in got]
    return out


def _logits_argument(model) -> str | None:
    """How the model's forward pass is told to compute the last positions' logits only
    (transformers 4.50 on: logits_to_keep; 4.45 to 4.49: num_logits_to_keep)."""
    params = inspect.signature(model.forward).parameters
    return next((a for a in ("logits_to_keep", "num_logits_to_keep") if a in params), None)


@torch.no_grad()
def choice_logprobs(model, tok, prompt: str, options: Sequence[str], placement=None, batch: int = 16) -> list[float]:
    """The model's log-probability of each option after the prompt: the sum over the option's
    tokens of log p(token | prompt and the option so far), from the model's own forward pass.
    Options go through in batches of rows prompt + option, left-padded (attention mask and
    positions as in decoding) so that every row ends at the last column and only the last
    columns' logits are needed. Prompt and option are tokenized apart, as fine-tuning reads
    them; the prompt is cut from the left to leave room for the longest option."""
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    opts = [list(tok(o, add_special_tokens=False)["input_ids"]) for o in options]
    pad = tok.eos_token_id if tok.eos_token_id is not None else 0
    context = model.config.max_position_embeddings
    room = max(1, context - max((len(o) for o in opts), default=0))
    ids = (list(ids) or [pad])[-room:]
    opts = [o[: context - len(ids)] for o in opts]
    device = next(model.parameters()).device
    keep = _logits_argument(model)
    out: list[float] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(opts), batch):
            chunk = opts[start:start + batch]
            x, mask = _pad_left([ids + o for o in chunk], pad)
            positions = (mask.cumsum(dim=-1) - 1).clamp_min(0)
            tail = max(len(o) for o in chunk) + 1  # the logits before each option token
            with placement.autocast() if placement is not None else nullcontext():
                logits = model(input_ids=x.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                               use_cache=False, **({keep: tail} if keep else {})).logits
            logp = torch.log_softmax(logits[:, -tail:].float(), dim=-1)
            for i, o in enumerate(chunk):
                if not o:
                    out.append(float("-inf"))  # an empty option says nothing
                    continue
                # the row's last len(o) tokens are the option; column j predicts column j + 1
                rows = logp[i, tail - 1 - len(o): tail - 1]
                out.append(float(rows.gather(-1, torch.as_tensor(o, device=rows.device)[:, None]).sum()))
    finally:
        model.train(was_training)
    return out
