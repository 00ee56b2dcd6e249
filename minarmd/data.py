r"""The dataset registry and batching: every dataset becomes a packed token stream plus a sampler.

``load_data(name)`` returns a ``TokenData``: a 1-D training stream, a 1-D validation stream and the
facts evaluation needs (vocabulary size, characters per token, the exact NLL floor where known).
Training draws random windows, evaluation reads consecutive ones:

* ``batch(split, B, n, g)`` — B windows of n tokens at uniform random offsets of the stream
  (nanoGPT's sampler). Windows may cross document boundaries; models add their own BOS.
* ``eval_windows(n)`` — the validation stream cut into consecutive, non-overlapping windows,
  the same every call, so two models are scored on identical tokens.

Packing rule for the text corpora (``corpus.py``): with a tokenizer that has an end-of-text token
(GPT-2, id 50256) every document is **followed** by it, ``doc_1 EOT doc_2 EOT ...`` (as
``openwebtext.py`` writes its ``.bin`` files); at character level, which has none, documents are
joined by a blank line ``"\n\n"``. The character alphabet is built from the whole corpus (train and
val), so validation never meets an unknown character. ``chars_per_token`` is the length of the
validation documents joined by ``"\n\n"`` over the number of validation tokens (1.0 at character
level), so bits per character, :math:`\text{nats/token} / (\ln 2 \cdot \text{chars/token})`, compare
across tokenizers on the same text.

Datasets (``DATASETS``):

* ``"shakespeare"``, ``"bible"``, ``"python"`` — the offline corpora, ``tokenizer="char"`` or ``"gpt2"``;
* ``"markov"`` — a fixed ``MarkovSource`` (``synthetic.py``), 2M training / 200k validation tokens,
  ``true_nll(n)`` its exact window NLL;
* ``"copy"`` — ``CopyTask`` sequences, generated fresh for every batch (no stream), n even;
* ``"openwebtext"`` — ``train.bin`` / ``val.bin`` from ``data_dir`` (``python -m minarmd.openwebtext
  --out DIR``), GPT-2 BPE, read as memmaps (only the sampled windows are loaded). The folder is
  checked against its manifest ``meta.json`` first (``openwebtext.py`` explains the rule), and every
  window read from a memmap is checked to hold ids < ``vocab_size`` (only the B x n values read):
  a bad file is a ``ValueError`` naming it (``TokenData.files``), not an IndexError inside a model.

Encoded corpora and the Markov streams are cached per process (``functools.lru_cache``): repeated
``load_data`` calls share the same tensors, so do not modify ``train`` / ``val`` in place.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .validation import check_int

__all__ = ["DATASETS", "SPLITS", "MARKOV_TRAIN_TOKENS", "MARKOV_VAL_TOKENS", "MARKOV_SEEDS", "COPY_EVAL_SEED",
           "COPY_EVAL_WINDOWS", "TokenData", "load_data"]

DATASETS = ("shakespeare", "bible", "python", "markov", "copy", "openwebtext")
SPLITS = ("train", "val")
MARKOV_TRAIN_TOKENS = 2_000_000  # ~2000 visits per context at the default 1024 contexts; ~0.6 s to sample
MARKOV_VAL_TOKENS = 200_000  # 1563 windows of 128: standard error of the mean NLL ~ 0.003 nats
MARKOV_SEEDS = (1, 2)  # train and val streams are independent stationary draws of the same chain
COPY_EVAL_SEED = 1234  # the fixed copy sequences every model is evaluated on
COPY_EVAL_WINDOWS = 256  # how many, unless max_windows says otherwise


@dataclass
class TokenData:
    """A dataset as token streams: random training windows, fixed validation windows, its NLL floor."""

    name: str  # one of DATASETS
    tokenizer: object = field(repr=False)  # CharTokenizer / GPT2Tokenizer; None for synthetic (ids = symbols)
    vocab_size: int  # ids are in 0..vocab_size-1
    train: torch.Tensor | np.memmap | None = field(repr=False, compare=False)  # (L,) packed stream; None for copy
    val: torch.Tensor | np.memmap | None = field(repr=False, compare=False)  # (L_val,) packed stream; None for copy
    true_nll: Callable[[int], float] | None = field(repr=False, default=None)  # exact NLL/token of an n-window
    chars_per_token: float | None = None  # validation characters per token (bits/char); None when no text
    kind: str = "synthetic"  # "verse" | "prose" | "code" | "synthetic"
    source: object = field(repr=False, compare=False, default=None)  # the MarkovSource / CopyTask, if any
    files: dict | None = field(repr=False, compare=False, default=None)  # split -> path of its .bin, for errors

    def _stream(self, split: str) -> torch.Tensor | np.memmap:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.train if split == "train" else self.val

    def _check_n(self, n: int, stream) -> None:
        check_int("n", n)
        if stream is not None and n > len(stream):
            raise ValueError(f"n={n} is longer than the {self.name!r} stream ({len(stream)} tokens): "
                             f"use a shorter window or a larger dataset")

    def _from_memmap(self, split: str, ids: np.ndarray) -> torch.Tensor:
        """int64 tensor of ids read from a file, refused if one is outside the vocabulary: a file nobody
        checked value by value, and an id >= vocab_size would be an IndexError deep inside the model."""
        if ids.size and int(ids.max()) >= self.vocab_size:
            path = (self.files or {}).get(split)
            where, fix = f"the {split} stream of {self.name!r}", ""
            if path:
                from .openwebtext import _rerun

                where, fix = path, f"; {_rerun(Path(path).parent)}"
            raise ValueError(f"{where} holds token id {int(ids.max())}, outside the vocabulary "
                             f"0..{self.vocab_size - 1}: the file is corrupt or from another tokenizer{fix}")
        return torch.from_numpy(ids.astype(np.int64))

    def batch(self, split: str, batch_size: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, n) int64 windows at uniform random offsets of ``split`` (fresh sequences for copy), on the CPU."""
        stream = self._stream(split)
        check_int("batch_size", batch_size)
        self._check_n(n, stream)
        if stream is None:  # a generated task: every batch is new
            return self.source.sample(batch_size, n, generator)
        offsets = torch.randint(0, len(stream) - n + 1, (batch_size,), generator=generator)  # (B,)
        if isinstance(stream, torch.Tensor):
            return stream[offsets[:, None] + torch.arange(n)].long()  # (B, n)
        # memmap: read only the B windows (contiguous slices are the cheapest reads)
        return self._from_memmap(split, np.stack([stream[o:o + n] for o in offsets.tolist()]))

    def eval_windows(self, n: int, max_windows: int | None = None) -> torch.Tensor:
        """(W, n) int64: the first W consecutive non-overlapping windows of the validation stream.

        W = len(val) // n, capped by ``max_windows``. For copy: ``max_windows`` (default 256)
        sequences generated with the fixed seed COPY_EVAL_SEED.
        """
        if max_windows is not None:
            check_int("max_windows", max_windows)
        self._check_n(n, self.val)
        if self.val is None:
            count = COPY_EVAL_WINDOWS if max_windows is None else max_windows
            return self.source.sample(count, n, torch.Generator().manual_seed(COPY_EVAL_SEED))
        count = len(self.val) // n if max_windows is None else min(len(self.val) // n, max_windows)
        if isinstance(self.val, torch.Tensor):
            return self.val[:count * n].long().reshape(count, n)  # (W, n)
        return self._from_memmap("val", np.asarray(self.val[:count * n])).reshape(count, n)

    def __repr__(self) -> str:
        size = lambda s: "generated" if s is None else f"{len(s):,} tokens"  # noqa: E731
        return (f"TokenData({self.name!r}, kind={self.kind!r}, vocab_size={self.vocab_size}, "
                f"train={size(self.train)}, val={size(self.val)})")


