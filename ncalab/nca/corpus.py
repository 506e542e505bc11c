"""NCA corpora on disk: sharded token files for np.memmap, and a manifest that traces every
sequence to its rule.

Layout of a corpus folder:
  manifest.json            config, band, seed, counts and the shard list (written last)
  train-00000.tokens       (sequences, L + 1) tokens, raw little-endian uint16 or int32
  train-00000.rules.npy    per sequence: rule_seed (int64), score, and with nca.sims_per_rule > 1 or fresh
                           sim_seed (int64; without the column the sim seed equals the rule seed)
  val-00000.*              the held-out rules, likewise (one trajectory per rule)
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncalab import __version__
from ncalab.errors import NcalabError
from ncalab.nca.bands import Band
from ncalab.nca.config import NCAConfig
from ncalab.nca.stream import FilteredSource

FORMAT = "ncalab-nca-corpus"
# Version 2 adds the sim_seed column (written with sims_per_rule > 1 or fresh trajectories; else version 1).
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
_OWN_FILES = re.compile(r"^(manifest\.json(\.tmp)?|(train|val)-\d{5}\.(tokens|rules\.npy))$")
RULE_DTYPE = np.dtype([("rule_seed", "<i8"), ("score", "<f4")])
SIM_RULE_DTYPE = np.dtype([("rule_seed", "<i8"), ("sim_seed", "<i8"), ("score", "<f4")])


def _prepare_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NcalabError(f"{out} exists and is not a directory")
    if out.exists():
        entries = list(out.iterdir())
        if entries and not force:
            raise NcalabError(f"{out} is not empty; pass --force to replace the corpus files in it")
        for e in entries:  # only ever remove files this module writes
            if e.is_file() and _OWN_FILES.match(e.name):
                e.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".ncalab-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise NcalabError(f"cannot write to {out}: {e.strerror or e}") from None


@dataclass
class GenerateResult:
    out: Path
    tokens: int
    sequences: int
    seconds: float
    rules_scored: int
    rules_accepted: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "out": str(self.out), "tokens": self.tokens, "sequences": self.sequences,
            "seconds": round(self.seconds, 3), "tokens_per_s": round(self.tokens_per_s, 1),
            "rules_scored": self.rules_scored, "rules_accepted": self.rules_accepted,
        }


class _ShardWriter:
    """Appends accepted sequences to shard files, rolling over at shard_sequences."""

    def __init__(self, out: Path, split: str, shard_sequences: int, dtype: str, rule_dtype: np.dtype = RULE_DTYPE):
        self.out, self.split, self.shard_sequences, self.dtype = out, split, shard_sequences, dtype
        self.rule_dtype = rule_dtype
        self.shards: list[dict] = []
        self._tok = None
        self._rules: list[np.ndarray] = []
        self._in_shard = 0

    def _open(self) -> None:
        name = f"{self.split}-{len(self.shards):05d}"
        self._tok = open(self.out / f"{name}.tokens", "wb")  # noqa: SIM115
        self.shards.append({"tokens": f"{name}.tokens", "rules": f"{name}.rules.npy", "sequences": 0})
        self._rules, self._in_shard = [], 0

    def _close(self) -> None:
        if self._tok is None:
            return
        self._tok.close()
        self._tok = None
        rules = np.concatenate(self._rules) if self._rules else np.zeros(0, self.rule_dtype)
        np.save(self.out / self.shards[-1]["rules"], rules)

    def write(self, tokens: np.ndarray, seeds: np.ndarray, scores: np.ndarray, sim_seeds: np.ndarray | None = None) -> None:
        i = 0
        while i < len(tokens):
            if self._tok is None or self._in_shard >= self.shard_sequences:
                self._close()
                self._open()
            n = min(len(tokens) - i, self.shard_sequences - self._in_shard)
            self._tok.write(np.ascontiguousarray(tokens[i : i + n], dtype=np.dtype(self.dtype).newbyteorder("<")).tobytes())
            meta = np.zeros(n, self.rule_dtype)
            meta["rule_seed"], meta["score"] = seeds[i : i + n], scores[i : i + n]
            if "sim_seed" in self.rule_dtype.names:
                meta["sim_seed"] = (seeds if sim_seeds is None else sim_seeds)[i : i + n]
            self._rules.append(meta)
            self.shards[-1]["sequences"] += n
            self._in_shard += n
            i += n

    def finish(self) -> list[dict]:
        self._close()
        return self.shards


@dataclass(frozen=True)
class CorpusSpec:
    """What a corpus holds: ``tokens`` training tokens (whole sequences of L) and
    ``val_sequences`` sequences of held-out rules, from the rule stream of (cfg, band, seed).
    ``domain`` names the band's preset, recorded in the manifest."""

    cfg: NCAConfig
    band: Band | None
    tokens: int
    seed: int = 0
    val_sequences: int = 64
    domain: str | None = None


