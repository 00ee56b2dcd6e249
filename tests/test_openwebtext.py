"""OpenWebText-style preparation, offline: local text files -> GPT-2 uint16 .bin files + meta.json."""
import json
import os

import numpy as np
import pytest

from minarmd import openwebtext
from minarmd.tokenizer import GPT2Tokenizer

DOCS = [
    "First document.\nIt has two lines.",
    "A second one, which mentions <|endoftext|> as plain text.",
    "Third: unicode café ✓ and numbers 12345.",
    "   leading spaces and a trailing newline\n",
    "short",
    "The sixth document is the longest of them all, " * 5,
    "seven",
]


def write_docs(folder, docs=DOCS):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, text in enumerate(docs):
        path = folder / f"doc{i}.txt"
        path.write_text(text, encoding="utf-8", newline="")
        paths.append(path)
    return paths


def split_documents(tokens) -> list[str]:
    """Decode a stream doc EOT doc EOT ... back into its documents (every document ends with EOT)."""
    tokens = [int(t) for t in tokens]
    assert tokens and tokens[-1] == openwebtext.EOT
    docs, start = [], 0
    for i, t in enumerate(tokens):
        if t == openwebtext.EOT:
            docs.append(GPT2Tokenizer().decode(tokens[start:i]))
            start = i + 1
    return docs


def stable(meta: dict) -> dict:
    """A manifest without the files' mtimes (a re-preparation writes the same bytes at another time)."""
    splits = {name: {k: v for k, v in entry.items() if k != "mtime_ns"} for name, entry in meta["splits"].items()}
    return {**meta, "splits": splits}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("owt")
    files = write_docs(root / "docs")
    out = root / "out"
    (out).mkdir()
    (out / "train.bin.tmp").write_bytes(b"\x01\x02\x03")  # a stale .tmp of an interrupted run
    meta = openwebtext.prepare(out, data_files=files, num_proc=1, cache_dir=str(root / "hf"))
    return root, files, out, meta


def test_counts_eot_and_roundtrip(prepared):
    root, files, out, meta = prepared
    assert sorted(os.listdir(out)) == ["meta.json", "train.bin", "val.bin"]  # the stale .tmp was replaced
    train, val = openwebtext.load_bin(out / "train.bin"), openwebtext.load_bin(out / "val.bin")
    assert train.dtype == np.uint16 and val.dtype == np.uint16
    tok = GPT2Tokenizer()
    expected = sum(len(tok.encode(d)) + 1 for d in DOCS)
    assert len(train) + len(val) == expected
    assert meta["splits"]["train"]["tokens"] == len(train) and meta["splits"]["val"]["tokens"] == len(val)
    assert meta["splits"]["val"]["documents"] == 1 and meta["splits"]["train"]["documents"] == len(DOCS) - 1
    assert meta["splits"]["train"]["chars"] + meta["splits"]["val"]["chars"] == sum(map(len, DOCS))
    # every document is followed by exactly one EOT, and "<|endoftext|>" inside a text is not EOT
    assert int((train == openwebtext.EOT).sum()) + int((val == openwebtext.EOT).sum()) == len(DOCS)
    decoded = split_documents(train) + split_documents(val)
    assert sorted(decoded) == sorted(DOCS)  # the nanoGPT split shuffles: compare as multisets
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk == meta and on_disk["source"]["val_protocol"] == "nanogpt"
    assert on_disk["tokenizer"] == "gpt2" and on_disk["eot_token"] == 50256 and on_disk["vocab_size"] == 50257


def test_second_call_skips(prepared, capsys):
    root, files, out, meta = prepared
    before = {name: (out / name).stat().st_mtime_ns for name in ("train.bin", "val.bin", "meta.json")}
    again = openwebtext.prepare(out, data_files=files, num_proc=1, cache_dir=str(root / "hf"))
    assert again == meta and "already prepared" in capsys.readouterr().out
    assert before == {name: (out / name).stat().st_mtime_ns for name in before}


