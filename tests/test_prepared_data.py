"""Prepared data you can trust: meta.json is a manifest, and loading refuses every folder or file that
differs from it with one ValueError naming the file and the fix (issue 16, item 5)."""
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch

from minarmd import openwebtext
from minarmd.data import TokenData, load_data

RERUN = "re-run `python -m minarmd.openwebtext --out DIR`"
DOCS = ["The first document, a plain sentence.", "A second one: with some punctuation; and more words.",
        "Third, and café ✓ unicode.", "Fourth document here, the longest of them all. " * 4, "fifth"]
OTHER = ["Another corpus entirely.", "Its second document is a different text.", "And a third one."]


def write_docs(folder, docs):
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"doc{i}.txt" for i in range(len(docs))]
    for path, text in zip(paths, docs):
        path.write_text(text, encoding="utf-8")
    return paths


def prep(out, files, cache):
    return openwebtext.prepare(out, data_files=files, num_proc=1, cache_dir=str(cache))


def load(folder):
    return load_data("openwebtext", tokenizer="gpt2", data_dir=str(folder))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    files = write_docs(root / "docs", DOCS)
    prep(root / "out", files, root / "hf")
    return root, files


@pytest.fixture
def folder(base, tmp_path):
    """A private copy of the prepared folder (copytree keeps the mtimes, as ``cp -p`` does)."""
    root, _ = base
    return shutil.copytree(root / "out", tmp_path / "out")


def edit_keeping_mtime(path, offset, value):
    """Write one uint16 at token ``offset`` and set the mtime back: a change the mtime cannot reveal."""
    st = path.stat()
    arr = np.memmap(path, dtype=np.uint16, mode="r+")
    arr[offset] = value
    arr.flush()
    del arr
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_manifest_records_every_file(folder):
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["format"] == "minarmd-bin/2" and meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50257
    for split in ("train", "val"):
        path, entry = folder / f"{split}.bin", meta["splits"][split]
        data = path.read_bytes()
        ids = np.fromfile(path, dtype=np.uint16)
        assert entry["bytes"] == len(data) == 2 * entry["tokens"] and entry["documents"] >= 1
        assert entry["max_id"] == int(ids.max()) == 50256  # every document ends with EOT
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["edges_sha256"] == hashlib.sha256(data[:1 << 20] + data[-(1 << 20):]).hexdigest()
        assert entry["mtime_ns"] == path.stat().st_mtime_ns
    assert openwebtext.read_meta(folder) == meta


def test_folder_without_manifest_is_refused(base, folder, tmp_path):
    # the tester's case: train.bin replaced by another corpus's, the old val.bin kept, no meta.json
    root, files = base
    other = prep(tmp_path / "other", write_docs(tmp_path / "odocs", OTHER), root / "hf")
    assert other["splits"]["train"]["tokens"] > 0
    shutil.copyfile(tmp_path / "other" / "train.bin", folder / "train.bin")
    (folder / "meta.json").unlink()
    with pytest.raises(ValueError, match="meta.json not found") as err:
        load(folder)
    assert str(folder / "meta.json") in str(err.value) and RERUN in str(err.value)
    prep(folder, files, root / "hf")  # the fix the message gives works
    assert len(load(folder).train) == openwebtext.read_meta(root / "out")["splits"]["train"]["tokens"]


def test_cut_file_is_refused(folder):
    path = folder / "train.bin"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 4 * 2])  # cut in half, still whole uint16 tokens
    with pytest.raises(ValueError, match=r"train.bin has \d+ bytes but meta.json records") as err:
        load(folder)
    assert str(path) in str(err.value) and RERUN in str(err.value)


def test_missing_file_is_a_clear_error(folder, tmp_path):
    (folder / "train.bin").unlink()
    with pytest.raises(ValueError, match="train.bin not found; re-run") as err:
        load(folder)
    assert str(folder / "train.bin") in str(err.value) and RERUN in str(err.value)
    (folder / "train.bin.tmp").write_bytes(b"\x00\x00")  # what an interrupted preparation leaves
    with pytest.raises(ValueError, match="train.bin.tmp is there: the preparation was interrupted"):
        load(folder)
    with pytest.raises(ValueError, match="the folder does not exist"):
        load(tmp_path / "nowhere")


def _drop_chars(meta):
    del meta["splits"]["val"]["chars"]


def _string_tokens(meta):
    meta["splits"]["train"]["tokens"] = str(meta["splits"]["train"]["tokens"])


def _bool_documents(meta):
    meta["splits"]["val"]["documents"] = True


def _no_val(meta):
    del meta["splits"]["val"]


def _bad_digest(meta):
    meta["splits"]["train"]["sha256"] = "not a digest"


def _old_format(meta):  # what minarmd-bin/1 wrote: counts only, the format inside "source"
    splits = {name: {k: e[k] for k in ("tokens", "documents", "chars")} for name, e in meta["splits"].items()}
    meta.clear()
    meta.update(source={"format": "minarmd-bin/1", "tokenizer": "gpt2"}, splits=splits)


CORRUPTIONS = {"not JSON": None, "a list": [], "no chars": _drop_chars, "tokens a string": _string_tokens,
               "documents a bool": _bool_documents, "no val": _no_val, "bad sha256": _bad_digest,
               "old format": _old_format}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corrupt_or_incomplete_manifest_is_refused(folder, case):
    path = folder / "meta.json"
    meta = json.loads(path.read_text())
    change = CORRUPTIONS[case]
    if change is None:
        path.write_text(path.read_text()[:40])  # cut mid-write
    elif callable(change):
        change(meta)
        path.write_text(json.dumps(meta))
    else:
        path.write_text(json.dumps(change))
    expected = "has format 'minarmd-bin/1', this version reads" if case == "old format" else "meta.json is corrupt or incomplete"
    with pytest.raises(ValueError, match=expected) as err:
        load(folder)
    assert str(path) in str(err.value) and RERUN in str(err.value)


