"""Where and how a run computes: device, precision, threads, allocator."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from dataclasses import dataclass

import torch

from ncalab.errors import NcalabError


@dataclass
class Placement:
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None for plain fp32

    @property
    def label(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return f"{self.device} ({name}), {'bf16 autocast' if self.amp_dtype else 'fp32'}"

    def autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def _cpu_bf16_works() -> bool:
    """bf16 autocast on this CPU: run a tiny matmul instead of trusting flags."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a = torch.randn(8, 8)
            out = a @ a
        return out.dtype == torch.bfloat16 and bool(torch.isfinite(out).all())
    except Exception:  # noqa: BLE001
        return False


@functools.cache  # the CPU does not change under a process; each stage and reuse key asks
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX). Without it torch
    emulates bf16 matmuls, measured 45x slower than fp32 on an AVX2 EPYC, so `auto` then
    trains in fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False  # not Linux: fp32 unless bf16 is asked for
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose(device: str = "auto", dtype: str = "auto") -> Placement:
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise NcalabError(f"unknown device {device!r}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise NcalabError(f"device {device} asked for, but no CUDA GPU is visible")
    if dtype == "fp32":
        amp = None
    else:
        ok = torch.cuda.is_bf16_supported() if dev.type == "cuda" else _cpu_bf16_works()
        if dtype == "bf16" and not ok:
            raise NcalabError(f"bf16 is not supported on {dev}; use --set runtime.dtype=fp32")
        # auto: bf16 where it is fast (GPUs, CPUs with bf16 instructions); explicit bf16 anywhere it works
        fast = dev.type == "cuda" or dtype == "bf16" or cpu_has_native_bf16()
        amp = torch.bfloat16 if ok and fast else None
    return Placement(dev, amp)


def tune_glibc_malloc() -> bool:
    """Stop glibc from mmap/munmap-ing every large tensor (seen to cost ~40% of CPU time in
    training loops): keep freed memory in the heap. Same effect as MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=1e11 MALLOC_TOP_PAD_=1e9, applied at run time via mallopt."""
    if os.environ.get("NCALAB_NO_MALLOC_TUNING") or not hasattr(ctypes, "CDLL"):
        return False
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False  # not glibc
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
    ok = mallopt(m_mmap_max, 0) == 1
    ok &= mallopt(m_trim_threshold, 2**31 - 1) == 1  # int argument: the largest it takes
    ok &= mallopt(m_top_pad, 1 << 30) == 1
    return bool(ok)


def set_threads(threads: int) -> None:
    """The CPU threads of the calling thread's torch ops and numba kernels (both keep the count
    per calling thread: a count set in one thread does not reach another)."""
    if threads > 0:
        numba = sys.modules.get("numba")  # only where the NCA kernels are in use
        if numba is not None:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        # torch last: where numba's threading layer is OpenMP in the same runtime, its count
        # is the calling thread's OpenMP count too, and torch's must be the one that stays
        torch.set_num_threads(threads)


# The thread count another thread asks the training thread to take (0: none asked). torch and
# numba keep their counts per calling thread, so the job's governor, which runs in a thread of
# its own, cannot set them for the thread that trains: it asks, and the loop applies it
# between steps (apply_requested_threads).
_requested = [0]


def request_threads(threads: int) -> None:
    _requested[0] = int(threads)


def apply_requested_threads() -> None:
    """Take the thread count last asked for, if it differs; cheap enough to call every step."""
    want = _requested[0]
    if want > 0 and want != torch.get_num_threads():
        set_threads(want)


def measured_matmul_flops(placement: Placement | None = None, size: int = 1024, seconds: float = 1.0) -> float:
    """This device's sustained matmul rate in FLOP/s at the precision training uses there
    (bf16 autocast or fp32), for MFU on machines with no published peak."""
    import time

    placement = placement or choose()
    dev = placement.device
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)
    with placement.autocast():
        a @ b  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            n += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()
    return 2 * size**3 * n / (time.perf_counter() - t0)
