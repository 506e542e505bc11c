"""`ncalab eval`: evaluate trained models after the fact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ncalab.cli.common import JsonFlag, emit_json, err_console, out_console
from ncalab.cli.run import foreground_reporter
from ncalab.display.probes import probes_table
from ncalab.display.summary import downstream_table, in_context_label
from ncalab.errors import NcalabError
from ncalab.services.evaluation import CorpusText, add_evaluation, code_sandbox, evaluate_checkpoint, in_context, probes
from ncalab.services.experiments import config_of
from ncalab.services.launch import How, launch
from ncalab.services.runstore import open_store


def eval_(
    target: Annotated[str, typer.Argument(help="An experiment id, a run id, or a checkpoint folder.")],
    corpus: Annotated[str | None, typer.Option("--corpus", help="Perplexity on this corpus: python-stdlib, a local path, or hf:NAME[:CONFIG].")] = None,
    icl: Annotated[bool, typer.Option("--icl", help="In-context evaluation of the stage-1 model (NCA: next-frame accuracy per frame; Dyck: valid next tokens), stored with its run.")] = False,
    sequences: Annotated[int | None, typer.Option("--sequences", help="Held-out sequences for --icl (default: the run's stage1.icl_sequences, else 16).")] = None,
    probes: Annotated[bool, typer.Option("--probes", help="Skill probes (recall, copy, brackets, addition) of the stage-1 model and both language models at the start and end of stage 2, stored with their runs.")] = False,
    probe: Annotated[list[str] | None, typer.Option("--probe", help="Which probes for --probes (repeatable; default: all).")] = None,
    items: Annotated[int | None, typer.Option("--items", help="Held-out items per probe and model for --probes (default: the run's eval.probes.items).")] = None,
    length: Annotated[int | None, typer.Option("--length", help="Tokens per probe item (default: each probe's own; it must fit every model's context).")] = None,
    task: Annotated[list[str] | None, typer.Option("--task", help="Downstream task of both language models: gsm8k, humaneval or bbl (repeatable).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="The task's data (GSM8K .jsonl or folder, HumanEval .jsonl, BIG-bench Lite folder).")] = None,
    samples: Annotated[int | None, typer.Option("--samples", help="Samples per item (paper: 32 GSM8K, 64 HumanEval and BBL).")] = None,
    k: Annotated[str | None, typer.Option("--k", help="pass@k values, e.g. 1,2,4,8 (default: the paper's).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Items per task (BBL: per subtask); a laptop smoke run.")] = None,
    allow_code_execution: Annotated[bool, typer.Option("--allow-code-execution", help="Run the code the models write (HumanEval), each program in its own namespaces where the machine allows (no network, no files of yours), with limits.")] = False,
    require_isolation: Annotated[bool, typer.Option("--require-isolation", help="Refuse to run model-written code where the machine gives no operating-system isolation.")] = False,
    lm_eval: Annotated[str | None, typer.Option("--lm-eval", help="lm-evaluation-harness tasks, e.g. hellaswag,arc_easy (needs the lm-eval extra).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Any evaluation setting, e.g. --set eval.gsm8k.epochs=2.")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run it as a background job and return at once.")] = False,
    split: Annotated[str, typer.Option("--split", help="val (the corpus's held-out documents) or all.")] = "val",
    tokens: Annotated[int, typer.Option("--tokens", help="Tokens to evaluate on.")] = 65_536,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Context length (capped at the model's).")] = 256,
    val_fraction: Annotated[float | None, typer.Option("--val-fraction", help="Held-out share of documents (default: the run's, else 0.02).")] = None,
    device: Annotated[str, typer.Option("--device")] = "auto",
    home: Annotated[Path | None, typer.Option("--home", envvar="NCALAB_HOME")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Evaluate trained models: perplexity, in-context accuracy, skill probes or downstream tasks.

    Perplexity of the language models on any corpus (--corpus), the stage-1 model in context (--icl), skill probes of every model (--probes), or downstream tasks (--task, --lm-eval).
    """
    tasks = [t for item in (task or []) for t in item.split(",") if t.strip()] + (["lm_eval"] if lm_eval else [])
    probes = probes or bool(probe)  # naming a probe asks for probes
    if sum([icl, corpus is not None, bool(tasks), probes]) != 1:
        raise NcalabError("say what to evaluate: --corpus CORPUS (perplexity), --icl (the stage-1 model in context), "
                          "--probes (skill probes) or --task TASK / --lm-eval TASKS (downstream)")
    if probes:
        names = [n.strip() for item in (probe or []) for n in item.split(",") if n.strip()]
        _probes(target, names, items, length, device, home, json_out)
        return
    if tasks:
        request = _Downstream(tasks, data, samples, k, limit, allow_code_execution, lm_eval, set_ or [],
                              require_isolation)
        _downstream(target, request, detach, device, home, json_out)
        return
    if icl:
        _in_context(target, device, sequences, home, json_out)
        return
    if tokens <= 0:
        raise NcalabError("--tokens must be positive")
    targets, run_fraction = _resolve_targets(target, home)
    frac = val_fraction if val_fraction is not None else (run_fraction or 0.02)
    text = CorpusText(corpus, tokens, seq_len, split=split, val_fraction=frac)
    results = [dict(evaluate_checkpoint(p, text, device=device), label=label) for label, p in targets]
    if json_out:
        emit_json(results[0] if len(results) == 1 else {"results": results})
        return
    t = Table(title=f"perplexity on {corpus} ({split})")
    for c in ("model", "tokens", "loss", "ppl"):
        t.add_column(c, justify="right" if c != "model" else "left")
    for r in results:
        t.add_row(r["label"], f"{r['tokens']:,}", f"{r['loss']:.4f}", f"{r['ppl']:.3f}")
    out_console.print(t)


