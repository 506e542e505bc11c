"""Checkpoints of a training run spread over several processes: torch.distributed.checkpoint
(DCP) writes every process's shard of the weights and the AdamW state in parallel, and the
main process adds the full model (save_pretrained, loadable by
AutoModelForCausalLM.from_pretrained) and the rest of the state as JSON and safetensors.

The layout and its crash safety are those of ncalab.train.checkpoint (`P.tmp` made complete
and marked, then swapped in), so `checkpoint.find` finds the newest complete one whatever
killed the job. DCP reshards on load: a run checkpointed on 8 processes continues on 1 or
on 4, and one checkpointed by a single process continues on several.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
    set_state_dict,
)

from ncalab.durable import fsync_dir, fsync_file
from ncalab.train import checkpoint, state_codec

DCP_FOLDER = "dcp"  # the shards, beside the full model
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model) -> dict | None:
    """The whole model's weights on the main process (a collective under FSDP), None elsewhere."""
    state = get_model_state_dict(model, options=FULL)
    return state if not dist.is_initialized() or dist.get_rank() == 0 else None


def save(path: Path, model, optimizer, scheduler, world, plain_model_factory, **extra) -> None:
    """Every process calls this at the same step. `plain_model_factory()` builds an unwrapped
    model of the same shape on the CPU, for the full save_pretrained copy."""
    path = Path(path)
    tmp, old = checkpoint.variant(path, ".tmp"), checkpoint.variant(path, ".old")
    previous = checkpoint.settle(path) if world.main else None
    world.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp / DCP_FOLDER))
    full = full_model_state(model)
    rng = _gather_rng(world)
    if world.main:
        plain = plain_model_factory()
        plain.load_state_dict(full)
        plain.save_pretrained(tmp, safe_serialization=True)
        state = {"scheduler": scheduler.state_dict(), "rng_per_rank": rng, "world": world.size, **extra}
        data, tensors = state_codec.encode(state)
        save_file(tensors, tmp / checkpoint.TENSORS_FILE)
        for f in (tmp / DCP_FOLDER).iterdir():
            fsync_file(f)
        checkpoint.write_marker(tmp, {"format": checkpoint.FORMAT, "sharded": True,
                                       "seq": (previous[0] if previous else 0) + 1, "state": data})
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        checkpoint.discard(old)
    world.barrier()


def is_sharded(folder: Path) -> bool:
    return (Path(folder) / DCP_FOLDER).is_dir()


def restore(folder: Path, model, optimizer, world) -> dict:
    """Load a checkpoint (sharded or not) into a model and optimiser that may be wrapped for
    several processes; returns the rest of the state (scheduler, counters, data, RNG)."""
    folder = Path(folder)
    if is_sharded(folder):
        state = _read_state(folder)
        model_sd, optim_sd = get_state_dict(model, optimizer)
        box = {"model": model_sd, "optim": optim_sd}
        dcp.load(box, checkpoint_id=str(folder / DCP_FOLDER))
        set_state_dict(model, optimizer, model_state_dict=box["model"], optim_state_dict=box["optim"])
        rngs = state.get("rng_per_rank") or []
        if rngs:
            _set_rng(rngs[world.rank % len(rngs)])
        return state
    # written by a single process: the full weights and optimiser state, spread over the processes
    state = checkpoint.load_state(folder)
    weights = checkpoint.load_model(folder).state_dict()
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))
    set_optimizer_state_dict(model, optimizer, state["optimizer"], options=StateDictOptions(full_state_dict=True))
    checkpoint.restore_rng(state)
    return state


def _read_state(folder: Path) -> dict:
    marker = checkpoint.read_marker(folder)
    return state_codec.decode(marker["state"], load_file(folder / checkpoint.TENSORS_FILE))


def _gather_rng(world) -> list[dict]:
    mine = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    if not world.distributed:
        return [mine]
    out = [None] * world.size
    dist.all_gather_object(out, mine)
    return out


def _set_rng(rng: dict) -> None:
    checkpoint.restore_rng({"rng": rng})
