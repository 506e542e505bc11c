"""The heavy third-party libraries, each imported on its first use rather than with the module
that names it, so `ncalab --help`, `ncalab runs list` and the TUI's first frame start in a
fraction of a second.

A module writes `from ncalab.lazy import torch, np` at its top and uses `torch.x` as usual: the
name is a stand-in that imports the real library the first time one of its attributes is read,
then hands every attribute on. A module that needs a library while it is being imported (a
class deriving from `torch.nn.Module`, a numba `@njit` at module level, a numpy constant as a
default) imports the library itself, at its top; the quick commands never import such a module.

ncalab's own modules are imported at the top of the modules that use them (tests/test_layers.py
checks that); this file is the one list of what is imported late, and why.
"""

from __future__ import annotations

import importlib
import threading
import types
from typing import TYPE_CHECKING, Any

# name -> what importing it costs (seconds on the lab's 2-core machines, measured alone)
HEAVY = {
    "torch": "about 2 s, and the CUDA libraries' memory",
    "numpy": "0.1 s, and it is the first thing torch, scipy and pandas load",
    "transformers": "1 s (it loads torch on the first model class)",
    "datasets": "1.5 s (pyarrow, pandas, fsspec)",
    "matplotlib": "0.4 s, more with its font cache cold",
    "matplotlib.figure": "the figures' classes, not loaded by importing matplotlib",
    "matplotlib.ticker": "axis formatting (matplotlib loads it too; named for the stand-in)",
    "matplotlib.backends.backend_svg": "the SVG writer, not loaded by importing matplotlib",
    "plotext": "0.1 s, only the terminal plots need it",
    "pyarrow": "0.25 s",
    "pyarrow.parquet": "the Parquet reader and writer, not loaded by importing pyarrow",
    "tokenizers": "its Rust extension, only the tokenizer's training needs it",
    "scipy": "0.15 s for the package, more for each submodule",
    "scipy.optimize": "0.2 s more, and numpy; only fitting a scaling law needs it",
    "scipy.stats": "0.3 s more, and numpy; only the intervals and tests of gains need it",
    "sqlalchemy": "0.3 s; the store's quick read path (ncalab.store.quick) does without it",
    "mlflow": "3 s, only when tracking to MLflow (an optional extra)",
    "numba": "0.3 s, and it compiles the NCA engine's kernels on their first call",
    "math_verify": "0.5 s (sympy); optional (the eval extra), GSM8K's answer check does without it",
}


class LazyModule(types.ModuleType):
    """A module's stand-in: the first attribute read imports it (once, under a lock), every read
    then goes to the real module. importlib.util.LazyLoader is not used: in Python 3.11 two
    threads reading a lazily loaded module's attribute at once can both run its loading."""

    def __init__(self, name: str):
        super().__init__(name)
        object.__setattr__(self, "_lazy_lock", threading.Lock())
        object.__setattr__(self, "_lazy_module", None)

    def _load(self) -> types.ModuleType:
        module = object.__getattribute__(self, "_lazy_module")
        if module is None:
            with object.__getattribute__(self, "_lazy_lock"):
                module = object.__getattribute__(self, "_lazy_module")
                if module is None:
                    module = importlib.import_module(self.__name__)
                    object.__setattr__(self, "_lazy_module", module)
        return module

    def __getattr__(self, name: str) -> Any:  # only names the stand-in itself lacks
        return getattr(self._load(), name)

    def __setattr__(self, name: str, value: Any) -> None:  # e.g. a test's monkeypatch
        setattr(self._load(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._load(), name)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        loaded = object.__getattribute__(self, "_lazy_module") is not None
        return f"<lazy module {self.__name__!r}{'' if loaded else ' (not imported yet)'}>"


__all__ = ["LazyModule", "datasets", "loaded", "math_verify", "matplotlib", "mpl_figure", "mpl_svg", "mpl_ticker",
           "np", "pa", "plotext", "pq", "scipy", "scipy_optimize", "scipy_stats", "tokenizers", "torch", "transformers"]


def loaded(*modules: types.ModuleType) -> None:
    """Import the stand-ins' libraries now (e.g. before forking processes that will use them)."""
    for module in modules:
        if isinstance(module, LazyModule):
            module._load()


if TYPE_CHECKING:  # the checkers see the real modules (exported by __all__)
    import datasets
    import math_verify
    import matplotlib
    import matplotlib.backends.backend_svg as mpl_svg
    import matplotlib.figure as mpl_figure
    import matplotlib.ticker as mpl_ticker
    import numpy as np
    import plotext
    import pyarrow as pa
    import pyarrow.parquet as pq
    import scipy
    import scipy.optimize as scipy_optimize
    import scipy.stats as scipy_stats
    import tokenizers
    import torch
    import transformers
else:
    datasets = LazyModule("datasets")
    matplotlib = LazyModule("matplotlib")
    math_verify = LazyModule("math_verify")
    mpl_figure = LazyModule("matplotlib.figure")
    mpl_svg = LazyModule("matplotlib.backends.backend_svg")
    mpl_ticker = LazyModule("matplotlib.ticker")
    np = LazyModule("numpy")
    plotext = LazyModule("plotext")
    pa = LazyModule("pyarrow")
    pq = LazyModule("pyarrow.parquet")
    scipy = LazyModule("scipy")
    scipy_optimize = LazyModule("scipy.optimize")
    scipy_stats = LazyModule("scipy.stats")
    tokenizers = LazyModule("tokenizers")
    torch = LazyModule("torch")
    transformers = LazyModule("transformers")
