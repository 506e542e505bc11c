"""Language corpora: where the natural-language (stage 2) text comes from.

A spec names one of
  python-stdlib          every .py file of this Python's standard library (offline code corpus)
  PATH                   a folder (recursive) or a file: .py .txt .md .jsonl .json .parquet
  hf:NAME[:CONFIG]       a Hugging Face hub dataset, streamed (needs the network)

`open_corpus(spec)` returns a `Corpus` whose `id` changes whenever the data changes (it is used as
a cache key) and whose `iter_texts()` yields the non-empty documents in a deterministic order.
The train/validation split is by a hash of each document (`is_validation`), so it never depends on
the order of documents or on the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ncalab.errors import NcalabError
from ncalab.lazy import datasets

DEFAULT_CORPORA = {
    "code": "python-stdlib",
    "math": "hf:open-web-math/open-web-math",
    "web": "hf:Skylion007/openwebtext",
}

TEXT_EXTS = {".py", ".txt", ".md"}
JSON_EXTS = {".jsonl", ".json"}
PARQUET_EXTS = {".parquet"}
SUPPORTED_EXTS = TEXT_EXTS | JSON_EXTS | PARQUET_EXTS
LARGE_TXT_BYTES = 1 << 20  # .txt files in a folder above this are split into paragraphs (e.g. WikiText)

# Folders of the standard library that are not "library code" (tests, installed packages, caches).
_STDLIB_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}

_LOCAL_HINT = "pass a local corpus with --corpus PATH (a folder, or .txt/.md/.py/.jsonl/.parquet files)"


@dataclass
class Corpus:
    """A named source of documents. `id` is a stable cache key that changes when the data changes."""

    spec: str
    id: str
    _factory: Callable[[], Iterator[str]] = field(repr=False)

    def iter_texts(self) -> Iterator[str]:
        """Yield the corpus's non-empty documents, always in the same order."""
        for text in self._factory():
            if text and not text.isspace():
                yield text


def is_validation(text: str, val_fraction: float) -> bool:
    """True if `text` belongs to the validation split: a blake2b hash of the document, so the split
    is the same on every machine and for any document order (identical documents share a side)."""
    if not 0.0 <= val_fraction < 1.0:
        raise NcalabError(f"validation fraction must be in [0, 1), got {val_fraction}; pass e.g. --val-fraction 0.01")
    h = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "little") < val_fraction * 2**64


def record_text(record: dict) -> str:
    """Text of one dataset record: its "text" field, else all its string fields joined by newlines
    (so GSM8K's question and answer both end up in the document)."""
    text = record.get("text")
    if isinstance(text, str):
        return text
    return "\n".join(v for v in record.values() if isinstance(v, str))


def open_corpus(spec: str, cache_dir: str | os.PathLike | None = None) -> Corpus:
    """Open the corpus named by `spec`. `cache_dir` is where `datasets` may keep its arrow files
    (never ~/.cache); without it, local files are loaded into memory through a temporary folder."""
    spec = (spec or "").strip()
    if not spec:
        raise NcalabError("empty corpus spec; pass --corpus python-stdlib, a PATH, or hf:NAME")
    if spec == "python-stdlib":
        return _stdlib_corpus()
    if spec.startswith("hf:"):
        return _hub_corpus(spec)
    return _local_corpus(spec, cache_dir)


# --- python-stdlib ---------------------------------------------------------------------------------


