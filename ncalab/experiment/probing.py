"""Skill probes of an experiment's models (evaluation/probes.py), as a step after stage 2 and
on a stored experiment (`ncalab eval ID --probes`), by the same code.

Five models: the stage-1 model after stage 1 ("stage1", when "end"), and each language model
at the start and the end of stage 2 ("nca" and "scratch", when "start" and "end"). The models
at the start are not kept; they are made again as stage 2 made them, which is deterministic:
the warm start is `transfer` of the saved stage-1 model with the experiment's seed + 1, the
scratch model `build_model` with that seed. Each result is stored with its run:

- metrics `probe:<probe>:<when>:<measure>` (measure: acc, the mean per-token accuracy over
  items; exact, the share of items with every answer token right; chance and chance_exact,
  a uniform guesser's), at tokens 0 for "start" and the run's tokens for "end"; a probe that
  does not apply to the model (its vocabulary is too small) is stored with NaN values;
- one evaluation item per item, `probe:<probe>:<when>:<i>` of subtask `probe:<probe>:<when>`
  (samples = answer tokens, correct = those right, choices = the answer alphabet's size).

Probing again replaces what was stored for the same probes and models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ncalab.errors import NcalabError
from ncalab.evaluation.probes import (
    IdVocabulary,
    ProbeScore,
    TokenizerVocabulary,
    Vocabulary,
    batch_for,
    item_length,
    model_forward,
    probe_named,
    run_probe,
)
from ncalab.lazy import transformers
from ncalab.planning.stage import STEP
from ncalab.train import checkpoint
from ncalab.train.model import build_model
from ncalab.train.transfer import transfer

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store, StoreReader

PREFIX = "probe:"
MODELS = (("stage1", "end"), ("nca", "start"), ("nca", "end"), ("scratch", "start"), ("scratch", "end"))
MEASURES = ("acc", "exact", "chance", "chance_exact")


def metric(probe: str, when: str, measure: str) -> str:
    return f"{PREFIX}{probe}:{when}:{measure}"


@dataclass
class Subject:
    """One model to probe: its run, when in the experiment, and how to make it and its vocabulary."""

    kind: str
    when: str
    run: Any  # the store's Run
    make: Callable[[], Any]  # the model (a transformers causal LM, on the CPU)
    vocabulary: Callable[[Any], Vocabulary]  # of that model

    @property
    def label(self) -> str:
        return f"{self.kind} {self.when}"


def _folder(store: StoreReader, run) -> Path | None:
    folder = store.run_dir(run) / "model"
    return folder if run is not None and run.status == "completed" and (folder / "config.json").exists() else None


def _tokenizer(folder: Path):
    return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)


def subjects(store: StoreReader, runs: dict, cfg) -> tuple[list[Subject], list[str]]:
    """The experiment's models that can be probed now (their runs finished, their models saved),
    and a line for each that cannot."""
    folders = {kind: _folder(store, runs[kind]) if kind in runs else None for kind in ("stage1", "nca", "scratch")}
    out: list[Subject] = []
    missing: list[str] = []
    stage1, language_folder = folders["stage1"], folders["nca"] or folders["scratch"]

    def language(folder: Path) -> Callable[[Any], Vocabulary]:
        return lambda model: TokenizerVocabulary(_tokenizer(folder), model.config.vocab_size)

    def stage1_ids(model) -> Vocabulary:
        return IdVocabulary(model.config.vocab_size)

    if stage1 is not None:
        # the text source keeping stage 2's embeddings reads stage 2's tokenizer; every other
        # stage-1 model reads its source's ids (the text source's own BPE is not kept with it)
        shared = cfg.keeps_embeddings and language_folder is not None
        out.append(Subject("stage1", "end", runs["stage1"], partial(checkpoint.load_model, stage1),
                           language(language_folder) if shared and language_folder else stage1_ids))
    else:
        missing.append("stage1 end")
    for kind in ("nca", "scratch"):
        folder = folders[kind]
        if folder is None:
            missing += [f"{kind} start", f"{kind} end"]
            continue
        vocab_size = json.loads((folder / "config.json").read_text())["vocab_size"]
        start: Callable[[], Any] | None = None
        if kind == "scratch":  # the fresh weights stage 2 started from
            start = partial(build_model, cfg.model, vocab_size, cfg.stage2.seq_len, cfg.seed + 1)
        elif stage1 is not None:  # the warm start: the transfer stage 2 started from
            start = partial(_warm_start, stage1, cfg, vocab_size, transfer, checkpoint.load_model)
        else:
            missing.append(f"{kind} start")
        if start is not None:
            out.append(Subject(kind, "start", runs[kind], start, language(folder)))
        out.append(Subject(kind, "end", runs[kind], partial(checkpoint.load_model, folder), language(folder)))
    return out, missing


def _warm_start(stage1: Path, cfg, vocab_size: int, transfer, load):
    return transfer(load(stage1), cfg.model, vocab_size, cfg.stage2.seq_len, cfg.seed + 1, cfg.transfer,
                    cfg.keeps_embeddings)[0]


def contexts(cfg) -> dict[str, int]:
    """Each model's context length (what a probe item must fit): stage 1's and stage 2's."""
    return {"stage1": cfg.stage1_seq_len, "nca": cfg.stage2.seq_len, "scratch": cfg.stage2.seq_len}


