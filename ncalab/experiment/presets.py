"""Presets (target domain) and scales (compute budget), per NCA_SPEC.md sections 5-6."""

from __future__ import annotations

from ncalab.errors import NcalabError
from ncalab.config import ExperimentConfig, apply_overrides
from ncalab.nca.config import NCAConfig

PRESETS = ("code", "math", "web")
SCALES = ("tiny", "small", "paper")

# Default corpora: code is offline (the Python standard library); math and web are the
# hub datasets the paper used.
DEFAULT_CORPUS = {"code": "python-stdlib", "math": "hf:open-web-math/open-web-math", "web": "hf:Skylion007/openwebtext"}
# Stage-2 learning rate at paper scale per domain (spec section 6).
PAPER_STAGE2_LR = {"code": 2e-4, "math": 5e-4, "web": 5e-4}
PAPER_STAGE2_TOKENS = {"code": 12_600_000_000, "math": 4_200_000_000, "web": 9_000_000_000}

_SCALES: dict[str, dict] = {
    # A laptop: the whole experiment in minutes on 2 CPU cores.
    "tiny": {
        "model": {"n_layer": 4, "d_model": 128, "n_head": 4},
        "nca": {"seq_len": 512},
        "stage1": {"tokens": 1_000_000, "lr": 1e-3, "batch_size": 16, "val_sequences": 32},
        "stage2": {"tokens": 2_000_000, "lr": 1e-3, "batch_size": 16, "seq_len": 256, "eval_tokens": 65_536},
        "data": {"vocab_size": 4096},
    },
    # One GPU, an afternoon.
    "small": {
        "model": {"n_layer": 8, "d_model": 512, "n_head": 8},
        "nca": {"seq_len": 1024},
        "stage1": {"tokens": 40_000_000, "lr": 3e-4, "batch_size": 32, "val_sequences": 256},
        "stage2": {"tokens": 400_000_000, "lr": 5e-4, "batch_size": 64, "seq_len": 1024, "eval_tokens": 1_048_576},
        "data": {"vocab_size": 16384},
        "runtime": {"compile": True},
    },
    # The paper's shape and budgets (24 layers, width 2048, 32 heads, sequence 1024).
    "paper": {
        "model": {"n_layer": 24, "d_model": 2048, "n_head": 32},
        "nca": {"seq_len": 1024},
        "stage1": {"tokens": 164_000_000, "lr": 1e-4, "batch_size": 32, "weight_decay": 0.0, "val_sequences": 1024},
        "stage2": {"batch_size": 512, "seq_len": 1024, "eval_tokens": 4_194_304, "weight_decay": 0.1},
        "data": {"tokenizer": "gpt2"},
        "runtime": {"compile": True},
    },
}


def resolve(preset: str, scale: str, home=None) -> ExperimentConfig:
    """A built-in preset, or a saved rule family (its domain's preset with its band and NCA settings)."""
    if preset not in PRESETS:
        from ncalab.experiment.families import load_families

        families = load_families(home)
        if preset not in families:
            names = list(PRESETS) + sorted(families)
            raise NcalabError(f"unknown preset {preset!r}; choose one of {', '.join(names)}")
        fam = families[preset]
        cfg = resolve(fam["domain"], scale, home)
        saved = {k: v for k, v in fam["nca"].items() if k != "seq_len"}  # the scale sets the length
        cfg.nca = NCAConfig.from_dict({**cfg.nca.to_dict(), **saved})
        cfg.stage1.band = list(fam["band"])
        cfg.family = preset
        return cfg
    if scale not in SCALES:
        raise NcalabError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    cfg = ExperimentConfig(preset=preset, scale=scale, nca=NCAConfig())
    apply_overrides(cfg, _SCALES[scale])
    cfg.data.corpus = DEFAULT_CORPUS[preset]
    if scale == "paper":
        cfg.stage2.lr = PAPER_STAGE2_LR[preset]
        cfg.stage2.tokens = PAPER_STAGE2_TOKENS[preset]
    return cfg
