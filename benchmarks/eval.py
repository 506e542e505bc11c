"""Sampling speed of the downstream evaluation: batched generation with the KV cache
(what `ncalab eval` runs) against one sequence at a time without batching, in the same
process, on the same model and prompts; then the wall time of the paper's full HumanEval
protocol (164 problems x 64 samples, up to 500 new tokens) extrapolated from the measured
rate.

  python benchmarks/eval.py [--d-model 128 --layers 4] [--samples 16] [--new 64]
  python benchmarks/eval.py --paper-shape            # 24 x 2048 (1.6B): for a GPU

The last line is one JSON object with tokens_per_s, baseline_tokens_per_s and ratio
(target: ratio >= 8), and humaneval_protocol_hours.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ncalab.config import ModelConfig
from ncalab.train import device as devices
from ncalab.train.generate import Sampling, generate
from ncalab.train.model import build_model

HUMANEVAL_SAMPLES = 164 * 64
HUMANEVAL_NEW_TOKENS = 500


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--paper-shape", action="store_true", help="24 layers, width 2048, 32 heads")
    ap.add_argument("--samples", type=int, default=16, help="samples of one prompt generated together (batched)")
    ap.add_argument("--new", type=int, default=64, help="new tokens per sample")
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    m = ModelConfig(n_layer=24, d_model=2048, n_head=32) if args.paper_shape else \
        ModelConfig(n_layer=args.layers, d_model=args.d_model, n_head=args.heads)
    placement = devices.choose(args.device, "auto")
    vocab, context = 4096 if not args.paper_shape else 50257, 1024
    model = build_model(m, vocab, context, seed=0).to(placement.device).eval()
    prompt = torch.randint(0, vocab, (args.prompt,), generator=torch.Generator().manual_seed(0)).tolist()

    def batched():
        generate(model, [prompt] * args.samples, args.new, sampling=Sampling(0.4, 0.95, torch.Generator().manual_seed(1)),
                 autocast=placement.autocast)

    def one_at_a_time():
        """The paper's evaluation loop without its cache: each sample alone, the whole
        sequence re-read at every new token."""
        gen = torch.Generator().manual_seed(1)
        for _ in range(args.samples):
            ids = list(prompt)
            for _ in range(args.new):
                with torch.no_grad(), placement.autocast():
                    logits = model(input_ids=torch.tensor([ids], device=placement.device)).logits[0, -1].float()
                probs = torch.softmax(logits / 0.4, dim=-1).cpu()
                ids.append(int(torch.multinomial(probs, 1, generator=gen)))

    batched()  # warm-up
    t_batched = min(timed(batched) for _ in range(3))
    t_single = timed(one_at_a_time)
    tokens = args.samples * args.new
    rate, base = tokens / t_batched, tokens / t_single
    hours = HUMANEVAL_SAMPLES * HUMANEVAL_NEW_TOKENS / rate / 3600
    print(f"model {m.n_layer}x{m.d_model} on {placement.label}; {args.samples} samples x {args.new} new tokens "
          f"after a {args.prompt}-token prompt")
    print(f"  batched with the KV cache: {rate:,.0f} tokens/s")
    print(f"  one at a time, no cache:   {base:,.0f} tokens/s  (ratio {rate / base:.1f}x)")
    print(f"  the paper's HumanEval protocol ({HUMANEVAL_SAMPLES:,} samples x up to {HUMANEVAL_NEW_TOKENS} tokens), "
          f"per model, at this rate: {hours:.1f} h (an upper bound: most completions stop early)")
    print(json.dumps({"tokens_per_s": round(rate), "baseline_tokens_per_s": round(base), "ratio": round(rate / base, 2),
                      "humaneval_protocol_hours": round(hours, 2), "model": f"{m.n_layer}x{m.d_model}",
                      "device": placement.device.type, "samples": args.samples, "new_tokens": args.new}))


if __name__ == "__main__":
    main()
