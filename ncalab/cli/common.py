"""Helpers every command shares: JSON output, consoles, and the NCA option set."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from ncalab.nca.config import NCAConfig

err_console = Console(stderr=True)
out_console = Console()


def emit_json(obj) -> None:
    """One JSON object on stdout and nothing else."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")]

_G = "NCA settings"
Height = Annotated[int, typer.Option("--height", help="Grid height.", rich_help_panel=_G)]
Width = Annotated[int, typer.Option("--width", help="Grid width.", rich_help_panel=_G)]
Alphabet = Annotated[int, typer.Option("--alphabet", "-C", help="Number of colours.", rich_help_panel=_G)]
Patch = Annotated[int, typer.Option("--patch", "-P", help="Patch size (P x P cells per token).", rich_help_panel=_G)]
Temperature = Annotated[float, typer.Option("--temperature", help="Sampling temperature (0 = argmax).", rich_help_panel=_G)]
IdentityBias = Annotated[float, typer.Option("--identity-bias", help="Added to the logit of a cell's own colour.", rich_help_panel=_G)]
BurnIn = Annotated[int, typer.Option("--burn-in", help="Steps before the first recorded frame.", rich_help_panel=_G)]
Dt = Annotated[int, typer.Option("--dt", help="Steps between recorded frames.", rich_help_panel=_G)]
SeqLen = Annotated[int, typer.Option("--seq-len", help="Training sequence length in tokens.", rich_help_panel=_G)]
ChannelWrap = Annotated[
    bool,
    typer.Option("--channel-wrap/--no-channel-wrap", help="Wrap-pad the colour axis like the authors' code (C+2 conv inputs).", rich_help_panel=_G),
]

_D = NCAConfig()


def nca_config(height: int = _D.height, width: int = _D.width, alphabet: int = _D.alphabet, patch: int = _D.patch,
               temperature: float = _D.temperature, identity_bias: float = _D.identity_bias, burn_in: int = _D.burn_in,
               dt: int = _D.dt, channel_wrap: bool = _D.channel_wrap, seq_len: int = _D.seq_len) -> NCAConfig:
    return NCAConfig(height=height, width=width, alphabet=alphabet, patch=patch, temperature=temperature,
                     identity_bias=identity_bias, burn_in=burn_in, dt=dt, channel_wrap=channel_wrap, seq_len=seq_len)


# Where an experiment runs: this machine (torchrun for several processes) or a Slurm cluster.
_S = "Scale-out"
NProc = Annotated[int | None, typer.Option("--nproc", help="Processes (GPUs) per node; under torchrun on this machine.", rich_help_panel=_S)]
Executor = Annotated[str | None, typer.Option("--executor", help="local (this machine's job queue) or slurm (through submitit).", rich_help_panel=_S)]
Nodes = Annotated[int | None, typer.Option("--nodes", help="Slurm nodes.", rich_help_panel=_S)]
GpusPerNode = Annotated[int | None, typer.Option("--gpus-per-node", help="Slurm tasks (GPUs) per node (the same as --nproc).", rich_help_panel=_S)]
Partition = Annotated[str | None, typer.Option("--partition", help="Slurm partition.", rich_help_panel=_S)]
TimeLimit = Annotated[str | None, typer.Option("--time", help="Slurm time limit, e.g. 12:00:00 (the job checkpoints and is requeued before it).", rich_help_panel=_S)]
SlurmArg = Annotated[list[str] | None, typer.Option("--slurm-arg", help="Another sbatch setting KEY=VALUE (repeatable).", rich_help_panel=_S)]


def scale_settings(nproc=None, executor=None, nodes=None, gpus_per_node=None, partition=None, time=None,
                   slurm_arg=None) -> list[str]:
    """The --set items the scale-out options stand for."""
    out = []
    if nproc is not None and gpus_per_node is not None and nproc != gpus_per_node:
        from ncalab.errors import NcalabError

        raise NcalabError("--nproc and --gpus-per-node are the same setting; give one")
    for key, value in (("nproc", nproc if nproc is not None else gpus_per_node), ("executor", executor),
                       ("nodes", nodes), ("partition", partition), ("time", time)):
        if value is not None:
            out.append(f"runtime.{key}={value}")
    if slurm_arg:
        out.append("runtime.slurm_args=" + ",".join(slurm_arg))
    return out
