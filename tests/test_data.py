"""Language data: corpora, the BPE tokenizer, token arrays and batches. Real text, no network."""

import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ncalab.data import corpora
from ncalab.data.corpora import DEFAULT_CORPORA, Corpus, is_validation, open_corpus
from ncalab.data.lm_data import TokenBatches, build_token_arrays, val_batches
from ncalab.data.tokenizer import get_tokenizer, train_bpe
from ncalab.errors import NcalabError

from conftest import GSM8K, WIKITEXT


def gsm8k_rows(start: int, n: int) -> list[dict]:
    with open(GSM8K, encoding="utf-8") as f:
        lines = f.readlines()[start: start + n]
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def stdlib() -> Corpus:
    return open_corpus("python-stdlib")


@pytest.fixture(scope="module")
def bpe(stdlib, cache):
    t = time.perf_counter()
    tok, tok_id = get_tokenizer(stdlib, 2048, cache, 0.05, max_train_chars=2_500_000)
    return tok, tok_id, time.perf_counter() - t


@pytest.fixture(scope="module")
def gsm_corpus(tmp_path_factory) -> Corpus:
    """Up to 2000 GSM8K problems as a local .jsonl corpus (enough documents for both splits)."""
    d = tmp_path_factory.mktemp("gsm")
    with open(d / "gsm.jsonl", "w", encoding="utf-8") as f:
        for row in gsm8k_rows(0, 2000):
            f.write(json.dumps(row) + "\n")
    return open_corpus(str(d / "gsm.jsonl"))


# --- corpora ---------------------------------------------------------------------------------------


def test_default_corpora():
    assert DEFAULT_CORPORA["code"] == "python-stdlib"
    assert DEFAULT_CORPORA["math"].startswith("hf:") and DEFAULT_CORPORA["web"].startswith("hf:")


def test_stdlib_corpus_is_library_code_in_fixed_order(stdlib):
    files = corpora.stdlib_files()
    rels = [rel for rel, _ in files]
    assert rels == sorted(rels)
    assert 300 < len(files) < 5000
    assert all(rel.endswith(".py") for rel in rels)
    banned = {"test", "tests", "idle_test", "site-packages", "__pycache__"}
    assert not any(banned & set(rel.split("/")[:-1]) for rel in rels)
    assert "os.py" in rels and "json/decoder.py" in rels

    docs = list(stdlib.iter_texts())
    again = open_corpus("python-stdlib")
    assert again.id == stdlib.id and "3." in stdlib.id
    assert docs == list(again.iter_texts())  # deterministic order
    assert len(docs) > 300 and all(d.strip() for d in docs)
    # One document per file (empty __init__.py files and non-utf-8 files are left out).
    assert files[rels.index("os.py")][1].read_text(encoding="utf-8") in docs


