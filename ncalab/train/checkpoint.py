"""Checkpoints: the model via save_pretrained (safetensors, loadable by
AutoModelForCausalLM.from_pretrained) plus optimiser, scheduler, RNG and data state as
safetensors and JSON. Nothing here unpickles: reading a checkpoint never runs code.

A checkpoint `P` is written as `P.tmp`, made durable, and only then swapped in (`P` ->
`P.old`, `P.tmp` -> `P`, `P.old` deleted). Its `trainer_state.json` is written last and lists
the size of every other file, so a folder with a valid one is complete. A process killed at
any instruction leaves a complete checkpoint among `P`, `P.tmp` and `P.old`: `find` returns
the newest (each save numbers itself one past the checkpoint it replaces), and the next
save first puts it back in place as `P`. At most two copies exist at any time.

Tests kill the saving process at each step: NCALAB_CHECKPOINT_KILL_AT names a step of
SAVE_STEPS at which `save` sends itself SIGKILL.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from ncalab.durable import fsync_dir, fsync_file
from ncalab.errors import NcalabError
from ncalab.train import state_codec

STATE_FILE = "trainer_state.json"  # written last: its presence marks a complete checkpoint
TENSORS_FILE = "trainer_state.safetensors"
LEGACY_STATE_FILE = "trainer_state.pt"  # the pickle of earlier versions, read by state_codec.read_legacy
FORMAT = 1
KILL_AT = "NCALAB_CHECKPOINT_KILL_AT"
SAVE_STEPS = ("begin", "settled", "model-written", "tensors-written", "state-partial", "complete",
              "old-moved", "new-moved", "old-deleted")
_VARIANTS = ("", ".tmp", ".old")  # ties between equally new checkpoints go to the first


def _step(name: str) -> None:
    if os.environ.get(KILL_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def save(path: Path, model, optimizer=None, scheduler=None, **extra) -> None:
    """Write a checkpoint at `path` such that a crash at any point leaves a complete one."""
    path = Path(path)
    hf_logging.disable_progress_bar()  # ours are drawn by the CLI; transformers' would interleave
    _step("begin")
    previous = settle(path)
    _step("settled")
    tmp, old = variant(path, ".tmp"), variant(path, ".old")
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        _step("model-written")
        state = {
            "optimizer": optimizer.state_dict() if optimizer else None,
            "scheduler": scheduler.state_dict() if scheduler else None,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            **extra,
        }
        data, tensors = state_codec.encode(state)
        save_file(tensors, tmp / TENSORS_FILE)
        _step("tensors-written")
        write_marker(tmp, {"format": FORMAT, "seq": (previous[0] if previous else 0) + 1, "state": data})
    except Exception as e:  # noqa: BLE001 - safetensors reports a full disk as its own error type
        why = no_space(e)
        if why is None:
            raise
        discard(tmp)  # the partial copy: room back, and the previous checkpoint stays the newest
        raise NcalabError(f"no space left to write the checkpoint {path} ({why}); the previous checkpoint is kept: "
                          "free space, then `ncalab runs resume` continues from it") from None
    _step("complete")
    if path.exists():
        os.replace(path, old)
    _step("old-moved")
    os.replace(tmp, path)
    fsync_dir(path.parent)
    _step("new-moved")
    discard(old)
    _step("old-deleted")


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, a file size limit


def no_space(e: BaseException) -> str | None:
    """Why a write failed for want of room, or None for any other failure."""
    if isinstance(e, OSError) and e.errno in _NO_SPACE:
        return e.strerror or os.strerror(e.errno)
    return next((os.strerror(c) for c in _NO_SPACE if os.strerror(c) in str(e)), None)


def find(path: Path) -> Path | None:
    """The newest complete checkpoint written for `path` (`path` itself, or the `.tmp` or
    `.old` copy an interrupted save left), or None when there is none. Raises when the only
    candidates are damaged rather than incomplete: a stage must not restart silently."""
    best, damaged = None, []
    for folder in (variant(Path(path), v) for v in _VARIANTS):
        try:
            mark = _mark(folder)
        except NcalabError as e:
            damaged.append(e)
            continue
        if mark is not None and (best is None or mark[0] > best[0]):
            best = (mark[0], folder)
    if best is None and damaged:
        raise damaged[0]
    return None if best is None else best[1]


def is_legacy(folder: Path) -> bool:
    """Written by an earlier version (a pickled trainer_state.pt, no trainer_state.json)."""
    folder = Path(folder)
    return not (folder / STATE_FILE).exists() and (folder / LEGACY_STATE_FILE).exists()


def check_readable(folder: Path) -> None:
    """Raise the error `load_state` would, without reading the tensors: a checkpoint that
    would run code when loaded, or one that is damaged."""
    folder = Path(folder)
    if is_legacy(folder):
        state_codec.check_legacy(folder / LEGACY_STATE_FILE)
        return
    _mark(folder)
    try:
        with safe_open(folder / TENSORS_FILE, framework="pt") as f:
            f.keys()
    except Exception as e:  # noqa: BLE001 - a damaged file surfaces as many exception types
        raise _damaged(folder, f"{TENSORS_FILE}: {type(e).__name__}") from None


def load_model(path: Path, device: torch.device | str = "cpu"):
    path = Path(path)
    hf_logging.disable_progress_bar()  # transformers draws "Loading weights" bars on stderr otherwise
    if not (path / "config.json").exists():
        raise NcalabError(f"no checkpoint at {path} (config.json missing)")
    try:
        # safetensors only (a pickled pytorch_model.bin is never read), and no code from the folder
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, use_safetensors=True,
                                                     trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - corrupt weights surface as many exception types
        raise NcalabError(f"cannot load the checkpoint at {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return model.to(device)


def load_state(path: Path) -> dict:
    """Optimiser, scheduler, RNG, counters and data position of the checkpoint in `path`."""
    folder = Path(path)
    if is_legacy(folder):
        return state_codec.read_legacy(folder / LEGACY_STATE_FILE)
    marker = read_marker(folder)
    if marker is None:
        raise NcalabError(f"checkpoint {path} has no {STATE_FILE}")
    try:
        tensors = load_file(folder / TENSORS_FILE)
    except Exception as e:  # noqa: BLE001
        raise _damaged(folder, f"{TENSORS_FILE}: {type(e).__name__}") from None
    try:
        state = state_codec.decode(marker["state"], tensors)
    except ValueError as e:
        raise _damaged(folder, str(e)) from None
    if not isinstance(state, dict):
        raise _damaged(folder, "its state is not a mapping")
    return state


def restore_rng(state: dict) -> None:
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


# ---- the layout on disk ------------------------------------------------------------------


def variant(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def settle(path: Path) -> tuple[int, Path] | None:
    """Before a save: put the newest complete checkpoint back at `path` if an interrupted
    save left it elsewhere, and delete the rest. Each step leaves it findable."""
    newest = find(path)
    if newest is not None and newest != path:
        discard(path)  # incomplete or older
        os.replace(newest, path)
        fsync_dir(path.parent)
    for v in _VARIANTS[1:]:
        discard(variant(path, v))
    return None if newest is None else (_mark(path)[0], path)


def discard(folder: Path) -> None:
    """Delete a folder, its completeness marker first: a deletion cut short leaves a folder
    that no longer looks complete."""
    if not folder.exists():
        return
    for marker in (STATE_FILE, LEGACY_STATE_FILE):
        (folder / marker).unlink(missing_ok=True)
    shutil.rmtree(folder)


def write_marker(folder: Path, marker: dict) -> None:
    """Make every file in `folder` durable, then write the marker listing their sizes."""
    files = {}
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        fsync_file(f)
        files[f.name] = f.stat().st_size
    part = folder / (STATE_FILE + ".part")
    with open(part, "w") as fh:
        json.dump({**marker, "files": files}, fh)
        fh.flush()
        _step("state-partial")
        os.fsync(fh.fileno())
    os.replace(part, folder / STATE_FILE)
    fsync_dir(folder)


def read_marker(folder: Path) -> dict | None:
    """The marker of a complete new-format checkpoint, None when there is none (a save cut
    short), or an error when it is there but the folder does not match it."""
    f = folder / STATE_FILE
    if not f.exists():
        return None
    try:
        marker = json.loads(f.read_text())
        files, seq = marker["files"], int(marker["seq"])
        if not isinstance(files, dict) or marker.get("format") != FORMAT or "state" not in marker:
            raise ValueError("not an ncalab checkpoint marker")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise _damaged(folder, f"{STATE_FILE}: {e}") from None
    for name, size in files.items():
        p = folder / str(name)
        if p.parent != folder or not p.is_file() or p.stat().st_size != size:
            raise _damaged(folder, f"{name} is missing or has the wrong size")
    marker["seq"] = seq
    return marker


def _mark(folder: Path) -> tuple[int, bool] | None:
    """(save number, legacy) of a complete checkpoint in `folder`, or None."""
    marker = read_marker(folder)
    if marker is not None:
        return marker["seq"], False
    weights = (folder / "model.safetensors").exists() or (folder / "model.safetensors.index.json").exists()
    if (folder / LEGACY_STATE_FILE).exists() and (folder / "config.json").exists() and weights:
        return 0, True  # earlier versions swapped in only complete folders; any of ours is newer
    return None


def _damaged(folder: Path, why: str) -> NcalabError:
    return NcalabError(f"checkpoint {folder} is damaged ({why}); delete {folder.parent} to train this stage "
                       "from scratch")