def stdlib_files() -> list[tuple[str, Path]]:
    """(relative path, path) of every library .py file of this Python, sorted by relative path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        # Prune in place so os.walk never descends into tests or installed packages.
        dirnames[:] = [d for d in dirnames if d not in _STDLIB_SKIP_DIRS]
        for name in filenames:
            if name.endswith(".py"):
                out.append(((rel_dir / name).as_posix(), Path(dirpath) / name))
    out.sort()
    return out


def _stdlib_corpus() -> Corpus:
    files = stdlib_files()
    if not files:
        raise NcalabError("no standard library .py files found; pass a local corpus with --corpus PATH")
    h = hashlib.sha256(sys.version.encode())
    for rel, path in files:
        with contextlib.suppress(OSError):
            h.update(f"{rel}\0{path.stat().st_size}\0".encode())

    def texts() -> Iterator[str]:
        for _, path in files:
            try:
                yield path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):  # a few files are latin-1 test data; skip them
                continue

    return Corpus("python-stdlib", f"python-stdlib-{sys.version_info[0]}.{sys.version_info[1]}-{h.hexdigest()[:16]}", texts)


# --- local files, loaded through `datasets` ----------------------------------------------------------


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix.lower() not in SUPPORTED_EXTS:
            raise NcalabError(f"{path} is not a supported corpus file; use .txt .md .py .jsonl .json or .parquet")
        if path.stat().st_size == 0:  # `datasets` would say only that it found no features
            raise NcalabError(f"corpus {path} is empty (0 bytes); point --corpus at files that contain documents")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTS
                   and not any(part.startswith(".") for part in p.relative_to(path).parts) and p.stat().st_size)
    if not files:
        raise NcalabError(f"{path} has no corpus files; put .txt .md .py .jsonl .json or .parquet files in it")
    return files


def _local_corpus(spec: str, cache_dir) -> Corpus:
    path = Path(spec).expanduser()
    if not path.exists():
        raise NcalabError(f"corpus {spec!r} not found; pass python-stdlib, an existing PATH, or hf:NAME")
    files = _local_files(path)
    base = path if path.is_dir() else path.parent
    h = hashlib.sha256(b"local-v1\0")
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())

    # One `datasets` call per kind: all small text files together (one document per file), then each
    # large .txt, .json(l) and .parquet file on its own (their schemas may differ). A .txt file given
    # on its own is split into paragraphs whatever its size: as one document it could not be split
    # into training and validation text.
    small = [f for f in files if f.suffix.lower() in TEXT_EXTS
             and not (f.suffix.lower() == ".txt" and (f.stat().st_size > LARGE_TXT_BYTES or not path.is_dir()))]
    small_set = set(small)
    parts: list[Callable[[], Iterator[str]]] = []
    with _datasets_cache(cache_dir) as (cache, in_memory):
        if small:
            ds = _load("text", small, cache, in_memory, sample_by="document", encoding_errors="replace")
            parts.append(lambda ds=ds: iter(ds["text"]))
        for f in files:
            ext = f.suffix.lower()
            if f in small_set:
                continue
            if ext == ".txt":
                # Line by line, then regrouped on blank lines: WikiText's "blank" lines hold a space,
                # so datasets' own sample_by="paragraph" (split on "\n\n") would give one huge document.
                ds = _load("text", [f], cache, in_memory, sample_by="line", keep_linebreaks=True,
                           encoding_errors="replace")
                parts.append(lambda ds=ds: _paragraphs(ds["text"]))
            else:
                ds = _load("json" if ext in JSON_EXTS else "parquet", [f], cache, in_memory)
                if not any(_is_string(v) for v in ds.features.values()):
                    raise NcalabError(f"{f} has no text fields; it needs a \"text\" field or other string fields")
                parts.append(lambda ds=ds: _records(ds))

    corpus = Corpus(spec, f"local-{h.hexdigest()[:24]}", lambda: (t for part in parts for t in part()))
    if next(corpus.iter_texts(), None) is None:
        raise NcalabError(f"corpus {spec!r} has no text; point --corpus at files that contain documents")
    return corpus


@contextlib.contextmanager
def _datasets_cache(cache_dir):
    """Yield (cache folder, keep_in_memory): our own cache if given, else a temporary folder that is
    removed afterwards (the data then lives in memory). Progress bars are silenced meanwhile."""
    bars_were_on = not datasets.are_progress_bars_disabled()
    verbosity = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # our own error says what went wrong
    tmp = None
    try:
        if cache_dir is not None:
            cache = Path(cache_dir) / "datasets"
            cache.mkdir(parents=True, exist_ok=True)
            yield str(cache), False
        else:
            tmp = tempfile.mkdtemp(prefix="ncalab-datasets-")
            yield tmp, True
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if bars_were_on:
            datasets.enable_progress_bars()
        datasets.logging.set_verbosity(verbosity)


def _load(builder: str, files: list[Path], cache: str, in_memory: bool, **kw):
    try:
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train",
                                     cache_dir=cache, keep_in_memory=in_memory, **kw)
    except NcalabError:
        raise
    except Exception as e:  # malformed json/parquet, unreadable files, ...
        while e.__cause__ is not None:  # datasets wraps the real reason (e.g. a JSON parse error)
            e = e.__cause__
        where = files[0] if len(files) == 1 else f"{len(files)} {builder} files under {files[0].parent}"
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise NcalabError(f"cannot read corpus {where}: {reason}; check the file format") from None


def _is_string(feature) -> bool:
    return getattr(feature, "dtype", None) in ("string", "large_string")


def _records(ds) -> Iterator[str]:
    for batch in ds.iter(batch_size=1000):
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys)):
            yield record_text(dict(zip(keys, values)))


def _paragraphs(lines: Iterable[str]) -> Iterator[str]:
    """Group lines (with their line breaks) into documents separated by whitespace-only lines."""
    buf: list[str] = []
    for line in lines:
        if line.strip():
            buf.append(line)
        elif buf:
            yield "".join(buf)
            buf = []
    if buf:
        yield "".join(buf)


# --- Hugging Face hub, streamed -------------------------------------------------------------------------


def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_corpus(spec: str) -> Corpus:
    parts = spec[3:].split(":")
    name = parts[0].strip()
    config = parts[1].strip() if len(parts) > 1 and parts[1].strip() else None
    if not name or len(parts) > 2:
        raise NcalabError(f"bad hub corpus {spec!r}; write hf:NAME or hf:NAME:CONFIG")
    offline_msg = f"cannot load hub dataset {name} (offline?); {_LOCAL_HINT}"
    if _truthy_env("HF_HUB_OFFLINE") or _truthy_env("HF_DATASETS_OFFLINE"):
        raise NcalabError(offline_msg)

    def stream():
        return datasets.load_dataset(name, config, split="train", streaming=True)

    try:  # open and read one record now, so a missing network fails here and not mid-training
        if next(iter(stream()), None) is None:
            raise NcalabError(f"hub dataset {name} is empty; {_LOCAL_HINT}")
    except NcalabError:
        raise
    except Exception:
        raise NcalabError(offline_msg) from None

    def texts() -> Iterator[str]:
        try:
            for record in stream():
                yield record_text(record)
        except Exception as e:
            raise NcalabError(f"lost hub dataset {name} while reading ({type(e).__name__}); retry, or {_LOCAL_HINT}") from None

    return Corpus(spec, f"hf-{name.replace('/', '--')}-{config or 'default'}", texts)
