"""NCA corpora as Hugging Face datasets (`ncalab nca export --format parquet`), read back with
`datasets`, and stage 1 trained from a stored corpus (`stage1.corpus` with source nca)."""

import json

import numpy as np
import pytest
import torch

from ncalab.cli.main import main
from ncalab.config import ExperimentConfig
from ncalab.experiment.reuse import run_keys
from ncalab.sources.interface import SOURCES
from ncalab.nca.bands import DOMAIN_BANDS
from ncalab.nca.config import NCAConfig
from ncalab.nca.corpus import CorpusSpec, NCACorpus, write_corpus
from ncalab.nca.tokens import IGNORE_INDEX, make_example
from ncalab.store import RunStore
from ncalab.train import device as devices

from conftest import MICRO, cli_json  # noqa: E402

SEQ = 128


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three training shards of 50 sequences (two trajectories per rule: the sim_seed column)
    and 16 held-out rules, at the micro experiment's sequence length."""
    out = tmp_path_factory.mktemp("nca") / "corpus"
    cfg = NCAConfig(seq_len=SEQ, sims_per_rule=2)
    write_corpus(out, CorpusSpec(cfg, DOMAIN_BANDS["code"], 140 * SEQ, seed=3, val_sequences=16, domain="code"),
                 shard_tokens=50 * (SEQ + 1))
    return out


