"""Whether a stage's training loop is compiled: `runtime.compile` is true, false or "auto".

"auto" compiles where torch.compile was measured to pay (docs/benchmarks.md#training): one
process on a CPU that computes bf16 in hardware, training in bf16, a C++ compiler at hand for
inductor's kernels, and a stage long enough to repay the compiling. On the 2-core development
machine (Zen 4, AVX512-BF16) compiling took 24 s the first time (2 s from inductor's cache) and
made each step 1.38x faster (2.39x a plain fp32 loop instead of 1.73x), so it repays itself
after about 90 s of training: about 600k tokens of the tiny model there. Below
AUTO_MIN_TOKENS it stays off, as it does on CPUs without native bf16 (compiled fp32 measured
1.12-1.28x, not worth a compile per run), with several processes, and on GPUs (not measured
end to end by ncalab; `runtime.compile=true` asks for it there).
"""

from __future__ import annotations

import os
import shutil

import torch

from ncalab.train.device import Placement, cpu_has_native_bf16

AUTO_MIN_TOKENS = 1_000_000  # the tiny preset's stage 1; every stage of a larger run


def compiles(setting: bool | str, placement: Placement, processes: int, tokens: int) -> bool:
    """The resolved `runtime.compile` of a stage of `tokens` training tokens."""
    if setting != "auto":
        return bool(setting)
    return auto_reason(placement, processes, tokens) is None


def auto_reason(placement: Placement, processes: int, tokens: int) -> str | None:
    """Why "auto" leaves a stage uncompiled, or None when it compiles it."""
    if placement.device.type != "cpu":
        return "not measured on GPUs (runtime.compile=true compiles there)"
    if processes > 1:
        return "several processes"
    if placement.amp_dtype != torch.bfloat16 or not cpu_has_native_bf16():
        return "this CPU has no bf16 instructions (compiled fp32 gained too little)"
    if tokens < AUTO_MIN_TOKENS:
        return f"a stage of {tokens:,} tokens (compiling pays from about {AUTO_MIN_TOKENS:,})"
    if cxx_compiler() is None:
        return "no C++ compiler for inductor's kernels (install g++ or clang, or set CXX)"
    return None


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would build CPU kernels with ($CXX, else g++, c++, clang++)."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None
