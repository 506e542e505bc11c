"""The controls of issue 39 that act on the transfer: matched statistics and a freeze counted in
tokens. Each compares against the definition, on real Llama weights."""

import pytest
import torch

from ncalab.config import ExperimentConfig, ModelConfig, TransferConfig, apply_overrides
from ncalab.errors import NcalabError
from ncalab.experiment.stages import frozen_steps
from ncalab.train.device import choose
from ncalab.train.loop import StageSpec, make_optimizer
from ncalab.train.model import build_model
from ncalab.train.transfer import transfer

M = ModelConfig(n_layer=2, d_model=32, n_head=2)


def trained_like(seed=1):
    """A source model unlike a fresh init, with rows of different spread and a non-zero mean."""
    src = build_model(M, 100, 64, seed=seed)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _, p in src.named_parameters():
            rows = p.shape[0]
            p.mul_(1 + 3 * torch.rand(rows, *([1] * (p.dim() - 1)), generator=g)).add_(0.05)
    return src


def rows(t):
    t = t.double()
    return t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)


def test_matched_stats_gives_each_tensor_its_mean_and_each_row_its_spread():
    src = trained_like()
    out, kept = transfer(src, M, 50, 64, seed=2, settings=TransferConfig(control="matched_stats"))
    scaled, _ = transfer(src, M, 50, 64, seed=2, settings=TransferConfig(control="matched_scale"))
    fresh = build_model(M, 50, 64, seed=2).state_dict()
    sd_src, sd_out = src.state_dict(), out.state_dict()
    assert kept and all(".mlp." in n or ".self_attn." in n or "norm" in n for n in kept)
    for n in kept:
        a, b = rows(sd_src[n]), rows(sd_out[n])
        assert b.mean().item() == pytest.approx(a.mean().item(), abs=1e-6), n
        assert torch.allclose(b.std(dim=1, unbiased=False), a.std(dim=1, unbiased=False), rtol=1e-6, atol=1e-6), n
        rms = a.pow(2).mean().sqrt().item()
        assert rows(scaled.state_dict()[n]).pow(2).mean().sqrt().item() == pytest.approx(rms, rel=1e-6), n
        if a.numel() > 100:  # a draw unrelated to the stage-1 weights: the fresh init's pattern
            assert abs(torch.corrcoef(torch.stack([a.flatten() - a.mean(), b.flatten()]))[0, 1]) < 0.2, n
            if rows(fresh[n]).std() > 0:
                assert torch.corrcoef(torch.stack([b.flatten(), rows(fresh[n]).flatten()]))[0, 1] > 0.5, n


def test_a_freeze_in_tokens_keeps_the_transferred_weights_for_exactly_those_tokens():
    cfg = apply_overrides(ExperimentConfig(), {"transfer": {"freeze_tokens": 300}})
    model = build_model(M, 50, 64, seed=0)
    names = {n for n, _ in model.named_parameters() if ".self_attn." in n}
    spec = StageSpec("nca", 20 * 64, 64, lr=1e-2, warmup=2, min_lr_ratio=0.1, weight_decay=0.1, grad_clip=1.0,
                     eval_every=0, transferred=frozenset(names))
    steps = frozen_steps(cfg.transfer, spec)
    assert steps == 5  # steps starting at tokens 0, 64, ..., 256 < 300; the sixth starts at 320
    opt, sched = make_optimizer(model, StageSpec(**{**spec.__dict__, "freeze_steps": steps}), choose("cpu", "fp32"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randint(0, 50, (4, 16))
    for step in range(8):
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        for n, p in model.named_parameters():
            moved = not torch.equal(p, before[n])
            assert moved == (n not in names or step >= steps), (step, n)
    half = apply_overrides(ExperimentConfig(), {"transfer": {"freeze": 0.25}})
    assert frozen_steps(half.transfer, spec) == 5 and frozen_steps(ExperimentConfig().transfer, spec) == 0


@pytest.mark.parametrize("change, message", [
    ({"transfer": {"freeze_tokens": 2_000_000}}, "below stage2.tokens"),
    ({"transfer": {"freeze_tokens": -1}}, "freeze_tokens must be >= 0"),
    ({"transfer": {"freeze_tokens": 1000, "freeze": 0.1}}, "not both"),
    ({"transfer": {"control": "matched_stat"}}, "matched_stats"),
])
def test_bad_transfer_settings_are_one_line(change, message):
    with pytest.raises(NcalabError, match=message) as e:
        apply_overrides(ExperimentConfig(), change).validate()
    assert "\n" not in str(e.value)


def test_a_freeze_in_tokens_may_be_used_with_budgets():
    cfg = apply_overrides(ExperimentConfig(), {"stage2": {"schedule": "wsd", "warmup": 10, "budgets": [500_000]},
                                               "transfer": {"freeze_tokens": 100_000}})
    cfg.validate()  # a fraction would freeze each budget for a different number of tokens, and is refused
    with pytest.raises(NcalabError, match="transfer.freeze"):
        apply_overrides(cfg, {"transfer": {"freeze_tokens": 0, "freeze": 0.1}}).validate()
