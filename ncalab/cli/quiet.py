"""Commands print only ncalab's own output: third-party progress bars, log lines and Python
warnings are silenced here, once, at the start of every command and job (`--verbose` keeps them).

Libraries not imported yet read environment variables when they are (so starting a command
does not pay for importing them); ones already imported are told through their own APIs.
Detached jobs inherit the variables, and NCALAB_VERBOSE when `--verbose` started them.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from ncalab.lazy import datasets, transformers

VERBOSE_ENV = "NCALAB_VERBOSE"
_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DATASETS_VERBOSITY": "error",
    "HF_HUB_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bars follow this one too
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}


def verbose_requested() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_third_party(verbose: bool = False) -> None:
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # jobs started from this command keep their libraries' output
        return
    # Warnings raised from any module but ncalab's (module= is matched at the start of its name).
    warnings.filterwarnings("ignore", module=r"(?!ncalab\b)")
    logging.getLogger().setLevel(logging.ERROR)  # other libraries' log records reach stderr otherwise
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)  # a value the user set stays
    if "transformers" in sys.modules:
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import utils as hub_utils

        hub_utils.disable_progress_bars()
