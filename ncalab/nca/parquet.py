"""NCA corpora as Hugging Face datasets: parquet shards plus a dataset card, and reading them back.

`export_parquet` turns a corpus folder (``ncalab nca generate``) into

  README.md                                the dataset card: YAML for the hub, then the generation settings
  ncalab_corpus.json                       the corpus manifest, so ncalab can train from the export
  data/train-00000-of-00003.parquet        columns rule_seed, sim_seed (int64), score (float32),
  data/validation-00000-of-00001.parquet   tokens (a fixed-size list of L + 1 token ids)

one parquet file per corpus shard, in corpus order, loadable with
``datasets.load_dataset("parquet", data_files=...)`` or ``load_dataset(FOLDER)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ncalab.errors import NcalabError
from ncalab.lazy import pa, pq
from ncalab.nca.corpus import MANIFEST, NCACorpus

EXPORT_FORMAT = "ncalab-nca-parquet"
EXPORT_META = "ncalab_corpus.json"
CARD = "README.md"
HF_SPLIT = {"train": "train", "val": "validation"}  # corpus split -> the hub's split name
ROW_GROUP = 4096  # sequences per parquet row group: what a reader decodes at once
_OWN = re.compile(r"^(README\.md|ncalab_corpus\.json)(\.tmp)?$")
_OWN_DATA = re.compile(r"^(train|validation)-\d{5}-of-\d{5}\.parquet(\.tmp)?$")


def manifest_identity(manifest: dict) -> str:
    """A hash of a corpus manifest: the same corpus, as a folder or as its export, has the same one."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:24]


def _prepare(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NcalabError(f"{out} exists and is not a directory")
    entries = list(out.iterdir()) if out.exists() else []
    if entries and not force:
        raise NcalabError(f"{out} is not empty; pass --force to replace the export files in it")
    for e in entries:  # only ever remove files this module writes
        if e.is_file() and _OWN.match(e.name):
            e.unlink()
    data = out / "data"
    if data.is_dir():
        for e in data.iterdir():
            if e.is_file() and _OWN_DATA.match(e.name):
                e.unlink()
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NcalabError(f"cannot write to {out}: {e.strerror or e}") from None


def _table(tokens: np.ndarray, rules: np.ndarray):
    n, row = tokens.shape
    sims = rules["sim_seed"] if "sim_seed" in rules.dtype.names else rules["rule_seed"]
    return pa.table({
        "rule_seed": pa.array(np.asarray(rules["rule_seed"], dtype=np.int64)),
        "sim_seed": pa.array(np.asarray(sims, dtype=np.int64)),
        "score": pa.array(np.asarray(rules["score"], dtype=np.float32)),
        "tokens": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(tokens).reshape(-1)), row),
    })


