"""The training loop: it learns, and a stopped run resumes exactly."""

import pytest
import torch

from conftest import tiny_nca_trainer


def test_a_stopped_run_resumes_exactly(tmp_path):
    full, full_points = tiny_nca_trainer(tmp_path / "a")
    full.run()
    stopped, _ = tiny_nca_trainer(tmp_path / "b", should_stop=lambda: stopped.step >= 3)
    stopped.run()
    assert stopped.stopped and stopped.step == 3 and (tmp_path / "b" / "last" / "model.safetensors").exists()
    resumed, resumed_points = tiny_nca_trainer(tmp_path / "c")
    resumed.restore(tmp_path / "b" / "last")
    assert resumed.step == 3
    resumed.run()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    # the resumed run logs only the steps it ran, with the same values as the full run
    full_loss = {p["step"]: p["value"] for p in full_points if p["name"] == "train_loss"}
    res_loss = {p["step"]: p["value"] for p in resumed_points if p["name"] == "train_loss"}
    assert sorted(res_loss) == list(range(4, 9)) and all(res_loss[k] == full_loss[k] for k in res_loss)


def test_training_reduces_held_out_loss(tmp_path):
    tr, points = tiny_nca_trainer(tmp_path, steps=30)
    tr.run()
    val = [p["value"] for p in points if p["name"] == "val_loss"]
    assert len(val) >= 2 and val[-1] < val[0] - 0.2


def _wsd_trainer(ckpt_dir, steps: int, branch_steps=frozenset()):
    """A tiny NCA trainer under wsd: a 2-step warm-up (in steps, so runs of any length share it)
    and a cooldown over the last quarter of the steps."""
    from ncalab.config import ModelConfig
    from ncalab.nca.bands import Band
    from ncalab.nca.config import NCAConfig
    from ncalab.train.batches import NCABatches, nca_validation
    from ncalab.train.device import choose
    from ncalab.train.loop import StageSpec, Trainer, TrainerOptions
    from ncalab.train.model import build_model

    from conftest import TINY_MODEL_KW, TINY_SEQ_LEN

    nca, band = NCAConfig(seq_len=TINY_SEQ_LEN), Band(0.5, 1.0)
    model = build_model(ModelConfig(**TINY_MODEL_KW), nca.vocab_size, nca.seq_len, seed=0)
    spec = StageSpec("t", steps * 4 * 128, 4 * 128, 3e-3, 2, 0.1, 0.1, 1.0, 0, n_evals=2, schedule="wsd", decay=0.25)
    lrs = []
    tr = Trainer(model, spec, choose("cpu", "fp32"), NCABatches(nca, band, 1, 4, batch_rules=64),
                 nca_validation(nca, band, 1, 8, 4),
                 TrainerOptions(on_metrics=lambda pts: lrs.extend(p["value"] for p in pts if p["name"] == "lr"),
                                checkpoint_dir=ckpt_dir, branch_steps=frozenset(branch_steps)))
    return tr, lrs


def test_a_wsd_cooldown_branch_is_the_shorter_run_bit_for_bit(tmp_path):
    """The study's D axis (docs/study.md): a 16-step wsd run keeps a checkpoint where an 8-step
    run's cooldown starts (step 6); the 8-step cooldown taken from it gives the same weights
    as the 8-step run trained alone, bit for bit on the CPU."""
    from ncalab.train.loop import branch_name
    from ncalab.train.schedule import decay_start

    assert decay_start(8, 0.25) == 6 and decay_start(16, 0.25) == 12
    long, long_lrs = _wsd_trainer(tmp_path / "long", 16, branch_steps={6})
    long.run()
    assert (tmp_path / "long" / branch_name(6) / "model.safetensors").exists()
    alone, alone_lrs = _wsd_trainer(tmp_path / "alone", 8)
    alone.run()
    branch, branch_lrs = _wsd_trainer(tmp_path / "branch", 8)
    branch.branch_from(tmp_path / "long" / branch_name(6))
    assert branch.step == 6
    branch.run()
    assert branch.step == alone.step == 8
    for (name, a), b in zip(alone.model.state_dict().items(), branch.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert branch_lrs == alone_lrs[6:]  # the cooldown's rates, step for step
    # the schedule: warm-up, the peak until the cooldown's first step, then down to 0.1 of it
    assert long_lrs[:2] == pytest.approx([1.5e-3, 3e-3]) and set(long_lrs[2:13]) == {3e-3}
    assert long_lrs[-1] == pytest.approx(3e-4) and long_lrs[12:] == sorted(long_lrs[12:], reverse=True)
    # and the branch is not where the long run went on to
    assert any(not torch.equal(a, b) for a, b in zip(long.model.state_dict().values(), branch.model.state_dict().values()))


def test_the_training_pass_attention_and_optimizer_defaults():
    """bf16 autocast on a CPU trains with eager attention (measured faster there than sdpa's bf16
    kernel), fp32 and GPUs keep the model's own; the switch holds only inside the training pass;
    one CPU process takes the fused AdamW."""
    from ncalab.config import ModelConfig
    from ncalab.train.device import Placement
    from ncalab.train.loop import attention_as, train_attention
    from ncalab.train.model import build_model

    cpu = torch.device("cpu")
    assert train_attention("auto", Placement(cpu, torch.bfloat16)) == "eager"
    assert train_attention("auto", Placement(cpu, None)) is None
    assert train_attention("auto", Placement(torch.device("cuda"), torch.bfloat16)) is None
    assert train_attention("sdpa", Placement(cpu, torch.bfloat16)) == "sdpa"
    model = build_model(ModelConfig(n_layer=1, d_model=32, n_head=2), 50, 16, seed=0)
    x = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sdpa = model(input_ids=x).logits
        with attention_as(model, "eager"):
            assert model.config._attn_implementation == "eager"
            eager = model(input_ids=x).logits
    assert model.config._attn_implementation == "sdpa"
    assert torch.allclose(eager, sdpa, rtol=1e-5, atol=1e-6)
    tr, _ = tiny_nca_trainer(None)
    assert all(g["fused"] for g in tr.optimizer.param_groups)


@pytest.mark.slow
def test_the_compiled_loop_trains_the_model_the_eager_loop_trains(tmp_path):
    """runtime.compile on a CPU compiles the body and the head loss's chunks (the loss stays
    chunked): three steps land where the eager loop's do, within test_distributed's float
    tolerance (measured: weights 5e-6 apart at most, losses 1e-6)."""
    from ncalab.train.loop import TrainerOptions

    eager, eager_points = tiny_nca_trainer(None, steps=3)
    compiled, compiled_points = tiny_nca_trainer(None, steps=3)
    compiled_points.clear()  # a Trainer of its own: the same model, spec, data and placement, compiled
    compiled = type(compiled)(compiled.model, compiled.spec, compiled.placement, compiled.batches, [],
                              TrainerOptions(on_metrics=compiled_points.extend, compile=True))
    assert compiled.body is not None and compiled.chunk_fn is not None and compiled.forward_model is compiled.model
    eager.run()
    compiled.run()
    diffs = {n: float((a - b).abs().max()) for (n, a), b in zip(eager.model.state_dict().items(),
                                                                compiled.model.state_dict().values())}
    loss = [[p["value"] for p in pts if p["name"] == "train_loss"] for pts in (eager_points, compiled_points)]
    assert max(diffs.values()) < 1e-4  # float tolerance, as test_distributed's (reductions in another order)
    assert loss[1] == pytest.approx(loss[0], abs=1e-5)
