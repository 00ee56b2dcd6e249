r"""Pictures of the method: pure plotting functions that take tensors and return a Figure.

Every function builds a ``matplotlib.figure.Figure`` directly (not through pyplot), so nothing is
global and nothing is shown until a notebook displays the returned object: a figure as the last
expression of a cell displays once, as a PNG, whatever the matplotlib backend (``Picture``). The widgets (``widgets.py``) redraw these same figures, and
the tests inspect their axes, images and texts.

What each picture shows (row n = the attending token, column i = the attended one):

* ``masks_figure``: :math:`M^c_{n,i} = [B(i) \le B(n)]` and :math:`M^{sc}_{n,i} = [B(i) < B(n)]`,
  in generation order (block-lower-triangular) and re-indexed by original position (scattered);
* ``order_figure``: the tokens in original order, each with its generation slot and block;
* ``trajectory_figure``: the forward process, :math:`x_t` shows token j iff :math:`\tau(j) > t`;
* ``schedules_figure``: :math:`\alpha_t` and :math:`P(\tau = t) = \alpha_{t-1} - \alpha_t`;
* ``generation_figure``: which tokens exist after the first k blocks of a generation order;
* ``loss_figure``: a run's training loss and validation estimates (from ``metrics.jsonl``).

Two text helpers print what the notebooks inspect cell by cell: ``mask_table`` (a bool mask as a 0/1
table with row labels) and ``token_text`` (ids as words, ``[M]`` for the mask id).
"""
from __future__ import annotations

import io

import torch
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .masking import SCHEDULES, alpha_schedule, masking_probs
from .masks import block_causal_mask, blocks_in_original_order, strictly_causal_mask, to_original_order

__all__ = ["DPI", "MASK_COLORS", "BLOCK_COLORS", "Picture", "mask_figure", "masks_figure", "order_figure",
           "trajectory_figure", "schedules_figure", "matrix_figure", "curves_figure", "generation_figure",
           "loss_figure", "mask_table", "token_text", "figure_png"]

DPI = 80  # small PNGs keep the committed notebooks light
MASK_COLORS = ListedColormap(["#f4f4f4", "#2b6cb0"])  # False (may not attend), True (may attend)
BLOCK_COLORS = colormaps["tab20"]  # block b gets colour (b - 1) % 20


class Picture(Figure):
    """A Figure that displays itself as a PNG in any IPython front end, with or without pyplot."""

    def _repr_png_(self) -> bytes:
        return figure_png(self)


def _one_row(name: str, value, n: int | None = None) -> torch.Tensor:
    """Accept an (N,) or (1, N) integer tensor (or list); return it as an (N,) int64 tensor."""
    t = torch.as_tensor(value)
    if t.ndim == 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 1 or t.is_floating_point():
        raise ValueError(f"{name} must be an (N,) or (1, N) integer tensor, got shape {tuple(t.shape)} "
                         f"dtype {t.dtype} (draw one row at a time: pass {name}[0])")
    if n is not None and t.numel() != n:
        raise ValueError(f"{name} has {t.numel()} entries but there are {n} tokens")
    return t.long()


def _shown(token: str) -> str:
    """Make spaces and newlines visible in tick labels."""
    return token.replace(" ", "\u2423").replace("\n", "\u21b5")


