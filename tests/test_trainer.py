"""The training loop: it learns, and a stopped run resumes exactly."""

import torch

from ncalab.config import ModelConfig
from ncalab.nca.bands import Band
from ncalab.nca.config import NCAConfig
from ncalab.train.batches import NCABatches, nca_validation
from ncalab.train.device import choose
from ncalab.train.loop import StageSpec, Trainer
from ncalab.train.model import build_model

M = ModelConfig(n_layer=1, d_model=32, n_head=2)
NCA = NCAConfig(seq_len=128)
BAND = Band(0.5, 1.0)


def _trainer(tmp_path, should_stop=None, steps=8):
    model = build_model(M, NCA.vocab_size, NCA.seq_len, seed=0)
    spec = StageSpec("t", steps * 4 * 128, 4 * 128, 3e-3, 0.1, 0.1, 0.0, 1.0, 0, n_evals=2)
    val = nca_validation(NCA, BAND, 1, 8, 4)
    points = []
    tr = Trainer(model, spec, choose("cpu", "fp32"), NCABatches(NCA, BAND, 1, 4, batch_rules=64), val,
                 on_metrics=points.extend, checkpoint_dir=tmp_path, should_stop=should_stop)
    return tr, points


def test_a_stopped_run_resumes_exactly(tmp_path):
    full, full_points = _trainer(tmp_path / "a")
    full.run()
    stopped, _ = _trainer(tmp_path / "b", should_stop=lambda: stopped.step >= 3)
    stopped.run()
    assert stopped.stopped and stopped.step == 3 and (tmp_path / "b" / "last" / "model.safetensors").exists()
    resumed, resumed_points = _trainer(tmp_path / "c")
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
    tr, points = _trainer(tmp_path, steps=30)
    tr.run()
    val = [p["value"] for p in points if p["name"] == "val_loss"]
    assert len(val) >= 2 and val[-1] < val[0] - 0.2
