"""Helpers every command shares: JSON output, consoles, the experiment and NCA option sets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ncalab.errors import NcalabError
from ncalab.services.nca import NCAConfig, nca_settings

err_console = Console(stderr=True)
out_console = Console()


def emit_json(obj) -> None:
    """One JSON object on stdout and nothing else."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else.")]
Home = Annotated[Path | None, typer.Option("--home", envvar="NCALAB_HOME", help="Run store folder (default ./runs).")]


def Sets(help: str = "Override one setting, e.g. --set stage1.lr=3e-4 (repeatable).", panel: str | None = None) -> Any:
    """--set KEY=VALUE (repeatable); each command says what its settings are."""
    return Annotated[list[str] | None, typer.Option("--set", help=help, rich_help_panel=panel)]


# What an experiment (`ncalab run`) or a sweep of them (`ncalab sweep`) is made of.
Preset = Annotated[str, typer.Option("--preset", help="Target domain code, math or web, or a saved rule family.")]
Scale = Annotated[str, typer.Option("--scale", help="tiny (laptop), small (one GPU) or paper.")]
Corpus = Annotated[str | None, typer.Option("--corpus", help="python-stdlib, a local path, or hf:NAME[:CONFIG].")]
ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="A TOML or JSON file of settings (sections model, nca, stage1, transfer, stage2, data, runtime).")]
Device = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
MaxJobs = Annotated[int | None, typer.Option(
    "--max-jobs", help="Background jobs at once (stored; default 1 per GPU, 1 on CPU).")]
Track = Annotated[list[str] | None, typer.Option(
    "--track", help="Mirror metrics, config and summary to tensorboard, mlflow or wandb (repeatable, or a,b); "
    "the run store stays the record.")]


def Name(what: str) -> Any:
    """--name: a name for the experiment, the sweep, ..."""
    return Annotated[str | None, typer.Option("--name", help=f"A name for the {what}.")]


def Detach(help: str = "Queue it as a background job and return at once.") -> Any:
    return Annotated[bool, typer.Option("--detach", "-d", help=help)]


def track_setting(track: list[str] | None) -> list[str]:
    """--track values as a --set of runtime.track (validated with the rest of the config)."""
    names = [n.strip() for t in track or [] for n in t.split(",") if n.strip()]
    return [f"runtime.track={','.join(names)}"] if names else []


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

NCASets = Sets("Override one NCA setting, e.g. --set nca.alphabet=4 (repeatable); a flag given as well wins.", _G)

# The NCA flags are named after the NCAConfig fields they set.
_NCA_FLAGS = frozenset(("height", "width", "alphabet", "patch", "temperature", "identity_bias", "burn_in", "dt",
                        "channel_wrap", "seq_len", "sims_per_rule"))


def nca_config(ctx: typer.Context, sets: list[str] | None = None) -> NCAConfig:
    """The NCA settings of an `ncalab nca` command: defaults < --set nca.KEY=VALUE < the flags given
    (ncalab.services.nca.nca_settings; here only which flags were given)."""
    given = {k: v for k, v in ctx.params.items() if k in _NCA_FLAGS and _given(ctx, k)}
    return nca_settings(sets or [], given)


def _given(ctx: typer.Context, param: str) -> bool:
    """Whether the user gave this option (rather than its default standing)."""
    source = ctx.get_parameter_source(param)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


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
        raise NcalabError("--nproc and --gpus-per-node are the same setting; give one")
    for key, value in (("nproc", nproc if nproc is not None else gpus_per_node), ("executor", executor),
                       ("nodes", nodes), ("partition", partition), ("time", time)):
        if value is not None:
            out.append(f"runtime.{key}={value}")
    if slurm_arg:
        out.append("runtime.slurm_args=" + ",".join(slurm_arg))
    return out
