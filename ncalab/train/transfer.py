"""Transfer after NCA pre-pre-training (spec section 6): new embedding and head for the
language vocabulary, keep the blocks and the final norm; optionally re-initialise attention,
MLP or norm weights too (the paper's ablations)."""

from __future__ import annotations

from transformers import LlamaForCausalLM

from ncalab.experiment.config import ModelConfig
from ncalab.train.model import build_model

# Which parameter names each ablation re-initialises.
_PARTS = {
    "attn": (".self_attn.",),
    "mlp": (".mlp.",),
    "norm": ("input_layernorm", "post_attention_layernorm", "model.norm."),
}


def kept_parameter_names(names, reinit: set[str]) -> list[str]:
    """Names copied from the NCA model: blocks and final norm, minus the re-initialised parts."""
    out = []
    for n in names:
        if n.startswith(("model.embed_tokens.", "lm_head.")):
            continue
        if any(marker in n for part in reinit for marker in _PARTS[part]):
            continue
        out.append(n)
    return out


def transfer(nca_model: LlamaForCausalLM, m: ModelConfig, vocab_size: int, max_len: int, seed: int,
             reinit: set[str] | frozenset = frozenset()) -> tuple[LlamaForCausalLM, list[str]]:
    """A language model whose non-reinitialised blocks come from ``nca_model``.

    The fresh parts are exactly the weights a scratch model with the same seed gets, so the
    NCA and scratch runs differ only in what was transferred.
    """
    model = build_model(m, vocab_size, max_len, seed)
    src = nca_model.state_dict()
    dst = model.state_dict()
    kept = kept_parameter_names(dst.keys(), set(reinit))
    for n in kept:
        dst[n].copy_(src[n].to(dst[n].dtype))
    return model, kept
