"""The dataset registry: packing, random and evaluation windows, synthetic floors, errors."""
import math

import numpy as np
import pytest
import torch

from minarmd import data as data_mod
from minarmd import openwebtext
from minarmd.corpus import Corpus, load_corpus
from minarmd.data import DATASETS, TokenData, load_data
from minarmd.synthetic import MarkovSource


def arange_data(length=1000, memmap_dir=None) -> TokenData:
    """A stream whose token at position i is i (mod 65536): a window is contiguous iff it counts up by one."""
    stream = torch.arange(length)
    if memmap_dir is not None:
        path = memmap_dir / "arange.bin"
        np.arange(length, dtype=np.uint16).tofile(path)
        stream = np.memmap(path, dtype=np.uint16, mode="r")
    return TokenData("test", None, 65536, stream, stream, None, None, "synthetic")


@pytest.fixture(scope="module")
def shakespeare():
    return load_data("shakespeare")


@pytest.mark.parametrize("memmap", [False, True])
def test_batches_are_contiguous_deterministic_slices(tmp_path, memmap):
    d = arange_data(1000, tmp_path if memmap else None)
    x = d.batch("train", 64, 50, torch.Generator().manual_seed(0))
    assert x.shape == (64, 50) and x.dtype == torch.long
    assert torch.equal(x, x[:, :1] + torch.arange(50))  # each row is stream[o:o+50]
    assert x.min() >= 0 and x.max() <= 999
    assert torch.equal(x, d.batch("train", 64, 50, torch.Generator().manual_seed(0)))
    assert not torch.equal(x, d.batch("train", 64, 50, torch.Generator().manual_seed(1)))
    # the whole stream is reachable: offsets 0 and L - n both occur over many draws
    starts = d.batch("val", 4000, 50, torch.Generator().manual_seed(2))[:, 0]
    assert starts.min() == 0 and starts.max() == 950
    assert torch.equal(d.batch("train", 1, 1000, torch.Generator())[0], torch.arange(1000))


def test_memmap_and_tensor_streams_give_the_same_batches(tmp_path):
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(arange_data(1000).batch("train", 8, 20, g1),
                       arange_data(1000, tmp_path).batch("train", 8, 20, g2))


@pytest.mark.parametrize("memmap", [False, True])
def test_eval_windows_are_consecutive_and_fixed(tmp_path, memmap):
    d = arange_data(1000, tmp_path if memmap else None)
    w = d.eval_windows(64)
    assert w.dtype == torch.long and torch.equal(w, torch.arange(15 * 64).reshape(15, 64))
    assert torch.equal(d.eval_windows(64, max_windows=4), w[:4])
    assert d.eval_windows(64, max_windows=100).shape == (15, 64)


def test_text_corpus_char_level(shakespeare):
    d, corpus = shakespeare, load_corpus("shakespeare")
    assert d.kind == "verse" and d.chars_per_token == 1.0 and d.true_nll is None
    assert d.vocab_size == d.tokenizer.vocab_size and d.train.dtype == torch.long
    assert d.tokenizer.decode(d.val) == "\n\n".join(corpus.val)
    assert len(d.train) == len("\n\n".join(corpus.train))
    assert load_data("shakespeare").train is d.train  # cached within the process
    x = d.batch("val", 4, 256, torch.Generator().manual_seed(0))
    assert x.shape == (4, 256) and x.max() < d.vocab_size
    w = d.eval_windows(256, max_windows=3)
    assert torch.equal(w, d.eval_windows(256, max_windows=3)) and torch.equal(w.flatten(), d.val[:768])


def test_text_corpus_gpt2_puts_eot_after_every_document():
    d, corpus = load_data("bible", tokenizer="gpt2"), load_corpus("bible")
    assert d.kind == "prose" and d.vocab_size == 50257
    for stream, docs in ((d.train, corpus.train), (d.val, corpus.val)):
        assert int((stream == 50256).sum()) == len(docs) and int(stream[-1]) == 50256
    first = int((d.val == 50256).nonzero()[0])
    assert d.tokenizer.decode(d.val[:first]) == corpus.val[0]
    assert d.chars_per_token == pytest.approx(len("\n\n".join(corpus.val)) / len(d.val))
    assert 2.5 < d.chars_per_token < 6  # English BPE: ~4 characters per token


