r"""OpenWebText (or any text dataset) -> GPT-2 BPE token streams in ``train.bin`` / ``val.bin``.

The layout is nanoGPT's: every document is tokenised with GPT-2's BPE (``encode_ordinary``) and
followed by ``<|endoftext|>`` (id 50256), the GPT-2 convention, so a stream reads
``doc_1 EOT doc_2 EOT ...``; the concatenation is stored as raw little-endian ``uint16`` (50257 ids
fit in 16 bits), two bytes per token, and read back as a ``np.memmap`` without loading it.

Validation split (``val_protocol``):

* ``"nanogpt"`` — nanoGPT's: ``train_test_split(test_size=0.0005, seed=2357, shuffle=True)``,
  about 4k of OpenWebText's 8,013,769 documents (at least one document for tiny sets);
* ``"mdlm"`` — MDLM's: the **last** 100,000 documents, in order. A smaller set keeps the same
  fraction, ``round(N * 100_000 / 8_013_769)`` documents (1.25 %), at least one.

Writes are atomic: each split goes to ``<split>.bin.tmp``, is flushed and fsynced, then renamed with
``os.replace``; a stale ``.tmp`` of an interrupted run is overwritten, so re-running an interrupted
preparation gives byte-identical files. ``meta.json``, the **manifest**, is written last: its presence
means both ``.bin`` files are complete. A second call with the same source finds a matching manifest
whose files pass the checks below and returns at once.

The manifest vouches for the files. Per split it records the token count, byte size, documents,
characters, the largest token id, the file's ``mtime_ns``, the sha256 of the whole file (computed
while writing it) and the sha256 of its first and last MiB; and the tokenizer (``"gpt2"``), the
vocabulary size (50257) and the layout's version (``_FORMAT``). Loading (``load_bin``, ``read_meta``,
``load_data("openwebtext")``) refuses a folder without a manifest, with a manifest that is corrupt,
incomplete or of another version, and every ``.bin`` that differs from it:

* its size must be 2 bytes x the recorded tokens (a cut or an appended file);
* the recorded largest id must be < 50257 (ids a GPT-2 model cannot embed);
* the sha256 of its first and last MiB must match, at every load: cheap, and it catches in practice
  a same-size replacement whose mtime was preserved;
* the sha256 of the whole file is recomputed only when its ``mtime_ns`` differs from the recorded one
  (a copy or a replacement): hashing 17 GB at every training start would take minutes. A copy that
  passes has its new mtime recorded in the manifest, so only its first load pays (best effort: a
  read-only folder re-verifies each time). What this cannot see: an edit in the middle of a file
  whose mtime was then set back.

Any mismatch is a ``ValueError`` naming the file, what differs and the fix: re-run
``python -m minarmd.openwebtext --out DIR`` (it redoes whatever does not pass). The samplers of
``data.TokenData`` also check the ids of each window they read from a ``.bin`` (B x n values).

    python -m minarmd.openwebtext --out data/owt                       # the real thing: ~17 GB on disk
    python -m minarmd.openwebtext --out data/mine --data-files a.txt b.txt  # one file = one document

Datasets >= 4 no longer run loading scripts; if the hub copy of OpenWebText still holds one, pass
``--revision refs/convert/parquet`` (the hub's parquet export; check it is complete) or local files.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from .cli import run_cli
from .validation import check_int

__all__ = ["OWT_DOCUMENTS", "MDLM_VAL_DOCUMENTS", "NANOGPT_TEST_SIZE", "NANOGPT_SEED", "VAL_PROTOCOLS", "EOT",
           "PREPARE_HINT", "prepare", "load_bin", "read_meta", "main"]

OWT_DOCUMENTS = 8_013_769  # documents in OpenWebText, to scale MDLM's 100k validation documents
MDLM_VAL_DOCUMENTS = 100_000  # MDLM: the last 100k documents are the validation set
NANOGPT_TEST_SIZE = 0.0005  # nanoGPT: fraction of documents held out
NANOGPT_SEED = 2357  # nanoGPT: seed of its shuffled split
VAL_PROTOCOLS = ("nanogpt", "mdlm")
EOT = 50256  # GPT-2's <|endoftext|>, appended after every document
PREPARE_HINT = "python -m minarmd.openwebtext --out DIR"
_VOCAB = EOT + 1  # GPT-2's ids are 0..50256
_SPLITS = ("train", "val")
_FORMAT = "minarmd-bin/2"  # bump when the layout or the manifest changes, so old directories are re-prepared
_EDGE = 1 << 20  # bytes hashed at each end of a .bin at every load (the cheap digest)
_CHUNK = 16 << 20  # read size of the full digest: a 17 GB file never sits in memory


def _encode_batch(batch: dict) -> dict:
    """datasets.map function (module level so worker processes can pickle it): ids + EOT per document."""
    from .tokenizer import GPT2Tokenizer

    tok = GPT2Tokenizer()
    ids = [tok.encode(text) + [EOT] for text in batch["text"]]
    return {"ids": ids, "len": [len(x) for x in ids], "chars": [len(text) for text in batch["text"]]}


def _source(dataset: str, data_files, revision, val_protocol: str, max_documents) -> dict:
    """What identifies a prepared directory's input: a manifest with the same source needs no redoing."""
    files = None
    if data_files is not None:
        files = []
        for f in ([data_files] if isinstance(data_files, (str, Path)) else list(data_files)):
            if not Path(f).is_file():
                raise ValueError(f"data_files: {f} not found (give existing text files, one document each)")
            st = Path(f).stat()
            files.append({"path": str(Path(f).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return {"dataset": "text" if files else dataset, "data_files": files, "revision": revision,
            "val_protocol": val_protocol, "max_documents": max_documents}


# --- the manifest: what meta.json records, and the checks that loading makes against it -------------

_SPLIT_INTS = {"tokens": 1, "bytes": 2, "documents": 1, "chars": 0, "max_id": 0, "mtime_ns": 0}  # minimums
_SPLIT_DIGESTS = ("sha256", "edges_sha256")


def _rerun(folder: Path) -> str:
    return f"re-run `{PREPARE_HINT}` (DIR = {folder}, with the options it was prepared with)"


def _edges_digest(path: Path, size: int) -> str:
    """sha256 of the first and last _EDGE bytes of a file (of all of it when it is shorter)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(_EDGE))
        f.seek(max(size - _EDGE, 0))
        digest.update(f.read(_EDGE))
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    """sha256 of a whole file, read in _CHUNK pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # directories cannot be fsynced on some platforms (Windows)
        pass
    finally:
        os.close(fd)


def _write_meta(out: Path, meta: dict) -> None:
    """Write meta.json atomically (a per-process .tmp: the ranks of one job may refresh it together)."""
    tmp = out / f"meta.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    _fsync(tmp)
    os.replace(tmp, out / "meta.json")
    _fsync(out)


def read_meta(data_dir: str | os.PathLike) -> dict:
    """The manifest (meta.json) of a prepared directory, its structure checked; a ValueError naming it if
    it is missing, corrupt, incomplete or of another format."""
    folder = Path(data_dir)
    path = folder / "meta.json"
    if not path.is_file():
        why = ("a .tmp is there: the preparation was interrupted" if any(folder.glob("*.tmp"))
               else "the folder was not made by prepare, or its preparation did not finish")
        raise ValueError(f"{path} not found: without the manifest the .bin files in {folder} cannot be "
                         f"trusted ({why}); {_rerun(folder)}")

    def corrupt(what: str) -> ValueError:
        return ValueError(f"{path} is corrupt or incomplete: {what}; {_rerun(folder)}")

    try:
        meta = json.loads(path.read_text())
    except ValueError as err:  # bad JSON or bad UTF-8
        raise corrupt(f"not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise corrupt(f"a JSON object was expected, got {type(meta).__name__}")
    source = meta.get("source")
    found = meta.get("format", source.get("format") if isinstance(source, dict) else None)  # v1: in "source"
    if found != _FORMAT:
        raise ValueError(f"{path} has format {found!r}, this version reads {_FORMAT!r} (an older minarmd "
                         f"wrote it, or it is corrupt); {_rerun(folder)}")
    for key, want in (("tokenizer", "gpt2"), ("vocab_size", _VOCAB), ("eot_token", EOT), ("dtype", "uint16")):
        if meta.get(key) != want:
            raise corrupt(f"{key} must be {want!r}, got {meta.get(key)!r}")
    splits = meta.get("splits")
    if not isinstance(splits, dict) or sorted(splits) != sorted(_SPLITS):
        raise corrupt(f"splits must be an object with the keys {_SPLITS}, got "
                      f"{sorted(splits) if isinstance(splits, dict) else splits!r}")
    for name, entry in splits.items():
        if not isinstance(entry, dict):
            raise corrupt(f"splits.{name} must be an object, got {entry!r}")
        for key, minimum in _SPLIT_INTS.items():
            try:
                check_int(f"splits.{name}.{key}", entry.get(key), minimum)
            except ValueError as err:
                raise corrupt(str(err)) from None
        for key in _SPLIT_DIGESTS:
            value = entry.get(key)
            if not (isinstance(value, str) and len(value) == 64 and set(value) <= set("0123456789abcdef")):
                raise corrupt(f"splits.{name}.{key} must be a sha256 hex digest, got {value!r}")
        if entry["bytes"] != 2 * entry["tokens"]:
            raise corrupt(f"splits.{name} records {entry['bytes']} bytes for {entry['tokens']} uint16 tokens")
    return meta


def _verify(path: Path, meta: dict) -> None:
    """Check a .bin against its manifest entry (the rule in the module docstring): a ValueError if it differs."""
    folder = path.parent
    entry = meta["splits"].get(path.stem) if path.suffix == ".bin" else None
    if entry is None:
        raise ValueError(f"{folder / 'meta.json'} has no entry for {path.name} (only {_SPLITS[0]}.bin and "
                         f"{_SPLITS[1]}.bin are prepared)")

    def differs(what: str) -> ValueError:
        return ValueError(f"{path} {what}: the file changed after preparation (replaced, cut or corrupted); "
                          f"{_rerun(folder)}")

    st = path.stat()
    if st.st_size != entry["bytes"]:
        raise differs(f"has {st.st_size:,} bytes but meta.json records {entry['bytes']:,} "
                      f"({entry['tokens']:,} uint16 tokens)")
    if entry["max_id"] >= meta["vocab_size"]:
        raise ValueError(f"{path} holds token ids up to {entry['max_id']} (meta.json), outside GPT-2's "
                         f"vocabulary 0..{meta['vocab_size'] - 1}; {_rerun(folder)}")
    if _edges_digest(path, st.st_size) != entry["edges_sha256"]:
        raise differs("differs from meta.json in its first or last MiB (sha256)")
    if st.st_mtime_ns == entry["mtime_ns"]:
        return
    print(f"{path}: its mtime differs from meta.json's (a copy?): checking the sha256 of the whole file",
          file=sys.stderr)
    if _file_digest(path) != entry["sha256"]:
        raise differs("has another sha256 than meta.json records (and another mtime)")
    entry["mtime_ns"] = st.st_mtime_ns  # the same bytes: record the copy's mtime, so the next load is cheap
    try:
        _write_meta(folder, meta)
    except OSError:  # a read-only folder: verify in full again next time
        pass


def _is_prepared(out: Path, source: dict) -> bool:
    try:
        meta = read_meta(out)
        if meta["source"] != source:
            return False
        for split in _SPLITS:
            _verify(out / f"{split}.bin", meta)
    except (OSError, ValueError):  # no manifest, a missing file, or a file that differs: redo
        return False
    return True


def _write_split(dset, path: Path, desc: str) -> dict:
    """Write one tokenised split to ``path`` atomically; returns its manifest entry."""
    from tqdm import tqdm  # tqdm reads TQDM_DISABLE (and other TQDM_*) from the environment

    counts = dset.with_format("numpy", columns=["len", "chars"])[:]  # one Arrow read, not a Python loop
    tokens, chars = int(counts["len"].sum(dtype=np.int64)), int(counts["chars"].sum(dtype=np.int64))
    tmp = path.with_name(path.name + ".tmp")
    arr = np.memmap(tmp, dtype=np.uint16, mode="w+", shape=(tokens,))  # mode w+ overwrites a stale .tmp
    shards, pos, digest, max_id = min(1024, len(dset)), 0, hashlib.sha256(), 0
    for i in tqdm(range(shards), desc=desc):
        batch = dset.shard(num_shards=shards, index=i, contiguous=True).with_format("numpy")[:]["ids"]
        ids = np.concatenate(list(batch))  # rows may come as one 2-D array when lengths are equal
        arr[pos:pos + len(ids)] = ids
        digest.update(arr[pos:pos + len(ids)])  # the stored bytes in file order: the whole file's sha256
        max_id = max(max_id, int(ids.max()))
        pos += len(ids)
    assert pos == tokens, (pos, tokens)
    arr.flush()
    del arr
    _fsync(tmp)
    os.replace(tmp, path)
    return {"tokens": tokens, "bytes": 2 * tokens, "documents": len(dset), "chars": chars, "max_id": max_id,
            "mtime_ns": path.stat().st_mtime_ns, "sha256": digest.hexdigest(),
            "edges_sha256": _edges_digest(path, 2 * tokens)}


def _split(ds, val_protocol: str):
    n = len(ds)
    if n < 2:
        raise ValueError(f"the dataset has {n} document(s): a train/val split needs at least 2")
    if val_protocol == "nanogpt":
        parts = ds.train_test_split(test_size=NANOGPT_TEST_SIZE, seed=NANOGPT_SEED, shuffle=True)
        return parts["train"], parts["test"]
    n_val = min(MDLM_VAL_DOCUMENTS, max(1, round(n * MDLM_VAL_DOCUMENTS / OWT_DOCUMENTS)))
    return ds.select(range(n - n_val)), ds.select(range(n - n_val, n))


def _load(dataset: str, data_files, revision, num_proc, cache_dir):
    import datasets

    if data_files is not None:
        files = [str(data_files)] if isinstance(data_files, (str, Path)) else [str(f) for f in data_files]
        # sample_by="document": one row per file, its whole text (line breaks kept, \r\n read as \n)
        return datasets.load_dataset("text", data_files=files, sample_by="document", split="train",
                                     cache_dir=cache_dir)
    try:
        return datasets.load_dataset(dataset, split="train", revision=revision, num_proc=num_proc,
                                     cache_dir=cache_dir)
    except RuntimeError as err:
        if "scripts are no longer supported" not in str(err):
            raise
        raise RuntimeError(f"{dataset!r} on the hub is still a loading script, which datasets>=4 cannot "
                           f"run. Use its parquet export (revision='refs/convert/parquet', CLI "
                           f"--revision refs/convert/parquet; the export of a large set can be partial, "
                           f"compare the document count with {OWT_DOCUMENTS:,}), or pass local "
                           f"text files as data_files") from err


def prepare(out_dir: str | os.PathLike, dataset: str = "Skylion007/openwebtext", data_files=None,
            val_protocol: str = "nanogpt", num_proc: int | None = None, max_documents: int | None = None,
            revision: str | None = None, cache_dir: str | None = None) -> dict:
    """Tokenise ``dataset`` (or local ``data_files``: one file = one document) into out_dir/{train,val}.bin.

    Returns the contents of ``meta.json``. ``max_documents`` keeps the first documents only (before
    the split), for quick runs. ``num_proc`` defaults to the CPU count (capped at 8).
    """
    if val_protocol not in VAL_PROTOCOLS:
        raise ValueError(f"val_protocol must be one of {VAL_PROTOCOLS}, got {val_protocol!r}")
    if max_documents is not None and (not isinstance(max_documents, int) or max_documents < 2):
        raise ValueError(f"max_documents must be None or an integer >= 2 (train + val), got {max_documents!r}")
    if num_proc is None:
        num_proc = min(8, os.cpu_count() or 1)
    if not isinstance(num_proc, int) or num_proc < 1:
        raise ValueError(f"num_proc must be an integer >= 1, got {num_proc!r}")
    if data_files is not None and not isinstance(data_files, (str, Path)) and not list(data_files):
        raise ValueError("data_files is empty: give one or more text files, or None to load `dataset`")
    out = Path(out_dir)
    source = _source(dataset, data_files, revision, val_protocol, max_documents)
    if _is_prepared(out, source):
        print(f"{out}: already prepared ({out / 'meta.json'} matches); delete it to re-prepare")
        return read_meta(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # from here on the old .bin files are not vouched for

    ds = _load(dataset, data_files, revision, num_proc, cache_dir)
    if max_documents is not None:
        ds = ds.select(range(min(max_documents, len(ds))))
    train, val = _split(ds, val_protocol)
    workers = num_proc if num_proc > 1 else None
    splits = {}
    for name, dset in (("train", train), ("val", val)):
        dset = dset.map(_encode_batch, batched=True, remove_columns=dset.column_names, num_proc=workers,
                        desc=f"tokenising {name}")
        splits[name] = _write_split(dset, out / f"{name}.bin", desc=f"writing {name}.bin")
    meta = {"format": _FORMAT, "tokenizer": "gpt2", "vocab_size": _VOCAB, "eot_token": EOT, "dtype": "uint16",
            "source": source, "splits": splits}
    _write_meta(out, meta)  # last: its presence vouches for both .bin files
    return meta


def load_bin(path: str | os.PathLike) -> np.memmap:
    """Open a prepared ``.bin`` as a read-only (N,) uint16 memmap, after checking it against meta.json."""
    path = Path(path)
    if not path.is_file():
        tmp = path.with_name(path.name + ".tmp")
        why = (f" ({tmp.name} is there: the preparation was interrupted)" if tmp.exists()
               else "" if path.parent.is_dir() else " (the folder does not exist)")
        raise ValueError(f"{path} not found{why}; {_rerun(path.parent)}")
    _verify(path, read_meta(path.parent))
    return np.memmap(path, dtype=np.uint16, mode="r")


def _run(a: argparse.Namespace) -> None:
    meta = prepare(a.out, a.dataset, a.data_files, a.val_protocol, a.num_proc, a.max_documents, a.revision,
                   a.cache_dir)
    for name, s in meta["splits"].items():
        print(f"{name}: {s['documents']:,} documents, {s['tokens']:,} tokens")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m minarmd.openwebtext", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="directory for train.bin, val.bin, meta.json")
    p.add_argument("--dataset", default="Skylion007/openwebtext", help="hub name (ignored with --data-files)")
    p.add_argument("--data-files", nargs="+", default=None, help="local text files, one document each")
    p.add_argument("--val-protocol", choices=VAL_PROTOCOLS, default="nanogpt")
    p.add_argument("--num-proc", type=int, default=None, help="tokeniser processes (default: CPUs, max 8)")
    p.add_argument("--max-documents", type=int, default=None, help="keep only the first documents")
    p.add_argument("--revision", default=None, help="hub revision, e.g. refs/convert/parquet")
    p.add_argument("--cache-dir", default=None, help="datasets cache (default: HF_DATASETS_CACHE)")
    run_cli(p, argv, _run)  # a user error: one `error:` line, exit status 2


if __name__ == "__main__":
    main()
