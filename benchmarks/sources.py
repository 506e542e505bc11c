"""Stage-1 sources: tokens/s of each source's training stream at the tiny and paper sequence
lengths, measured through the same path training takes (Source.open(...).batches.next()).

Every generator must outrun paper-scale training on an H100, about 45k tokens/s per GPU
(the ratio against that figure is printed). For text, the first pass tokenizes the corpus
(once per corpus, then cached); both the cold rate (tokenizer training and tokenization
included) and the warm rate (batches from the cached token arrays) are reported.

  python benchmarks/sources.py [--seconds 5] [--corpus PATH]  (default: the WikiText-2 excerpt in tests/data)

The last line is one JSON object with nca, dyck, shuffle_dyck and text tokens/s (paper length).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ncalab.config import ExperimentConfig
from ncalab.experiment.reporting import SilentReporter
from ncalab.experiment.sources import SOURCES

H100_TOKENS_PER_S = 45_000  # paper-scale training throughput per GPU the data must outrun
DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "wikitext2-valid-excerpt.txt"


def stream_rate(source: str, seq_len: int, batch_size: int, seconds: float, corpus: str, cache: Path) -> tuple[float, float]:
    """(tokens/s of the training stream, seconds to open it)."""
    cfg = ExperimentConfig()
    cfg.nca = cfg.nca.replace(seq_len=seq_len)
    cfg.stage1.source, cfg.stage1.corpus, cfg.stage1.batch_size = source, corpus, batch_size
    cfg.stage1.val_sequences = batch_size
    cfg.stage1.tokens = 50_000_000
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
            for name in SOURCES:
                rate, opened = stream_rate(name, length, batch, args.seconds, args.corpus, Path(tmp))
                rows.append((scale, length, name, rate, opened))
                if scale == "paper":
                    result[name] = round(rate)
                    result[f"{name}_vs_h100"] = round(rate / H100_TOKENS_PER_S, 1)
                    if name == "text":
                        result["text_open_s"] = round(opened, 2)
    print(f"{'scale':<6} {'length':>6}  {'source':<13} {'tokens/s':>12}  {'x H100 training':>15}  {'open (s)':>8}")
    for scale, length, name, rate, opened in rows:
        print(f"{scale:<6} {length:>6}  {name:<13} {rate:>12,.0f}  {rate / H100_TOKENS_PER_S:>15.1f}  {opened:>8.2f}")
    print("text opens from a cold cache in the first row of each length (tokenizer training + tokenization); "
          "its stream rate is from the cached arrays")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