def test_local_folder_of_mixed_files(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.py").write_text("def f(x):\n    return x + 1\n")
    (root / "notes.md").write_text("# Notes\n\nSome *markdown* text.\n")
    (root / "sub" / "b.txt").write_text("plain text file\nwith two lines\n")
    (root / ".hidden.txt").write_text("ignored")
    (root / "image.png").write_bytes(b"\x89PNG")
    rows = gsm8k_rows(0, 20)
    with open(root / "gsm.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    prows = gsm8k_rows(20, 5)
    pq.write_table(pa.Table.from_pylist(prows), root / "sub" / "rows.parquet")

    c = open_corpus(str(root), cache_dir=tmp_path / "cache")
    docs = list(c.iter_texts())
    assert len(docs) == 3 + 20 + 5
    assert "def f(x):\n    return x + 1\n" in docs
    assert "# Notes\n\nSome *markdown* text.\n" in docs
    assert "plain text file\nwith two lines\n" in docs
    assert "ignored" not in docs
    for r in rows + prows:  # question and answer both in the document
        assert f"{r['question']}\n{r['answer']}" in docs
    assert docs == list(open_corpus(str(root), cache_dir=tmp_path / "cache").iter_texts())

    # The id is a cache key: it changes when a file changes.
    (root / "a.py").write_text("def f(x):\n    return x + 2  # changed\n")
    assert open_corpus(str(root)).id != c.id

    # A single file works too, and a "text" field wins over the other string fields.
    (tmp_path / "t.jsonl").write_text(json.dumps({"title": "T", "text": "body"}) + "\n")
    assert list(open_corpus(str(tmp_path / "t.jsonl")).iter_texts()) == ["body"]


def test_txt_corpora_are_split_into_paragraphs(tmp_path, monkeypatch):
    # WikiText separates paragraphs with lines that hold one space
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", WIKITEXT.read_text(encoding="utf-8")) if p.strip()]
    docs = list(open_corpus(str(WIKITEXT)).iter_texts())
    assert len(docs) == len(paragraphs) > 100  # a .txt file on its own: one document per paragraph
    assert all(d.strip() for d in docs)
    assert any(d.startswith(" Homarus gammarus , known as the European lobster") for d in docs)
    # In a folder, a small .txt file is one document (a note, a README), a large one its paragraphs.
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(WIKITEXT, folder / "wiki.txt")
    (folder / "note.txt").write_text("one note\n\nin two paragraphs\n")
    monkeypatch.setattr(corpora, "LARGE_TXT_BYTES", WIKITEXT.stat().st_size + 1)
    assert len(list(open_corpus(str(folder)).iter_texts())) == 2
    monkeypatch.setattr(corpora, "LARGE_TXT_BYTES", WIKITEXT.stat().st_size - 1)
    assert len(list(open_corpus(str(folder)).iter_texts())) == len(paragraphs) + 1


@pytest.mark.parametrize("case", ["missing", "empty_dir", "png_only", "png_file", "no_text", "bad_json", "bad_hf"])
def test_bad_local_specs(tmp_path, case):
    spec = tmp_path / "x"
    if case == "empty_dir":
        spec.mkdir()
    elif case == "png_only":
        spec.mkdir()
        (spec / "a.png").write_bytes(b"\x89PNG")
    elif case == "png_file":
        spec = tmp_path / "a.png"
        spec.write_bytes(b"\x89PNG")
    elif case == "no_text":
        spec.mkdir()
        (spec / "a.txt").write_text("  \n\n")
        (spec / "b.md").write_text("")
    elif case == "bad_json":
        spec = tmp_path / "a.jsonl"
        spec.write_text('{"text": "ok"}\n{not json\n')
    elif case == "bad_hf":
        spec = "hf:a:b:c"
    with pytest.raises(NcalabError) as e:
        open_corpus(str(spec))
    assert "\n" not in str(e.value)


def test_hub_corpus_offline_gives_helpful_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(NcalabError, match=r"cannot load hub dataset some/dataset \(offline\?\); pass a local corpus "
                                          r"with --corpus PATH"):
        open_corpus("hf:some/dataset")


def test_split_is_deterministic_and_near_the_fraction():
    docs = [f"document number {i}\n" for i in range(20000)]
    for frac in (0.01, 0.1, 0.5):
        n_val = sum(is_validation(d, frac) for d in docs)
        sd = math.sqrt(len(docs) * frac * (1 - frac))
        assert abs(n_val - len(docs) * frac) < 5 * sd
    assert [is_validation(d, 0.1) for d in docs[:500]] == [is_validation(d, 0.1) for d in docs[:500]]
    assert not any(is_validation(d, 0.0) for d in docs[:500])
    # Larger fractions only move documents into validation, never out of it.
    assert all(is_validation(d, 0.2) for d in docs if is_validation(d, 0.1))
    for bad in (-0.1, 1.0, 2.0):
        with pytest.raises(NcalabError):
            is_validation("x", bad)


# --- tokenizer ---------------------------------------------------------------------------------------


def test_bpe_round_trips_real_code(bpe, stdlib):
    tok, tok_id, seconds = bpe
    assert len(tok) == 2048
    assert tok.eos_token == tok.bos_token == tok.pad_token == "<|endoftext|>"
    assert seconds < 20
    docs = list(stdlib.iter_texts())
    samples = docs[::60] + ["naïve café ✓ — 数学 \t\r\n  x = 1\n\n", "<|endoftext|> in text"]
    for text in samples:
        ids = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert tok.decode(ids) == text
        assert max(ids) < 2048


def test_bpe_cache_is_reused(bpe, stdlib, cache):
    tok, tok_id, first = bpe
    t = time.perf_counter()
    tok2, tok_id2 = get_tokenizer(stdlib, 2048, cache, 0.05, max_train_chars=2_500_000)
    assert time.perf_counter() - t < max(1.0, first / 2)  # loaded, not retrained
    assert tok_id2 == tok_id
    sample = next(stdlib.iter_texts())
    assert tok2(sample)["input_ids"] == tok(sample)["input_ids"]
    assert len(list((cache / "tokenizers").iterdir())) == 1


def test_bpe_small_vocab_and_bad_vocab():
    texts = [row["question"] for row in gsm8k_rows(0, 300)]
    tok = train_bpe(texts, 300)
    assert 257 <= len(tok) <= 300
    with pytest.raises(NcalabError):
        train_bpe(texts, 100)


def test_pretrained_tokenizer_offline_gives_helpful_error(monkeypatch, stdlib, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(NcalabError, match=r"cannot load tokenizer 'gpt2' \(offline\?\); omit --tokenizer"):
        get_tokenizer(stdlib, 2048, tmp_path, 0.05, tokenizer_name="gpt2")
    assert time.perf_counter() - t < 10  # no network retries


# --- token arrays -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gsm_tok(gsm_corpus, cache):
    return get_tokenizer(gsm_corpus, 512, cache, 0.1, max_train_chars=1_000_000)


def _split_docs(arr: np.ndarray, eos: int) -> list[np.ndarray]:
    cuts = np.flatnonzero(arr == eos)
    return [arr[a + 1: b] for a, b in zip(np.r_[-1, cuts[:-1]], cuts)]


def test_token_arrays_route_documents_and_end_each_with_eos(gsm_corpus, gsm_tok, cache):
    tok, tok_id = gsm_tok
    train, val = build_token_arrays(gsm_corpus, tok, tok_id, cache, 0.1, None, None)
    assert train.dtype == val.dtype == np.uint16
    docs = list(gsm_corpus.iter_texts())
    want = {False: [d for d in docs if not is_validation(d, 0.1)], True: [d for d in docs if is_validation(d, 0.1)]}
    assert 0.05 < len(want[True]) / len(docs) < 0.15  # about the validation fraction
    eos = tok.eos_token_id
    for arr, is_val in ((train, False), (val, True)):
        assert arr[-1] == eos
        got = [tok.decode(d.tolist()) for d in _split_docs(np.asarray(arr), eos)]
        assert got == want[is_val]  # every document once, in order, on its own side only
    assert not set(want[False]) & set(want[True])

    # Second call: loaded from the cache.
    t = time.perf_counter()
    train2, val2 = build_token_arrays(gsm_corpus, tok, tok_id, cache, 0.1, None, None)
    assert time.perf_counter() - t < 0.5
    np.testing.assert_array_equal(train2, train)
    np.testing.assert_array_equal(val2, val)


def test_token_budgets_are_respected_and_stop_reading(gsm_corpus, gsm_tok, cache, monkeypatch):
    from ncalab.data import lm_data

    monkeypatch.setattr(lm_data, "_BATCH_DOCS", 100)  # reading goes batch by batch: several in this corpus
    tok, tok_id = gsm_tok
    docs = list(gsm_corpus.iter_texts())
    read = [0]

    def counting():
        for d in docs:
            read[0] += 1
            yield d

    c = Corpus("gsm-counted", gsm_corpus.id + "-counted", counting)
    train, val = build_token_arrays(c, tok, tok_id, cache, 0.1, 5000, 700)
    assert len(train) == 5000 and len(val) == 700
    full_train, full_val = build_token_arrays(gsm_corpus, tok, tok_id, cache, 0.1, None, None)
    np.testing.assert_array_equal(train, full_train[:5000])
    np.testing.assert_array_equal(val, full_val[:700])
    assert read[0] < len(docs)  # it stopped once both budgets were met


def test_empty_split_is_an_error(tmp_path, gsm_tok):
    tok, tok_id = gsm_tok
    (tmp_path / "few").mkdir()
    for i in range(3):
        (tmp_path / "few" / f"{i}.txt").write_text(f"a short document {i}\n")
    c = open_corpus(str(tmp_path / "few"))
    with pytest.raises(NcalabError, match="no validation documents"):
        build_token_arrays(c, tok, tok_id, tmp_path, 0.001, None, None)
    with pytest.raises(NcalabError):
        build_token_arrays(c, tok, tok_id, tmp_path, 0.1, 0, None)


def test_stdlib_token_arrays(stdlib, bpe, cache):
    tok, tok_id, _ = bpe
    train, val = build_token_arrays(stdlib, tok, tok_id, cache, 0.05, 300_000, 30_000)
    assert len(train) == 300_000 and len(val) == 30_000
    assert train.dtype == np.uint16 and int(train.max()) < len(tok)


# --- batches ------------------------------------------------------------------------------------------


def _window_ids(batch: torch.Tensor, w: int) -> list[int]:
    starts = batch[:, 0].tolist()
    assert all(s % w == 0 for s in starts)
    assert torch.equal(batch - batch[:, :1], torch.arange(w).expand_as(batch))  # whole, contiguous windows
    return [s // w for s in starts]


def test_token_batches_are_reproducible_and_permute_each_epoch():
    seq_len, bs = 15, 7
    w = seq_len + 1
    tokens = np.arange(100 * w + 5, dtype=np.int32)  # 100 windows and a tail that is dropped
    a, b = TokenBatches(tokens, seq_len, bs, seed=3), TokenBatches(tokens, seq_len, bs, seed=3)
    assert a.windows_per_epoch == 100
    seq_a = [next(a) for _ in range(60)]
    seq_b = [next(b) for _ in range(60)]
    assert all(x.dtype == torch.int64 and x.shape == (bs, w) for x in seq_a)
    assert all(torch.equal(x, y) for x, y in zip(seq_a, seq_b))

    ids = [i for x in seq_a for i in _window_ids(x, w)]
    assert sorted(ids[:100]) == list(range(100))  # epoch 0: every window once
    assert sorted(ids[100:200]) == list(range(100))  # epoch 1 too, in another order
    assert ids[:100] != ids[100:200]

    c = TokenBatches(tokens, seq_len, bs, seed=4)
    assert [i for _ in range(15) for i in _window_ids(next(c), w)][:100] != ids[:100]


def test_token_batches_resume_exactly():
    tokens = np.arange(37 * 9, dtype=np.uint16)
    a = TokenBatches(tokens, 8, 5, seed=11)
    for _ in range(9):  # crosses an epoch boundary (37 windows)
        next(a)
    state = json.loads(json.dumps(a.state_dict()))  # survives a JSON checkpoint
    rest = [next(a) for _ in range(20)]
    b = TokenBatches(tokens, 8, 5, seed=11)
    b.load_state_dict(state)
    assert all(torch.equal(x, next(b)) for x in rest)

    with pytest.raises(NcalabError):
        TokenBatches(tokens[: 37 * 9 - 20], 8, 5, seed=11).load_state_dict(state)
    with pytest.raises(NcalabError):
        TokenBatches(tokens[:5], 8, 5, seed=11)


def test_val_batches_are_fixed_and_ordered():
    tokens = np.arange(1000, dtype=np.uint16)
    batches = val_batches(tokens, 9, 4, 250)  # 25 windows of 10
    assert [len(b) for b in batches] == [4] * 6 + [1]
    flat = torch.cat(batches).reshape(-1)
    assert torch.equal(flat, torch.arange(250))
    again = val_batches(tokens, 9, 4, 250)
    assert all(torch.equal(x, y) for x, y in zip(batches, again))
    assert sum(len(b) for b in val_batches(tokens, 9, 4, None)) == 100
    with pytest.raises(NcalabError):
        val_batches(tokens, 9, 4, 5)


def test_package_exports():
    import ncalab.data as data

    assert data.open_corpus is open_corpus and data.TokenBatches is TokenBatches
