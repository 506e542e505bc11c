"""Experiment settings: presets, scales, overrides and the resolved config stored with a run."""