def _draw_mask(ax, mask: torch.Tensor, rows: list[str], cols: list[str], title: str,
               boundaries: list[int] = ()) -> None:
    ax.imshow(mask.to(torch.int64).numpy(), cmap=MASK_COLORS, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xticks(range(len(cols)), [_shown(c) for c in cols], fontsize=8, rotation=90)
    ax.set_yticks(range(len(rows)), [_shown(r) for r in rows], fontsize=8)
    ax.set_xlabel("attended token i", fontsize=8)
    ax.set_ylabel("attending token n", fontsize=8)
    for b in boundaries:  # lines between blocks (generation order only)
        ax.axhline(b - 0.5, color="#d9534f", lw=0.8)
        ax.axvline(b - 0.5, color="#d9534f", lw=0.8)


def mask_figure(mask, row_labels: list[str], col_labels: list[str] | None = None, title: str = "") -> Figure:
    """One (N, N) boolean attention mask (True = may attend)."""
    mask = torch.as_tensor(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"mask must be (N, N) or (1, N, N), got shape {tuple(mask.shape)}")
    cols = row_labels if col_labels is None else col_labels
    size = 1.2 + 0.28 * max(len(cols), 4)
    fig = Picture(figsize=(size, size), dpi=DPI, layout="constrained")
    _draw_mask(fig.add_subplot(), mask.bool(), list(row_labels), list(cols), title)
    return fig


def _block_starts(blocks: torch.Tensor) -> list[int]:
    """Slots (generation order) where a new block begins, excluding slot 0."""
    return [k for k in range(1, blocks.numel()) if blocks[k] != blocks[k - 1]]


def masks_figure(tokens: list[str], order, blocks) -> Figure:
    """M^c and M^sc in generation order (top) and in original order (bottom), 2 x 2 panels."""
    n = len(tokens)
    order, blocks = _one_row("order", order, n), _one_row("blocks", blocks, n)
    gen_labels = [f"{tokens[p]}\u00b7{int(b)}" for p, b in zip(order.tolist(), blocks.tolist())]
    by_position = blocks_in_original_order(blocks[None], order[None])[0]  # (N,) block of each position
    orig_labels = [f"{tok}\u00b7{int(b)}" for tok, b in zip(tokens, by_position.tolist())]
    mc, msc = block_causal_mask(blocks[None]), strictly_causal_mask(blocks[None])  # (1, N, N) each
    size = 2.0 + 0.22 * max(n, 6)
    fig = Picture(figsize=(2 * size, 2 * size), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, 2)
    starts = _block_starts(blocks)
    _draw_mask(axes[0, 0], mc[0], gen_labels, gen_labels, "$M^c$ (block-causal), generation order", starts)
    _draw_mask(axes[0, 1], msc[0], gen_labels, gen_labels, "$M^{sc}$ (strictly causal), generation order", starts)
    _draw_mask(axes[1, 0], to_original_order(mc, order[None])[0], orig_labels, orig_labels,
               "$M^c$, original order")
    _draw_mask(axes[1, 1], to_original_order(msc, order[None])[0], orig_labels, orig_labels,
               "$M^{sc}$, original order")
    fig.suptitle("labels: token\u00b7block; blue = may attend", fontsize=9)
    return fig


def order_figure(tokens: list[str], order, blocks) -> Figure:
    """The tokens in original order, coloured by block, with their generation slot and block id."""
    n = len(tokens)
    order, blocks = _one_row("order", order, n), _one_row("blocks", blocks, n)
    slot = torch.argsort(order)  # (N,) generation slot of each original position
    by_position = blocks.gather(0, slot)  # (N,) block of each original position
    fig = Picture(figsize=(max(4.0, 0.6 * n), 1.7), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for p, tok in enumerate(tokens):
        b = int(by_position[p])
        ax.add_patch(_box(p, BLOCK_COLORS((b - 1) % 20)))
        ax.text(p, 0, _shown(tok), ha="center", va="center", fontsize=10)
        ax.text(p, -0.75, f"#{int(slot[p])}", ha="center", va="center", fontsize=8)
        ax.text(p, 0.75, f"B{b}", ha="center", va="center", fontsize=8, color="#555555")
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(-1.1, 1.1)
    ax.axis("off")
    ax.set_title("original order; B = block, # = generation slot", fontsize=9)
    return fig


def _box(x: float, color, y: float = 0.0, width: float = 0.9, height: float = 0.9):
    return Rectangle((x - width / 2, y - height / 2), width, height, facecolor=color, edgecolor="white")


def trajectory_figure(tokens: list[str], tau, T: int) -> Figure:
    """Rows x_0..x_T of the forward process: token j is visible in x_t iff tau(j) > t."""
    n = len(tokens)
    tau = _one_row("tau", tau, n)
    if tau.numel() and (tau.min() < 1 or tau.max() > T):
        raise ValueError(f"tau must lie in 1..T={T}, got values in {int(tau.min())}..{int(tau.max())}")
    fig = Picture(figsize=(max(4.0, 0.45 * n + 1), 0.32 * (T + 1) + 1.0), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    shown = (tau[None, :] > torch.arange(T + 1)[:, None])  # (T+1, N): visible in x_t
    ax.imshow(shown.to(torch.int64).numpy(), cmap=ListedColormap(["#333333", "#fdf6e3"]), vmin=0, vmax=1,
              aspect="auto", interpolation="nearest")
    for t in range(T + 1):
        for j, tok in enumerate(tokens):
            ax.text(j, t, _shown(tok) if shown[t, j] else "M", ha="center", va="center", fontsize=8,
                    color="black" if shown[t, j] else "#bbbbbb")
    ax.set_yticks(range(T + 1), [f"$x_{{{t}}}$" for t in range(T + 1)], fontsize=8)
    ax.set_xticks(range(n), [f"\u03c4={int(v)}" for v in tau], fontsize=7, rotation=90)
    ax.set_title(f"forward process, T = {T}: token j is masked from step \u03c4(j) on", fontsize=9)
    return fig


def schedules_figure(T: int, kinds: tuple[str, ...] = SCHEDULES) -> Figure:
    """alpha_t (left) and P(tau = t) = alpha_{t-1} - alpha_t (right) for each schedule."""
    fig = Picture(figsize=(8, 2.8), dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    t = torch.arange(T + 1)
    for kind in kinds:
        alpha = alpha_schedule(kind, T)
        left.plot(t.numpy(), alpha.numpy(), marker=".", label=kind)
        right.plot(t[1:].numpy(), masking_probs(alpha).numpy(), marker=".", label=kind)
    left.set(xlabel="t", ylabel=r"$\alpha_t$", title="survival probability")
    right.set(xlabel="t", ylabel=r"$P(\tau = t)$", title="masking-time distribution")
    left.legend(fontsize=8)
    return fig


def matrix_figure(values, row_labels: list[str], col_labels: list[str], title: str = "",
                  cmap: str = "viridis") -> Figure:
    """A heatmap of a 2-D tensor with labelled rows and columns (e.g. a gradient-reach matrix)."""
    values = torch.as_tensor(values).detach().to(torch.float64)
    if values.ndim != 2 or values.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"values must be ({len(row_labels)}, {len(col_labels)}) to match the labels, "
                         f"got shape {tuple(values.shape)}")
    fig = Picture(figsize=(1.5 + 0.3 * len(col_labels), 1.0 + 0.3 * len(row_labels)), dpi=DPI,
                 layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values.numpy(), cmap=cmap, interpolation="nearest")
    ax.set_xticks(range(len(col_labels)), [_shown(c) for c in col_labels], fontsize=8, rotation=90)
    ax.set_yticks(range(len(row_labels)), [_shown(r) for r in row_labels], fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def curves_figure(curves: dict[str, tuple[list, list]], xlabel: str = "step", ylabel: str = "loss",
                  title: str = "") -> Figure:
    """Several (x, y) curves on one axis, e.g. training losses of AR, MDM and ARMD."""
    fig = Picture(figsize=(6, 3), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for name, (x, y) in curves.items():
        if len(x) != len(y):
            raise ValueError(f"curve {name!r}: {len(x)} x values but {len(y)} y values")
        ax.plot(list(x), list(y), label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return fig


def generation_figure(tokens: list[str], order, blocks, step: int, width: int = 32) -> Figure:
    """The sequence after the first ``step`` blocks of a generation order have been produced.

    Tokens are laid out in original order, ``width`` per row; not-yet-generated positions are grey,
    the block produced at this step is highlighted, earlier ones are tinted by block.
    """
    n = len(tokens)
    order, blocks = _one_row("order", order, n), _one_row("blocks", blocks, n)
    n_blocks = len(torch.unique(blocks))
    if not isinstance(step, int) or not 0 <= step <= n_blocks:
        raise ValueError(f"step must be an integer in 0..{n_blocks} (number of blocks produced), got {step!r}")
    block_ids = torch.unique_consecutive(blocks)  # (K,) in generation order
    done = set(block_ids[:step].tolist())
    newest = int(block_ids[step - 1]) if step else None
    by_position = blocks.gather(0, torch.argsort(order))  # (N,) block of each original position
    rows = (n + width - 1) // width
    fig = Picture(figsize=(max(4.5, 0.24 * min(n, width) + 0.6), 0.32 * rows + 0.7), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for p, tok in enumerate(tokens):
        x, y = p % width, -(p // width)
        b = int(by_position[p])
        if b == newest:
            color, text = "#f6ad55", _shown(tok)
        elif b in done:
            color, text = "#c6f6d5", _shown(tok)
        else:
            color, text = "#e2e2e2", ""
        ax.add_patch(_box(x, color, y=y))
        ax.text(x, y, text, ha="center", va="center", fontsize=8, family="monospace")
    ax.set_xlim(-0.6, min(n, width) - 0.4)
    ax.set_ylim(-rows + 0.4, 0.6)
    ax.axis("off")
    produced = int(sum(b in done for b in by_position.tolist()))
    ax.set_title(f"after {step} of {n_blocks} blocks: {produced} of {n} tokens\n(orange: produced at this step)", fontsize=9)
    return fig


def loss_figure(records: list[dict], title: str = "") -> Figure:
    """Training loss per step and validation estimates, from a run's metric records
    (``metrics.read_metrics``: dicts with ``step`` and ``loss`` or ``val``)."""
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val"]) for r in records if "val" in r]
    fig = Picture(figsize=(6, 3.5))
    ax = fig.subplots()
    if train:
        ax.plot(*zip(*train), lw=0.8, label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("nats / token")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def mask_table(mask, labels: list[str]) -> str:
    """A bool (N, N') mask as a 0/1 table, one labelled row per query (row n attends column i where 1)."""
    mask = torch.as_tensor(mask)
    if mask.ndim != 2 or len(labels) != mask.shape[0]:
        raise ValueError(f"mask must be 2-D with one label per row, got shape {tuple(mask.shape)} "
                         f"and {len(labels)} labels")
    width = max(len(label) for label in labels)
    return "\n".join(f"{label:>{width}}  " + " ".join(str(v) for v in row)
                     for label, row in zip(labels, mask.int().tolist()))


def token_text(ids, vocab: list[str], mask_id: int | None = None) -> str:
    """One row of ids as space-separated words from ``vocab``, ``[M]`` for ``mask_id``."""
    ids = _one_row("ids", ids)
    return " ".join("[M]" if i == mask_id else vocab[i] for i in ids.tolist())


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (what the widgets show in an ipywidgets.Image)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