@pytest.fixture(scope="module")
def exported(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "nca-code"
    assert main(["nca", "export", str(corpus), "--format", "parquet", "--out", str(out), "--json"]) == 0
    return out


def test_load_dataset_reads_back_every_row(corpus, exported, tmp_path):
    import datasets

    files = sorted(p.name for p in (exported / "data").iterdir())
    assert files == ["train-00000-of-00003.parquet", "train-00001-of-00003.parquet", "train-00002-of-00003.parquet",
                     "validation-00000-of-00001.parquet"]
    for split, hf in (("train", "train"), ("val", "validation")):
        ds = datasets.load_dataset("parquet", data_files=str(exported / "data" / f"{hf}-*.parquet"), split="train",
                                   cache_dir=str(tmp_path / "hf"))
        c = NCACorpus(corpus, split)
        assert len(ds) == len(c) and set(ds.column_names) == {"rule_seed", "sim_seed", "score", "tokens"}
        ds = ds.with_format("numpy")
        np.testing.assert_array_equal(np.stack(ds["tokens"]), np.concatenate([np.asarray(s) for s in c.shards()]))
        rules = c.all_rules()
        np.testing.assert_array_equal(ds["rule_seed"], rules["rule_seed"])
        np.testing.assert_array_equal(ds["sim_seed"], c.all_sim_seeds())
        np.testing.assert_array_equal(ds["score"], rules["score"])
    train = NCACorpus(corpus, "train").all_sim_seeds()
    assert (train != NCACorpus(corpus, "train").all_rules()["rule_seed"]).any()  # a real sim_seed column
    # the card's configs make the folder itself a dataset with both splits
    both = datasets.load_dataset(str(exported), cache_dir=str(tmp_path / "hf2"))
    assert set(both) == {"train", "validation"} and len(both["validation"]) == 16


def test_the_dataset_card_has_hub_metadata_and_the_settings(corpus, exported):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(exported / "README.md")
    assert "neural-cellular-automata" in card.data.tags
    assert card.data.configs[0]["data_files"][0] == {"split": "train", "path": "data/train-*.parquet"}
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert "0.3 < score < 0.4" in card.text and "| sims_per_rule | 2 |" in card.text
    assert f"| seq_len | {SEQ} |" in card.text and f"stream seed {manifest['seed']}" in card.text


def test_export_refuses_what_it_must(corpus, exported, tmp_path, capsys):
    assert main(["nca", "export", str(corpus), "--out", str(exported)]) == 1
    assert "not empty" in capsys.readouterr().err
    (exported / "notes.txt").write_text("mine")
    cli_json(capsys, "nca", "export", corpus, "--out", exported, "--force")
    assert (exported / "notes.txt").read_text() == "mine"  # --force replaces only its own files
    capsys.readouterr()
    for args, message in ((["--format", "csv"], "parquet"), ([], "no manifest.json")):
        source = corpus if args else tmp_path
        assert main(["nca", "export", str(source), "--out", str(tmp_path / "x"), *args]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error:") and message in err


def _cfg(path, **stage1) -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.nca = cfg.nca.replace(seq_len=SEQ)
    cfg.stage1.tokens, cfg.stage1.batch_size, cfg.stage1.val_sequences = 96 * SEQ, 8, 8
    cfg.stage1.corpus = str(path) if path else None
    for k, v in stage1.items():
        setattr(cfg.stage1, k, v)
    return cfg.validate()


def test_stage1_batches_are_the_corpus_rows_in_order_and_resume(corpus, exported, tmp_path):
    rows = np.concatenate([np.asarray(s) for s in NCACorpus(corpus, "train").shards()]).astype(np.int64)
    held_out = np.concatenate([np.asarray(s) for s in NCACorpus(corpus, "val").shards()]).astype(np.int64)
    opened = {}
    for name, path in (("folder", corpus), ("parquet", exported)):
        notes = []
        data = SOURCES["nca"].open(_cfg(path), tmp_path, notes.append)
        assert data.vocab_size == NCAConfig(seq_len=SEQ).vocab_size and name in notes[0]
        got = [data.batches.next() for _ in range(8)]  # 64 rows: across the first shard boundary (50)
        inputs = torch.cat([b[0] for b in got]).numpy()
        want_in, want_labels = make_example(rows[:64], NCAConfig(seq_len=SEQ))
        np.testing.assert_array_equal(inputs, want_in)
        np.testing.assert_array_equal(torch.cat([b[1] for b in got]).numpy(), want_labels)
        assert (want_labels[:, : NCAConfig().frame_len - 2] == IGNORE_INDEX).all()  # the first frame is masked
        val_in = torch.cat([v[0] for v in data.validation]).numpy()
        np.testing.assert_array_equal(val_in, make_example(held_out[:8], NCAConfig(seq_len=SEQ))[0])
        state = data.batches.state_dict()
        again = SOURCES["nca"].open(_cfg(path), tmp_path, notes.append)
        again.batches.load_state_dict(state)
        np.testing.assert_array_equal(again.batches.next()[0].numpy(), make_example(rows[64:72], NCAConfig(seq_len=SEQ))[0])
        opened[name] = data
    placement = devices.choose("cpu", "fp32")
    keys = {name: run_keys(_cfg(path), placement)["stage1"] for name, path in (("folder", corpus), ("parquet", exported))}
    streamed = run_keys(_cfg(None), placement)["stage1"]
    assert streamed not in keys.values() and len(set(keys.values())) == 2  # the path is part of the key
    assert SOURCES["nca"].reuse_settings(_cfg(corpus))["nca_corpus"] == SOURCES["nca"].reuse_settings(_cfg(exported))["nca_corpus"]


@pytest.mark.parametrize("sets, message", [
    (["--set", "nca.seq_len=64"], "sequences of 128 tokens, nca.seq_len is 64"),
    (["--set", "stage1.tokens=1000000"], "training sequences; stage 1 needs"),
    (["--set", "stage1.val_sequences=32"], "16 held-out sequences"),
])
def test_a_corpus_that_does_not_fit_stops_before_anything_is_stored(corpus, code_corpus, tmp_path, capsys, sets, message):
    home = tmp_path / "h"
    code = main(["run", "--corpus", str(code_corpus), "--home", str(home), *MICRO, "--set", f"stage1.corpus={corpus}", *sets])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and message in err
    assert RunStore(home).list_experiments() == []


@pytest.mark.slow
def test_an_experiment_trains_stage1_on_the_exported_corpus(exported, code_corpus, tmp_path, capsys):
    home = tmp_path / "h"
    s = cli_json(capsys, "run", "--corpus", code_corpus, "--home", home, *MICRO, "--set", "stage2.tokens=8192",
                 "--set", f"stage1.corpus={exported}")
    store = RunStore(home)
    stage1 = store.get_run(s["runs"]["stage1"])
    assert stage1.status == "completed" and stage1.tokens == 16384
    tokens, loss = store.curve(stage1.id, "val_loss")
    assert loss[-1] < loss[0] < np.log(NCAConfig().vocab_size) + 1  # it learned the stored sequences
    assert json.loads(store.get_experiment(s["experiment_id"]).config_json)["stage1"]["corpus"] == str(exported)