def export_parquet(corpus: str | Path, out: str | Path, force: bool = False,
                   on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Write a corpus folder as parquet shards with a dataset card; returns what was written."""
    corpus, out = Path(corpus), Path(out)
    first = NCACorpus(corpus, "train")  # checks the manifest and every shard
    manifest = first.manifest
    if out.resolve() == corpus.resolve():
        raise NcalabError("--out must be another folder than the corpus")
    _prepare(out, force)
    splits: dict[str, dict] = {}
    total = sum(s["sequences"] for s in manifest["splits"].values())
    done = 0
    for split in ("train", "val"):
        if split not in manifest["splits"]:
            continue
        c = first if split == "train" else NCACorpus(corpus, split)
        shards = list(zip(c.shards(), _rules_by_shard(c)))
        files = []
        for i, (tokens, rules) in enumerate(shards):
            name = f"{HF_SPLIT[split]}-{i:05d}-of-{len(shards):05d}.parquet"
            tmp = out / "data" / (name + ".tmp")
            try:
                with pq.ParquetWriter(tmp, _table(tokens[:0], rules[:0]).schema, compression="zstd") as writer:
                    for j in range(0, len(tokens), ROW_GROUP):
                        writer.write_table(_table(tokens[j : j + ROW_GROUP], rules[j : j + ROW_GROUP]))
                os.replace(tmp, out / "data" / name)
            except OSError as e:
                raise NcalabError(f"cannot write {out / 'data' / name}: {e.strerror or e}") from None
            files.append({"path": f"data/{name}", "sequences": int(len(tokens))})
            done += len(tokens)
            if on_progress:
                on_progress(done, total)
        splits[split] = {"split": HF_SPLIT[split], "sequences": len(c), "files": files}
    meta = {"format": EXPORT_FORMAT, "format_version": 1, "manifest_sha256": manifest_identity(manifest),
            "manifest": manifest, "splits": splits}
    _write(out / EXPORT_META, json.dumps(meta, indent=2))
    _write(out / CARD, dataset_card(manifest, splits, corpus.name))
    return {"out": str(out), "splits": {s: v["sequences"] for s, v in splits.items()},
            "files": sum(len(v["files"]) for v in splits.values())}


def _rules_by_shard(c: NCACorpus) -> list[np.ndarray]:
    """The rules array of each shard of a corpus split (all_rules cut at the shard sizes)."""
    rules, out, at = c.all_rules(), [], 0
    for shard in c.shards():
        out.append(rules[at : at + len(shard)])
        at += len(shard)
    return out


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        raise NcalabError(f"cannot write {path}: {e.strerror or e}") from None


def dataset_card(manifest: dict, splits: dict, name: str) -> str:
    """README.md of an export: hub metadata (splits, features, tags) and the generation settings."""
    from huggingface_hub import DatasetCard, DatasetCardData

    cfg, band = manifest["config"], manifest.get("band")
    n = sum(s["sequences"] for s in splits.values())
    counts = ", ".join(f"{s['sequences']:,} {s['split']}" for s in splits.values())
    size = next(c for lim, c in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                                 (1e7, "1M<n<10M"), (float("inf"), "10M<n<100M")) if n < lim)
    meta = DatasetCardData(
        pretty_name=f"NCA sequences ({name})", size_categories=size, task_categories=["text-generation"],
        tags=["ncalab", "neural-cellular-automata", "nca-pre-pre-training", "synthetic"],
        configs=[{"config_name": "default",
                  "data_files": [{"split": s["split"], "path": f"data/{s['split']}-*.parquet"} for s in splits.values()]}],
    )
    band_text = f"{band[0]:g} < score < {band[1]:g}" if band else "none (every rule)"
    settings = "\n".join(f"| {k} | {json.dumps(v)} |" for k, v in cfg.items())
    lines = [
        f"# NCA sequences: {name}",
        "",
        "Token sequences of random neural cellular automata, for NCA pre-pre-training of language models",
        "(Lee, Han, Kumar, Agrawal 2026, arXiv 2603.10055), written by ncalab (`ncalab nca generate`,",
        "then `ncalab nca export`).",
        "",
        f"- sequences: {counts}; "
        f"{manifest['row_tokens']} tokens each (inputs are the first {manifest['row_tokens'] - 1}, targets the last)",
        f"- vocabulary: {manifest['vocab_size']:,} tokens: {cfg['alphabet']}^{cfg['patch'] ** 2} patch tokens, then "
        "[START] and [END] around every frame",
        f"- complexity band (gzip score of the first {cfg['score_frames']} frames): {band_text}"
        + (f", the {manifest['domain']} preset" if manifest.get("domain") else ""),
        f"- stream seed {manifest['seed']}; validation rules are never training rules",
        f"- rules scored {manifest['rules_scored']:,}, accepted {manifest['rules_accepted']:,}; "
        f"ncalab {manifest['ncalab_version']}, {manifest['created']}",
        "",
        "## Columns",
        "",
        "- `rule_seed`: the rule; with `sim_seed` (the initial state) it rebuilds the sequence",
        "  (`RuleBatch([rule_seed], [sim_seed], NCAConfig(**settings))` in ncalab)",
        "- `score`: the rule's gzip complexity score",
        "- `tokens`: the sequence",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'ds = load_dataset("parquet", data_files={"train": "data/train-*.parquet"}, split="train")',
        "```",
        "",
        "`ncalab run --set stage1.corpus=FOLDER` trains stage 1 on this export (with `nca.seq_len` equal to",
        f"{manifest['row_tokens'] - 1}).",
        "",
        "## Generation settings",
        "",
        "| setting | value |",
        "|---|---|",
        settings,
        "",
    ]
    return str(DatasetCard(f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(lines)))


class ParquetCorpus:
    """One split of an export, read back by row ranges (sequential reads decode each row group once)."""

    def __init__(self, path: str | Path, split: str = "train"):
        self.path = Path(path)
        meta_file = self.path / EXPORT_META
        try:
            self.meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise NcalabError(f"{meta_file} cannot be read ({getattr(e, 'strerror', None) or e})") from None
        if self.meta.get("format") != EXPORT_FORMAT:
            raise NcalabError(f"{meta_file} is not an ncalab NCA parquet export")
        if split not in self.meta["splits"]:
            raise NcalabError(f"{self.path} has no {split!r} split")
        self.manifest = self.meta["manifest"]
        self.row = int(self.manifest["row_tokens"])
        self._groups: list[tuple[object, int, int, int]] = []  # (file, row group, first row, rows)
        at = 0
        for f in self.meta["splits"][split]["files"]:
            try:
                pf = pq.ParquetFile(self.path / f["path"])
            except OSError as e:
                raise NcalabError(f"{self.path / f['path']} cannot be read ({e})") from None
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                self._groups.append((pf, g, at, n))
                at += n
        self._len = at
        self._starts = np.array([g[2] for g in self._groups] + [at])
        self._cached: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self._len

    def _group(self, k: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != k:
            pf, g, _, n = self._groups[k]
            col = pf.read_row_group(g, columns=["tokens"]).column("tokens").combine_chunks()
            self._cached = (k, np.asarray(col.flatten()).reshape(n, self.row))
        return self._cached[1]

    def rows(self, start: int, count: int) -> np.ndarray:
        """(count, L + 1) tokens of sequences [start, start + count)."""
        if start < 0 or start + count > self._len:
            raise NcalabError(f"sequences {start}..{start + count} are past the end of {self.path} ({self._len:,})")
        out, i = [], start
        while i < start + count:
            k = int(np.searchsorted(self._starts, i, side="right") - 1)
            block = self._group(k)
            lo = i - self._groups[k][2]
            take = min(start + count - i, len(block) - lo)
            out.append(block[lo : lo + take])
            i += take
        return np.concatenate(out) if out else np.zeros((0, self.row), dtype=np.int64)


def is_export(path: Path) -> bool:
    return (Path(path) / EXPORT_META).is_file() and not (Path(path) / MANIFEST).is_file()