def check(names: Sequence[str], length: int | None, context: dict[str, int]) -> None:
    """Every probe named is known, and an asked length fits every model's context (one-line errors)."""
    if not names:
        raise NcalabError("no probes asked for")
    for name in names:
        probe = probe_named(name)
        for kind, n in context.items():
            if length is None:
                continue  # each probe's own length, or not applicable where its shortest item does not fit
            try:
                item_length(probe, n, length)
            except NcalabError as e:
                raise NcalabError(str(e).replace("the model's", f"the {kind} model's")) from None


def probe_all(targets: Sequence[Subject], names: Sequence[str], cfg, placement, items: int, length: int | None,
              note: Callable[[str], None] = lambda text: None) -> list[tuple[Subject, list[ProbeScore]]]:
    """Each probe on each model, one model in memory at a time; nothing is stored."""
    out = []
    probes = [probe_named(n) for n in names]
    for s in targets:
        model = s.make().to(placement.device).eval()
        context, vocab = model.config.max_position_embeddings, s.vocabulary(model)
        forward = model_forward(model, placement.device)
        batch = batch_for(context, model.config.vocab_size)
        scores = [run_probe(forward, p, vocab, context, cfg.seed, items, length, batch) for p in probes]
        for sc in scores:
            if sc.not_applicable:
                note(f"probe {sc.probe} does not apply to the {s.label} model: {sc.not_applicable}")
        out.append((s, scores))
        del model, forward
    return out


def store_results(store: Store, results: Sequence[tuple[Subject, list[ProbeScore]]],
                  log: Callable[[Any, list[dict]], None] | None = None) -> None:
    """Each model's probe scores as metrics and items of its run, replacing those stored before
    for the same probes and models (`log(run, points)` stores the points instead, when given)."""
    for s, scores in results:
        run = store.get_run(s.run.id)
        tokens = 0 if s.when == "start" else run.tokens
        step = 0 if s.when == "start" else run.step
        store.delete_metrics_named(run.id, tuple(f"{PREFIX}{sc.probe}:{s.when}:" for sc in scores))
        points = [{"name": metric(sc.probe, s.when, m), "step": step, "tokens": tokens, "wall_time": 0.0,
                   "value": getattr(sc, "accuracy" if m == "acc" else m)} for sc in scores for m in MEASURES]
        (log or (lambda r, p: store.log_metrics(r.id, p)))(run, points)
        rows = [{"item": f"{PREFIX}{sc.probe}:{s.when}:{it.index}", "subtask": f"{PREFIX}{sc.probe}:{s.when}",
                 "samples": it.tokens, "correct": it.correct, "choices": sc.alphabet,
                 "detail": {"exact": it.exact, "accuracy": it.accuracy, "length": it.length}}
                for sc in scores for it in sc.items]
        store.replace_eval_items(run.id, [f"{PREFIX}{sc.probe}:{s.when}" for sc in scores], rows)


def stored_scores(store: StoreReader, run_id: str) -> dict[tuple[str, str], dict[str, float]]:
    """{(probe, when): {measure: value}} of a run's stored probe metrics."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for name, value in store.latest_metrics(run_id).items():
        if name.startswith(PREFIX):
            probe, when, measure = name[len(PREFIX):].split(":")
            out.setdefault((probe, when), {})[measure] = value
    return out


def _done(store: StoreReader, s: Subject, names: Sequence[str], items: int) -> bool:
    """The model has every probe stored with its items (a not-applicable one has none), e.g. a
    resumed experiment's; a run taken from an identical one has the metrics but not the items."""
    scores = stored_scores(store, s.run.id)
    counts: dict[str, int] = {}
    for row in store.eval_items(s.run.id):
        counts[row.subtask] = counts.get(row.subtask, 0) + 1
    for name in names:
        acc = scores.get((name, s.when), {}).get("acc")
        if acc is None or (not math.isnan(acc) and counts.get(f"{PREFIX}{name}:{s.when}") != items):
            return False
    return True


class Probes:
    """The skill probes of eval.probes (none by default above the tiny scale) on the stage-1
    model and both arms at the start and end of stage 2, stored with their runs; models whose
    probes are stored already are skipped."""

    name, runs_as = "skill probes", STEP

    def run(self, ctx) -> None:
        cfg, store, sec = ctx.cfg, ctx.store, ctx.cfg.eval.probes
        if not ctx.world.main or not sec.names:
            return
        runs = {k: store.get_run(r.id) for k, r in ctx.runs.items()}
        length = sec.length or None
        check(sec.names, length, contexts(cfg))
        targets, _ = subjects(store, runs, cfg)
        todo = [s for s in targets if not _done(store, s, sec.names, sec.items)]
        if not todo:
            return
        ctx.reporter.note(f"skill probes ({', '.join(sec.names)}, {sec.items} items each) of "
                          f"{', '.join(s.label for s in todo)}")
        store_results(store, probe_all(todo, sec.names, cfg, ctx.placement, sec.items, length, ctx.reporter.note),
                      log=ctx.log)
