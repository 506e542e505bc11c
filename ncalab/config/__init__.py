"""Typed experiment settings (sections, validation) and their dotted keys.

The bottom of the stack: the trainer, the experiment pipeline, the services and both front
ends read the same `ExperimentConfig`; nothing here imports from above `ncalab.nca`.
"""

from ncalab.config.files import load_config_file
from ncalab.config.keys import apply_overrides, flatten, parse_set
from ncalab.config.sections import (
    CONTROL_CHOICES,
    EVAL_TASKS,
    MATCH_CHOICES,
    REINIT_CHOICES,
    STAGE1_SOURCES,
    DataConfig,
    DyckSection,
    ExperimentConfig,
    ModelConfig,
    RuntimeConfig,
    Stage1Config,
    Stage2Config,
    TransferConfig,
)

__all__ = [
    "CONTROL_CHOICES", "EVAL_TASKS", "MATCH_CHOICES", "REINIT_CHOICES", "STAGE1_SOURCES", "DataConfig", "DyckSection",
    "ExperimentConfig", "ModelConfig", "RuntimeConfig", "Stage1Config", "Stage2Config", "TransferConfig",
    "apply_overrides", "flatten", "load_config_file", "parse_set",
]
