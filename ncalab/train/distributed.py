"""Several processes training one model: the process group torchrun (or submitit) set up,
and the wrapping of the model for data parallelism (DDP) or fully sharded data parallelism
(FSDP2: `fully_shard` on every decoder layer, then the root; hybrid sharding across nodes).

ncalab never builds its own launcher or process group: torchrun's environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) is read by `torch.distributed.init_process_group`.
A single process is a world of one, with no process group at all, so every code path is the
same on a laptop.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ncalab.errors import NcalabError

PARALLEL_CHOICES = ("ddp", "fsdp")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Only the main process writes to the run store, logs and saves the full model."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def sum(self, value: float | int) -> float:
        """The sum over processes of a number (a world of one returns it)."""
        if not self.distributed:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(t)
        return float(t.item())

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one (a stop request, say)."""
        return self.sum(1.0 if flag else 0.0) > 0

    def broadcast(self, obj):
        """The main process's object, on every process."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def from_environment() -> World:
    """The world torchrun describes in the environment; joins its process group (NCCL on GPUs,
    gloo on CPUs). Without torchrun: a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
    return World(rank, size, local)


def device_of(world: World, device: str) -> str:
    """Each process on its own GPU (cuda:LOCAL_RANK), or the CPU."""
    if world.distributed and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{world.local_rank}"
    return device


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


class Parallel:
    """The model as the optimiser and the loop see it, and how gradients are summed.

    Losses are normalised by the number of target tokens of the whole global batch; DDP and
    FSDP average gradients over processes, so each process scales its loss by the world size.
    """

    def __init__(self, model: torch.nn.Module, world: World, kind: str = "ddp", amp_dtype=None):
        if kind not in PARALLEL_CHOICES:
            raise NcalabError(f"runtime.parallel must be one of {', '.join(PARALLEL_CHOICES)}, got {kind!r}")
        self.world, self.kind, self.inner = world, kind, model
        self.loss_scale = float(world.size) if world.distributed else 1.0
        if not world.distributed:
            self.module = model
        elif kind == "ddp":
            gpu = next(model.parameters()).is_cuda
            self.module = torch.nn.parallel.DistributedDataParallel(model, device_ids=[world.local_rank] if gpu else None)
        else:
            self.module = _fully_shard(model, world, amp_dtype)
            if dist.get_backend() == "gloo":
                # gloo has no PREMUL_SUM: reduce with SUM and divide apart (still an average)
                self.module.set_force_sum_reduction_for_comms(True)

    def sync(self, last_micro_step: bool):
        """Gradients are reduced across processes only on the last micro-step of a step."""
        if not self.world.distributed or last_micro_step:
            return nullcontext()
        if self.kind == "ddp":
            return self.module.no_sync()
        return _no_fsdp_sync(self.module)


@contextmanager
def _no_fsdp_sync(module):
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def _fully_shard(model, world: World, amp_dtype):
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    layers = getattr(getattr(model, "model", None), "layers", None)
    if not layers or len(layers) < 1:
        raise NcalabError("FSDP shards the model's decoder layers, and this model has none to split")
    gpu = next(model.parameters()).is_cuda
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if gpu and amp_dtype else \
        MixedPrecisionPolicy()
    mesh = _hybrid_mesh(world, "cuda" if gpu else "cpu")
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    return fully_shard(model, mesh=mesh, mp_policy=policy)


def _hybrid_mesh(world: World, device_type: str):
    """Across several nodes, hybrid sharding: parameters sharded among a node's processes and
    replicated across nodes (gradients all-reduced between replicas), so the heavy traffic
    stays on the node's fast links. None on one node (plain FSDP over every process)."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
    if per_node >= world.size or world.size % per_node:
        return None
    return torch.distributed.device_mesh.init_device_mesh(device_type, (world.size // per_node, per_node), mesh_dim_names=("replicate", "shard"))
