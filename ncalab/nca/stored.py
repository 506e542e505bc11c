"""A stored NCA corpus to train from: a corpus folder (`ncalab nca generate`) or its parquet
export (`ncalab nca export`), read alike by split and row range.

Its NCA settings come from the corpus manifest (vocabulary, frame layout, loss mask), and its
identity is a hash of that manifest, the same for a folder and its export (the same rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncalab.errors import NcalabError
from ncalab.nca.bands import Band
from ncalab.nca.config import NCAConfig
from ncalab.nca.corpus import MANIFEST, NCACorpus
from ncalab.nca.parquet import EXPORT_META, ParquetCorpus, is_export, manifest_identity


class _FolderRows:
    """Row ranges of one split of a corpus folder, across its memory-mapped shards."""

    def __init__(self, corpus: NCACorpus):
        self.corpus = corpus
        self._starts = np.cumsum([0] + [len(s) for s in corpus.shards()])

    def __len__(self) -> int:
        return len(self.corpus)

    def rows(self, start: int, count: int) -> np.ndarray:
        if start < 0 or start + count > len(self):
            raise NcalabError(f"sequences {start}..{start + count} are past the end of {self.corpus.path} ({len(self):,})")
        out, i = [], start
        shards = self.corpus.shards()
        while i < start + count:
            k = int(np.searchsorted(self._starts, i, side="right") - 1)
            lo = i - int(self._starts[k])
            take = min(start + count - i, len(shards[k]) - lo)
            out.append(np.asarray(shards[k][lo : lo + take]))
            i += take
        return np.concatenate(out) if out else np.zeros((0, self.corpus.row), dtype=np.int64)


@dataclass
class StoredCorpus:
    path: Path
    kind: str  # "folder" or "parquet"
    manifest: dict
    cfg: NCAConfig
    band: Band | None

    @property
    def identity(self) -> str:
        return manifest_identity(self.manifest)

    def split(self, name: str):
        """An object with len() and rows(start, count) -> (count, L + 1) int64 tokens."""
        if name not in self.manifest["splits"] or not self.manifest["splits"][name]["sequences"]:
            raise NcalabError(f"the NCA corpus {self.path} has no {'held-out' if name == 'val' else name} sequences"
                              + (" (generate it with --val-sequences > 0)" if name == "val" else ""))
        return ParquetCorpus(self.path, name) if self.kind == "parquet" else _FolderRows(NCACorpus(self.path, name))


def is_nca_corpus(path: str | Path) -> bool:
    """Whether ``path`` is a stored NCA corpus (a `nca generate` folder or an `nca export`)."""
    p = Path(path).expanduser()
    return (p / MANIFEST).is_file() or is_export(p)


def open_stored(path: str | Path) -> StoredCorpus:
    """The corpus folder or parquet export at ``path`` (which one is told by its files)."""
    p = Path(path).expanduser()
    if (p / MANIFEST).is_file():
        manifest, kind = NCACorpus(p, "train").manifest, "folder"
    elif is_export(p):
        manifest, kind = ParquetCorpus(p, "train").manifest, "parquet"
    else:
        raise NcalabError(f"{path} is no NCA corpus: neither a folder from `ncalab nca generate` ({MANIFEST}) nor "
                          f"an export from `ncalab nca export` ({EXPORT_META})")
    band = manifest.get("band")
    return StoredCorpus(p, kind, manifest, NCAConfig.from_written(manifest["config"]),
                        Band(float(band[0]), float(band[1])) if band else None)
