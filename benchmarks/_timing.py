"""Shared helpers for the benchmarks: interleaved wall-clock timing and a machine description.

``median_time`` runs every callable once per repeat, one after the other, so that slow phases of a
shared, noisy machine hit all methods alike; the order within a repeat is rotated so that no method
always runs first (or right after the most expensive one). It reports the median over repeats.
"""
from __future__ import annotations

import datetime
import gc
import os
import platform
import statistics
import time
from typing import Callable

import torch


def median_time(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                rotate: bool = True) -> dict[str, dict]:
    """Time each callable ``repeats`` times, interleaved, after ``warmup`` untimed rounds.

    Returns ``{name: {"median": s, "min": s, "max": s, "samples": [s, ...]}}`` (seconds).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # no collector pauses inside a timed call
    try:
        for r in range(repeats):
            shift = r % len(names) if rotate else 0
            for name in names[shift:] + names[:shift]:
                t0 = time.perf_counter()
                fns[name]()
                samples[name].append(time.perf_counter() - t0)
            gc.collect()  # between repeats, outside the timed region
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: {"median": statistics.median(s), "min": min(s), "max": max(s), "samples": s}
            for name, s in samples.items()}


def cpu_model() -> str:
    """The CPU model name as lscpu/proc reports it (best effort)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    """1/5/15-minute load averages: > the CPU count means other processes compete for the cores."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} CPUs)"


def machine_info() -> str:
    """A few lines describing where and when a benchmark ran."""
    lines = [
        f"date:      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"platform:  {platform.platform()}",
        f"cpu:       {cpu_model()} ({os.cpu_count()} logical CPUs)",
        f"python:    {platform.python_version()}",
        f"load avg:  {load_average()}",
        f"torch:     {torch.__version__} (threads {torch.get_num_threads()}, "
        f"cpu capability {torch.backends.cpu.get_cpu_capability()})",
    ]
    if torch.cuda.is_available():
        lines.append(f"cuda:      {torch.cuda.get_device_name()}")
    return "\n".join(lines)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"
