"""Tokenizers: text <-> integer ids, at character level or with GPT-2's byte-level BPE.

A language model only ever sees integers in ``0..vocab_size-1``; the tokenizer fixes that mapping.
Two are provided, with one interface (``encode``, ``decode``, ``vocab_size``, ``eot_token``,
``state_dict``) so that data loading, training and sampling code need not care which is used:

* ``CharTokenizer`` — one id per distinct character of a given alphabet (id = index in the sorted
  alphabet), as in Karpathy's char-rnn / nanoGPT "shakespeare_char". Tiny vocabulary, long
  sequences, no unknown-token fallback: characters outside the alphabet are an error.
* ``GPT2Tokenizer`` — GPT-2's byte-level BPE (Radford et al. 2019; Sennrich et al. 2016 for BPE),
  50257 ids of which 50256 is ``<|endoftext|>``. It runs on ``tiktoken`` but **offline**: the merge
  ranks ship with this package (``assets/r50k_base.tiktoken.xz``, byte-identical to OpenAI's
  ``r50k_base.tiktoken`` once decompressed; see ``assets/README.md``), because
  ``tiktoken.get_encoding("gpt2")`` downloads them on first use.

``get_tokenizer(name, text)`` builds either by name; ``tokenizer_from_state(tok.state_dict())``
rebuilds one from the small JSON-serialisable dict that checkpoints store.
"""
from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING, Iterable, Union

__all__ = ["TOKENIZERS", "GPT2_PATTERN", "GPT2_RANKS_ASSET", "GPT2_RANKS_SHA256", "CharTokenizer",
           "GPT2Tokenizer", "get_tokenizer", "tokenizer_from_state"]

if TYPE_CHECKING:  # imported lazily at run time: `import minarmd` should not pay for tiktoken
    import tiktoken
    import torch

TOKENIZERS = ("char", "gpt2")

# GPT-2's pre-tokenisation regex, copied from tiktoken_ext/openai_public.py (r50k_pat_str): it splits
# text into words, numbers, punctuation runs and whitespace before BPE merges are applied.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT2_RANKS_ASSET = "r50k_base.tiktoken.xz"
# sha256 of the decompressed ranks, the `expected_hash` tiktoken itself checks for r50k_base.tiktoken
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"


def _as_id_list(ids: Iterable[int] | torch.Tensor, vocab_size: int) -> list[int]:
    """Validate one sequence of ids (list/tuple of ints or a 1-D integer tensor) and return a list."""
    if hasattr(ids, "ndim") and hasattr(ids, "tolist"):  # torch tensor (or numpy array)
        if ids.ndim != 1:
            raise ValueError(f"ids must be one sequence (1-D), got shape {tuple(ids.shape)}; "
                             "decode a batch row by row: [tok.decode(row) for row in ids]")
        ids = ids.tolist()  # a float tensor becomes floats, rejected below
    ids = list(ids)
    bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"ids must be integers in 0..{vocab_size - 1} (vocab_size={vocab_size}), "
                         f"got {bad[:5]!r}{' ...' if len(bad) > 5 else ''}; were they made by another tokenizer?")
    return ids


