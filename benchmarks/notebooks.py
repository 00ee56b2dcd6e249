"""Execute the course notebooks in place, one at a time, and time each one.

    python benchmarks/notebooks.py                 # all of notebooks/ and exercises/
    python benchmarks/notebooks.py notebooks/02_orders_and_masks.ipynb
    python benchmarks/notebooks.py --no-save       # time only, keep the committed outputs

Each notebook runs in its own folder (as nbval runs it) with a fresh python3 kernel; the executed
outputs are saved (that is how the committed notebooks get their outputs) and the title cell's
"**CPU run time:** about N s" is rewritten with the measured wall time (rounded up to 5 s).
Run it alone: the machine's other load changes the times.
"""
from __future__ import annotations

import argparse
import math
import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
RUN_TIME = re.compile(r"\*\*CPU run time:\*\* about \d+ s")


def execute(path: Path, save: bool) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    if save:
        title = nb.cells[0]
        title.source = RUN_TIME.sub(f"**CPU run time:** about {5 * math.ceil(seconds / 5)} s", title.source)
        nbformat.write(nb, path)
    return seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: all of notebooks/ and exercises/)")
    parser.add_argument("--no-save", action="store_true", help="time only; do not write outputs or run times")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "exercises").glob("*.ipynb"))
    total = 0.0
    for path in paths:
        seconds = execute(path.resolve(), save=not args.no_save)
        total += seconds
        print(f"{path.resolve().relative_to(ROOT)!s:48} {seconds:6.1f} s", flush=True)
    print(f"{'total':48} {total:6.1f} s")


if __name__ == "__main__":
    main()
