import os
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

# Keep thread counts predictable on small CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "2")

from ncalab.nca.config import NCAConfig  # noqa: E402


@pytest.fixture
def cfg() -> NCAConfig:
    return NCAConfig()


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def ks_critical(n: int, m: int, alpha: float = 0.001) -> float:
    """Asymptotic critical value of the two-sample KS statistic at level alpha."""
    c = np.sqrt(-0.5 * np.log(alpha / 2))
    return float(c * np.sqrt((n + m) / (n * m)))


MICRO = [
    "--set", "model.n_layer=1", "--set", "model.d_model=32", "--set", "model.n_head=2",
    "--set", "nca.seq_len=128", "--set", "stage1.tokens=16384", "--set", "stage1.batch_size=8",
    "--set", "stage1.val_sequences=8", "--set", "stage2.tokens=32768", "--set", "stage2.seq_len=64",
    "--set", "stage2.batch_size=8", "--set", "stage2.eval_tokens=4096", "--set", "data.vocab_size=512", "--set", "data.val_fraction=0.2",
    "--set", "stage1.icl_sequences=4",
]


@pytest.fixture(scope="session")
def code_corpus(tmp_path_factory) -> Path:  # noqa: D401
    """A slice of the standard library: real code, small enough to tokenize in a second."""
    src = Path(sysconfig.get_paths()["stdlib"])
    dst = tmp_path_factory.mktemp("code")
    for name in ("argparse.py", "ast.py", "inspect.py", "typing.py", "pathlib.py", "subprocess.py", "threading.py",
                 "logging/__init__.py", "email/message.py", "http/client.py", "collections/__init__.py", "json/decoder.py", "json/encoder.py", "textwrap.py", "csv.py", "shlex.py",
                 "fnmatch.py", "glob.py", "heapq.py", "bisect.py", "string.py", "base64.py", "calendar.py",
                 "difflib.py", "pprint.py", "tokenize.py", "dataclasses.py", "enum.py", "functools.py", "gzip.py"):
        shutil.copy(src / name, dst / name.replace("/", "_"))
    return dst


# The one-layer model, NCA stream and Trainer that the trainer and checkpoint tests drive directly.
TINY_MODEL_KW = dict(n_layer=1, d_model=32, n_head=2)
TINY_SEQ_LEN = 128


def tiny_nca_trainer(ckpt_dir, should_stop=None, steps=8):
    """A Trainer of `steps` steps (4 sequences of 128 NCA tokens each) on CPU in fp32, with the
    metric points it logs collected in a list."""
    from ncalab.config import ModelConfig
    from ncalab.nca.bands import Band
    from ncalab.train.batches import NCABatches, nca_validation
    from ncalab.train.device import choose
    from ncalab.train.loop import StageSpec, Trainer
    from ncalab.train.model import build_model

    nca, band = NCAConfig(seq_len=TINY_SEQ_LEN), Band(0.5, 1.0)
    model = build_model(ModelConfig(**TINY_MODEL_KW), nca.vocab_size, nca.seq_len, seed=0)
    spec = StageSpec("t", steps * 4 * 128, 4 * 128, 3e-3, 0.1, 0.1, 0.0, 1.0, 0, n_evals=2)
    val = nca_validation(nca, band, 1, 8, 4)
    points = []
    tr = Trainer(model, spec, choose("cpu", "fp32"), NCABatches(nca, band, 1, 4, batch_rules=64), val,
                 on_metrics=points.extend, checkpoint_dir=ckpt_dir, should_stop=should_stop)
    return tr, points
