"""NCA data for the `ncalab nca` commands: their settings, and writing, exporting and measuring
a corpus of NCA trajectories.

The settings and bands are light (dataclasses); the corpus code loads numpy, numba and pyarrow,
so it is imported inside the functions that use it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ncalab.config import ExperimentConfig, apply_overrides, parse_set
from ncalab.errors import NcalabError
from ncalab.nca.bands import DOMAIN_BANDS, Band, domain_band, parse_band
from ncalab.nca.config import NCAConfig

__all__ = ["DOMAIN_BANDS", "Band", "NCAConfig", "corpus_band", "corpus_stats", "domain_band", "export_corpus",
           "generate_corpus", "nca_settings"]


def nca_settings(sets: list[str], flags: dict) -> NCAConfig:
    """The NCA settings of an `ncalab nca` command: defaults < --set nca.KEY=VALUE < the flags given
    (`flags`: NCAConfig field -> value). The --set items go through the same keys as
    `ncalab run --set`; a key outside nca. is an error."""
    items = list(sets or [])
    for item in items:
        key = item.split("=", 1)[0].strip()
        if "=" in item and not key.startswith("nca."):
            raise NcalabError(f"--set {key}: only nca.KEY=VALUE settings apply to the nca commands")
    exp = ExperimentConfig(nca=NCAConfig())
    apply_overrides(exp, parse_set(items, exp))
    return exp.nca.replace(**flags)


def corpus_band(domain: str | None, band: str | None) -> Band:
    """The band a corpus keeps: a domain's preset or LO:HI, exactly one of them."""
    if (domain is None) == (band is None):
        raise NcalabError("give exactly one of --domain or --band")
    return domain_band(domain) if domain is not None else parse_band(str(band))


def generate_corpus(out: Path, cfg: NCAConfig, band: Band, tokens: int, seed: int = 0, *, val_sequences: int = 64,
                    domain: str | None = None, force: bool = False,
                    on_progress: Callable[[int, int], None] | None = None):
    """Write a band-filtered corpus (memory-mappable shards and a manifest) into `out`; what was
    written (ncalab.nca.corpus.GenerateResult). `on_progress(done, total)` in tokens."""
    from ncalab.nca.corpus import CorpusSpec, write_corpus  # late: keeps torch, numpy, numba out of the quick commands

    spec = CorpusSpec(cfg, band, tokens, seed, val_sequences=val_sequences, domain=domain)
    return write_corpus(out, spec, force=force, on_progress=on_progress)


def export_corpus(path: Path, out: Path, fmt: str = "parquet", force: bool = False) -> dict:
    """A written corpus as a Hugging Face dataset (parquet shards and a dataset card) in `out`."""
    if fmt != "parquet":
        raise NcalabError(f"--format takes parquet, got {fmt!r}")
    from ncalab.nca.parquet import export_parquet  # late: keeps torch, numpy, numba out of the quick commands

    return export_parquet(path, out, force=force)


def corpus_stats(path: Path, split: str = "train", sample: int = 2000) -> dict:
    """Counts and token statistics of a written corpus's split; trajectory statistics on `sample`
    decoded trajectories."""
    if sample < 0:
        raise NcalabError("--sample must not be negative")
    from ncalab.nca.analysis import corpus_statistics  # late: keeps torch, numpy, numba out of the quick commands
    from ncalab.nca.corpus import NCACorpus  # late: keeps torch, numpy, numba out of the quick commands

    return corpus_statistics(NCACorpus(path, split), sample=sample)