def test_recorded_ids_beyond_the_vocabulary_are_refused(folder):
    path = folder / "meta.json"
    meta = json.loads(path.read_text())
    meta["splits"]["train"]["max_id"] = 50257
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="train.bin holds token ids up to 50257") as err:
        load(folder)
    assert str(folder / "train.bin") in str(err.value) and RERUN in str(err.value)


def test_same_size_replacement_with_kept_mtime_is_caught(folder):
    path = folder / "train.bin"
    st = path.stat()
    path.write_bytes(path.read_bytes()[::-1])  # same size, other bytes
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ValueError, match="train.bin differs from meta.json in its first or last MiB") as err:
        load(folder)
    assert RERUN in str(err.value)


@pytest.fixture
def small_edges(monkeypatch, base, tmp_path):
    """A folder prepared with 8-byte edges, so the middle of its files is outside the cheap digest."""
    monkeypatch.setattr(openwebtext, "_EDGE", 8)
    root, files = base
    prep(tmp_path / "small", files, root / "hf")
    return tmp_path / "small"


def test_changed_middle_with_new_mtime_is_caught_by_the_full_digest(small_edges):
    path = small_edges / "train.bin"
    st = path.stat()
    arr = np.fromfile(path, dtype=np.uint16)
    arr[len(arr) // 2] = (arr[len(arr) // 2] + 1) % 50256  # a valid id, in the middle
    arr.tofile(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    with pytest.raises(ValueError, match="train.bin has another sha256 than meta.json records") as err:
        load(small_edges)
    assert RERUN in str(err.value)


def test_a_copy_is_verified_in_full_once(folder, tmp_path, monkeypatch):
    copy = shutil.copytree(folder, tmp_path / "copy", copy_function=shutil.copyfile)  # new mtimes
    hashed = []
    full = openwebtext._file_digest
    monkeypatch.setattr(openwebtext, "_file_digest", lambda path: hashed.append(path.name) or full(path))
    d = load(copy)
    assert sorted(hashed) == ["train.bin", "val.bin"]  # the mtimes differ: the full digests are checked
    assert openwebtext.read_meta(copy)["splits"]["train"]["mtime_ns"] == (copy / "train.bin").stat().st_mtime_ns
    load(copy)
    assert len(hashed) == 2  # the copy's mtimes are recorded: the next load is cheap again
    assert torch.equal(d.eval_windows(4), load(folder).eval_windows(4))


def test_samplers_name_the_file_that_holds_ids_beyond_the_vocabulary(small_edges):
    # an id >= 50257 in the middle of a file whose mtime was set back: the one change the load-time
    # checks cannot see, so the samplers check what they read
    for split in ("train", "val"):
        path = small_edges / f"{split}.bin"
        edit_keeping_mtime(path, len(np.fromfile(path, dtype=np.uint16)) // 2, 60000)
    d = load(small_edges)
    assert d.files == {"train": str(small_edges / "train.bin"), "val": str(small_edges / "val.bin")}
    with pytest.raises(ValueError, match="train.bin holds token id 60000, outside the vocabulary 0..50256") as err:
        d.batch("train", 1, len(d.train), torch.Generator())
    assert RERUN in str(err.value)
    with pytest.raises(ValueError, match="val.bin holds token id 60000"):
        d.eval_windows(1)
    # a memmap without a file name: the split is named instead
    bare = TokenData("owt", None, 50257, d.train, d.val)
    with pytest.raises(ValueError, match="the val stream of 'owt' holds token id 60000"):
        bare.eval_windows(1)


def test_an_interrupted_preparation_reruns_to_identical_files(base, tmp_path, monkeypatch):
    root, files = base
    write_split = openwebtext._write_split

    def interrupted(dset, path, desc):
        entry = write_split(dset, path, desc)
        if path.name == "train.bin":
            raise KeyboardInterrupt  # Ctrl-C after train.bin is written, before val.bin and meta.json
        return entry

    out = tmp_path / "out"
    monkeypatch.setattr(openwebtext, "_write_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prep(out, files, root / "hf")
    monkeypatch.undo()
    assert (out / "train.bin").is_file() and not (out / "meta.json").exists()
    with pytest.raises(ValueError, match="meta.json not found"):
        load(out)
    meta = prep(out, files, root / "hf")
    reference = openwebtext.read_meta(root / "out")
    for split in ("train", "val"):
        data = (out / f"{split}.bin").read_bytes()
        assert data == (root / "out" / f"{split}.bin").read_bytes()
        assert meta["splits"][split]["sha256"] == reference["splits"][split]["sha256"]
        assert meta["splits"][split]["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("case", ["missing file", "one document"])
def test_cli_reports_one_error_line(base, tmp_path, capsys, case):
    root, files = base
    data_files = [str(tmp_path / "nope.txt")] if case == "missing file" else [str(files[0])]
    argv = ["--out", str(tmp_path / "out"), "--data-files", *data_files, "--num-proc", "1",
            "--cache-dir", str(root / "hf")]
    with pytest.raises(SystemExit) as exit_:
        openwebtext.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert ("nope.txt not found" if case == "missing file" else "1 document(s)") in err
    with pytest.raises(ValueError):  # --debug: the traceback of the same error
        openwebtext.main([*argv, "--debug"])
