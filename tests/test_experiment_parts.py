"""Pieces of an experiment: config resolution, transfer, schedule, summary, checkpoints."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from ncalab.errors import NcalabError
from ncalab.config import ModelConfig
from ncalab.experiment.summary import compare, first_reach
from ncalab.services.config import resolve_config
from ncalab.train import checkpoint
from ncalab.train.model import build_model
from ncalab.train.schedule import warmup_cosine
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
    attn_only, _ = transfer(src, M, 50, 64, seed=2, reinit={"mlp", "norm"})
    for n, w in attn_only.state_dict().items():
        if ".self_attn." in n:
            assert torch.equal(w, sd_src[n])
        else:
            assert torch.equal(w, sd_scr[n]), n


def test_schedule_warms_up_then_decays():
    f = warmup_cosine(100, 0.1, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(50) < 1 and f(99) == pytest.approx(0.1, abs=0.01)
    assert all(f(i) >= f(i + 1) for i in range(10, 99))


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