@functools.lru_cache(maxsize=None)
def _encoded_corpus(name: str, tokenizer: str):
    """(tokenizer, train stream, val stream, chars_per_token, kind) of a text corpus, once per process."""
    from .corpus import load_corpus
    from .tokenizer import get_tokenizer

    corpus = load_corpus(name)
    tok = get_tokenizer(tokenizer, text=corpus.text + "\n")  # "\n": the separator must be in the alphabet

    def pack(docs: list[str]) -> torch.Tensor:
        if tok.eot_token is None:
            return torch.tensor(tok.encode("\n\n".join(docs)), dtype=torch.long)
        return torch.tensor([i for doc in docs for i in tok.encode(doc) + [tok.eot_token]], dtype=torch.long)

    train, val = pack(corpus.train), pack(corpus.val)
    chars_per_token = len("\n\n".join(corpus.val)) / max(len(val), 1)
    return tok, train, val, chars_per_token, corpus.kind


@functools.lru_cache(maxsize=None)
def _markov_streams():
    from .synthetic import MarkovSource

    source = MarkovSource()
    train = source.sample(MARKOV_TRAIN_TOKENS, torch.Generator().manual_seed(MARKOV_SEEDS[0]))
    val = source.sample(MARKOV_VAL_TOKENS, torch.Generator().manual_seed(MARKOV_SEEDS[1]))
    return source, train, val


