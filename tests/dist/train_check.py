"""One training stage on Dyck sequences, for tests/test_distributed.py: run as one process
or under torchrun, it trains the same tiny model on the same global batches and writes the
losses, the tokens counted and the final (full) weights to OUT.

    python train_check.py OUT [--parallel ddp|fsdp] [--micro N] [--ckpt DIR --stop-at K | --resume]
"""

import argparse
from functools import partial
from pathlib import Path

import torch

from ncalab.config.sections import ModelConfig
from ncalab.data.dyck import DyckConfig, dyck_sequences
from ncalab.train import device as devices
from ncalab.train.batches import IndexedBatches
from ncalab.train.distributed import from_environment, shutdown
from ncalab.train.loop import StageSpec, Trainer, TrainerOptions
from ncalab.train.model import build_model

SEQ, BATCH, STEPS = 32, 8, 4


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--parallel", default="ddp")
    ap.add_argument("--micro", type=int, default=0, help="sequences per forward pass in each process (0: its share)")
    ap.add_argument("--ckpt", default=None, help="checkpoint folder (its `last` checkpoint)")
    ap.add_argument("--stop-at", type=int, default=0, help="stop after this many steps, checkpointing first")
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoint in --ckpt")
    ap.add_argument("--expect-hybrid", action="store_true", help="fail unless FSDP2 built a 2-D (hybrid) mesh")
    args = ap.parse_args()

    torch.set_num_threads(1)
    world = from_environment()
    dyck = DyckConfig(pairs=4, depth_min=1, depth_max=4)
    make = partial(dyck_sequences, dyck, 0, "train", length=SEQ + 1)
    batches = IndexedBatches(lambda start, count: make(start, count), BATCH, world.rank, world.size)
    model = build_model(ModelConfig(n_layer=2, d_model=32, n_head=2), dyck.vocab_size, SEQ, seed=0)
    spec = StageSpec("check", STEPS * BATCH * SEQ, BATCH * SEQ, lr=3e-3, warmup=0.25, min_lr_ratio=0.1,
                     weight_decay=0.1, grad_clip=1.0, eval_every=10**9, n_evals=1)
    losses: list[float] = []

    def record(points):
        losses.extend(p["value"] for p in points if p["name"] == "train_loss")

    steps = iter(range(1, 10**9))
    stop_at = args.stop_at
    trainer = Trainer(model, spec, devices.choose("cpu", "fp32"), batches, [], TrainerOptions(
        on_metrics=record, world=world, parallel=args.parallel, micro_batch_size=args.micro,
        should_stop=(lambda: stop_at > 0 and next(steps) > stop_at)))
    if args.expect_hybrid:
        mesh = next(trainer.model.parameters()).device_mesh
        assert mesh.mesh_dim_names == ("replicate", "shard"), mesh
    ckpt = None if args.ckpt is None else Path(args.ckpt)
    if args.resume:
        trainer.restore(ckpt / "last")
    trainer.run()
    if stop_at and ckpt is not None:
        trainer.save(ckpt / "last")
    full = trainer.full_model()
    if world.main:
        torch.save({"tokens": trainer.tokens, "losses": losses,
                    "state": {k: v.detach().clone() for k, v in full.state_dict().items()}}, args.out)
    shutdown(world)


if __name__ == "__main__":
    main()
