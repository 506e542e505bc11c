"""The memory model of a training stage: what it holds per GPU, and the micro-batch that fits.

Memory per GPU (bytes, P = parameters, n = processes, b = micro-batch, T = sequence, d = width,
L = layers, h = heads, V = vocabulary), with fp32 master weights and AdamW:
- weights 4P, gradients 4P, AdamW moments 8P: all on every GPU with DDP, a 1/n shard each
  with FSDP (plus the bf16 copy of the layers being computed, about two layers at a time);
- activations kept for the backward pass, bf16 without recomputation (Korthikanti et al.
  2022, with sdpa attention, which keeps no T x T scores): 34·L·b·T·d, plus the logits and
  their fp32 loss: b·T·V·(2 + 4 + 4), or only a chunk of positions' worth where one process
  trains an uncompiled model (train/headloss.py).

On a CPU the plan is of resident memory instead (planning/footprint.py).
"""

from __future__ import annotations

from ncalab.config import ExperimentConfig
from ncalab.lazy import torch
from ncalab.planning.compute import model_compute
from ncalab.sources.interface import SOURCES, stage1_tokens
from ncalab.train.headloss import chunk_positions

GIB = 1 << 30
HEADROOM = 0.9  # of the GPU's memory a plan may use (the CUDA context, fragmentation)
# On a CPU, what one forward pass keeps for its backward pass at most: a larger share of the
# batch runs in micro-batches (measured at the same speed; the tiny stage 1 kept 0.55 GB whole).
CPU_ACTIVATIONS = 160 << 20
CPU_ACTIVATION_BYTES = 128  # per layer, position and unit of width: transformers' Llama in fp32, measured


def memory(cfg: ExperimentConfig, vocab: int, seq_len: int, micro: int) -> dict:
    m, n = cfg.model, cfg.runtime.nproc
    c = model_compute(m, vocab, seq_len)
    sharded = cfg.runtime.parallel == "fsdp" and n > 1
    state = 16 * c.params / (n if sharded else 1)
    layer = c.params_no_embeddings / max(m.n_layer, 1)
    act = 34 * m.n_layer * micro * seq_len * m.d_model
    return {"weights, gradients, AdamW (fp32)": state,
            "layers being computed (bf16)": 2 * 2 * layer if sharded else 0.0,
            "activations": act, "logits and loss": logit_positions(cfg, vocab, micro * seq_len) * vocab * 10}


def logit_positions(cfg: ExperimentConfig, vocab: int, positions: int) -> int:
    """Positions whose logits exist at once: a chunk of them where the loss is computed in
    chunks (one process, not compiled or compiled by "auto", which compiles the chunks apart on
    a CPU only: train/headloss.py), else all of a micro-batch's."""
    if cfg.runtime.world == 1 and cfg.runtime.compile is not True:
        return min(positions, chunk_positions(vocab))
    return positions


def stage_shapes(cfg: ExperimentConfig) -> list[tuple[str, object, int, int, int]]:
    """(name, config section, vocabulary, sequence length, tokens) of each training stage of
    stage 1 and stage 2 (both arms of stage 2 have one shape)."""
    text = language_vocab(cfg)
    vocab1 = text if cfg.stage1.source == "text" else SOURCES[cfg.stage1.source].vocab_size(cfg)
    return [("stage1", cfg.stage1, vocab1, cfg.stage1_seq_len, stage1_tokens(cfg)),
            ("stage2 (each arm)", cfg.stage2, text, cfg.stage2.seq_len, cfg.stage2.tokens)]


KNOWN_TOKENIZERS = {"gpt2": 50257, "openai-community/gpt2": 50257}


def language_vocab(cfg: ExperimentConfig) -> int:
    """The language vocabulary, without loading anything (a plan works offline): a BPE of
    data.vocab_size, or a known tokenizer's size."""
    return KNOWN_TOKENIZERS.get(cfg.data.tokenizer or "", cfg.data.vocab_size)


def largest_micro_batch(cfg: ExperimentConfig, section_name: str, vocab: int, seq_len: int,
                        capacity_bytes: float) -> int | None:
    """The largest micro-batch dividing a process's share of the batch whose memory fits
    (what runs with micro_batch_size 0 use on a GPU), or None when even one sequence does not."""
    share = getattr(cfg, section_name).batch_size // cfg.runtime.world
    for micro in sorted((m for m in range(1, share + 1) if share % m == 0), reverse=True):
        if sum(memory(cfg, vocab, seq_len, micro).values()) <= capacity_bytes:
            return micro
    return None


def cpu_micro_batch(cfg: ExperimentConfig, section_name: str, seq_len: int) -> int:
    """The largest micro-batch dividing a process's share of the batch whose activations stay
    within CPU_ACTIVATIONS (what runs with micro_batch_size 0 use on a CPU); at least 1."""
    share = getattr(cfg, section_name).batch_size // cfg.runtime.world
    per_sequence = CPU_ACTIVATION_BYTES * cfg.model.n_layer * seq_len * cfg.model.d_model
    return max((m for m in range(1, share + 1) if share % m == 0 and m * per_sequence <= CPU_ACTIVATIONS), default=1)


def micro_batch_for(ctx, section_name: str, vocab: int, seq_len: int) -> int:
    """The micro-batch a training stage runs: the configured one, or with micro_batch_size 0
    the largest that fits a GPU's memory, or on a CPU the largest whose activations stay
    within CPU_ACTIVATIONS (noted in the log when it splits the batch); 0 runs a process's
    whole share at once."""
    cfg, device = ctx.cfg, ctx.placement.device
    configured = getattr(cfg, section_name).micro_batch_size
    if configured:
        return configured
    if device.type != "cuda":
        micro, share = cpu_micro_batch(cfg, section_name, seq_len), getattr(cfg, section_name).batch_size // cfg.runtime.world
        if micro >= share:
            return 0
        ctx.reporter.note(f"{section_name}: micro-batch {micro} of {share} sequences per process (activations within "
                          f"{CPU_ACTIVATIONS >> 20} MiB; set {section_name}.micro_batch_size to choose)")
        return micro
    capacity = torch.cuda.get_device_properties(device).total_memory * HEADROOM
    micro = largest_micro_batch(cfg, section_name, vocab, seq_len, capacity) or 1
    share = getattr(cfg, section_name).batch_size // cfg.runtime.world
    ctx.reporter.note(f"{section_name}: micro-batch {micro} of {share} sequences per process "
                      f"(the largest that fits {capacity / GIB:.0f} GiB; set {section_name}.micro_batch_size to choose)")
    return micro
