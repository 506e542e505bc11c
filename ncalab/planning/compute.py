"""Compute accounting: parameters, FLOPs per token and FLOPs of a stage, from the model's shape.

FLOPs per token follow nanoGPT's estimate for a forward and backward pass: 6N + 12·L·d·T,
where N counts the weights that multiply (every block, the final norm and the output head;
the input embedding is a lookup, not a matmul), L is the number of layers, d the width and T
the sequence length (the attention scores and their use, at full length).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ncalab.config import ModelConfig


@dataclass(frozen=True)
class ModelCompute:
    params: int  # every parameter, embeddings and head included
    params_no_embeddings: int  # blocks and final norm
    flops_per_token: int  # forward + backward, per trained token

    def to_dict(self) -> dict:
        return asdict(self)


def model_compute(m: ModelConfig, vocab_size: int, seq_len: int) -> ModelCompute:
    """Counts of the Llama-style model of ncalab.train.model (untied embedding and head,
    no biases, as many key/value heads as query heads), without building it."""
    d, ff = m.d_model, m.mlp_mult * m.d_model
    per_layer = 4 * d * d + 3 * d * ff + 2 * d  # q, k, v, o; gate, up, down; two RMSNorms
    blocks = m.n_layer * per_layer + d  # + the final norm
    head = vocab_size * d
    flops = 6 * (blocks + head) + 12 * m.n_layer * d * seq_len
    return ModelCompute(params=blocks + 2 * head, params_no_embeddings=blocks, flops_per_token=flops)