def write_corpus(
    out: str | Path, spec: CorpusSpec, *, force: bool = False, shard_tokens: int = 2**26, batch_rules: int = 4096,
    on_progress: Callable[[int, int], None] | None = None,
) -> GenerateResult:
    """Generate the corpus ``spec`` describes into ``out``.

    With cfg.sims_per_rule > 1 every accepted training rule gives that many sequences (see
    stream.FilteredSource) and the rules files gain a sim_seed column (format version 2)."""
    cfg, band, seed, domain = spec.cfg, spec.band, spec.seed, spec.domain
    if spec.tokens <= 0:
        raise NcalabError(f"--tokens must be positive, got {spec.tokens}")
    if spec.val_sequences < 0:
        raise NcalabError(f"validation sequences must not be negative, got {spec.val_sequences}")
    out = Path(out)
    _prepare_dir(out, force)
    n_train = math.ceil(spec.tokens / cfg.seq_len)
    shard_seqs = max(1, shard_tokens // (cfg.seq_len + 1))
    t0 = time.perf_counter()
    splits, scored, accepted = {}, 0, 0
    with_sims = cfg.sims_per_rule > 1 or cfg.fresh_trajectories  # sim seeds differ from rule seeds
    for split, n_seq in (("val", spec.val_sequences), ("train", n_train)):
        if n_seq == 0:
            continue
        source = FilteredSource(cfg, band, seed, split, batch_rules=batch_rules)
        writer = _ShardWriter(out, split, shard_seqs, cfg.token_dtype, SIM_RULE_DTYPE if with_sims else RULE_DTYPE)
        done = 0
        while done < n_seq:
            batch = source.next_batch(source.candidates_for(n_seq - done))
            take = min(len(batch), n_seq - done)
            writer.write(batch.tokens[:take], batch.rule_seeds[:take], batch.scores[:take], batch.sim_seeds[:take])
            done += take
            if split == "train" and on_progress:
                on_progress(done * cfg.seq_len, n_train * cfg.seq_len)
        splits[split] = {"sequences": done, "tokens": done * cfg.seq_len, "shards": writer.finish()}
        scored += source.rules_scored
        accepted += source.rules_accepted
    seconds = time.perf_counter() - t0
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION if with_sims else 1, "ncalab_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": cfg.to_dict(), "band": [band.lo, band.hi] if band else None, "domain": domain,
        "seed": seed, "token_dtype": cfg.token_dtype, "row_tokens": cfg.seq_len + 1,
        "vocab_size": cfg.vocab_size,
        "sim_seed": ("column sim_seed: the rule seed for the scored trajectory, mix63(mix63(rule_seed) + j) for "
                     "trajectory j >= 1 (ncalab.nca.seeds.sim_seeds; fresh trajectories start at j = 1); "
                     "the score is the rule's") if with_sims
        else "equal to rule_seed",
        "rules_scored": scored, "rules_accepted": accepted, "seconds": round(seconds, 3),
        "splits": splits,
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, out / MANIFEST)  # a corpus without a manifest is visibly incomplete
    return GenerateResult(out, n_train * cfg.seq_len, n_train, seconds, scored, accepted)


class NCACorpus:
    """Read access to a written corpus: memory-mapped sequences and their rules."""

    def __init__(self, path: str | Path, split: str = "train"):
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not self.path.is_dir():
            raise NcalabError(f"{self.path} is not a directory")
        if not mf.exists():
            raise NcalabError(f"{self.path} has no {MANIFEST}: not an ncalab corpus, or its generation did not finish")
        try:
            self.manifest = json.loads(mf.read_text())
        except json.JSONDecodeError as e:
            raise NcalabError(f"{mf} is not valid JSON ({e.msg})") from None
        if self.manifest.get("format") != FORMAT:
            raise NcalabError(f"{mf} is not an ncalab NCA corpus manifest")
        if self.manifest.get("format_version", 0) > FORMAT_VERSION:
            raise NcalabError(f"{self.path} was written by a newer ncalab; upgrade ncalab to read it")
        if split not in self.manifest["splits"]:
            raise NcalabError(f"{self.path} has no {split!r} split")
        self.split = split
        self.cfg = NCAConfig.from_written(self.manifest["config"])
        self.row = int(self.manifest["row_tokens"])
        dtype = np.dtype(self.manifest["token_dtype"]).newbyteorder("<")
        self._shards, self._rules = [], []
        for sh in self.manifest["splits"][split]["shards"]:
            f = self.path / sh["tokens"]
            n = sh["sequences"]
            if not f.exists() or f.stat().st_size != n * self.row * dtype.itemsize:
                raise NcalabError(f"shard {f} is missing or has the wrong size")
            self._shards.append(np.memmap(f, dtype=dtype, mode="r", shape=(n, self.row)))
            rules = self.path / sh["rules"]
            try:
                self._rules.append(np.load(rules, allow_pickle=False))  # plain numbers: never a pickle
            except (OSError, ValueError) as e:
                raise NcalabError(f"rules file {rules} cannot be read ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        self._offsets = np.cumsum([0] + [len(s) for s in self._shards])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        s = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return s, i - int(self._offsets[s])

    def __getitem__(self, i: int) -> np.ndarray:
        s, j = self._locate(i)
        return np.asarray(self._shards[s][j])

    def rule_of(self, i: int) -> tuple[int, float]:
        """(rule seed, score) of sequence i (the score of its rule; see ``seeds_of`` for the sim seed)."""
        s, j = self._locate(i)
        r = self._rules[s][j]
        return int(r["rule_seed"]), float(r["score"])

    def seeds_of(self, i: int) -> tuple[int, int]:
        """(rule seed, sim seed) of sequence i: RuleBatch([rule], [sim], corpus.cfg) rebuilds it."""
        s, j = self._locate(i)
        r = self._rules[s][j]
        return int(r["rule_seed"]), int(r["sim_seed"] if "sim_seed" in r.dtype.names else r["rule_seed"])

    def all_rules(self) -> np.ndarray:
        """The rules files of the split, concatenated (with a sim_seed column when the corpus has one)."""
        return np.concatenate(self._rules) if self._rules else np.zeros(0, RULE_DTYPE)

    def all_sim_seeds(self) -> np.ndarray:
        """(sequences,) int64 sim seeds (the rule seeds where the corpus has no sim_seed column)."""
        rules = self.all_rules()
        return np.asarray(rules["sim_seed"] if "sim_seed" in rules.dtype.names else rules["rule_seed"], dtype=np.int64)

    def shards(self) -> list[np.memmap]:
        return self._shards
