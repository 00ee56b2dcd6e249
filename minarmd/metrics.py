"""A run's metrics log: ``out/metrics.jsonl``, one JSON object per line, and its picture ``out/loss.png``.

Training records look like ``{"step": 12, "loss": 2.31, "lr": ..., "grad_norm": ..., "tokens_per_s": ...,
"dt": ...}`` (plus ``"mfu"`` on a known GPU and ARMD's ``"k"`` under the progressive schedule);
validation records like ``{"step": 100, "val": 2.05, "protocol": "l2r"}``. A crash can leave a cut
last line or records past the last checkpoint: ``read_metrics`` skips the first and can drop the second.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["read_metrics", "save_loss_plot"]


def read_metrics(path: str | os.PathLike, up_to_step: int | None = None) -> list[dict]:
    """The records of a metrics.jsonl file (those of steps <= ``up_to_step`` when given); [] if absent."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
        if up_to_step is None or rec.get("step", 0) <= up_to_step:
            records.append(rec)
    return records


def save_loss_plot(metrics_path: str | os.PathLike, png_path: str | os.PathLike) -> None:
    """Draw ``viz.loss_figure`` of a metrics file into a PNG."""
    from .viz import loss_figure  # matplotlib loads only when a run ends, not on ``import minarmd``

    loss_figure(read_metrics(metrics_path)).savefig(png_path, dpi=100)
