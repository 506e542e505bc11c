"""ncalab: a terminal lab for NCA pre-pre-training of language models."""

__version__ = "0.1.0"
