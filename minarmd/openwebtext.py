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
``os.replace``; ``meta.json`` (token/document/character counts, the source and protocol) is written
last, so its presence means both ``.bin`` files are complete. A second call with the same source
finds a matching ``meta.json`` and returns at once; a stale ``.tmp`` of an interrupted run is overwritten.

    python -m minarmd.openwebtext --out data/owt                       # the real thing: ~17 GB on disk
    python -m minarmd.openwebtext --out data/mine --data-files a.txt b.txt  # one file = one document

Datasets >= 4 no longer run loading scripts; if the hub copy of OpenWebText still holds one, pass
``--revision refs/convert/parquet`` (the hub's parquet export; check it is complete) or local files.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

__all__ = ["OWT_DOCUMENTS", "MDLM_VAL_DOCUMENTS", "NANOGPT_TEST_SIZE", "NANOGPT_SEED", "VAL_PROTOCOLS", "EOT",
           "PREPARE_HINT", "prepare", "load_bin", "read_meta", "main"]

OWT_DOCUMENTS = 8_013_769  # documents in OpenWebText, to scale MDLM's 100k validation documents
MDLM_VAL_DOCUMENTS = 100_000  # MDLM: the last 100k documents are the validation set
NANOGPT_TEST_SIZE = 0.0005  # nanoGPT: fraction of documents held out
NANOGPT_SEED = 2357  # nanoGPT: seed of its shuffled split
VAL_PROTOCOLS = ("nanogpt", "mdlm")
EOT = 50256  # GPT-2's <|endoftext|>, appended after every document
PREPARE_HINT = "python -m minarmd.openwebtext --out DIR"
_FORMAT = "minarmd-bin/1"  # bump when the layout changes, so old directories are re-prepared


def _encode_batch(batch: dict) -> dict:
    """datasets.map function (module level so worker processes can pickle it): ids + EOT per document."""
    from .tokenizer import GPT2Tokenizer

    tok = GPT2Tokenizer()
    ids = [tok.encode(text) + [EOT] for text in batch["text"]]
    return {"ids": ids, "len": [len(x) for x in ids], "chars": [len(text) for text in batch["text"]]}


def _source(dataset: str, data_files, revision, val_protocol: str, max_documents) -> dict:
    """What identifies a prepared directory: a matching meta.json means nothing needs redoing."""
    files = None
    if data_files is not None:
        files = []
        for f in ([data_files] if isinstance(data_files, (str, Path)) else list(data_files)):
            st = Path(f).stat()  # FileNotFoundError names a missing file
            files.append({"path": str(Path(f).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return {"format": _FORMAT, "dataset": "text" if files else dataset, "data_files": files,
            "revision": revision, "val_protocol": val_protocol, "max_documents": max_documents,
            "tokenizer": "gpt2", "eot_token": EOT, "dtype": "uint16"}


def _is_prepared(out: Path, source: dict) -> bool:
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    if meta.get("source") != source:
        return False
    splits = meta.get("splits", {})
    if set(splits) != {"train", "val"}:
        return False
    return all((out / f"{s}.bin").is_file() and (out / f"{s}.bin").stat().st_size == 2 * splits[s]["tokens"]
               for s in splits)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # directories cannot be fsynced on some platforms (Windows)
        pass
    finally:
        os.close(fd)


def _write_split(dset, path: Path, desc: str) -> dict:
    """Write one tokenised split to ``path`` atomically; returns its counts."""
    from tqdm import tqdm  # tqdm reads TQDM_DISABLE (and other TQDM_*) from the environment

    counts = dset.with_format("numpy", columns=["len", "chars"])[:]  # one Arrow read, not a Python loop
    tokens, chars = int(counts["len"].sum(dtype=np.int64)), int(counts["chars"].sum(dtype=np.int64))
    tmp = path.with_name(path.name + ".tmp")
    arr = np.memmap(tmp, dtype=np.uint16, mode="w+", shape=(tokens,))  # mode w+ overwrites a stale .tmp
    shards, pos = min(1024, len(dset)), 0
    for i in tqdm(range(shards), desc=desc):
        batch = dset.shard(num_shards=shards, index=i, contiguous=True).with_format("numpy")[:]["ids"]
        ids = np.concatenate(list(batch))  # rows may come as one 2-D array when lengths are equal
        arr[pos:pos + len(ids)] = ids
        pos += len(ids)
    assert pos == tokens, (pos, tokens)
    arr.flush()
    del arr
    _fsync(tmp)
    os.replace(tmp, path)
    return {"tokens": tokens, "documents": len(dset), "chars": chars}


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
        return json.loads((out / "meta.json").read_text())
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
    meta = {"source": source, "splits": splits}
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    _fsync(tmp)
    os.replace(tmp, out / "meta.json")
    _fsync(out)
    return meta


def load_bin(path: str | os.PathLike) -> np.memmap:
    """Open a prepared ``.bin`` as a read-only (N,) uint16 memmap, checking it against meta.json."""
    path = Path(path)
    if not path.is_file():
        interrupted = path.with_name(path.name + ".tmp").exists()
        extra = " (a .tmp is there: the preparation was interrupted)" if interrupted else ""
        raise FileNotFoundError(f"{path} not found{extra}: prepare it with `{PREPARE_HINT}` "
                                f"(DIR = {path.parent})")
    size = path.stat().st_size
    if size == 0 or size % 2:
        raise ValueError(f"{path} has {size} bytes, not a positive whole number of uint16 tokens: it is "
                         f"truncated or corrupt; delete {path.parent / 'meta.json'} and re-run `{PREPARE_HINT}`")
    meta_path = path.parent / "meta.json"
    if meta_path.is_file():
        split = json.loads(meta_path.read_text()).get("splits", {}).get(path.stem)
        if split is not None and 2 * split["tokens"] != size:
            raise ValueError(f"{path} holds {size // 2} tokens but {meta_path} says {split['tokens']}: "
                             f"the file changed after preparation; delete meta.json and re-run `{PREPARE_HINT}`")
    return np.memmap(path, dtype=np.uint16, mode="r")


def read_meta(data_dir: str | os.PathLike) -> dict | None:
    """The meta.json of a prepared directory, or None when there is none."""
    meta_path = Path(data_dir) / "meta.json"
    return json.loads(meta_path.read_text()) if meta_path.is_file() else None


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
    a = p.parse_args(argv)
    meta = prepare(a.out, a.dataset, a.data_files, a.val_protocol, a.num_proc, a.max_documents, a.revision,
                   a.cache_dir)
    for name, s in meta["splits"].items():
        print(f"{name}: {s['documents']:,} documents, {s['tokens']:,} tokens")


if __name__ == "__main__":
    main()
