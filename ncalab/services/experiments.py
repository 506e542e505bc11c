"""Running one experiment end to end: NCA pre-pre-training, transfer, language pre-training
of the transferred model and of a scratch baseline on the same data, summary, all in the store.

The service reports through a Reporter (the CLI draws rich progress bars, the TUI its own
widgets) and never prints.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Protocol

import torch

from ncalab.errors import NcalabError
from ncalab.experiment.config import ExperimentConfig
from ncalab.experiment.summary import compare
from ncalab.train import checkpoint
from ncalab.train import device as devices
from ncalab.train.batches import LanguageBatches, NCABatches, language_validation, nca_validation
from ncalab.train.loop import StageSpec, Trainer
from ncalab.train.model import build_model, count_params
from ncalab.train.transfer import transfer


class Reporter(Protocol):
    def stage(self, name: str, total_tokens: int) -> None: ...
    def progress(self, name: str, tokens: int, metrics: dict) -> None: ...
    def done(self, name: str, result: dict) -> None: ...
    def note(self, text: str) -> None: ...


class SilentReporter:
    def stage(self, name, total_tokens): pass
    def progress(self, name, tokens, metrics): pass
    def done(self, name, result): pass
    def note(self, text): pass


STAGES = ("stage1", "nca", "scratch")


def cache_dir(store) -> Path:
    d = Path(store.home) / "cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


def prepare_language_data(cfg: ExperimentConfig, cache: Path, reporter: Reporter):
    """Corpus -> tokenizer -> token arrays (cached per corpus, tokenizer and budget)."""
    from ncalab.data.corpora import open_corpus
    from ncalab.data.lm_data import build_token_arrays
    from ncalab.data.tokenizer import get_tokenizer

    corpus = open_corpus(cfg.data.corpus)
    reporter.note(f"corpus {cfg.data.corpus}: preparing tokenizer and token arrays")
    tok, tok_id = get_tokenizer(corpus, cfg.data.vocab_size, cache, cfg.data.val_fraction, cfg.data.tokenizer)
    train, val = build_token_arrays(corpus, tok, tok_id, cache, cfg.data.val_fraction,
                                    max_train_tokens=int(cfg.stage2.tokens * 1.05) + cfg.stage2.seq_len * 64,
                                    max_val_tokens=cfg.stage2.eval_tokens + cfg.stage2.seq_len + 1)
    return tok, train, val


def _stage_spec(name: str, s, tokens_per_step: int, n_evals: int) -> StageSpec:
    return StageSpec(name, s.tokens, tokens_per_step, s.lr, s.warmup, s.min_lr_ratio, s.weight_decay,
                     s.grad_clip, s.eval_every, n_evals)


class _RunHooks:
    """Store writes and reporting for one run: metrics, heartbeats, progress."""

    def __init__(self, store, run_id: str, name: str, reporter: Reporter):
        self.store, self.run_id, self.name, self.reporter = store, run_id, name, reporter
        self._last_beat = 0.0

    def metrics(self, points: list[dict]) -> None:
        self.store.log_metrics(self.run_id, points)

    def progress(self, tokens: int, m: dict) -> None:
        now = time.time()
        if now - self._last_beat > 5:
            self.store.heartbeat(self.run_id, step=0, tokens=tokens)
            self._last_beat = now
        self.reporter.progress(self.name, tokens, m)


def run_experiment(cfg: ExperimentConfig, store, reporter: Reporter | None = None, name: str | None = None) -> dict:
    """Run all three stages; returns the summary (also stored on the experiment)."""
    reporter = reporter or SilentReporter()
    cfg.validate()
    placement = devices.choose(cfg.runtime.device, cfg.runtime.dtype)
    devices.tune_glibc_malloc()
    devices.set_threads(cfg.runtime.threads)
    nca_cfg, band = cfg.nca_config(), cfg.band()
    from ncalab.data.corpora import open_corpus

    open_corpus(cfg.data.corpus)  # a missing or unreachable corpus fails before anything is stored
    exp = store.create_experiment(cfg.preset, cfg.scale, cfg.seed, cfg.to_dict(), name=name)
    runs = {
        "stage1": store.create_run(exp.id, "stage1", cfg.to_dict(), cfg.stage1.tokens),
        "nca": store.create_run(exp.id, "nca", cfg.to_dict(), cfg.stage2.tokens),
        "scratch": store.create_run(exp.id, "scratch", cfg.to_dict(), cfg.stage2.tokens),
    }
    t0 = time.time()
    host, pid = socket.gethostname(), os.getpid()
    current = None
    try:
        store.set_experiment_status(exp.id, "running")
        tok, train_arr, val_arr = prepare_language_data(cfg, cache_dir(store), reporter)
        lang_vocab = len(tok)
        from ncalab.data.lm_data import TokenBatches, val_batches

        results: dict[str, dict] = {}
        # ---- stage 1: NCA pre-pre-training --------------------------------------------------
        current = "stage1"
        r = runs["stage1"]
        store.start_run(r.id, pid, host, placement.label)
        s1 = cfg.stage1
        model = build_model(cfg.model, nca_cfg.vocab_size, nca_cfg.seq_len, seed=cfg.seed)
        reporter.note(f"model: {count_params(model, embeddings=False):,} parameters without embeddings; {placement.label}")
        spec = _stage_spec("stage1", s1, s1.batch_size * nca_cfg.seq_len, 8)
        reporter.stage("stage1", spec.steps * spec.tokens_per_step)
        hooks = _RunHooks(store, r.id, "stage1", reporter)
        trainer = Trainer(model, spec, placement, NCABatches(nca_cfg, band, cfg.seed, s1.batch_size),
                          nca_validation(nca_cfg, band, cfg.seed, s1.val_sequences, s1.batch_size),
                          hooks.metrics, hooks.progress, store.run_dir(r) / "checkpoints", cfg.runtime.compile)
        results["stage1"] = trainer.run()
        checkpoint.save(store.run_dir(r) / "model", trainer.model)
        store.finish_run(r.id, "completed")
        reporter.done("stage1", results["stage1"])
        nca_model = trainer.model.cpu()

        # ---- stage 2, twice: transferred and scratch, same data, order, budget, schedule, seed
        s2 = cfg.stage2
        windows = val_batches(val_arr, s2.seq_len, s2.batch_size, s2.eval_tokens)
        for kind in ("nca", "scratch"):
            current = kind
            r = runs[kind]
            store.start_run(r.id, pid, host, placement.label)
            if kind == "nca":
                model, kept = transfer(nca_model, cfg.model, lang_vocab, s2.seq_len, cfg.seed + 1, set(cfg.transfer.reinit))
                reporter.note(f"transferred {len(kept)} tensors; re-initialised embeddings, head"
                              + (f" and {', '.join(cfg.transfer.reinit)}" if cfg.transfer.reinit else ""))
            else:
                model = build_model(cfg.model, lang_vocab, s2.seq_len, seed=cfg.seed + 1)
            spec = _stage_spec(kind, s2, s2.batch_size * s2.seq_len, 10)
            reporter.stage(kind, spec.steps * spec.tokens_per_step)
            hooks = _RunHooks(store, r.id, kind, reporter)
            batches = LanguageBatches(TokenBatches(train_arr, s2.seq_len, s2.batch_size, seed=cfg.seed))
            trainer = Trainer(model, spec, placement, batches, language_validation(windows),
                              hooks.metrics, hooks.progress, store.run_dir(r) / "checkpoints", cfg.runtime.compile)
            results[kind] = trainer.run()
            out = store.run_dir(r) / "model"
            checkpoint.save(out, trainer.model)
            tok.save_pretrained(out)
            store.finish_run(r.id, "completed")
            reporter.done(kind, results[kind])
            del trainer, model
        current = None
        summary = compare(store.curve(runs["scratch"].id, "val_ppl"), store.curve(runs["nca"].id, "val_ppl"))
        summary.update({
            "experiment_id": exp.id, "preset": cfg.preset, "scale": cfg.scale, "seed": cfg.seed,
            "wall_s": time.time() - t0, "device": placement.label,
            "tokens_per_s": {k: v["tokens_per_s"] for k, v in results.items()},
            "stage1_val_loss": results["stage1"].get("val_loss"),
            "runs": {k: v.id for k, v in runs.items()},
        })
        store.set_summary(exp.id, summary)
        store.set_experiment_status(exp.id, "completed")
        return summary
    except BaseException as e:
        error = str(e) if isinstance(e, NcalabError) else f"{type(e).__name__}: {e}"
        status = "cancelled" if isinstance(e, KeyboardInterrupt) else "failed"
        for kind in STAGES:
            run = store.get_run(runs[kind].id)
            if run.status in ("running", "queued"):
                store.finish_run(run.id, status if kind == current or run.status == "running" else "cancelled",
                                 error=error if kind == current else None)
        store.set_experiment_status(exp.id, status)
        raise


def _eval_tokens(corpus, tok, split: str, val_fraction: float, max_tokens: int):
    """Token ids of the chosen documents (held-out split, or all), eos after each, up to max_tokens."""
    import numpy as np

    from ncalab.data.corpora import is_validation

    eos = tok.eos_token_id if tok.eos_token_id is not None else 0
    out, n, batch = [], 0, []

    def flush():
        nonlocal n
        for ids in tok(batch)["input_ids"]:
            out.append(np.asarray(ids + [eos], dtype=np.int64))
            n += len(ids) + 1
        batch.clear()

    for text in corpus.iter_texts():
        if split == "all" or is_validation(text, val_fraction):
            batch.append(text)
            if len(batch) >= 64:
                flush()
                if n >= max_tokens:
                    break
    if batch:
        flush()
    if not out:
        raise NcalabError(f"corpus {corpus.spec} has no documents in the {split!r} split")
    return np.concatenate(out)[:max_tokens]


def evaluate_checkpoint(path: Path, corpus_spec: str, eval_tokens: int, seq_len: int, batch_size: int = 8,
                        device: str = "auto", dtype: str = "auto", split: str = "val", val_fraction: float = 0.02) -> dict:
    """Perplexity of a saved language model (with its tokenizer) on a corpus."""
    from transformers import AutoTokenizer

    from ncalab.data.corpora import open_corpus
    from ncalab.data.lm_data import val_batches
    from ncalab.train.evaluate import evaluate

    if split not in ("val", "all"):
        raise NcalabError(f"--split must be val or all, got {split!r}")
    path = Path(path)
    placement = devices.choose(device, dtype)
    model = checkpoint.load_model(path, placement.device)
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception:  # noqa: BLE001
        raise NcalabError(f"{path} has no tokenizer: only language models (stage 2) can be evaluated on a corpus") from None
    corpus = open_corpus(corpus_spec)
    seq_len = min(seq_len, model.config.max_position_embeddings)
    ids = _eval_tokens(corpus, tok, split, val_fraction, eval_tokens + seq_len + 1)
    windows = val_batches(ids, seq_len, batch_size, eval_tokens)
    if not windows:
        raise NcalabError(f"corpus {corpus_spec} has fewer than {seq_len + 1} tokens to evaluate on")
    res = evaluate(model, language_validation(windows), placement)
    return {"checkpoint": str(path), "corpus": corpus_spec, "split": split,
            "tokens": int(sum(w[:, 1:].numel() for w in windows)), "loss": res["val_loss"], "ppl": res["val_ppl"]}