def _openwebtext(tokenizer: str, data_dir: str | None) -> TokenData:
    from .openwebtext import PREPARE_HINT, load_bin, read_meta
    from .tokenizer import GPT2Tokenizer

    if tokenizer != "gpt2":
        raise ValueError(f"openwebtext is stored as GPT-2 BPE ids: pass tokenizer='gpt2', got {tokenizer!r}")
    if data_dir is None:
        raise ValueError(f"openwebtext needs data_dir=, the folder made by `{PREPARE_HINT}`")
    files = {split: str(Path(data_dir) / f"{split}.bin") for split in SPLITS}
    train, val = load_bin(files["train"]), load_bin(files["val"])  # each checked against the manifest
    split = read_meta(data_dir)["splits"]["val"]
    chars_per_token = (split["chars"] + 2 * (split["documents"] - 1)) / split["tokens"]
    return TokenData("openwebtext", GPT2Tokenizer(), GPT2Tokenizer.vocab_size, train, val, None,
                     chars_per_token, "prose", files=files)


def load_data(name: str, tokenizer: str = "char", data_dir: str | None = None, n: int | None = None) -> TokenData:
    """Load a dataset from ``DATASETS`` as token streams.

    ``tokenizer`` ("char" or "gpt2") applies to the text corpora; synthetic sources ignore it (their
    ids are the symbols) and openwebtext needs "gpt2". ``data_dir`` is openwebtext's prepared folder.
    ``n``, when given, checks up front that both splits hold a window of n tokens.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if name == "markov":
        source, train, val = _markov_streams()
        data = TokenData(name, None, source.vocab_size, train, val, source.window_nll, None, "synthetic", source)
    elif name == "copy":
        from .synthetic import CopyTask

        task = CopyTask()
        data = TokenData(name, None, task.vocab_size, None, None, task.window_nll, None, "synthetic", task)
    elif name == "openwebtext":
        data = _openwebtext(tokenizer, data_dir)
    else:
        tok, train, val, chars_per_token, kind = _encoded_corpus(name, tokenizer)
        data = TokenData(name, tok, tok.vocab_size, train, val, None, chars_per_token, kind)
    for split in SPLITS:  # an empty or tiny corpus fails here, not at the first batch
        stream = data._stream(split)
        if stream is not None and len(stream) < 2:
            raise ValueError(f"the {split} split of {name!r} has {len(stream)} token(s): nothing to train on")
    if n is not None:
        for split in SPLITS:
            data._check_n(n, data._stream(split))
        if name == "copy":
            data.source.window_nll(n)  # raises for odd n
    return data
