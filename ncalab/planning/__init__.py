"""What an experiment will cost before it runs: its stages' kinds and plans (stage.py),
parameters and FLOPs (compute.py), memory per GPU and micro-batches (memory.py), resident
memory on a CPU (footprint.py) and the plan `ncalab run --plan` prints (plan.py)."""