class CharTokenizer:
    """Character-level tokenizer: id = index of the character in ``sorted(set(alphabet))``."""

    name = "char"
    eot_token: int | None = None  # no end-of-text token: documents are separated by their own text

    def __init__(self, alphabet: str):
        if not isinstance(alphabet, str) or not alphabet:
            raise ValueError(f"alphabet must be a non-empty str of characters, got {alphabet!r}; "
                             "use CharTokenizer.from_text(corpus_text)")
        self.chars = "".join(sorted(set(alphabet)))  # sorted: the same alphabet always gives the same ids
        self._stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose alphabet is every character occurring in ``text``."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"text must be a non-empty str, got {type(text).__name__} of length "
                             f"{len(text) if hasattr(text, '__len__') else '?'}")
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        try:
            return [self._stoi[c] for c in text]
        except KeyError:  # slow path only to build a helpful message
            unknown = sorted(set(text) - set(self._stoi))
            shown = ", ".join(repr(c) for c in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise ValueError(f"text contains {len(unknown)} character(s) outside this tokenizer's alphabet "
                             f"({self.vocab_size} characters): {shown}. Build the tokenizer from text that "
                             "includes them (CharTokenizer.from_text(all_text)) or remove/replace them "
                             "before encoding.") from None

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        return "".join(self.chars[i] for i in _as_id_list(ids, self.vocab_size))

    def state_dict(self) -> dict:
        return {"name": self.name, "alphabet": self.chars}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


@functools.lru_cache(maxsize=1)
def _gpt2_encoding() -> tiktoken.Encoding:
    """Build GPT-2's tiktoken Encoding from the shipped ranks (once per process, ~0.1 s)."""
    import base64
    import lzma

    import tiktoken

    from .corpus import read_asset

    data = lzma.decompress(read_asset(GPT2_RANKS_ASSET))
    if hashlib.sha256(data).hexdigest() != GPT2_RANKS_SHA256:
        raise ValueError(f"minarmd/assets/{GPT2_RANKS_ASSET} is corrupted (sha256 mismatch); reinstall minarmd")
    # tiktoken's own format: one "base64(token bytes) rank" pair per line
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines())}
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257)


class GPT2Tokenizer:
    """GPT-2's byte-level BPE (ids identical to ``tiktoken.get_encoding("gpt2")``), offline.

    ``encode`` is tiktoken's ``encode_ordinary``: the string ``"<|endoftext|>"`` inside a text is
    ordinary text (several ids), never the special id 50256 — a document cannot inject a document
    boundary. Append ``eot_token`` yourself where one document ends. ``decode`` replaces byte
    sequences that are not valid UTF-8 (e.g. a slice that cuts a multi-byte character) by U+FFFD.
    """

    name = "gpt2"
    vocab_size = 50257
    eot_token = 50256

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        return _gpt2_encoding().encode_ordinary(text)

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        return _gpt2_encoding().decode(_as_id_list(ids, self.vocab_size))

    def state_dict(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        return "GPT2Tokenizer(vocab_size=50257)"


Tokenizer = Union[CharTokenizer, GPT2Tokenizer]


def get_tokenizer(name: str, text: str | None = None) -> Tokenizer:
    """``"char"`` (alphabet = characters of ``text``, required) or ``"gpt2"`` (``text`` unused)."""
    if name == "char":
        if not isinstance(text, str) or not text:
            raise ValueError("get_tokenizer('char') needs text= to build its alphabet from, "
                             "e.g. get_tokenizer('char', text=load_corpus('shakespeare').text)")
        return CharTokenizer.from_text(text)
    if name == "gpt2":
        return GPT2Tokenizer()
    raise ValueError(f"unknown tokenizer name {name!r}; choose one of {TOKENIZERS}")


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuild a tokenizer from ``tok.state_dict()`` (e.g. as stored in a checkpoint)."""
    if not isinstance(state, dict) or "name" not in state:
        raise ValueError(f"state must be a dict made by tokenizer.state_dict() with a 'name' key, got {state!r:.200}")
    name = state["name"]
    expected = {"char": {"name", "alphabet"}, "gpt2": {"name"}}.get(name)
    if expected is None:
        raise ValueError(f"state['name'] must be one of {TOKENIZERS}, got {name!r}")
    if set(state) != expected:
        raise ValueError(f"a {name!r} tokenizer state has exactly the keys {sorted(expected)}, got {sorted(state)}")
    if name == "char":
        if not isinstance(state["alphabet"], str) or not state["alphabet"]:
            raise ValueError(f"state['alphabet'] must be a non-empty str, got {state['alphabet']!r:.200}")
        return CharTokenizer(state["alphabet"])
    return GPT2Tokenizer()
