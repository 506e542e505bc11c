"""Checkpoints: the model via save_pretrained (safetensors, loadable by
AutoModelForCausalLM.from_pretrained) plus optimiser, scheduler, RNG and data state."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from ncalab.errors import NcalabError

STATE_FILE = "trainer_state.pt"


def save(path: Path, model, optimizer=None, scheduler=None, **extra) -> None:
    """Write atomically: a half-written checkpoint never replaces a good one."""
    path = Path(path)
    hf_logging.disable_progress_bar()  # ours are drawn by the CLI; transformers' would interleave
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    state = {
        "optimizer": optimizer.state_dict() if optimizer else None,
        "scheduler": scheduler.state_dict() if scheduler else None,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        **extra,
    }
    torch.save(state, tmp / STATE_FILE)
    old = path.with_name(path.name + ".old")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)


def load_model(path: Path, device: torch.device | str = "cpu"):
    path = Path(path)
    hf_logging.disable_progress_bar()  # transformers draws "Loading weights" bars on stderr otherwise
    if not (path / "config.json").exists():
        raise NcalabError(f"no checkpoint at {path} (config.json missing)")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt weights surface as many exception types
        raise NcalabError(f"cannot load the checkpoint at {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return model.to(device)


def load_state(path: Path) -> dict:
    f = Path(path) / STATE_FILE
    if not f.exists():
        raise NcalabError(f"checkpoint {path} has no {STATE_FILE}")
    return torch.load(f, weights_only=False, map_location="cpu")


def restore_rng(state: dict) -> None:
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
