"""Downstream tasks (the paper's GSM8K, HumanEval and BIG-bench Lite protocol): their data,
prompts, answer checking and pass@k. Pure functions of text and counts; the experiment
pipeline fine-tunes, samples and stores (ncalab.experiment.evaluation)."""
