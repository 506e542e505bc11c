"""The summed cross-entropy of a causal language model without ever holding its full logits.

A batch's logits are positions x vocabulary: at stage 1's shape (16 x 512 positions, 10,002
tokens) 328 MB in fp32, and the loss and its backward pass keep several copies of that size,
which made stage 1's peak resident memory 3.4 GB on a CPU. Here the output layer and the loss
run over a few hundred positions at a time, and each chunk's gradients (for the hidden states
and the output weights) are computed at once, in the forward pass, so no chunk's logits are
kept for the backward pass. The same matrix products run, so it costs no speed.
"""

from __future__ import annotations

import torch

from ncalab.lazy import transformers
from ncalab.nca.tokens import IGNORE_INDEX

CHUNK_BYTES = 16 << 20  # the fp32 logits of one chunk of positions (16 MiB measured faster than 32)


def chunk_positions(vocab: int) -> int:
    """Positions per chunk, so that a chunk's fp32 logits take about CHUNK_BYTES."""
    return max(64, CHUNK_BYTES // (4 * max(vocab, 1)))


def splits_head(model) -> bool:
    """Whether the model runs here as its body then its output layer: a transformers causal
    language model used directly (DDP, FSDP and torch.compile wrap it and take the plain path)."""
    head = getattr(model, "lm_head", None)
    return (isinstance(model, transformers.PreTrainedModel) and isinstance(getattr(model, "model", None), torch.nn.Module)
            and isinstance(head, torch.nn.Linear) and head.bias is None and not _sharded(model))


_compiled_chunk = []


def compiled_chunk_fn():
    """chunk_loss_and_grads compiled (once per process; shapes are static, so a stage's chunk
    sizes compile once each)."""
    if not _compiled_chunk:
        _compiled_chunk.append(torch.compile(chunk_loss_and_grads, dynamic=False))
    return _compiled_chunk[0]


def _sharded(model) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2
        return False
    return isinstance(model, FSDPModule)


def chunked_loss_sum(model, inputs: torch.Tensor, targets: torch.Tensor, body=None, chunk_fn=None) -> torch.Tensor:
    """Summed cross-entropy over the non-ignored targets (the model must pass splits_head).

    ``body``: what runs the model's body (``model.model``, or a compiled twin of it sharing its
    weights); ``chunk_fn``: what computes a chunk's loss and gradients where both gradients are
    wanted (``chunk_loss_and_grads``, or a compiled twin of it); None: the eager in-place way."""
    hidden = (model.model if body is None else body)(input_ids=inputs).last_hidden_state
    weight = model.lm_head.weight
    return _ChunkedHeadLoss.apply(hidden, weight, targets, chunk_positions(weight.shape[0]), chunk_fn)


class _ChunkedHeadLoss(torch.autograd.Function):
    """loss = sum of cross_entropy(hidden @ weight.T, targets); backward hands on the gradients
    the forward pass computed chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk, chunk_fn=None):
        h, t = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        grad_h = torch.empty(h.shape, dtype=torch.float32, device=h.device) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device) if ctx.needs_input_grad[1] else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        if chunk_fn is not None and grad_h is not None and grad_w is not None:
            product = _product_dtype(h.device.type, h.dtype)
            for i in range(0, len(h), chunk):
                loss, gh, gw = chunk_fn(h[i : i + chunk], weight, t[i : i + chunk], product)
                total += loss
                grad_h[i : i + chunk] = gh
                grad_w += gw
            ctx.save_for_backward(grad_h, grad_w)
            ctx.shape, ctx.dtypes = hidden.shape, (hidden.dtype, weight.dtype)
            return total
        for i in range(0, len(h), chunk):
            hc, tc = h[i : i + chunk], t[i : i + chunk]
            g = _chunk_loss_and_grad(hc, weight, tc, total, grads=grad_h is not None or grad_w is not None)
            if g is None:
                continue
            if grad_h is not None:
                grad_h[i : i + chunk] = g @ weight.to(g.dtype)
            if grad_w is not None:
                grad_w += g.t() @ hc.to(g.dtype)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.shape, ctx.dtypes = hidden.shape, (hidden.dtype, weight.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        gh = None if grad_h is None else (grad_h * grad_out).reshape(ctx.shape).to(ctx.dtypes[0])
        gw = None if grad_w is None else (grad_w * grad_out).to(ctx.dtypes[1])
        return gh, gw, None, None, None


def _product_dtype(device_type: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype the head's matrix products compute in: autocast's where it is on."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else dtype


def chunk_loss_and_grads(hc, weight, tc, product: torch.dtype):
    """A chunk's summed loss, d(loss)/d(hidden) and d(loss)/d(weight), as one pure function
    (for torch.compile, which fuses its elementwise passes into a few loops; the eager way
    below works in place instead, to hold one buffer of the chunk's logits)."""
    logits = (hc @ weight.t()).float()
    keep = tc != IGNORE_INDEX
    safe = torch.where(keep, tc, 0)
    top = logits.amax(dim=-1, keepdim=True)
    exp = (logits - top).exp()
    norm = exp.sum(dim=-1, keepdim=True)
    picked = logits.gather(1, safe[:, None]).squeeze(1)
    loss = ((top.squeeze(1) + norm.log().squeeze(1) - picked) * keep).sum()
    hot = torch.arange(logits.shape[1], device=logits.device)[None, :] == safe[:, None]
    g = ((exp / norm - hot.to(exp.dtype)) * keep[:, None]).to(product)
    return loss, g @ weight.to(product), g.t() @ hc.to(product)


def _chunk_loss_and_grad(hc, weight, tc, total, grads: bool):
    """Adds the chunk's summed loss to `total`; returns d(loss)/d(logits) (softmax minus the
    one-hot target, zero at ignored positions) in the matmul dtype, or None when not asked.
    The softmax is made in place of the logits: a chunk holds one buffer of its size."""
    logits = (hc @ weight.t()).float()  # autocast makes the product bf16 where training is
    keep = tc != IGNORE_INDEX
    safe = torch.where(keep, tc, 0)
    picked = logits.gather(1, safe[:, None]).squeeze(1)
    top = logits.amax(dim=-1, keepdim=True)
    exp = logits.sub_(top).exp_()
    norm = exp.sum(dim=-1, keepdim=True)
    total += ((top.squeeze(1) + norm.log().squeeze(1) - picked) * keep).sum()
    if not grads:
        return None
    g = exp.div_(norm)
    g[torch.arange(len(tc), device=tc.device), safe] -= 1.0
    g.mul_(keep[:, None])
    return g.to(_product_dtype(hc.device.type, hc.dtype))
