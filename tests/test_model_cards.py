"""Model cards: every saved language model folder has a README.md that names the experiment,
the arm, the data and the figures, and is still a folder transformers loads."""

import json
import os

import pytest
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM

from ncalab.store import RunStore

from conftest import MICRO, cli_json  # noqa: E402

ARGS = [*MICRO, "--set", "stage2.tokens=16384", "--set", "stage1.icl_sequences=0"]


def run(capsys, home, corpus) -> dict:
    return cli_json(capsys, "run", "--corpus", corpus, "--home", home, *ARGS)


@pytest.mark.slow
def test_language_models_get_cards_that_a_reader_understands(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    s = run(capsys, home, code_corpus)
    store = RunStore(home)
    for arm in ("nca", "scratch"):
        r = store.get_run(s["runs"][arm])
        folder = store.run_dir(r) / "model"
        card = ModelCard.load(folder / "README.md")
        assert card.data.library_name == "transformers" and f"arm-{arm}" in card.data.tags
        text = card.text
        assert s["experiment_id"] in text and ("NCA-initialised" if arm == "nca" else "scratch: the baseline") in text
        assert f"final validation perplexity: {store.latest_metrics(r.id)['val_ppl']:.2f}" in text
        assert f"gain = 1 - ppl_nca/ppl_scratch = {s['gain']:+.3f}" in text  # written again after the summary
        assert f"corpus `{code_corpus}`" in text and "byte-level BPE of 512 tokens" in text
        assert json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])["stage2"]["tokens"] == 16384
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.config.vocab_size <= 512 + 8
    assert not (store.run_dir(store.get_run(s["runs"]["stage1"])) / "model" / "README.md").exists()  # not a language model

    # an identical experiment reuses the models (hard links): it gets its own cards, the first keeps its own
    again = run(capsys, home, code_corpus)
    assert again["experiment_id"] != s["experiment_id"]
    for arm in ("nca", "scratch"):
        first = store.run_dir(store.get_run(s["runs"][arm])) / "model"
        second = store.run_dir(store.get_run(again["runs"][arm])) / "model"
        assert os.path.samefile(first / "model.safetensors", second / "model.safetensors")
        assert again["experiment_id"] in (second / "README.md").read_text()
        assert s["experiment_id"] in (first / "README.md").read_text()
        assert again["experiment_id"] not in (first / "README.md").read_text()
