"""Tokenizers: exact GPT-2 ids offline, lossless round trips, clear errors, checkpointable state."""
import json
import random
import threading
from pathlib import Path

import pytest
import torch

import minarmd
from minarmd.tokenizer import (TOKENIZERS, CharTokenizer, GPT2Tokenizer, get_tokenizer,
                               tokenizer_from_state)

ASSET = Path(minarmd.__file__).parent / "assets" / "r50k_base.tiktoken.xz"
ASSET_LIMIT = 300_000  # bytes on disk, as stated in minarmd/assets/README.md

ASCII = [chr(c) for c in range(32, 127)]
UNICODE = list("éèàçñüößøåÆœŒ€£¥©°±µ∑∫√∞≈≠≤≥αβγδλπΩЖжшЯ中文字日本語한국어")
WHITESPACE = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000"]
EMOJI = ["😀", "🎉", "👍🏽", "👩‍💻", "🇫🇷", "❤️", "🧪"]


def random_strings(seed: int, pools: list[list[str]], n: int = 40, max_pieces: int = 30) -> list[str]:
    """Seeded random strings made of pieces drawn from the given pools (the empty string included)."""
    rng = random.Random(seed)
    out = [""]
    for _ in range(n):
        pool = rng.choice(pools)
        out.append("".join(rng.choice(pool if rng.random() < 0.8 else rng.choice(pools))
                           for _ in range(rng.randint(1, max_pieces))))
    return out


TEXTS = ["hello world", "Hello, World!", " leading and trailing  ", "line one\nline two\n\n",
         "tabs\tand\r\nwindows newlines", "numbers 12345 67.89 -1e10", "it's, we'll, they've, I'd",
         "naïve café, Ünïcödé", "日本語のテキスト", "emoji 👩‍💻🎉 mix", "<|endoftext|> inside text",
         "def f(x):\n    return x ** 2  # comment\n", "    \n\t\t  \n"]


# --------------------------------------------------------------------------- GPT-2

def test_gpt2_known_ids():
    tok = GPT2Tokenizer()
    assert tok.encode("hello world") == [31373, 995]
    assert tok.encode("Hello") == [15496] and tok.encode(" the") == [262] and tok.encode("\n") == [198]
    assert tok.decode([31373, 995]) == "hello world"
    assert (tok.name, tok.vocab_size, tok.eot_token) == ("gpt2", 50257, 50256)


def test_gpt2_endoftext_in_text_is_plain_text():
    tok = GPT2Tokenizer()
    ids = tok.encode("<|endoftext|>")
    assert tok.eot_token not in ids and len(ids) > 1  # ordinary encoding: no injected boundary
    assert tok.decode(ids) == "<|endoftext|>"
    assert tok.decode([tok.eot_token]) == "<|endoftext|>"  # the special id itself decodes to its text
    assert tok.decode(tok.encode("a") + [tok.eot_token] + tok.encode("b")) == "a<|endoftext|>b"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gpt2_round_trip(seed):
    tok = GPT2Tokenizer()
    for s in random_strings(seed, [ASCII, UNICODE, WHITESPACE, EMOJI]) + TEXTS:
        ids = tok.encode(s)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == s
        assert tok.decode(torch.tensor(ids, dtype=torch.long)) == s


def test_gpt2_decode_errors():
    tok = GPT2Tokenizer()
    for bad in ([50257], [-1], [1.0], torch.zeros(2, 3, dtype=torch.long)):
        with pytest.raises(ValueError, match="ids"):
            tok.decode(bad)


def test_gpt2_encoding_is_built_once():
    a, b = GPT2Tokenizer(), GPT2Tokenizer()
    a.encode("x"), b.encode("y")
    from minarmd.tokenizer import _gpt2_encoding
    assert _gpt2_encoding.cache_info().currsize == 1 and _gpt2_encoding().n_vocab == 50257


