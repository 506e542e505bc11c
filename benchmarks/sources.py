"""Stage-1 sources: tokens/s of each source's training stream at the tiny and paper sequence
lengths, measured through the same path training takes (Source.open(...).batches.next()).

Every generator must outrun paper-scale training on an H100, about 45k tokens/s per GPU
(the ratio against that figure is printed). For text, the first pass tokenizes the corpus
(once per corpus, then cached); both the cold rate (tokenizer training and tokenization
included) and the warm rate (batches from the cached token arrays) are reported.

  python benchmarks/sources.py [--seconds 5] [--corpus PATH]  (default: the WikiText-2 excerpt in tests/data)

Every registered source is measured (plugins included), and shuffle-Dyck also with Hu et al.'s
generator (shuffle_dyck_hu: dyck.generator=hu, their depth 8 and p_open 0.51).

The last line is one JSON object with each source's tokens/s at the paper length.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ncalab.config import ExperimentConfig
from ncalab.config.keys import apply_overrides
from ncalab.reporting import SilentReporter
from ncalab.sources.interface import SOURCES

H100_TOKENS_PER_S = 45_000  # paper-scale training throughput per GPU the data must outrun
DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "wikitext2-valid-excerpt.txt"


# variants measured beside the registered sources: label -> (source, settings)
VARIANTS = {"shuffle_dyck_hu": ("shuffle_dyck", {"dyck": {"generator": "hu", "depth_max": 8, "p_open": 0.51}})}


def stream_rate(source: str, seq_len: int, batch_size: int, seconds: float, corpus: str, cache: Path,
                settings: dict | None = None) -> tuple[float, float]:
    """(tokens/s of the training stream, seconds to open it)."""
    cfg = apply_overrides(ExperimentConfig(), settings or {})
    cfg.nca = cfg.nca.replace(seq_len=seq_len)
    cfg.stage1.source, cfg.stage1.corpus, cfg.stage1.batch_size = source, corpus, batch_size
    cfg.stage1.val_sequences = batch_size
    cfg.stage1.tokens = 50_000_000
    cfg.data.val_fraction = 0.2  # the default excerpt (160 kB) then holds a held-out window of 1,025 tokens
    cfg.validate()
    t0 = time.perf_counter()
    data = SOURCES[source].open(cfg, cache, SilentReporter().note)
    opened = time.perf_counter() - t0
    data.batches.next()  # warm (numba compilation, first candidate batch)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        inputs, _ = data.batches.next()
        n += inputs.numel()
    return n / (time.perf_counter() - t0), opened


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0, help="measuring time per source and length")
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="the text source's corpus")
    args = ap.parse_args()
    rows, result = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for length, batch, scale in ((512, 16, "tiny"), (1024, 32, "paper")):
            runs = {**{name: (name, None) for name in SOURCES}, **VARIANTS}
            for name, (source, settings) in runs.items():
                rate, opened = stream_rate(source, length, batch, args.seconds, args.corpus, Path(tmp), settings)
                rows.append((scale, length, name, rate, opened))
                if scale == "paper":
                    result[name] = round(rate)
                    result[f"{name}_vs_h100"] = round(rate / H100_TOKENS_PER_S, 1)
                    if name == "text":
                        result["text_open_s"] = round(opened, 2)
    print(f"{'scale':<6} {'length':>6}  {'source':<16} {'tokens/s':>12}  {'x H100 training':>15}  {'open (s)':>8}")
    for scale, length, name, rate, opened in rows:
        print(f"{scale:<6} {length:>6}  {name:<16} {rate:>12,.0f}  {rate / H100_TOKENS_PER_S:>15.1f}  {opened:>8.2f}")
    print("text opens from a cold cache in the first row of each length (tokenizer training + tokenization); "
          "its stream rate is from the cached arrays")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
