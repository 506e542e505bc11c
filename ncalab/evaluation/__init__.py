"""Evaluation, in one place: the downstream tasks (the paper's GSM8K, HumanEval and BIG-bench
Lite protocol: tasks.py, with each task's data and checking in gsm8k.py, humaneval.py and
bbl.py), sampling from a model (sampling.py), pass@k (passk.py), the sandbox for model-written
code (sandbox.py, isolation.py), the stage-1 model's in-context evaluation (incontext.py), and
the pipeline's fine-tuning and evaluation stages (stages.py)."""