def _resolve_targets(target: str, home) -> tuple[list[tuple[str, Path]], float | None]:
    """(label, checkpoint folder) pairs, and the held-out fraction the run trained with."""
    p = Path(target)
    if p.is_dir():
        return [(str(p), p)], None

    store = open_store(home)
    if target.startswith("e-"):
        exp = store.get_experiment(target)
        runs = [r for r in store.runs_of(exp.id) if r.kind in ("nca", "scratch")]
        out = [(f"{target}/{r.kind}", store.run_dir(r) / "model") for r in runs if (store.run_dir(r) / "model").exists()]
        if not out:
            raise NcalabError(f"experiment {target} has no finished language models")
        return out, config_of(exp).data.val_fraction
    if target.startswith("r-"):
        r = store.get_run(target)
        return [(f"{r.id} ({r.kind})", store.run_dir(r) / "model")], config_of(r).data.val_fraction
    raise NcalabError(f"{target} is neither a checkpoint folder nor an experiment (e-...) or run (r-...) id")


def _in_context(target: str, device: str, sequences: int | None, home, json_out: bool) -> None:
    res = in_context(open_store(home), target, device, sequences)
    if json_out:
        emit_json(res)
        return
    by_name: dict[str, dict[int, float]] = {}
    for p in res["points"]:
        by_name.setdefault(p["name"], {})[p["step"]] = p["value"]
    frames = sorted({f for v in by_name.values() for f in v})
    t = Table(title=f"{res['experiment_id']}: stage 1 ({res['source']}) in context, {res['sequences']} held-out sequences")
    t.add_column("metric")
    for f in frames:
        t.add_column(f"frame {f}" if res["source"] == "nca" else "", justify="right")
    for name, vals in by_name.items():
        t.add_row(in_context_label(name).replace(" (mean over frames)", ""), *[f"{vals[f]:.3f}" if f in vals else "-" for f in frames])
    out_console.print(t)


def _probes(target: str, names: list[str], items: int | None, length: int | None, device: str, home,
            json_out: bool) -> None:
    res = probes(open_store(home), target, names, items, length, device,
                 note=lambda text: None if json_out else err_console.print(text, soft_wrap=True))
    if json_out:
        emit_json(res)
        return
    out_console.print(probes_table(res["models"], title=f"{res['experiment_id']}: skill probes, {res['items']} items each"))
    if res["skipped"]:
        out_console.print(f"not probed (not trained yet): {', '.join(res['skipped'])}")


@dataclass(frozen=True)
class _Downstream:
    """The downstream flags of `ncalab eval` as given: the tasks, and the settings they stand for."""

    tasks: list[str]  # own tasks, then "lm_eval" when --lm-eval is given
    data: Path | None
    samples: int | None
    k: str | None
    limit: int | None
    allow_code_execution: bool
    lm_eval: str | None
    sets: list[str]
    require_isolation: bool = False

    @property
    def lm_eval_tasks(self) -> list[str]:
        return [t for t in (self.lm_eval or "").split(",") if t.strip()]

    def settings(self) -> list[str]:
        """The --set settings, then the eval.* settings the dedicated flags stand for."""
        sets = list(self.sets)
        own = [t for t in self.tasks if t != "lm_eval"]
        if (self.data is not None or self.samples is not None) and len(own) != 1:
            raise NcalabError("--data and --samples belong to one task: give exactly one --task with them")
        if self.data is not None:
            if not self.data.exists():
                raise NcalabError(f"--data {self.data} does not exist")
            sets.append(f"eval.{own[0]}.data={self.data.resolve()}")
        if self.samples is not None:
            sets.append(f"eval.{own[0]}.samples={self.samples}")
        for t in own:
            if self.k is not None:
                sets.append(f"eval.{t}.k={self.k}")
            if self.limit is not None:
                sets.append(f"eval.{t}.limit={self.limit}")
        if self.lm_eval and self.limit is not None:
            sets.append(f"eval.lm_eval_limit={self.limit}")
        if self.allow_code_execution:
            sets.append("eval.allow_code_execution=true")
        if self.require_isolation:
            sets.append("eval.humaneval.require_isolation=true")
        return sets


def _downstream(target: str, request: _Downstream, detach: bool, device: str, home, json_out: bool) -> None:
    tasks, sets = request.tasks, request.settings()
    if device != "auto":
        raise NcalabError("--device does not apply to downstream tasks: they run on the experiment's device")
    store = open_store(home)
    exp, cfg = add_evaluation(store, target, tasks, sets, request.lm_eval_tasks)
    if request.allow_code_execution and "humaneval" in tasks:
        isolated, words = code_sandbox(cfg)
        err_console.print(f"{'' if isolated else 'warning: '}running model-written code; each program under {words}"
                          + ("" if isolated else " (--require-isolation refuses instead)"), soft_wrap=True)
    if detach:
        job = launch(cfg, store, How.BACKGROUND, experiment_id=exp.id)
        if json_out:
            emit_json({"experiment_id": exp.id, "status": job.status, "tasks": tasks})
        else:
            out_console.print(f"{exp.id} {job.status}: evaluating {', '.join(tasks)}; follow it with `ncalab runs tail {exp.id}`")
        return

    with foreground_reporter(json_out, cfg.stage1.source) as reporter:  # items as they are scored
        summary = launch(cfg, store, How.HERE, experiment_id=exp.id, reporter=reporter).summary
    if json_out:
        emit_json({"experiment_id": exp.id, "downstream": summary.downstream})
        return
    out_console.print(downstream_table(summary))
