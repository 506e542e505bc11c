"""The training loop: it learns, and a stopped run resumes exactly."""

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
