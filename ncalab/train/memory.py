"""What memory this process holds: its resident size, its peak since the last reset (reset at
the start of every stage, so each stage gets its own), the GPU's peak, and freed heap handed
back to the system between stages.

The peak is the kernel's high-water mark (VmHWM in /proc/self/status), which Linux resets when
5 is written to /proc/self/clear_refs. Where that cannot be reset, the peak read is the
process's since it started (an upper bound for the stage).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys

from ncalab.lazy import torch

_before_reset = 0  # the highest peak of this process before its last reset


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def resident() -> int | None:
    """Bytes of this process resident in memory now (None where it cannot be read)."""
    return _status_bytes("VmRSS")


def resident_peak() -> int:
    """The most bytes this process held resident since the last reset_peak (or since it
    started, where the mark cannot be reset)."""
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, kB elsewhere


def lifetime_peak() -> int:
    """The most bytes this process held resident since it started, across resets."""
    return max(_before_reset, resident_peak())


def reset_peak(device=None) -> bool:
    """Start a new peak here: the resident high-water mark and, on a GPU, torch's peak
    allocation. False when the resident mark could not be reset."""
    global _before_reset
    _before_reset = lifetime_peak()
    if device is not None and getattr(device, "type", "") == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def device_peak(device) -> int | None:
    """The most bytes torch held allocated on this GPU since the last reset; None off a GPU."""
    if device is None or getattr(device, "type", "") != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))


def peak_points(device, processes=None) -> dict[str, float]:
    """The stage's peaks as metric values: resident bytes (summed over the processes of a
    distributed job by `processes.sum`, a collective every process calls) and GPU bytes."""
    rss = resident_peak()
    values = {"stage_peak_rss_bytes": float(processes.sum(rss) if processes is not None else rss)}
    gpu = device_peak(device)
    if gpu is not None:
        values["stage_peak_device_bytes"] = float(processes.sum(gpu) if processes is not None else gpu)
    return values


def release() -> bool:
    """Hand the heap's free pages back to the system (glibc's malloc_trim). The allocator
    tuning in train/device.py keeps freed memory for speed; between stages that memory is
    the last stage's peak, which the next stage may never need."""
    path = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(path).malloc_trim
    except (OSError, AttributeError, TypeError):
        return False  # not glibc
    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))
