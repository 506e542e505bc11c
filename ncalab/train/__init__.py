"""The trainer: model, transfer, optimisation loop, evaluation, checkpoints."""
