"""Running one experiment end to end: NCA pre-pre-training, transfer, language pre-training
of the transferred model and of a scratch baseline on the same data, summary, all in the store.

The service reports through a Reporter (the CLI draws rich progress bars, the TUI its own
widgets) and never prints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from pathlib import Path
from typing import Protocol


from ncalab.errors import NcalabError
from ncalab.experiment.config import ExperimentConfig
from ncalab.experiment.reuse import run_keys
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


def submit(cfg: ExperimentConfig, store, name: str | None = None, sweep_id: str | None = None):
    """Validate and record an experiment and its three runs, all queued; returns the experiment."""
    cfg.validate()
    devices.choose(cfg.runtime.device, cfg.runtime.dtype)  # an impossible device fails now, not in the job
    from ncalab.data.corpora import open_corpus

    open_corpus(cfg.data.corpus)  # a missing or unreachable corpus fails before anything is stored
    keys = run_keys(cfg, devices.choose(cfg.runtime.device, cfg.runtime.dtype))
    exp = store.create_experiment(cfg.preset, cfg.scale, cfg.seed, cfg.to_dict(), name=name, sweep_id=sweep_id)
    store.create_run(exp.id, "stage1", cfg.to_dict(), cfg.stage1.tokens, keys["stage1"])
    store.create_run(exp.id, "nca", cfg.to_dict(), cfg.stage2.tokens, keys["nca"])
    store.create_run(exp.id, "scratch", cfg.to_dict(), cfg.stage2.tokens, keys["scratch"])
    return exp


def _run_alive(run) -> bool:
    from ncalab.jobs.queue import is_dead  # runs carry the same pid, host and heartbeat as experiments

    return not is_dead(run)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links where the file system allows (no extra space, and deleting either side
    leaves the other whole), copies elsewhere."""
    import shutil

    if dst.exists():
        shutil.rmtree(dst)

    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


def _reuse_or_claim(store, run, kind: str, reporter: Reporter, should_stop, placement) -> str:
    """Take an identical run's result if there is one; returns what happened: ``reused``
    (result taken), ``train`` (this run must be trained and is now marked running) or
    ``stopped`` (asked to stop while waiting for an identical run another job trains)."""
    waited = False
    while True:
        got = store.claim_run(run.id, os.getpid(), socket.gethostname(), placement.label, _run_alive)
        if got == "train":
            return "train"
        if got == "wait":
            if not waited:
                reporter.note(f"{kind}: an identical run is being trained by another job; waiting for its result")
                waited = True
            if should_stop():
                return "stopped"
            time.sleep(5.0)
            continue
        src_model = store.run_dir(got) / "model"
        if kind == "stage1" and not src_model.is_dir():
            store.start_run(run.id, os.getpid(), socket.gethostname(), placement.label)  # its model is gone
            return "train"
        if src_model.is_dir():
            _link_tree(src_model, store.run_dir(run) / "model")
        store.adopt_run(run.id, got)
        reporter.note(f"{kind}: identical to run {got.id} of experiment {got.experiment_id}; its result is reused")
        reporter.done(kind, {})
        return "reused"


def config_of(exp) -> ExperimentConfig:
    from ncalab.experiment.config import apply_overrides

    return apply_overrides(ExperimentConfig(), json.loads(exp.config_json))


def run_experiment(cfg: ExperimentConfig, store, reporter: Reporter | None = None, name: str | None = None) -> dict:
    """Run an experiment in this process (foreground); returns its summary."""
    exp = submit(cfg, store, name)
    if not store.claim_experiment(exp.id, os.getpid(), socket.gethostname()):
        raise NcalabError(f"experiment {exp.id} was taken by another process")
    summary = execute(store, exp.id, reporter)
    if summary is None:
        raise NcalabError(f"experiment {exp.id} was stopped; `ncalab runs resume {exp.id}` continues it")
    return summary


def _train_stage(store, run, kind: str, model, spec: StageSpec, placement, batches, val, reporter, cfg, should_stop):
    """Train one stage, continuing from its last checkpoint when there is one. Returns the
    trainer, or None when it was stopped (after a checkpoint)."""
    hooks = _RunHooks(store, run.id, kind, reporter)
    ckpt_dir = store.run_dir(run) / "checkpoints"
    trainer = Trainer(model, spec, placement, batches, val, hooks.metrics, hooks.progress, ckpt_dir,
                      cfg.runtime.compile, should_stop)
    if (ckpt_dir / "last" / checkpoint.STATE_FILE).exists():
        trainer.restore(ckpt_dir / "last")
        # points logged after the checkpoint would repeat: the resumed run logs them again
        store.delete_metrics_after(run.id, trainer.tokens)
        reporter.note(f"{kind}: resuming from step {trainer.step} ({trainer.tokens:,} tokens)")
    else:
        store.delete_metrics_after(run.id, -1)  # no checkpoint: the stage starts over, and so does its curve
    reporter.stage(kind, spec.steps * spec.tokens_per_step)
    store.start_run(run.id, os.getpid(), socket.gethostname(), placement.label)
    result = trainer.run()
    store.heartbeat(run.id, step=trainer.step, tokens=trainer.tokens)
    if trainer.stopped:
        store.finish_run(run.id, "cancelled")
        return None
    if trainer.train_seconds:
        hooks.metrics([{"name": "stage_tokens_per_s", "step": trainer.step, "tokens": trainer.tokens,
                        "wall_time": result["seconds"], "value": result["tokens_per_s"]}])
    return trainer


