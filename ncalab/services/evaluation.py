"""Evaluating trained models after the fact: perplexity of saved language models on any
corpus, and the in-context evaluation of a stage-1 model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ncalab.config import apply_overrides, parse_set
from ncalab.data.corpora import is_validation, open_corpus
from ncalab.data.lm_data import val_batches
from ncalab.errors import NcalabError
from ncalab.evaluation.isolation import DESCRIPTIONS, NONE
from ncalab.evaluation.probes import PROBES
from ncalab.evaluation.stages import stages_for
from ncalab.evaluation.tasks import ARMS, HUMANEVAL
from ncalab.experiment import probing
from ncalab.experiment.stages import log_in_context
from ncalab.lazy import np, transformers
from ncalab.services.experiments import check_evaluations, config_of
from ncalab.services.runs import resolve_experiment
from ncalab.sources.interface import SOURCES
from ncalab.train import checkpoint
from ncalab.train import device as devices
from ncalab.train.batches import language_validation
from ncalab.train.evaluate import evaluate

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store


def _eval_tokens(corpus, tok, split: str, val_fraction: float, max_tokens: int):
    """Token ids of the chosen documents (held-out split, or all), eos after each, up to max_tokens."""
    eos = tok.eos_token_id if tok.eos_token_id is not None else 0
    out: list = []
    batch: list = []
    n = 0

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


@dataclass(frozen=True)
class CorpusText:
    """The text a perplexity is measured on: up to `tokens` tokens of a corpus's held-out
    documents (split "val", chosen by val_fraction) or of all of them (split "all"), in
    windows of seq_len (capped at the model's context)."""

    corpus: str
    tokens: int
    seq_len: int
    split: str = "val"
    val_fraction: float = 0.02
    batch_size: int = 8


def evaluate_checkpoint(path: Path, text: CorpusText, device: str = "auto", dtype: str = "auto") -> dict:
    """Perplexity of a saved language model (with its tokenizer) on a corpus."""
    if text.split not in ("val", "all"):
        raise NcalabError(f"--split must be val or all, got {text.split!r}")
    path = Path(path)
    placement = devices.choose(device, dtype)
    model = checkpoint.load_model(path, placement.device)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception:  # noqa: BLE001
        raise NcalabError(f"{path} has no tokenizer: only language models (stage 2) can be evaluated on a corpus") from None
    corpus = open_corpus(text.corpus)
    seq_len = min(text.seq_len, model.config.max_position_embeddings)
    ids = _eval_tokens(corpus, tok, text.split, text.val_fraction, text.tokens + seq_len + 1)
    windows = val_batches(ids, seq_len, text.batch_size, text.tokens)
    if not windows:
        raise NcalabError(f"corpus {text.corpus} has fewer than {seq_len + 1} tokens to evaluate on")
    res = evaluate(model, language_validation(windows), placement)
    return {"checkpoint": str(path), "corpus": text.corpus, "split": text.split,
            "tokens": int(sum(w[:, 1:].numel() for w in windows)), "loss": res["val_loss"], "ppl": res["val_ppl"]}


def in_context(store: Store, ident: str, device: str = "auto", sequences: int | None = None) -> dict:
    """The in-context evaluation of an experiment's stage-1 model (NCA: next-frame accuracy per
    frame; Dyck: conditional validity), stored with its stage-1 run and returned."""
    exp = resolve_experiment(store, ident)
    cfg = config_of(exp)
    if sequences is not None:
        if sequences <= 0:
            raise NcalabError(f"--sequences must be positive, got {sequences}")
        cfg.stage1.icl_sequences = sequences
    elif cfg.stage1.icl_sequences <= 0:
        cfg.stage1.icl_sequences = 16
    run = next((r for r in store.runs_of(exp.id) if r.kind == "stage1"), None)
    folder = store.run_dir(run) / "model" if run is not None else None
    if run is None or folder is None or not (folder / "config.json").exists():
        raise NcalabError(f"experiment {exp.id} has no finished stage-1 model yet")
    if not SOURCES[cfg.stage1.source].in_context:
        raise NcalabError(f"stage 1 of {exp.id} trained on {cfg.stage1.source}, which has no in-context evaluation")
    placement = devices.choose(device, cfg.runtime.dtype)
    points = log_in_context(store, run, checkpoint.load_model(folder), cfg, placement)
    return {"experiment_id": exp.id, "run_id": run.id, "source": cfg.stage1.source,
            "sequences": cfg.stage1.icl_sequences, "points": points}


def probes(store: Store, ident: str, names: Sequence[str] = (), items: int | None = None, length: int | None = None,
           device: str = "auto", note=lambda text: None) -> dict:
    """The skill probes of a stored experiment's models (the stage-1 model, both language models
    at the start and end of stage 2), stored with their runs, replacing earlier scores of the same
    probes, and returned. Default: every probe, the experiment's eval.probes items. Nothing is
    stored when a probe is unknown or an asked length does not fit a model's context."""
    exp = resolve_experiment(store, ident)
    cfg = config_of(exp)
    names = list(dict.fromkeys(names)) or list(PROBES)
    n = cfg.eval.probes.items if items is None else items
    if n <= 0:
        raise NcalabError(f"--items must be positive, got {n}")
    if length is not None and length <= 0:
        raise NcalabError(f"--length must be positive, got {length}")
    probing.check(names, length, probing.contexts(cfg))
    runs = {r.kind: r for r in store.runs_of(exp.id)}
    targets, missing = probing.subjects(store, runs, cfg)
    if not targets:
        raise NcalabError(f"experiment {exp.id} has no finished model to probe yet")
    placement = devices.choose(device, cfg.runtime.dtype)
    results = probing.probe_all(targets, names, cfg, placement, n, length, note)
    probing.store_results(store, results)
    return {"experiment_id": exp.id, "probes": names, "items": n, "skipped": missing,
            "models": [{"kind": s.kind, "when": s.when, "run_id": s.run.id,
                        "scores": {sc.probe: _probe_row(sc) for sc in scores}} for s, scores in results]}


def _probe_row(sc) -> dict:
    if sc.not_applicable:
        return {"not_applicable": sc.not_applicable}
    return {"acc": sc.accuracy, "exact": sc.exact, "chance": sc.chance, "chance_exact": sc.chance_exact,
            "alphabet": sc.alphabet, "length": sc.length, "items": len(sc.items)}


def add_evaluation(store: Store, ident: str, tasks: list[str], sets: Sequence[str] = (), lm_eval: Sequence[str] = ()):
    """Add downstream evaluation stages to an experiment whose language models are trained, and
    queue it (the pipeline skips what is done). Returns (experiment, typed config). Nothing is
    stored when the request cannot run. A task evaluated before with other settings starts over."""
    exp = resolve_experiment(store, ident)
    if exp.status in ("running", "queued"):
        raise NcalabError(f"experiment {exp.id} is {exp.status}; evaluate it when it has ended")
    runs = {r.kind: r for r in store.runs_of(exp.id)}
    missing = [a for a in ARMS if a not in runs or runs[a].status != "completed"
               or not (store.run_dir(runs[a]) / "model" / "config.json").exists()]
    if missing:
        raise NcalabError(f"experiment {exp.id} has no finished language models ({', '.join(missing)} not trained); "
                          "finish or resume it first")
    old = config_of(exp)
    cfg = config_of(exp)
    for item in sets:
        if not item.strip().startswith("eval."):
            raise NcalabError(f"ncalab eval changes evaluation settings only (eval.*), not {item.split('=')[0]!r}")
    apply_overrides(cfg, parse_set(list(sets), cfg))
    if lm_eval:
        cfg.eval.lm_eval = list(lm_eval)
    cfg.eval.tasks = list(dict.fromkeys([*cfg.eval.tasks, *tasks]))  # type: ignore[list-item]  # validate checks the names
    cfg.validate()
    check_evaluations(cfg)
    changed = _changed_tasks(old, cfg)
    for stage in stages_for(cfg):
        run = runs.get(stage.kind)
        if run is None:
            store.create_run(exp.id, stage.kind, cfg.to_dict(), stage.total_tokens(cfg))
        elif stage.kind.split("-")[0] in changed:
            store.reset_run(run.id)
            _empty(store.run_dir(run))
    store.set_config(exp.id, cfg.to_dict())
    store.requeue_experiment(exp.id)
    return store.get_experiment(exp.id), cfg


def _changed_tasks(old, new) -> set[str]:
    """Tasks already in the old config whose protocol settings differ in the new one."""
    out = set()
    for t in old.eval.tasks:
        if t == "lm_eval":
            changed = (old.eval.lm_eval, old.eval.lm_eval_limit) != (new.eval.lm_eval, new.eval.lm_eval_limit)
        else:
            changed = getattr(old.eval, t) != getattr(new.eval, t)
        if changed:
            out.add(t)
    return out


def _empty(folder: Path) -> None:
    """Remove a reset run's files (checkpoints, model, samples): it starts over."""
    import shutil

    if folder.is_dir():
        for child in folder.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def code_sandbox(cfg) -> tuple[bool, str]:
    """Whether HumanEval's programs get operating-system isolation on this machine, and the
    words for what they run under (said before an evaluation starts)."""
    way = HUMANEVAL.sandbox(cfg)
    return way != NONE, DESCRIPTIONS[way]
