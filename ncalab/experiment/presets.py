"""Presets (target domain) and scales (compute budget), per NCA_SPEC.md sections 5-6."""

from __future__ import annotations

from ncalab.config import ExperimentConfig, apply_overrides
from ncalab.config.sections import PROBE_NAMES
from ncalab.errors import NcalabError
from ncalab.nca.config import NCAConfig
from ncalab.sources.families import load_families

PRESETS = ("code", "math", "web")
SCALES = ("tiny", "small", "paper")

# Default corpora: code is offline (the Python standard library); math and web are the
# hub datasets the paper used.
DEFAULT_CORPUS = {"code": "python-stdlib", "math": "hf:open-web-math/open-web-math", "web": "hf:Skylion007/openwebtext"}
# Stage 2 at paper scale, per domain: the paper's scripts (scripts/pretraining/ft_codeparrot.sh
# for code, owt_ft.sh for web; math has no released script and takes web's settings with the
# spec's rate). AdamW at torch's default betas, a cosine to 0; code warms up for 750 steps.
PAPER_STAGE2 = {
    "code": {"lr": 2e-4, "warmup": 750.0, "weight_decay": 0.0, "tokens": 12_600_000_000},
    "math": {"lr": 5e-4, "warmup": 0.1, "weight_decay": 1e-4, "tokens": 4_200_000_000},
    "web": {"lr": 5e-4, "warmup": 0.1, "weight_decay": 1e-4, "tokens": 9_000_000_000},
}
# The paper's stage-2 corpus and tokenizer per domain (src/language_train.py, src/openwebtext_pt.py).
PAPER_DATA = {
    "code": {"corpus": "hf:codeparrot/codeparrot-train-v2-near-dedup", "tokenizer": "helmo/code-search-net-multilang-tokenizer"},
    "math": {"corpus": "hf:open-web-math/open-web-math", "tokenizer": "gpt2"},
    "web": {"corpus": "hf:Skylion007/openwebtext", "tokenizer": "gpt2"},
}

# GSM8K fine-tuning below paper scale: the paper packs 6 worked examples into each of 512
# sequences of 1,024 tokens a step, more than a 256-token model holds (every item would be cut
# off); smaller scales fill their sequences with whole examples, 16 sequences a step.
SHORT_CONTEXT_GSM8K = {"pack": 0, "batch_size": 16, "micro_batch_size": 0, "seq_len": 512}

_SCALES: dict[str, dict] = {
    # A laptop: the whole experiment in minutes on 2 CPU cores.
    "tiny": {
        "model": {"n_layer": 4, "d_model": 128, "n_head": 4},
        "nca": {"seq_len": 512},
        # The paper's stage-1 schedule, chosen by measurement: on 3 seeds it moved every source's
        # warm start 0.5-4 perplexity points toward or past scratch (docs/results.md).
        "stage1": {"tokens": 1_000_000, "lr": 1e-3, "batch_size": 16, "val_sequences": 32, "schedule": "paper"},
        "stage2": {"tokens": 2_000_000, "lr": 1e-3, "batch_size": 16, "seq_len": 256, "eval_tokens": 65_536},
        "data": {"vocab_size": 4096},
        # every skill probe on the five models: about 1% of the experiment's training time here
        # (measured, docs/evaluation.md); an option (eval.probes.names) at the larger scales
        "eval": {"gsm8k": SHORT_CONTEXT_GSM8K, "probes": {"names": list(PROBE_NAMES)}},
    },
    # One GPU, an afternoon.
    "small": {
        "model": {"n_layer": 8, "d_model": 512, "n_head": 8},
        "nca": {"seq_len": 1024},
        # The paper's stage-1 schedule, as tiny's measurement chose (not measured at this scale).
        "stage1": {"tokens": 40_000_000, "lr": 3e-4, "batch_size": 32, "val_sequences": 256, "schedule": "paper"},
        "stage2": {"tokens": 400_000_000, "lr": 5e-4, "batch_size": 64, "seq_len": 1024, "eval_tokens": 1_048_576},
        "data": {"vocab_size": 16384},
        "runtime": {"compile": True},
        "eval": {"gsm8k": SHORT_CONTEXT_GSM8K},
    },
    # The paper's shape and budgets (24 layers, width 2048, 32 heads, sequence 1024).
    # Stage 1 as scripts/prepretraining/nca_prepretraining.sh, taken where the stage-2 scripts
    # load it (epoch 10 of 100, the last step of the warm-up): 5,000 steps of 32 x 1,024 tokens,
    # plain Adam without weight decay or clipping, 16,000 rules with one trajectory each an epoch.
    "paper": {
        "model": {"n_layer": 24, "d_model": 2048, "n_head": 32, "attention_dropout": 0.1},
        "nca": {"seq_len": 1024, "sims_per_rule": 10},
        "stage1": {"tokens": 164_000_000, "lr": 1e-4, "batch_size": 32, "weight_decay": 0.0, "val_sequences": 1024,
                   "schedule": "paper", "grad_clip": 0.0, "beta2": 0.999, "reuse": "spread"},
        "stage2": {"batch_size": 512, "seq_len": 1024, "eval_tokens": 4_194_304, "min_lr_ratio": 0.0,
                   "grad_clip": 1.0, "beta2": 0.999},
        "transfer": {"embeddings": "paper"},
        "runtime": {"compile": True},
    },
}


def resolve(preset: str, scale: str, home=None) -> ExperimentConfig:
    """A built-in preset, or a saved rule family (its domain's preset with its band and NCA settings)."""
    if preset not in PRESETS:
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
        apply_overrides(cfg, {"stage2": PAPER_STAGE2[preset], "data": PAPER_DATA[preset]})
    return cfg
