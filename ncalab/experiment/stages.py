"""The stages of an experiment, in the order they run (PIPELINE).

Two kinds of stage: a training stage fills one run of the store (the pipeline claims it,
reuses an identical run's result, resumes it from its checkpoint, trains, saves and finishes
it), and a step computes something the later stages use or measures a result. Stages hand
values on through the context's typed lazy fields (language, windows, stage1_model,
warm_start): a value is made when a stage first reads it, so a resumed experiment whose
warm-started run is already done never rebuilds the transfer, and one whose stage 1 is done
loads that model only if it is needed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from ncalab.data import language
from ncalab.data.lm_data import TokenBatches, val_batches
from ncalab.errors import NcalabError
from ncalab.experiment.probing import Probes
from ncalab.planning.compute import model_compute
from ncalab.planning.memory import micro_batch_for
from ncalab.planning.stage import STEP, TRAINING, Plan, Step, TrainingStage
from ncalab.sources.interface import SOURCES, stage1_tokens
from ncalab.train import checkpoint
from ncalab.train.batches import LanguageBatches, language_validation
from ncalab.train.cards import save_card
from ncalab.train.loop import StageSpec
from ncalab.train.model import build_model, count_params
from ncalab.train.transfer import transfer

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store

IN_CONTEXT_METRICS = ("icl_", "dyck_validity")  # metric name prefixes the in-context step writes


class LanguageData:
    """The experiment's corpus, tokenizer, token arrays and held-out windows (prepared first,
    so a corpus problem stops the experiment before any training)."""

    name, runs_as = "language data", STEP

    def run(self, ctx) -> None:
        cfg, s2 = ctx.cfg, ctx.cfg.stage2
        lang = ctx.main_first(lambda: language.prepare(
            cfg.data.corpus, cfg.data, ctx.cache,
            train_tokens=int(s2.tokens * 1.05) + s2.seq_len * 64, val_tokens=s2.eval_tokens + s2.seq_len + 1,
            note=ctx.reporter.note))
        ctx.language.set(lang)
        # cut into stage-2 windows when stage 2 first needs them (a bad stage-2 setting fails that run)
        ctx.windows.make_with(lambda: val_batches(lang.val, s2.seq_len, s2.batch_size, s2.eval_tokens))


class PrePreTraining:
    """Stage 1: the model learns the source's sequences (NCA, or one of the controls)."""

    kind, keeps_model, runs_as = "stage1", True, TRAINING

    def total_tokens(self, cfg) -> int:
        return stage1_tokens(cfg)

    def budgets(self, cfg) -> list[int]:
        return []

    def plan(self, ctx) -> Plan:
        cfg, s1 = ctx.cfg, ctx.cfg.stage1
        source = SOURCES[s1.source]
        data = ctx.main_first(lambda: source.open(cfg, ctx.cache, ctx.reporter.note, ctx.world))
        model = build_model(cfg.model, data.vocab_size, cfg.stage1_seq_len, seed=cfg.seed)
        ctx.reporter.note(f"model: {count_params(model, embeddings=False):,} parameters without embeddings; "
                          f"{ctx.placement.label}; stage 1 on {source.label}")
        spec = StageSpec.from_section("stage1", s1, s1.batch_size * cfg.stage1_seq_len, 8, total_tokens=stage1_tokens(cfg))
        return Plan(model, spec, data.batches, data.validation,
                    model_compute(cfg.model, data.vocab_size, cfg.stage1_seq_len),
                    micro_batch_for(ctx, "stage1", data.vocab_size, cfg.stage1_seq_len))

    def save(self, ctx, model, folder: Path) -> None:
        checkpoint.save(folder, model)
        exhibit = getattr(SOURCES[ctx.cfg.stage1.source], "save_exhibit", None)
        if exhibit is not None:  # what the report shows of the data; the model is saved either way
            try:
                exhibit(ctx.cfg, folder)
            except (NcalabError, OSError) as e:
                ctx.reporter.note(f"stage 1: no sample of its data for reports ({e})")

    def trained(self, ctx, model) -> None:
        if ctx.world.distributed:  # the trainer's model is wrapped or sharded: read the saved one
            self.completed(ctx, ctx.store.run_dir(ctx.runs[self.kind]) / "model")
        else:
            ctx.stage1_model.set(model.cpu())

    def completed(self, ctx, folder: Path) -> None:
        ctx.stage1_model.make_with(lambda: checkpoint.load_model(folder))


class InContext:
    """The stage-1 model's in-context evaluation (NCA frame accuracy, Dyck validity), stored
    as metrics of the stage-1 run; skipped when that run has them (e.g. taken from a twin)."""

    name, runs_as = "in-context evaluation", STEP

    def run(self, ctx) -> None:
        cfg, store = ctx.cfg, ctx.store
        run = store.get_run(ctx.runs["stage1"].id)
        if (not ctx.world.main or cfg.stage1.icl_sequences <= 0 or not SOURCES[cfg.stage1.source].in_context
                or any(n.startswith(IN_CONTEXT_METRICS) for n in store.latest_metrics(run.id))):
            return
        ctx.reporter.note(f"in-context evaluation of the stage-1 model on {cfg.stage1.icl_sequences} held-out sequences")
        log_in_context(store, run, ctx.stage1_model.get(), cfg, ctx.placement, log=ctx.log)


