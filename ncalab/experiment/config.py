"""The experiment config: one nested dataclass, resolved from preset + scale + file + flags.

Every setting the sweeps issue needs is a key here (alphabet, patch, grid, band, NCA token
budget, what transfers, learning rates and warm-up of each stage), so any of them can be set
with ``--set section.key=value`` or a config file.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncalab.errors import NcalabError
from ncalab.nca.bands import Band
from ncalab.nca.config import NCAConfig

REINIT_CHOICES = ("attn", "mlp", "norm")
CONTROL_CHOICES = ("none", "shuffle", "matched_scale")


@dataclass
class ModelConfig:
    n_layer: int = 4
    d_model: int = 128
    n_head: int = 4
    mlp_mult: int = 4  # SwiGLU width = mlp_mult * d_model (spec: 4d)
    rope_theta: float = 10_000.0
    rms_eps: float = 1e-5


@dataclass
class Stage1Config:
    """NCA pre-pre-training."""

    tokens: int = 1_000_000  # NCA token budget
    lr: float = 1e-3
    warmup: float = 0.05  # fraction of the steps
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    batch_size: int = 16
    weight_decay: float = 0.0  # the paper: Adam, no weight decay
    grad_clip: float = 1.0
    eval_every: int = 0  # tokens between validation evals; 0 = 8 evals per stage
    val_sequences: int = 32  # sequences from held-out rules
    band: list[float] | None = None  # [lo, hi]; None = the preset's domain band


@dataclass
class TransferConfig:
    reinit: list[str] = field(default_factory=list)  # any of attn, mlp, norm (embeddings always)
    # Controls that keep each transferred tensor's scale but not what it learned on NCA data:
    # shuffle = its values in a random order; matched_scale = fresh init rescaled to its RMS.
    control: str = "none"
    # Remedies for the warm-start penalty (all off by default, as in the paper):
    shrink: float = 1.0  # shrink-and-perturb (Ash & Adams 2020): w <- shrink * w + perturb * fresh init
    perturb: float = 0.0
    lr_scale: float = 1.0  # stage-2 learning rate of transferred weights, relative to the rest
    freeze: float = 0.0  # fraction of stage 2 during which transferred weights stay frozen


@dataclass
class Stage2Config:
    """Language pre-training, identical for the NCA-initialised and the scratch model."""

    tokens: int = 2_000_000
    lr: float = 1e-3
    warmup: float = 0.05
    min_lr_ratio: float = 0.1
    batch_size: int = 16
    seq_len: int = 256
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 0  # tokens between evals; 0 = 10 evals per stage
    eval_tokens: int = 65_536  # held-out tokens per evaluation


@dataclass
class DataConfig:
    corpus: str = "python-stdlib"
    tokenizer: str | None = None  # a transformers tokenizer name; None = BPE trained on the corpus
    vocab_size: int = 4096
    val_fraction: float = 0.02


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 where supported) | bf16 | fp32
    compile: bool = False
    threads: int = 0  # CPU threads for torch; 0 = all cores


@dataclass
class ExperimentConfig:
    preset: str = "code"  # the target domain
    scale: str = "tiny"
    seed: int = 0
    family: str | None = None  # a saved rule family the NCA settings came from
    model: ModelConfig = field(default_factory=ModelConfig)
    nca: dict = field(default_factory=lambda: NCAConfig(seq_len=512).to_dict())
    stage1: Stage1Config = field(default_factory=Stage1Config)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    # -- derived ---------------------------------------------------------------------------
    def nca_config(self) -> NCAConfig:
        return NCAConfig.from_dict(self.nca)

    def band(self) -> Band:
        from ncalab.nca.bands import domain_band

        b = self.stage1.band
        return Band(float(b[0]), float(b[1])) if b else domain_band(self.preset)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "ExperimentConfig":
        self.nca_config()  # raises on bad NCA settings
        self.band()
        bad = set(self.transfer.reinit) - set(REINIT_CHOICES)
        if bad:
            raise NcalabError(f"--reinit takes {', '.join(REINIT_CHOICES)}; unknown: {', '.join(sorted(bad))}")
        t = self.transfer
        if t.control not in CONTROL_CHOICES:
            raise NcalabError(f"transfer.control must be one of {', '.join(CONTROL_CHOICES)}, got {t.control!r}")
        if t.lr_scale < 0 or t.shrink < 0 or t.perturb < 0 or not 0 <= t.freeze < 1:
            raise NcalabError("transfer.lr_scale, shrink and perturb must be >= 0 and transfer.freeze in [0, 1)")
        m = self.model
        if m.d_model % m.n_head:
            raise NcalabError(f"model.d_model {m.d_model} is not divisible by model.n_head {m.n_head}")
        for name, v in (("stage1.tokens", self.stage1.tokens), ("stage2.tokens", self.stage2.tokens),
                        ("stage1.batch_size", self.stage1.batch_size), ("stage2.batch_size", self.stage2.batch_size),
                        ("stage2.seq_len", self.stage2.seq_len), ("model.n_layer", m.n_layer), ("data.vocab_size", self.data.vocab_size)):
            if v <= 0:
                raise NcalabError(f"{name} must be positive, got {v}")
        if not 0 < self.data.val_fraction < 1:
            raise NcalabError(f"data.val_fraction must be in (0, 1), got {self.data.val_fraction}")
        if self.runtime.dtype not in ("auto", "bf16", "fp32"):
            raise NcalabError(f"runtime.dtype must be auto, bf16 or fp32, got {self.runtime.dtype!r}")
        return self


# -- building from dicts, with unknown keys refused ---------------------------------------------


def _merge(obj: Any, values: dict, path: str = "") -> None:
    """Set dataclass fields from a nested dict; unknown keys are an error."""
    if not isinstance(values, dict):
        raise NcalabError(f"{path or 'config'} must be a table of settings")
    for key, v in values.items():
        where = f"{path}{key}"
        if isinstance(obj, dict):  # the nca section is a plain dict of NCAConfig fields
            if key not in obj:
                raise NcalabError(f"unknown config key {where!r}")
            obj[key] = v
            continue
        if not dataclasses.is_dataclass(obj) or key not in {f.name for f in dataclasses.fields(obj)}:
            raise NcalabError(f"unknown config key {where!r}")
        cur = getattr(obj, key)
        if dataclasses.is_dataclass(cur) or isinstance(cur, dict) and key == "nca":
            _merge(cur, v, where + ".")
        else:
            setattr(obj, key, v)


def apply_overrides(cfg: ExperimentConfig, values: dict) -> ExperimentConfig:
    _merge(cfg, values)
    return cfg


def load_config_file(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise NcalabError(f"config file {p} does not exist")
    try:
        if p.suffix == ".json":
            return json.loads(p.read_text())
        return tomllib.loads(p.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise NcalabError(f"cannot parse {p}: {e}") from None


def _parse_value(text: str, current: Any) -> Any:
    """A --set value, typed like the setting it replaces."""
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise NcalabError(f"expected true or false, got {text!r}")
    if isinstance(current, int):
        try:
            return int(float(text)) if "e" in text.lower() else int(text)
        except ValueError:
            raise NcalabError(f"expected an integer, got {text!r}") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise NcalabError(f"expected a number, got {text!r}") from None
    if isinstance(current, list) or current is None:
        if text.lower() in ("", "none", "[]"):
            return [] if isinstance(current, list) else None
        parts = [p.strip() for p in text.replace(":", ",").split(",") if p.strip()]
        try:
            return [float(p) for p in parts]
        except ValueError:
            return parts
    return text


def parse_set(items: list[str], cfg: ExperimentConfig) -> dict:
    """['stage1.lr=3e-4', 'nca.alphabet=2'] -> nested dict, typed by the current values."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise NcalabError(f"--set takes KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        cur: Any = cfg
        for p in parts:
            if isinstance(cur, dict) and p in cur:
                cur = cur[p]
            elif dataclasses.is_dataclass(cur) and p in {f.name for f in dataclasses.fields(cur)}:
                cur = getattr(cur, p)
            else:
                raise NcalabError(f"unknown config key {key.strip()!r}")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        try:
            node[parts[-1]] = _parse_value(text.strip(), cur)
        except NcalabError as e:
            raise NcalabError(f"--set {key.strip()}: {e}") from None
    return out
