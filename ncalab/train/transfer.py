"""Transfer after NCA pre-pre-training (spec section 6): new embedding and head for the
language vocabulary, keep the blocks and the final norm; optionally re-initialise attention,
MLP or norm weights too (the paper's ablations)."""

from __future__ import annotations

import torch
from transformers import LlamaForCausalLM

from ncalab.config import ModelConfig, TransferConfig
from ncalab.train.model import build_model

# Which parameter names each ablation re-initialises.
_PARTS = {
    "attn": (".self_attn.",),
    "mlp": (".mlp.",),
    "norm": ("input_layernorm", "post_attention_layernorm", "model.norm."),
}


def kept_parameter_names(names, reinit: set[str], keep_embeddings: bool = False) -> list[str]:
    """Names copied from the stage-1 model: blocks and final norm (and the embeddings and head,
    when the two stages share a vocabulary), minus the re-initialised parts."""
    out = []
    for n in names:
        if n.startswith(("model.embed_tokens.", "lm_head.")) and not keep_embeddings:
            continue
        if any(marker in n for part in reinit for marker in _PARTS[part]):
            continue
        out.append(n)
    return out


def transfer(nca_model: LlamaForCausalLM, m: ModelConfig, vocab_size: int, max_len: int, seed: int,
             settings: TransferConfig | None = None, keep_embeddings: bool = False) -> tuple[LlamaForCausalLM, list[str]]:
    """A language model whose non-reinitialised blocks come from ``nca_model``.

    The fresh parts are exactly the weights a scratch model with the same seed gets, so the
    NCA and scratch runs differ only in what was transferred. Of ``settings`` (default: keep
    every block as it is) this reads: ``reinit``, the parts re-initialised; ``control``, which
    replaces each transferred tensor by one of the same scale that never saw NCA data
    (``shuffle``: its own values permuted; ``matched_scale``: the fresh init scaled to its RMS;
    ``matched_stats``: the fresh init given its mean and each row's spread, matched_stats below);
    ``shrink`` and ``perturb``, shrink-and-perturb: shrink * transferred + perturb * fresh init.
    """
    settings = settings if settings is not None else TransferConfig()
    control, shrink, perturb = settings.control, settings.shrink, settings.perturb
    model = build_model(m, vocab_size, max_len, seed)
    src = nca_model.state_dict()
    dst = model.state_dict()
    kept = kept_parameter_names(dst.keys(), set(settings.reinit), keep_embeddings)
    if keep_embeddings and src["model.embed_tokens.weight"].shape != dst["model.embed_tokens.weight"].shape:
        raise ValueError("kept embeddings need one vocabulary in both stages")
    g = torch.Generator().manual_seed(seed * 1_000_003 + 17)  # the controls' own randomness
    for n in kept:
        fresh = dst[n].detach().float().clone()
        w = src[n].detach().float().cpu()
        if control == "shuffle":
            w = w.flatten()[torch.randperm(w.numel(), generator=g)].view_as(w)
        elif control == "matched_scale":
            w = fresh * (_rms(w) / _rms(fresh))
        elif control == "matched_stats":
            w = matched_stats(fresh, w, g)
        elif control != "none":
            raise ValueError(f"unknown transfer control {control!r}")
        if shrink != 1.0 or perturb:
            w = shrink * w + perturb * fresh
        dst[n].copy_(w.to(dst[n].dtype))
    return model, kept


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.pow(2).mean().sqrt().clamp_min(1e-12)


def matched_stats(fresh: torch.Tensor, w: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The fresh init's pattern with ``w``'s statistics: each row standardised, then given the
    spread (population sd) of ``w``'s row and ``w``'s mean. A vector is one row. A fresh row
    with no spread (a norm's ones) is replaced by standard normal draws from ``g`` first."""
    rows = fresh.reshape(fresh.shape[0], -1) if fresh.dim() > 1 else fresh.reshape(1, -1)
    target = w.reshape(rows.shape)
    flat = rows.std(dim=1, unbiased=False) == 0
    if bool(flat.any()):
        rows = rows.clone()
        rows[flat] = torch.randn(int(flat.sum()), rows.shape[1], generator=g)
    z = (rows - rows.mean(dim=1, keepdim=True)) / rows.std(dim=1, unbiased=False, keepdim=True).clamp_min(1e-12)
    out = z * target.std(dim=1, unbiased=False, keepdim=True) + target.mean()
    return out.reshape(fresh.shape)