def test_mdlm_protocol_takes_the_last_documents(tmp_path):
    files = write_docs(tmp_path / "docs")
    out = tmp_path / "out"
    meta = openwebtext.prepare(out, data_files=files, val_protocol="mdlm", num_proc=1,
                               cache_dir=str(tmp_path / "hf"))
    assert meta["splits"]["val"]["documents"] == 1  # 7 documents: the 1.25 % rule rounds up to one
    assert split_documents(openwebtext.load_bin(out / "val.bin")) == DOCS[-1:]
    assert split_documents(openwebtext.load_bin(out / "train.bin")) == DOCS[:-1]  # order kept


def test_interrupted_or_corrupt_output_is_redone(tmp_path):
    files = write_docs(tmp_path / "docs", DOCS[:3])
    out, cache = tmp_path / "out", str(tmp_path / "hf")
    meta = openwebtext.prepare(out, data_files=files, num_proc=1, max_documents=3, cache_dir=cache)
    good = (out / "train.bin").read_bytes()
    with open(out / "train.bin", "ab") as f:  # a train.bin that disagrees with meta.json
        f.write(b"\x00\x00")
    with pytest.raises(ValueError, match="meta.json records"):
        openwebtext.load_bin(out / "train.bin")
    with open(out / "train.bin", "ab") as f:  # ... and one that is not whole uint16 tokens
        f.write(b"\x00")
    with pytest.raises(ValueError, match="meta.json records"):
        openwebtext.load_bin(out / "train.bin")
    again = openwebtext.prepare(out, data_files=files, num_proc=1, max_documents=3, cache_dir=cache)
    assert stable(again) == stable(meta)
    assert (out / "train.bin").read_bytes() == good  # re-prepared, not skipped
    (out / "meta.json").unlink()  # an interrupted run leaves no meta.json: redo, do not trust the bins
    (out / "val.bin").write_bytes(b"")
    again = openwebtext.prepare(out, data_files=files, num_proc=1, max_documents=3, cache_dir=cache)
    assert stable(again) == stable(meta)


def test_missing_bin_names_the_prepare_command(tmp_path):
    with pytest.raises(ValueError, match="python -m minarmd.openwebtext --out"):
        openwebtext.load_bin(tmp_path / "train.bin")
    (tmp_path / "empty.bin").write_bytes(b"")  # a .bin without a manifest is not trusted
    with pytest.raises(ValueError, match="meta.json not found"):
        openwebtext.load_bin(tmp_path / "empty.bin")


def test_cli(tmp_path, capsys):
    files = write_docs(tmp_path / "docs", DOCS[:4])
    out = tmp_path / "out"
    openwebtext.main(["--out", str(out), "--data-files", *map(str, files), "--num-proc", "1",
                      "--val-protocol", "mdlm", "--cache-dir", str(tmp_path / "hf")])
    assert "train: 3 documents" in capsys.readouterr().out
    assert openwebtext.read_meta(out)["source"]["val_protocol"] == "mdlm"
    with pytest.raises(ValueError, match="meta.json not found"):
        openwebtext.read_meta(tmp_path)


def test_bad_arguments(tmp_path):
    files = write_docs(tmp_path / "docs", DOCS[:2])
    with pytest.raises(ValueError, match="val_protocol"):
        openwebtext.prepare(tmp_path / "o", data_files=files, val_protocol="gpt2")
    with pytest.raises(ValueError, match="max_documents"):
        openwebtext.prepare(tmp_path / "o", data_files=files, max_documents=1)
    with pytest.raises(ValueError, match="num_proc"):
        openwebtext.prepare(tmp_path / "o", data_files=files, num_proc=0)
    with pytest.raises(ValueError, match="data_files is empty"):
        openwebtext.prepare(tmp_path / "o", data_files=[])
    with pytest.raises(ValueError, match="nope.txt not found"):
        openwebtext.prepare(tmp_path / "o", data_files=[tmp_path / "nope.txt"])
    with pytest.raises(ValueError, match="at least 2"):
        openwebtext.prepare(tmp_path / "o", data_files=files[:1], num_proc=1, cache_dir=str(tmp_path / "hf"))