def _official_gpt2_or_skip():
    """tiktoken's own (downloaded) encoding, or skip: offline it cannot load, possibly after a long hang."""
    import tiktoken
    result = {}

    def load():
        try:
            result["enc"] = tiktoken.get_encoding("gpt2")
        except Exception as e:  # noqa: BLE001 - any failure to download means "cannot compare here"
            result["err"] = e

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout=30)
    if "enc" not in result:
        reason = result.get("err", "timed out after 30 s")
        pytest.skip(f"tiktoken.get_encoding('gpt2') is unavailable (offline? no cached copy): {reason!s:.150}")
    return result["enc"]


def test_gpt2_matches_official_tiktoken():
    official = _official_gpt2_or_skip()
    tok = GPT2Tokenizer()
    for s in TEXTS + random_strings(3, [ASCII, UNICODE, WHITESPACE, EMOJI]):
        assert tok.encode(s) == official.encode_ordinary(s), s


def test_gpt2_asset_size_on_disk():
    assert ASSET.is_file() and ASSET.stat().st_size <= ASSET_LIMIT


# --------------------------------------------------------------------------- characters

def test_char_ids_are_sorted_alphabet():
    tok = CharTokenizer("hello world")
    assert tok.chars == " dehlorw" and tok.vocab_size == 8 and tok.eot_token is None
    assert tok.encode("hello") == [3, 2, 4, 4, 5]
    assert CharTokenizer.from_text("dlrow olleh").state_dict() == tok.state_dict()  # order-independent


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_char_round_trip(seed):
    alphabet = "".join(ASCII + UNICODE + EMOJI[:3]) + " \t\n\r\u00a0"
    tok = CharTokenizer.from_text(alphabet)
    rng = random.Random(seed)
    chars = list(tok.chars)
    for _ in range(30):
        s = "".join(rng.choice(chars) for _ in range(rng.randint(0, 200)))
        assert tok.decode(tok.encode(s)) == s
        assert tok.decode(torch.tensor(tok.encode(s), dtype=torch.long)) == s


def test_char_unknown_characters_are_named():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"'x'.*'z'.*from_text"):
        tok.encode("abxcz")


def test_char_decode_out_of_range_and_bad_input():
    tok = CharTokenizer.from_text("abc")
    for bad in ([3], [-1], [0, 1, 99], [True], [0.0], torch.tensor([[0, 1]]), torch.tensor([0.5])):
        with pytest.raises(ValueError, match="ids"):
            tok.decode(bad)
    for bad_alphabet in ("", None, ["a", "b"]):
        with pytest.raises(ValueError, match="alphabet"):
            CharTokenizer(bad_alphabet)
    with pytest.raises(ValueError, match="str"):
        tok.encode(["a"])


# --------------------------------------------------------------------------- factory and state

def test_get_tokenizer():
    assert isinstance(get_tokenizer("gpt2"), GPT2Tokenizer)
    assert get_tokenizer("char", text="abca").vocab_size == 3
    with pytest.raises(ValueError, match="text="):
        get_tokenizer("char")
    with pytest.raises(ValueError, match=r"'char'.*'gpt2'"):
        get_tokenizer("bpe")
    assert TOKENIZERS == ("char", "gpt2")


def test_state_dict_round_trip_through_json():
    for tok in (CharTokenizer.from_text("héllo wörld 👍\n"), GPT2Tokenizer()):
        state = json.loads(json.dumps(tok.state_dict()))
        again = tokenizer_from_state(state)
        assert type(again) is type(tok) and again.state_dict() == tok.state_dict()
        assert again.vocab_size == tok.vocab_size
        s = "wörld hé 👍\n" if tok.name == "char" else "any text at all"
        assert again.encode(s) == tok.encode(s)


@pytest.mark.parametrize("state", [None, "gpt2", {}, {"name": "bpe"}, {"name": "char"},
                                   {"name": "char", "alphabet": ""}, {"name": "char", "alphabet": 3},
                                   {"name": "gpt2", "alphabet": "abc"}])
def test_tokenizer_from_bad_state(state):
    with pytest.raises(ValueError, match="state"):
        tokenizer_from_state(state)
