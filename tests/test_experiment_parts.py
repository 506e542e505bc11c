"""Pieces of an experiment: config resolution, transfer, schedule, summary, checkpoints."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from ncalab.errors import NcalabError
from ncalab.config import ModelConfig, TransferConfig
from ncalab.experiment.summary import compare, first_reach
from ncalab.services.config import resolve_config
from ncalab.train import checkpoint
from ncalab.train.model import build_model
from ncalab.train.schedule import lr_factor, warmup_steps
from ncalab.train.transfer import transfer

M = ModelConfig(n_layer=2, d_model=32, n_head=2)


def test_presets_and_overrides(tmp_path):
    cfg = resolve_config("code", "tiny")
    assert cfg.data.corpus == "python-stdlib" and cfg.band().lo == 0.3 and cfg.band().hi == 0.4
    paper = resolve_config("web", "paper")
    assert (paper.model.n_layer, paper.model.d_model, paper.model.n_head) == (24, 2048, 32)
    assert paper.stage1.tokens == 164_000_000 and paper.stage2.lr == 5e-4 and paper.band().lo == 0.5
    assert resolve_config("code", "paper").stage2.lr == 2e-4
    f = tmp_path / "c.toml"
    f.write_text('[stage1]\nlr = 3e-4\n[nca]\nalphabet = 2\n[transfer]\nreinit = ["attn"]\n')
    cfg = resolve_config("code", "tiny", f, ["stage2.tokens=5e5", "stage1.band=0.2:0.3"], seed=3)
    assert cfg.stage1.lr == 3e-4 and cfg.nca.alphabet == 2 and cfg.transfer.reinit == ["attn"]
    assert cfg.stage2.tokens == 500_000 and cfg.band().lo == 0.2 and cfg.seed == 3
    # the resolved config is plain JSON
    json.dumps(cfg.to_dict())


@pytest.mark.parametrize("kwargs, message", [
    ({"preset": "poetry", "scale": "tiny"}, "unknown preset"),
    ({"preset": "code", "scale": "huge"}, "unknown scale"),
    ({"preset": "code", "scale": "tiny", "sets": ["stage1.nope=1"]}, "unknown config key"),
    ({"preset": "code", "scale": "tiny", "sets": ["stage1.lr=fast"]}, "expected a number"),
    ({"preset": "code", "scale": "tiny", "reinit": "attn,embeddings"}, "unknown: embeddings"),
    ({"preset": "code", "scale": "tiny", "sets": ["nca.patch=5"]}, "not divisible"),
    ({"preset": "code", "scale": "tiny", "sets": ["stage1.band=0.5:0.2"]}, "lo < hi"),
])
def test_bad_config_is_refused(kwargs, message):
    kwargs = dict(kwargs)
    preset, scale = kwargs.pop("preset"), kwargs.pop("scale")
    with pytest.raises(NcalabError, match=message):
        resolve_config(preset, scale, **kwargs)


def test_config_file_with_unknown_keys(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[stage3]\nlr = 1\n")
    with pytest.raises(NcalabError, match="unknown config key 'stage3'"):
        resolve_config("code", "tiny", f)


def test_transfer_keeps_blocks_and_reinitialises_the_rest():
    src = build_model(M, 100, 64, seed=1)
    full, kept = transfer(src, M, 50, 64, seed=2)
    scratch = build_model(M, 50, 64, seed=2)
    sd_src, sd_full, sd_scr = src.state_dict(), full.state_dict(), scratch.state_dict()
    assert full.get_input_embeddings().weight.shape == (50, 32)
    for n in sd_full:
        if n.startswith(("model.embed_tokens", "lm_head")):
            assert torch.equal(sd_full[n], sd_scr[n])  # the fresh parts equal a scratch model's
        else:
            assert torch.equal(sd_full[n], sd_src[n]), n
    attn_only, _ = transfer(src, M, 50, 64, seed=2, settings=TransferConfig(reinit=["mlp", "norm"]))
    for n, w in attn_only.state_dict().items():
        if ".self_attn." in n:
            assert torch.equal(w, sd_src[n])
        else:
            assert torch.equal(w, sd_scr[n]), n


def test_transfer_keeps_the_embeddings_of_a_shared_vocabulary():
    # the paper's C4 arm: stage 1 read stage 2's tokenizer, so embeddings and head carry over
    src = build_model(M, 50, 64, seed=1)
    kept_model, kept = transfer(src, M, 50, 64, seed=2, keep_embeddings=True)
    assert {"model.embed_tokens.weight", "lm_head.weight"} <= set(kept)
    for n, w in kept_model.state_dict().items():
        assert torch.equal(w, src.state_dict()[n]), n
    with pytest.raises(ValueError, match="one vocabulary"):
        transfer(build_model(M, 100, 64, seed=1), M, 50, 64, seed=2, keep_embeddings=True)


def test_paper_scale_takes_the_papers_recipe():
    code, web = resolve_config("code", "paper"), resolve_config("web", "paper")
    s1 = code.stage1
    assert (s1.schedule, s1.lr, s1.weight_decay, s1.grad_clip, s1.beta2) == ("paper", 1e-4, 0.0, 0.0, 0.999)
    assert s1.tokens == 164_000_000 and s1.batch_size * code.stage1_seq_len == 32 * 1024  # 5,000 steps
    assert code.nca.sims_per_rule == 10 and code.nca.fresh_trajectories and code.spreads_rules
    assert code.model.attention_dropout == 0.1 and code.transfer.embeddings == "paper"
    assert (code.stage2.lr, code.stage2.warmup, code.stage2.min_lr_ratio, code.stage2.weight_decay) == (2e-4, 750, 0.0, 0.0)
    assert (web.stage2.lr, web.stage2.warmup, web.stage2.weight_decay, web.stage2.grad_clip) == (5e-4, 0.1, 1e-4, 1.0)
    assert code.data.tokenizer == "helmo/code-search-net-multilang-tokenizer" and web.data.tokenizer == "gpt2"
    tiny = resolve_config("code", "tiny")  # the laptop scale takes what was measured there
    assert tiny.stage1.schedule == "paper" and tiny.model.attention_dropout == 0.0
    assert tiny.transfer.embeddings == "reinit" and not tiny.keeps_embeddings
    tiny.stage1.source, tiny.stage1.corpus, tiny.transfer.embeddings = "text", "x.txt", "paper"
    assert tiny.keeps_embeddings


def test_print_config_shows_the_papers_values_at_paper_scale(capsys):
    from ncalab.cli.main import main

    assert main(["run", "--scale", "paper", "--preset", "web", "--print-config"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["stage1"]["schedule"] == "paper" and shown["stage1"]["grad_clip"] == 0.0
    assert shown["stage2"]["lr"] == 5e-4 and shown["stage2"]["weight_decay"] == 1e-4
    assert shown["data"] == {**shown["data"], "corpus": "hf:Skylion007/openwebtext", "tokenizer": "gpt2"}
    assert shown["model"]["attention_dropout"] == 0.1


def test_schedule_warms_up_then_decays():
    f = lr_factor("cosine", 100, 0.1, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(50) < 1 and f(99) == pytest.approx(0.1, abs=0.01)
    assert all(f(i) >= f(i + 1) for i in range(10, 99))


def test_wsd_holds_the_peak_then_cools_down_over_its_last_share():
    f = lr_factor("wsd", 100, 10, 0.1, decay=0.2)
    rates = [f(i) for i in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == 1.0 and set(rates[9:81]) == {1.0}
    assert rates[-1] == pytest.approx(0.1) and all(b < a for a, b in zip(rates[80:], rates[81:]))
    # a shorter run with the same warm-up is the same schedule until its own cooldown starts
    g = lr_factor("wsd", 50, 10, 0.1, decay=0.2)
    assert [g(i) for i in range(41)] == rates[:41] and g(41) < 1.0


def test_paper_schedule_rises_over_the_whole_stage_to_its_peak():
    # the paper's stage-1 weights are taken at the last step of a linear warm-up
    f = lr_factor("paper", 5000, 0.05, 0.1)
    rates = [f(i) for i in range(5000)]
    assert rates[-1] == pytest.approx(1.0) and rates[0] == pytest.approx(1 / 5000)
    assert all(b > a for a, b in zip(rates, rates[1:]))
    assert rates[2499] == pytest.approx(0.5)
    c = lr_factor("constant", 100, 0.1, 0.1)
    assert c(4) == pytest.approx(0.5) and c(9) == c(50) == c(99) == 1.0


def test_warmup_of_one_or_more_is_a_number_of_steps():
    assert warmup_steps(10_000, 750) == 750  # the paper's code stage 2
    assert warmup_steps(10_000, 0.1) == 1000
    assert warmup_steps(100, 750) == 100  # never longer than the stage
    f = lr_factor("cosine", 2000, 750, 0.0)
    assert f(749) == pytest.approx(1.0) and f(1999) == pytest.approx(0.0, abs=1e-5)


def test_speedup_and_gain_follow_the_spec():
    assert first_reach([0, 100, 200], [10, 6, 4], 5) == pytest.approx(150)
    assert first_reach([0, 100], [10, 8], 5) is None
    scratch = ([0, 100, 200, 300, 400], [50.0, 20.0, 15.0, 12.0, 10.0])
    nca = ([0, 100, 200, 300, 400], [50.0, 15.0, 11.0, 9.0, 8.0])
    s = compare(scratch, nca)
    assert s["ppl_scratch"] == 10 and s["ppl_nca"] == 8 and s["gain"] == pytest.approx(0.2)
    # NCA reaches 10 between 200 (11) and 300 (9): at 250 -> 400 / 250
    assert s["speedup"] == pytest.approx(1.6)
    worse = compare(scratch, ([0, 200, 400], [50.0, 30.0, 12.0]))
    assert worse["speedup"] is None and worse["gain"] < 0


def test_checkpoint_loads_with_auto_model(tmp_path):
    model = build_model(M, 60, 32, seed=0)
    opt = torch.optim.AdamW(model.parameters())
    checkpoint.save(tmp_path / "ck", model, opt, step=3)
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "ck")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert (tmp_path / "ck" / "model.safetensors").exists()
    assert checkpoint.load_state(tmp_path / "ck")["step"] == 3
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(NcalabError, match="cannot load"):
        checkpoint.load_model(tmp_path / "ck")
    with pytest.raises(NcalabError, match="no checkpoint"):
        checkpoint.load_model(tmp_path / "missing")


def test_progress_reads_the_same_in_the_log_and_the_bars(capsys):
    """One formatter: the job log and the progress bars print the same words for an event."""
    from rich.console import Console
    from rich.progress import Progress

    from ncalab.services.worker import LogReporter
    from ncalab.cli.run import RichReporter
    from ncalab.reporting import EvaluationProgress, TrainingProgress, progress_text

    events = [TrainingProgress("nca", 4096, 3.21, 5000.0, val_loss=2.0, val_ppl=7.39),
              TrainingProgress("stage1", 4096, 5.5, 4000.0, val_loss=5.0, val_ppl=148.4),
              EvaluationProgress("bbl-nca", 3, samples=24, correct=1)]
    assert progress_text(events[0]) == "loss 3.210  val ppl 7.39  5,000 tok/s"
    assert progress_text(events[1]) == "loss 5.500  val loss 5.000  4,000 tok/s"  # NCA tokens: no perplexity
    assert progress_text(events[2]) == "1 of 24 samples correct"
    log = LogReporter(every_s=0)
    console = Console(width=200, record=True, force_terminal=False)
    bars = RichReporter(Progress(console=console))
    for e in events:
        log.stage(e.stage, 8192)
        bars.stage(e.stage, 8192)
        log.progress(e)
        bars.progress(e)
    bars.bars.stop()
    out = capsys.readouterr().out
    shown = [t.fields["info"] for t in bars.bars.tasks]
    assert shown == [progress_text(e) for e in events] and all(text in out for text in shown)
