"""The Llama-style decoder of the spec (section 5), built with transformers."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from ncalab.config import ModelConfig


def llama_config(m: ModelConfig, vocab_size: int, max_len: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=m.d_model, intermediate_size=m.mlp_mult * m.d_model,
        num_hidden_layers=m.n_layer, num_attention_heads=m.n_head, num_key_value_heads=m.n_head,
        max_position_embeddings=max_len, rope_theta=m.rope_theta, rms_norm_eps=m.rms_eps,
        attention_dropout=m.attention_dropout,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )


def build_model(m: ModelConfig, vocab_size: int, max_len: int, seed: int) -> LlamaForCausalLM:
    """A freshly initialised model; the same seed gives the same weights."""
    cfg = llama_config(m, vocab_size, max_len)
    cfg._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    return model


def blank_like(model) -> LlamaForCausalLM:
    """A model of the same shape, on the CPU, to load saved weights into (its own values are not used)."""
    return AutoModelForCausalLM.from_config(model.config)


def count_params(model: torch.nn.Module, embeddings: bool = True) -> int:
    n = sum(p.numel() for p in model.parameters())
    if not embeddings:
        n -= model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    return n
