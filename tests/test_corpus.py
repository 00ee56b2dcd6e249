"""Embedded corpora: load offline and fast, split by whole documents, deterministically, within size limits."""
import time
from pathlib import Path

import pytest

import minarmd
from minarmd import corpus
from minarmd.corpus import (BIBLE_VAL, CORPORA, PYTHON_MAX_CHARS, PYTHON_SKIP_DIRS, SHAKESPEARE_VAL,
                            Corpus, load_corpus)
from minarmd.tokenizer import CharTokenizer

ASSETS = Path(minarmd.__file__).parent / "assets"
# bytes on disk, as stated in minarmd/assets/README.md
ASSET_LIMITS = {"shakespeare.json.xz": 2_000_000, "kjv_bible.json.xz": 500_000}
# fraction of characters in val: the shipped corpora are fixed (~10.5 %, ~10.3 %); the stdlib
# hash split is ~10 % but depends on the Python version, hence the wider range
VAL_FRACTION = {"shakespeare": (0.09, 0.12), "bible": (0.09, 0.12), "python": (0.04, 0.20)}
KINDS = {"shakespeare": "verse", "bible": "prose", "python": "code"}


def chars(docs):
    return sum(map(len, docs))


@pytest.mark.parametrize("name", CORPORA)
def test_corpus_loads_and_splits_by_document(name):
    c = load_corpus(name)
    assert isinstance(c, Corpus) and c.name == name and c.kind == KINDS[name]
    assert c.train and c.val and all(isinstance(d, str) and d.strip() for d in c.train + c.val)
    assert len(c.train_names) == len(c.train) and len(c.val_names) == len(c.val)
    assert not set(c.train_names) & set(c.val_names)  # disjoint by document
    assert len(set(c.train_names + c.val_names)) == len(c.train) + len(c.val)
    lo, hi = VAL_FRACTION[name]
    assert lo <= chars(c.val) / (chars(c.train) + chars(c.val)) <= hi
    assert c.attribution.strip() and "\n" not in c.attribution
    assert c.text == "".join(c.train) + "".join(c.val)


@pytest.mark.parametrize("name", CORPORA)
def test_split_is_deterministic_across_reloads(name):
    first = load_corpus(name)
    corpus._documents.cache_clear()  # read the files again, not the per-process cache
    second = load_corpus(name)
    assert (first.train_names, first.val_names) == (second.train_names, second.val_names)
    assert first.train == second.train and first.val == second.val


def test_callers_cannot_corrupt_the_cache():
    c = load_corpus("bible")
    c.train.clear(), c.val.append("junk"), c.val_names.append("junk")
    again = load_corpus("bible")
    assert again.train and "junk" not in again.val and "junk" not in again.val_names


def test_default_corpus_loads_fast():
    corpus._documents.cache_clear()
    start = time.perf_counter()
    c = load_corpus()
    elapsed = time.perf_counter() - start
    assert c.name == "shakespeare"
    assert elapsed < 1.0, f"loading the default corpus took {elapsed:.2f} s"


def test_shakespeare_content():
    c = load_corpus("shakespeare")
    assert len(c.train) + len(c.val) == 42 and sorted(c.val_names) == sorted(SHAKESPEARE_VAL)
    assert "hamlet" in c.train_names
    text = c.text
    assert text.isascii() and "\r" not in text and "Gutenberg" not in text
    assert not any(line != line.rstrip() for line in text.split("\n"))
    hamlet = c.train[c.train_names.index("hamlet")]
    assert hamlet.startswith("HAMLET, PRINCE OF DENMARK") and "To be, or not to be" in hamlet
    CharTokenizer.from_text("".join(c.train)).encode("".join(c.val))  # val needs no unseen character


def test_bible_content():
    c = load_corpus("bible")
    assert sorted(c.val_names) == sorted(BIBLE_VAL) and len(c.train) + len(c.val) == 29
    assert c.train_names[:3] == ["Genesis", "Exodus", "Matthew"] and c.train_names[-1] == "Revelation"
    assert c.train[0].startswith("Genesis\n\nIn the beginning God created the heaven and the earth.")
    assert c.text.isascii() and 1_000_000 < len(c.text) < 1_500_000


def test_python_corpus_rules():
    c = load_corpus("python")
    names = c.train_names + c.val_names
    assert all(n.endswith(".py") for n in names)
    assert not any(set(n.split("/")[:-1]) & PYTHON_SKIP_DIRS for n in names)
    assert chars(c.train) + chars(c.val) <= PYTHON_MAX_CHARS
    assert c.train_names == sorted(c.train_names) and c.val_names == sorted(c.val_names)
    import zlib
    assert all(zlib.crc32(n.encode()) % 10 == 0 for n in c.val_names)
    assert not any(zlib.crc32(n.encode()) % 10 == 0 for n in c.train_names)


@pytest.mark.parametrize("filename, limit", sorted(ASSET_LIMITS.items()))
def test_shipped_asset_sizes(filename, limit):
    path = ASSETS / filename
    assert path.is_file(), f"{path} is missing"
    assert path.stat().st_size <= limit
    assert (ASSETS / "README.md").read_text(encoding="utf-8").count(filename) >= 1  # documented


def test_unknown_corpus_names_the_choices():
    with pytest.raises(ValueError, match=r"'shakespeare'.*'bible'.*'python'"):
        load_corpus("wikipedia")


def test_missing_asset_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="reinstall"):
        corpus.read_asset("no_such_file.xz")