def log_in_context(store: Store, run, model, cfg, placement, log=None) -> list[dict]:
    """Evaluate a stage-1 model in context and store the points in its run (replacing older ones);
    ``log(run, points)`` stores them instead when given (the pipeline's, which also mirrors them)."""
    model = model.to(placement.device)
    points = SOURCES[cfg.stage1.source].in_context_eval(model, cfg, placement)
    model.cpu()
    store.delete_metrics_named(run.id, IN_CONTEXT_METRICS)
    points_at = [{**p, "tokens": run.tokens, "wall_time": 0.0} for p in points]
    if log is None:
        store.log_metrics(run.id, points_at)
    else:
        log(run, points_at)
    return points


class Transfer:
    """The warm start (spec section 6): the stage-1 blocks in a model with a fresh embedding and
    head for the language vocabulary; built when the warm-started run first needs it."""

    name, runs_as = "transfer", STEP

    def run(self, ctx) -> None:
        ctx.warm_start.make_with(lambda: self._build(ctx))

    @staticmethod
    def _build(ctx):
        cfg, t = ctx.cfg, ctx.cfg.transfer
        model, kept = transfer(ctx.stage1_model.get(), cfg.model, ctx.language.get().vocab_size, cfg.stage2.seq_len,
                               cfg.seed + 1, t, cfg.keeps_embeddings)
        kept_note = "kept the text source's embeddings and head" if cfg.keeps_embeddings else "re-initialised embeddings, head"
        ctx.reporter.note(f"transferred {len(kept)} tensors; {kept_note}"
                          + (f" and {', '.join(t.reinit)}" if t.reinit else "")
                          + (f"; control {t.control}" if t.control != "none" else ""))
        return model, kept


def frozen_steps(transfer, spec: StageSpec) -> int:
    """Stage-2 steps the transferred weights stay frozen: a share of the stage (transfer.freeze)
    or every step that starts before transfer.freeze_tokens tokens."""
    if transfer.freeze_tokens:
        return -(-transfer.freeze_tokens // spec.tokens_per_step)
    return int(transfer.freeze * spec.steps)


class LanguageTraining:
    """Stage 2 of one arm: the warm-started model or the scratch baseline, on the same data,
    order, budget, schedule and seed; the fresh weights of both come from the same seed."""

    keeps_model, runs_as = False, TRAINING

    def __init__(self, kind: str, warm: bool):
        self.kind, self.warm = kind, warm

    def total_tokens(self, cfg) -> int:
        return cfg.stage2.tokens

    def budgets(self, cfg) -> list[int]:
        return list(cfg.stage2.budgets)

    def plan(self, ctx) -> Plan:
        cfg, s2, lang = ctx.cfg, ctx.cfg.stage2, ctx.language.get()
        if self.warm:
            model, kept = ctx.warm_start.get()
        else:
            model, kept = build_model(cfg.model, lang.vocab_size, s2.seq_len, seed=cfg.seed + 1), []
        batches = LanguageBatches(TokenBatches(lang.train, s2.seq_len, s2.batch_size, seed=cfg.seed), ctx.world.rank,
                                  ctx.world.size)
        spec = StageSpec.from_section(self.kind, s2, s2.batch_size * s2.seq_len, 10)
        if kept:
            spec = dataclasses.replace(spec, transferred=frozenset(kept), transferred_lr_scale=cfg.transfer.lr_scale,
                                       freeze_steps=frozen_steps(cfg.transfer, spec))
        return Plan(model, spec, batches, language_validation(ctx.windows.get()),
                    model_compute(cfg.model, lang.vocab_size, s2.seq_len),
                    micro_batch_for(ctx, "stage2", lang.vocab_size, s2.seq_len))

    def save(self, ctx, model, folder: Path) -> None:
        checkpoint.save(folder, model)
        ctx.language.get().tokenizer.save_pretrained(folder)
        save_card(ctx, self.kind, folder)  # README.md: what push_to_hub publishes

    def trained(self, ctx, model) -> None:
        pass

    def completed(self, ctx, folder: Path) -> None:
        pass


# The experiment, in order. Later stages (fine-tuning, downstream evaluation) are new entries.
PIPELINE: tuple[TrainingStage | Step, ...] = (
    LanguageData(),
    PrePreTraining(),
    InContext(),
    Transfer(),
    LanguageTraining("nca", warm=True),
    LanguageTraining("scratch", warm=False),
    Probes(),  # the skill probes of eval.probes: the stage-1 model and both arms at the start and end of stage 2
)
