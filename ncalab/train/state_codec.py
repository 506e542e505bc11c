"""The trainer's state as JSON plus tensors, so that reading a checkpoint never runs code.

Optimiser and scheduler state dicts, RNG states, counters and data positions are nested
dicts, lists and tuples of numbers, strings, tensors and numpy arrays. `encode` splits such a
value into JSON-able data (each tensor replaced by a reference, tuples and non-string keys
marked so they come back as they were) and the tensors, for a safetensors file; `decode`
reverses it exactly. `read_legacy` reads the pickled state of earlier versions with torch's
weights-only loader, which refuses every global that is not plain data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ncalab.errors import NcalabError

TENSOR, TUPLE, ITEMS, ARRAY = "$tensor", "$tuple", "$items", "$array"
_ARRAY_KINDS = "biuf"  # numbers only: an object array could hold anything


def encode(value) -> tuple[object, dict[str, torch.Tensor]]:
    """(JSON-able data, tensors by name) for a nested state value."""
    tensors: dict[str, torch.Tensor] = {}

    def enc(v):
        if isinstance(v, torch.Tensor):
            key = str(len(tensors))
            tensors[key] = v.detach().to("cpu").contiguous()
            return {TENSOR: key}
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in _ARRAY_KINDS:
                raise TypeError(f"a checkpoint holds numeric arrays only, not {v.dtype}")
            return {ARRAY: v.tolist(), "dtype": v.dtype.str}
        if isinstance(v, np.generic):
            return enc(v.item())
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, tuple):
            return {TUPLE: [enc(x) for x in v]}
        if isinstance(v, list):
            return [enc(x) for x in v]
        if isinstance(v, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in v):
                return {k: enc(x) for k, x in v.items()}
            return {ITEMS: [[enc(k), enc(x)] for k, x in v.items()]}  # e.g. the optimiser's int keys
        raise TypeError(f"a checkpoint cannot hold a {type(v).__name__}")

    return enc(value), tensors


def decode(data, tensors: dict[str, torch.Tensor]):
    """The value `encode` was given. Raises ValueError on data it did not write."""

    def dec(v):
        if isinstance(v, list):
            return [dec(x) for x in v]
        if not isinstance(v, dict):
            return v
        if TENSOR in v:
            if v[TENSOR] not in tensors:
                raise ValueError(f"tensor {v[TENSOR]!r} is missing")
            return tensors[v[TENSOR]]
        if TUPLE in v:
            return tuple(dec(x) for x in v[TUPLE])
        if ITEMS in v:
            return {dec(k): dec(x) for k, x in v[ITEMS]}
        if ARRAY in v:
            dtype = np.dtype(v["dtype"])
            if dtype.kind not in _ARRAY_KINDS:
                raise ValueError(f"array of {dtype}")
            return np.array(v[ARRAY], dtype=dtype)
        return {k: dec(x) for k, x in v.items()}

    try:
        return dec(data)
    except (TypeError, KeyError, RecursionError) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from None


def _legacy_globals() -> list:
    """What the pickled state of earlier versions may name besides torch's own plain data:
    numpy arrays and scalars (numpy's RNG state), under numpy 1's and numpy 2's module names.
    The functions come from numpy's public pickle protocol, not from its private modules."""
    rebuild_array, rebuild_scalar = np.zeros(0).__reduce__()[0], np.float64(0).__reduce__()[0]
    numeric = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
               "float64")
    out: list = [np.ndarray, np.dtype, *{type(np.dtype(name)) for name in numeric}]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out += [(rebuild_array, f"{module}._reconstruct"), (rebuild_scalar, f"{module}.scalar")]
    return out


def _allowed_names() -> set[str]:
    return {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in _legacy_globals()}


def check_legacy(file: Path) -> None:
    """Raise unless the `trainer_state.pt` pickle of an earlier version holds plain data only:
    its globals are listed without loading anything."""
    folder = file.parent
    if torch.__version__ < "2.6":  # earlier weights-only loaders could be made to run code
        raise NcalabError(f"checkpoint {folder} is in an earlier ncalab's format, which needs torch >= 2.6 to "
                          f"read safely (this is {torch.__version__}); upgrade torch or delete {folder.parent}")
    try:
        unsafe = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(file)) - _allowed_names())
    except Exception as e:  # noqa: BLE001 - a damaged file surfaces as many exception types
        raise _unreadable(file, e) from None
    if unsafe:
        raise NcalabError(f"refused {file}: loading it would run code ({', '.join(unsafe)[:200]}), so ncalab did "
                          f"not write it; nothing was loaded. Delete {folder.parent} to train this stage from scratch")


def read_legacy(file: Path) -> dict:
    """The `trainer_state.pt` pickle of an earlier version, read without running code: its
    globals are checked first, and torch's weights-only loader enforces the same."""
    check_legacy(file)
    try:
        with torch.serialization.safe_globals(_legacy_globals()):
            state = torch.load(file, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise _unreadable(file, e) from None
    if not isinstance(state, dict):
        raise NcalabError(f"{file} is not a trainer state; delete {file.parent.parent} to train this stage from scratch")
    return state


def _unreadable(file: Path, e: Exception) -> NcalabError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return NcalabError(f"cannot read {file}: {type(e).__name__}: {first[:200]}; "
                       f"delete {file.parent.parent} to train this stage from scratch")
