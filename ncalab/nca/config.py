"""Settings of the NCA data (NCA_SPEC.md sections 1-4), with the paper's defaults."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ncalab.errors import NcalabError

# Largest NCA vocabulary we accept: the language model needs an embedding row per token.
MAX_VOCAB = 2**20 + 2

HIDDEN_1 = 4  # channels of the 3x3 convolution
HIDDEN_2 = 16  # channels of the first 1x1 convolution


@dataclass(frozen=True)
class NCAConfig:
    height: int = field(default=12, metadata={"help": "grid rows (the paper: 12)"})
    width: int = field(default=12, metadata={"help": "grid columns (the paper: 12)"})
    alphabet: int = field(default=10, metadata={"help": "cell states, shown as colours (2-255; the paper: 10)"})
    patch: int = field(default=2, metadata={"help": "a token is one patch x patch block of cells (the paper: 2)"})
    temperature: float = field(default=1e-4, metadata={"help": "softmax temperature T of a step (paper: 1e-4)"})
    identity_bias: float = field(default=0.0, metadata={"help": "added to the logit of a cell's own state (paper: 0)"})
    burn_in: int = field(default=10, metadata={"help": "steps run before the first recorded frame (paper: 10)"})
    dt: int = field(default=1, metadata={"help": "steps between recorded frames (the paper: 1)"})
    # The authors' code wrap-pads the colour axis too (C+2 input channels); see spec section 1.
    channel_wrap: bool = field(default=True, metadata={"help": "wrap-pad the colour axis too, as the authors' code"})
    seq_len: int = field(default=1024, metadata={"help": "tokens of a stage-1 sequence, every source (paper: 1024)"})
    min_grid: int = field(default=1, metadata={"help": "first frames whose targets carry no loss (paper: 1)"})
    score_frames: int = field(default=10, metadata={"help": "frames a rule's gzip score is taken over (paper: 10)"})
    # Trajectories drawn from each accepted training rule (the paper's code banks 10 per rule):
    # the scored one plus sims_per_rule - 1 from other initial states. Validation: always one.
    sims_per_rule: int = field(default=1, metadata={"help": "trajectories drawn from each accepted training rule"})
    # The paper trains on trajectories from fresh initial states of a rule that passed the filter
    # (its utils/nca.py draws new simulations), not on the trajectory the rule was scored on.
    fresh_trajectories: bool = field(default=True, metadata={"help": "train on new trajectories, not the scored one"})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("height", "width", "patch", "seq_len", "score_frames", "dt", "sims_per_rule"):
            if getattr(self, name) < 1:
                raise NcalabError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 2 <= self.alphabet <= 255:  # cells are stored as bytes
            raise NcalabError(f"alphabet must be between 2 and 255, got {self.alphabet}")
        if isinstance(self.sims_per_rule, bool) or self.sims_per_rule != int(self.sims_per_rule):
            raise NcalabError(f"sims_per_rule must be a positive integer, got {self.sims_per_rule}")
        if self.burn_in < 0 or self.min_grid < 0:
            raise NcalabError("burn_in and min_grid must not be negative")
        if self.temperature < 0:
            raise NcalabError(f"temperature must be >= 0, got {self.temperature}")
        if not math.isfinite(self.identity_bias) or not math.isfinite(self.temperature):
            raise NcalabError("temperature and identity_bias must be finite numbers")
        if self.height % self.patch or self.width % self.patch:
            raise NcalabError(
                f"grid {self.height}x{self.width} is not divisible by patch {self.patch}"
            )
        if self.alphabet ** (self.patch * self.patch) + 2 > MAX_VOCAB:
            raise NcalabError(
                f"alphabet {self.alphabet} with patch {self.patch} needs "
                f"{self.alphabet}**{self.patch * self.patch}+2 tokens, more than the limit {MAX_VOCAB}"
            )

    # Derived sizes -----------------------------------------------------------------
    @property
    def patch_vocab(self) -> int:
        return self.alphabet ** (self.patch * self.patch)

    @property
    def start_token(self) -> int:
        return self.patch_vocab

    @property
    def end_token(self) -> int:
        return self.patch_vocab + 1

    @property
    def vocab_size(self) -> int:
        return self.patch_vocab + 2

    @property
    def cells(self) -> int:
        return self.height * self.width

    @property
    def patches_per_frame(self) -> int:
        return (self.height // self.patch) * (self.width // self.patch)

    @property
    def frame_len(self) -> int:
        return self.patches_per_frame + 2

    @property
    def frames_per_seq(self) -> int:
        # Enough frames for L inputs plus the one-token shift (27 at the defaults).
        return math.ceil((self.seq_len + 1) / self.frame_len)

    @property
    def conv_in_channels(self) -> int:
        return self.alphabet + 2 if self.channel_wrap else self.alphabet

    @property
    def token_dtype(self) -> str:
        return "uint16" if self.vocab_size <= 2**16 else "int32"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NCAConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise NcalabError(f"unknown NCA setting(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    @classmethod
    def from_written(cls, d: dict) -> "NCAConfig":
        """The settings a stored corpus was written with: one written before fresh trajectories
        existed trained on the scored trajectory."""
        return cls.from_dict({"fresh_trajectories": False, **d})

    def replace(self, **changes) -> "NCAConfig":
        return dataclasses.replace(self, **changes)