def execute(store, exp_id: str, reporter: Reporter | None = None, should_stop=None) -> dict | None:
    """Run (or continue) a claimed experiment: stages already completed are skipped, an
    interrupted stage continues from its checkpoint. Returns the summary, or None if stopped."""
    reporter = reporter or SilentReporter()
    should_stop = should_stop or (lambda: False)
    exp = store.get_experiment(exp_id)
    cfg = config_of(exp).validate()
    runs = {r.kind: r for r in store.runs_of(exp_id)}
    placement = devices.choose(cfg.runtime.device, cfg.runtime.dtype)
    devices.tune_glibc_malloc()
    devices.set_threads(cfg.runtime.threads)
    nca_cfg, band = cfg.nca_config(), cfg.band()
    current = None
    try:
        tok, train_arr, val_arr = prepare_language_data(cfg, cache_dir(store), reporter)
        lang_vocab = len(tok)
        from ncalab.data.lm_data import TokenBatches, val_batches

        # ---- stage 1: NCA pre-pre-training --------------------------------------------------
        current = "stage1"
        r = runs["stage1"]
        step = "reused" if r.status == "completed" else _reuse_or_claim(store, r, "stage1", reporter, should_stop, placement)
        if step == "stopped":
            store.finish_experiment(exp_id, "cancelled")
            return None
        if step == "reused":
            nca_model = checkpoint.load_model(store.run_dir(r) / "model")
        else:
            s1 = cfg.stage1
            model = build_model(cfg.model, nca_cfg.vocab_size, nca_cfg.seq_len, seed=cfg.seed)
            reporter.note(f"model: {count_params(model, embeddings=False):,} parameters without embeddings; {placement.label}")
            trainer = _train_stage(
                store, r, "stage1", model, _stage_spec("stage1", s1, s1.batch_size * nca_cfg.seq_len, 8), placement,
                NCABatches(nca_cfg, band, cfg.seed, s1.batch_size),
                nca_validation(nca_cfg, band, cfg.seed, s1.val_sequences, s1.batch_size), reporter, cfg, should_stop)
            if trainer is None:
                store.finish_experiment(exp_id, "cancelled")
                return None
            checkpoint.save(store.run_dir(r) / "model", trainer.model)
            store.finish_run(r.id, "completed")
            reporter.done("stage1", {})
            nca_model = trainer.model.cpu()
            del trainer

        # ---- stage 2, twice: transferred and scratch, same data, order, budget, schedule, seed
        s2 = cfg.stage2
        windows = val_batches(val_arr, s2.seq_len, s2.batch_size, s2.eval_tokens)
        for kind in ("nca", "scratch"):
            current = kind
            r = runs[kind]
            step = "reused" if r.status == "completed" else _reuse_or_claim(store, r, kind, reporter, should_stop, placement)
            if step == "stopped":
                store.finish_experiment(exp_id, "cancelled")
                return None
            if step == "reused":
                continue
            if kind == "nca":
                t = cfg.transfer
                model, kept = transfer(nca_model, cfg.model, lang_vocab, s2.seq_len, cfg.seed + 1, set(t.reinit),
                                       t.control, t.shrink, t.perturb)
                reporter.note(f"transferred {len(kept)} tensors; re-initialised embeddings, head"
                              + (f" and {', '.join(t.reinit)}" if t.reinit else "")
                              + (f"; control {t.control}" if t.control != "none" else ""))
            else:
                model, kept = build_model(cfg.model, lang_vocab, s2.seq_len, seed=cfg.seed + 1), []
            batches = LanguageBatches(TokenBatches(train_arr, s2.seq_len, s2.batch_size, seed=cfg.seed))
            spec = _stage_spec(kind, s2, s2.batch_size * s2.seq_len, 10)
            if kept:
                spec = dataclasses.replace(spec, transferred=frozenset(kept), transferred_lr_scale=cfg.transfer.lr_scale,
                                           freeze_steps=int(cfg.transfer.freeze * spec.steps))
            trainer = _train_stage(store, r, kind, model, spec, placement, batches, language_validation(windows),
                                   reporter, cfg, should_stop)
            if trainer is None:
                store.finish_experiment(exp_id, "cancelled")
                return None
            out = store.run_dir(r) / "model"
            checkpoint.save(out, trainer.model)
            tok.save_pretrained(out)
            store.finish_run(r.id, "completed")
            reporter.done(kind, {})
            del trainer, model
        current = None
        summary = summarise(store, exp_id, placement.label)
        store.set_summary(exp_id, summary)
        store.finish_experiment(exp_id, "completed")
        return summary
    except BaseException as e:
        error = str(e) if isinstance(e, NcalabError) else f"{type(e).__name__}: {e}"
        status = "cancelled" if isinstance(e, KeyboardInterrupt) else "failed"
        if current is not None:
            store.finish_run(runs[current].id, status, error=error)
        store.finish_experiment(exp_id, status, error=error)
        raise


def summarise(store, exp_id: str, device: str) -> dict:
    exp = store.get_experiment(exp_id)
    runs = {r.kind: r for r in store.runs_of(exp_id)}
    summary = compare(store.curve(runs["scratch"].id, "val_ppl"), store.curve(runs["nca"].id, "val_ppl"))
    stage1 = store.latest_metrics(runs["stage1"].id)
    summary.update({
        "experiment_id": exp_id, "preset": exp.preset, "scale": exp.scale, "seed": exp.seed,
        "wall_s": time.time() - (exp.started_at or exp.created_at), "device": device,
        "tokens_per_s": {k: store.latest_metrics(r.id).get("stage_tokens_per_s") for k, r in runs.items()},
        "stage1_val_loss": stage1.get("val_loss"),
        "runs": {k: r.id for k, r in runs.items()},
    })
    return summary


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
