"""Model cards: a README.md in every saved language model folder, so a folder published with
`push_to_hub` says what it is (the experiment, the arm, the data, the figures).

A card is written when its stage saves the model, and written again once the experiment's
summary (the gain over scratch) exists. Cards are replaced atomically: a folder reused from
an identical run is hard-linked, and its twin's card must stay as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ncalab import plugins
from ncalab.errors import NcalabError

PAPER = "NCA pre-pre-training (Lee, Han, Kumar, Agrawal 2026, arXiv 2603.10055)"
CARD = "README.md"


def _fmt(v, spec: str = ".2f") -> str:
    return "n/a" if v is None or v != v else format(v, spec)


def _arm_of(kind: str) -> tuple[str, str | None]:
    """'nca' -> ('nca', None); 'gsm8k-ft-scratch' -> ('scratch', 'gsm8k')."""
    if "-ft-" in kind:
        task, arm = kind.split("-ft-", 1)
        return arm, task
    return kind, None


def card_text(cfg, exp_id: str, kind: str, latest: dict, summary: dict | None = None) -> str:
    """The card of one language model folder of an experiment (YAML metadata, then Markdown)."""
    from huggingface_hub import ModelCard, ModelCardData

    arm, task = _arm_of(kind)
    d = cfg.data
    datasets = [d.corpus.removeprefix("hf:").split(":")[0]] if d.corpus.startswith("hf:") else None
    meta = ModelCardData(library_name="transformers", pipeline_tag="text-generation", datasets=datasets,
                         tags=["ncalab", "nca-pre-pre-training", "llama", f"arm-{arm}"] + ([f"fine-tuned-{task}"] if task else []))
    lines = _about(cfg, exp_id, arm, task) + _figures(latest, summary, arm) + _usage(cfg)
    return str(ModelCard(f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"))


def _how_trained(cfg, arm: str) -> str:
    """How the arm's model came to be: the NCA-initialised one's stage 1 and transfer, or scratch."""
    if arm != "nca":
        return "scratch: the baseline, the same model trained on the same language data, in the same order, from a fresh init"
    s1 = cfg.stage1
    source = getattr(plugins.load(s1.source), "label", s1.source)
    stage1 = s1.corpus if s1.source == "nca" and s1.corpus else (
        f"band {cfg.band().lo:g}-{cfg.band().hi:g}" if s1.source == "nca" else s1.corpus or "generated")
    return (f"NCA-initialised: stage 1 on {source} data ({stage1}; {s1.tokens:,} tokens at lr {s1.lr:g}), "
            f"then its blocks were transferred (re-initialised: {', '.join(cfg.transfer.reinit) or 'embeddings and head only'}) "
            f"and trained on language")


def _about(cfg, exp_id: str, arm: str, task: str | None) -> list[str]:
    """The title and what the model is: experiment, arm, model shape, data."""
    m, d = cfg.model, cfg.data
    tokenizer = d.tokenizer or f"a byte-level BPE of {d.vocab_size:,} tokens trained on the corpus"
    return [
        f"# {exp_id}: {'NCA-initialised' if arm == 'nca' else 'scratch'} language model"
        + (f", fine-tuned for {task}" if task else ""),
        "",
        f"A small Llama-style causal language model trained by ncalab, a lab for {PAPER}.",
        "",
        f"- experiment: `{exp_id}` (preset {cfg.preset}, scale {cfg.scale}, seed {cfg.seed})",
        f"- arm: {_how_trained(cfg, arm)}" + (f"; then fine-tuned on {task}" if task else ""),
        f"- model: {m.n_layer} layer{'s' * (m.n_layer != 1)}, width {m.d_model}, {m.n_head} head{'s' * (m.n_head != 1)} "
        "(Llama-style: RMSNorm, RoPE, SwiGLU)",
        f"- data: corpus `{d.corpus}`, tokenizer {tokenizer}; {cfg.stage2.tokens:,} tokens in sequences of {cfg.stage2.seq_len}",
        "",
    ]


def _figures(latest: dict, summary: dict | None, arm: str) -> list[str]:
    """The model's own figures, then the experiment's comparison once its summary exists."""
    lines = [
        "## Figures",
        "",
        f"- final validation perplexity: {_fmt(latest.get('val_ppl'))} (loss {_fmt(latest.get('val_loss'), '.4f')})",
    ]
    if latest.get("params") is not None:
        lines.append(f"- parameters: {int(latest['params']):,} ({int(latest.get('params_no_embeddings', 0)):,} without embeddings)")
    if not summary:
        lines.append("- the comparison with the other arm is added when the experiment finishes")
        return lines
    lines += [
        f"- the experiment: perplexity NCA-initialised {_fmt(summary.get('ppl_nca'))}, "
        f"scratch {_fmt(summary.get('ppl_scratch'))}; gain = 1 - ppl_nca/ppl_scratch = {_fmt(summary.get('gain'), '+.3f')} "
        "(above 0: the NCA-initialised model is better; one seed)",
        f"- convergence speedup: {_fmt(summary.get('speedup')) + 'x' if summary.get('speedup') else 'n/a (never reached)'}",
    ]
    for name, table in (summary.get("downstream") or {}).items():
        for k, row in table.items():
            if isinstance(row, dict) and arm in row:
                lines.append(f"- {name} {'pass@' + k if k.isdigit() else k}: {_fmt(row.get(arm), '.3f')}")
    return lines


def _usage(cfg) -> list[str]:
    """How to load the folder, and the full settings."""
    return [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'model = AutoModelForCausalLM.from_pretrained("PATH")',
        'tokenizer = AutoTokenizer.from_pretrained("PATH")',
        "```",
        "",
        "The full settings, as ncalab stored them:",
        "",
        "```json",
        json.dumps(cfg.to_dict(), indent=1, default=str),
        "```",
    ]


def write_card(folder: Path, text: str) -> None:
    folder = Path(folder)
    tmp = folder / (CARD + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, folder / CARD)  # never writes through a hard link into a twin's folder
    except OSError as e:
        raise NcalabError(f"cannot write the model card in {folder}: {e.strerror or e}") from None


def save_card(ctx, kind: str, folder: Path) -> None:
    """The card of a model folder a stage of this experiment has just saved."""
    exp = ctx.store.get_experiment(ctx.exp_id)
    summary = json.loads(exp.summary_json) if exp.summary_json else None
    write_card(folder, card_text(ctx.cfg, ctx.exp_id, kind, ctx.store.latest_metrics(ctx.runs[kind].id), summary))


def update_after_summary(ctx, summary) -> None:
    """Cards again, with the comparison, in every language model folder of the experiment."""
    data = summary.to_dict()
    for kind, run in ctx.runs.items():
        folder = ctx.store.run_dir(run) / "model"
        if kind == "stage1" or not (folder / "config.json").exists():
            continue
        try:
            write_card(folder, card_text(ctx.cfg, ctx.exp_id, kind, ctx.store.latest_metrics(run.id), data))
        except NcalabError as e:
            ctx.reporter.note(f"warning: {e}")
