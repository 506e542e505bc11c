"""Configs stored by older versions: the settings added since, at the values that reproduce them.

A stored experiment's config holds the settings that existed when it was submitted. A setting
added later is filled in with the value that gives the behaviour of before (not its new
default), so a resumed or re-shown experiment runs and shows what it ran with; the reuse keys
leave such a value out, so the keys of existing stores still match.
"""

from __future__ import annotations

import copy

from ncalab.config.keys import apply_overrides
from ncalab.config.sections import ExperimentConfig, RuntimeConfig
from ncalab.errors import NcalabError

# section -> setting -> the value that reproduces experiments stored before the setting existed
ADDED_DEFAULTS = {
    "nca": {"sims_per_rule": 1, "fresh_trajectories": False},
    "stage1": {"source": "nca", "corpus": None, "match": "tokens", "match_source": None, "stream": "sequential",
               "schedule": "cosine", "beta2": 0.95, "reuse": "adjacent", "decay": 0.2},
    "stage2": {"schedule": "cosine", "beta2": 0.95, "decay": 0.2, "budgets": []},
    "model": {"attention_dropout": 0.0},
    "transfer": {"embeddings": "reinit", "freeze_tokens": 0},
    "dyck": {"generator": "words"},
    # evaluation settings (not in any reuse key): the protocols of before
    "eval": {"gsm8k": {"format": "gsm8k", "shots_from": "train", "pack": 0, "micro_batch_size": 0},
             "bbl": {"tasks": ["all"], "min_train": 0, "max_train_per_task": 0, "format": "bigbench", "mode": "sample",
                     "chance": "paper", "unanswered": "exclude"}},
}


def without_added(section: dict, name: str) -> dict:
    """A section's settings less the added ones that are at their reproducing value."""
    added = ADDED_DEFAULTS.get(name, {})
    return {k: v for k, v in section.items() if not (k in added and v == added[k])}


def with_added(tree: dict) -> dict:
    """A stored config tree with every added setting it lacks at its reproducing value."""
    out = copy.deepcopy(tree)
    _fill(out, ADDED_DEFAULTS)
    return out


def _fill(node: dict, added: dict) -> None:
    for key, value in added.items():
        if isinstance(value, dict):
            if isinstance(node.get(key), dict):  # a section this config has
                _fill(node[key], value)
        else:
            node.setdefault(key, value)


def stored_config(tree: dict) -> ExperimentConfig:
    """The typed config of a stored experiment (or sweep base), as it ran. The settings of a
    source plugin that is no longer installed are kept as stored (its runs stay readable; only
    running it again needs the plugin)."""
    tree, cfg = with_added(tree), ExperimentConfig()
    orphans = {k: v for k, v in tree.items()
               if isinstance(v, dict) and k not in cfg.to_dict() and cfg.source_section(k) is None}
    cfg = apply_overrides(cfg, {k: v for k, v in tree.items() if k not in orphans})
    cfg.extensions.update(orphans)
    return cfg


def stored_runtime(tree) -> RuntimeConfig:
    """Where and how a stored experiment runs, for the queue; a config it cannot read (written
    by a newer ncalab, or damaged) runs as a plain local job rather than stopping the queue."""
    try:
        return stored_config(tree).runtime
    except (NcalabError, TypeError, AttributeError):
        return RuntimeConfig()