def test_markov_and_copy():
    d = load_data("markov", tokenizer="gpt2")  # the tokenizer is ignored for synthetic data
    source = MarkovSource()
    assert d.tokenizer is None and d.vocab_size == 32 and d.kind == "synthetic"
    assert (len(d.train), len(d.val)) == (data_mod.MARKOV_TRAIN_TOKENS, data_mod.MARKOV_VAL_TOKENS)
    assert d.true_nll(128) == source.window_nll(128) and d.true_nll(7) == source.window_nll(7)
    assert torch.equal(d.source.transition, source.transition)
    assert not torch.equal(d.train[:1000], d.val[:1000])  # independent draws

    c = load_data("copy", n=32)
    x = c.batch("train", 8, 32, torch.Generator().manual_seed(0))
    assert x.shape == (8, 32) and torch.equal(x[:, :16], x[:, 16:]) and x.max() < c.vocab_size
    assert torch.equal(x, c.batch("train", 8, 32, torch.Generator().manual_seed(0)))
    w = c.eval_windows(32)
    assert w.shape == (data_mod.COPY_EVAL_WINDOWS, 32) and torch.equal(w, c.eval_windows(32))
    assert torch.equal(c.eval_windows(32, max_windows=5), w[:5]) and torch.equal(w[:, :16], w[:, 16:])
    assert c.true_nll(32) == pytest.approx(math.log(16) / 2)


def test_openwebtext_from_prepared_bins(tmp_path):
    docs = ["One short document.", "Another, slightly longer, document here.", "Third."]
    files = []
    for i, text in enumerate(docs):
        files.append(tmp_path / f"d{i}.txt")
        files[-1].write_text(text)
    out = tmp_path / "owt"
    meta = openwebtext.prepare(out, data_files=files, num_proc=1, cache_dir=str(tmp_path / "hf"))
    d = load_data("openwebtext", tokenizer="gpt2", data_dir=str(out))
    assert isinstance(d.train, np.memmap) and d.vocab_size == 50257 and d.tokenizer.eot_token == 50256
    x = d.batch("train", 3, 4, torch.Generator().manual_seed(0))
    assert x.shape == (3, 4) and x.dtype == torch.long
    w = d.eval_windows(2)
    assert torch.equal(w.flatten(), torch.from_numpy(d.val[:w.numel()].astype(np.int64)))
    assert d.files == {"train": str(out / "train.bin"), "val": str(out / "val.bin")}
    val = meta["splits"]["val"]
    assert d.chars_per_token == pytest.approx((val["chars"] + 2 * (val["documents"] - 1)) / val["tokens"])
    with pytest.raises(ValueError, match="python -m minarmd.openwebtext --out"):
        load_data("openwebtext", tokenizer="gpt2", data_dir=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="tokenizer='gpt2'"):
        load_data("openwebtext", data_dir=str(out))
    with pytest.raises(ValueError, match="data_dir"):
        load_data("openwebtext", tokenizer="gpt2")


def test_errors(shakespeare, monkeypatch):
    with pytest.raises(ValueError, match="markov"):  # the message lists DATASETS
        load_data("wikitext")
    assert "openwebtext" in DATASETS
    with pytest.raises(ValueError, match="longer than"):
        load_data("shakespeare", n=10 ** 9)
    with pytest.raises(ValueError, match="longer than"):
        shakespeare.batch("val", 2, len(shakespeare.val) + 1, torch.Generator())
    with pytest.raises(ValueError, match="batch_size"):
        shakespeare.batch("train", 0, 8, torch.Generator())
    with pytest.raises(ValueError, match="split"):
        shakespeare.batch("test", 2, 8, torch.Generator())
    with pytest.raises(ValueError, match="n must be"):
        shakespeare.eval_windows(0)
    with pytest.raises(ValueError, match="max_windows"):
        shakespeare.eval_windows(8, max_windows=0)
    with pytest.raises(ValueError, match="even"):
        load_data("copy", n=33)
    with pytest.raises(ValueError, match="even"):
        load_data("copy").batch("train", 2, 33, torch.Generator())
    with pytest.raises(ValueError, match="unknown tokenizer"):
        load_data("bible", tokenizer="bpe")
    # an (almost) empty corpus fails at load time with a message naming the split
    import minarmd.corpus

    empty = Corpus("bible", "prose", ["some training text"], [""], "test")
    monkeypatch.setattr(minarmd.corpus, "load_corpus", lambda name: empty)
    data_mod._encoded_corpus.cache_clear()
    try:
        with pytest.raises(ValueError, match="val split"):
            load_data("bible")
    finally:
        data_mod._encoded_corpus.cache_clear()
