"""How much memory an experiment's job holds resident at its peak: predicted from its config
(`ncalab run --plan --gpu cpu`, and the queue before any run of its shape has finished), and
remembered from the stages that ran (the queue's guess for later runs of the same shape).

The prediction, per process of a CPU job, in bytes (P parameters, b the micro-batch, T the
sequence length, d the width, L the layers, V the vocabulary):
- the process itself: Python, torch, transformers, the NCA engine and the store, PROCESS_BYTES;
- weights, gradients and AdamW moments in fp32, 16P, and the models kept for the next stage;
- activations kept for the backward pass in fp32, 128·L·b·T·d (measured: about twice plan.py's
  34 bytes in bf16, as transformers' Llama keeps its rotary and MLP products too), with b the
  micro-batch a CPU process runs (plan.cpu_micro_batch);
- the logits of one chunk of positions and their loss (train/headloss.py);
- the slack of the allocator, which keeps freed blocks for speed (train/device.py): HEAP_SLACK
  times the training memory.
Calibrated on the tiny experiment (docs/benchmarks.md#memory).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from ncalab.config import ExperimentConfig
from ncalab.planning.compute import model_compute
from ncalab.planning.memory import CPU_ACTIVATION_BYTES, cpu_micro_batch, logit_positions, stage_shapes

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store, StoreReader

MIB = 1 << 20
PROCESS_BYTES = 560 * MIB  # measured: imports and the engine's compiled kernels, before any model
CUDA_HOST_BYTES = 1024 * MIB  # a rough figure for the CUDA libraries in host memory; a stored peak replaces it
HEAP_SLACK = 0.5  # measured: freed blocks the tuned heap holds, as a share of the training memory


def resident(cfg: ExperimentConfig, vocab: int, seq_len: int, micro: int) -> dict:
    """The parts of one process's resident memory while it trains a stage of this shape."""
    m = cfg.model
    c = model_compute(m, vocab, seq_len)
    training = {"weights, gradients, AdamW (fp32)": 16.0 * c.params + 8.0 * c.params,  # + the models kept
                "activations (fp32)": float(CPU_ACTIVATION_BYTES * m.n_layer * micro * seq_len * m.d_model),
                "logits and loss": logit_positions(cfg, vocab, micro * seq_len) * vocab * 10.0}
    return {"the process (Python, torch, libraries)": float(PROCESS_BYTES), **training,
            "allocator slack (freed blocks kept)": HEAP_SLACK * sum(training.values())}


def predicted_peak(cfg: ExperimentConfig, on_gpu: bool = False) -> float:
    """The job's predicted resident peak in bytes: its largest training stage, on every
    process it runs. On a GPU the activations live there: a process holds the libraries and
    CPU copies of the weights."""
    peaks = []
    for name, section, vocab, length, _ in stage_shapes(cfg):
        if on_gpu:
            peaks.append(PROCESS_BYTES + CUDA_HOST_BYTES + 8.0 * model_compute(cfg.model, vocab, length).params)
            continue
        micro = section.micro_batch_size or cpu_micro_batch(cfg, name.split()[0], length)
        peaks.append(sum(resident(cfg, vocab, length, micro).values()))
    return max(peaks) * cfg.runtime.nproc


# The settings that decide how much memory a job takes (not its seed, budgets or rates).
SHAPE = {"model": None, "nca": None, "data": ("corpus", "tokenizer", "vocab_size"),
         "stage1": ("source", "corpus", "batch_size", "micro_batch_size", "val_sequences", "icl_sequences", "stream"),
         "stage2": ("batch_size", "seq_len", "micro_batch_size", "eval_tokens"),
         "runtime": ("device", "dtype", "compile", "nproc", "nodes", "parallel"), "eval": ("tasks",)}


def shape_key(cfg: ExperimentConfig) -> str:
    """Experiments with the same key take the same memory, whatever their seeds and rates."""
    d = cfg.to_dict()
    shape = {k: d[k] if keep is None else {f: d[k].get(f) for f in keep} for k, keep in SHAPE.items()}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def remember(store: Store, cfg: ExperimentConfig, peak: float) -> None:
    """Keep the largest resident peak seen for this shape (the queue's guess for the next)."""
    key = f"peak:{shape_key(cfg)}"
    known = store.get_meta(key)
    if not known or float(known) < peak:
        store.set_meta(key, str(int(peak)))


def expected_peak(store: StoreReader, cfg: ExperimentConfig, on_gpu: bool = False) -> float:
    """What a job of this config will hold at its peak: the largest peak stored for its shape,
    else the prediction."""
    known = store.get_meta(f"peak:{shape_key(cfg)}")
    return float(known) if known else predicted_peak(cfg, on_gpu)


def machine_memory() -> float:
    """The memory of this machine, or of the container (cgroup) it runs in when that is less."""
    import psutil

    total = float(psutil.virtual_memory().total)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, float(text))
    return total
