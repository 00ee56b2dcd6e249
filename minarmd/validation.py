"""Argument checks shared by every module: one message format, naming the argument and the fix.

Every public function checks what it is given before it computes, and raises ``ValueError`` with
the argument's name, what was expected and what came (``"steps must be an integer >= 1, got 0"``)
rather than failing deep inside PyTorch. Booleans are refused where an integer is expected
(``True`` is an ``int`` to Python, never a sensible size).

Value checks on tensors (``check_tokens``) read the data, which on a GPU waits for it (a host sync)
and inside ``torch.compile`` breaks the graph: they are skipped while compiling, and the models run
them once per call, outside their compiled regions.
"""
from __future__ import annotations

import math
import numbers

import torch

__all__ = ["check_embeddings", "check_int", "check_number", "check_tokens", "compiling"]


def compiling() -> bool:
    """True while ``torch.compile`` traces the caller (checks that read tensor values step aside)."""
    return bool(getattr(torch.compiler, "is_compiling", lambda: False)())


def check_int(name: str, value, minimum: int = 1, hint: str = "") -> int:
    """``value`` if it is an integer >= ``minimum`` (not a bool), else a ValueError naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{hint}, got {value!r}")
    return value


def check_number(name: str, value, positive: bool) -> float:
    """A finite real number, > 0 (positive) or >= 0; numpy scalars welcome, bools and tensors not."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value > 0 if positive else value >= 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def check_tokens(x: torch.Tensor, vocab_size: int, max_len: int, name: str = "x") -> None:
    """A (B, N) int64 batch of ids in 0..vocab_size-1 with N <= max_len, or a ValueError saying why.

    Skipped inside ``torch.compile`` (the value checks sync with the GPU and break the graph).
    """
    if compiling():
        return
    if not isinstance(x, torch.Tensor) or x.dtype != torch.long or x.ndim != 2:
        raise ValueError(f"{name} must be a (B, N) int64 tensor of token ids, got "
                         f"{getattr(x, 'dtype', type(x).__name__)} of shape {tuple(getattr(x, 'shape', ()))}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one token per row, got shape {tuple(x.shape)}")
    if x.shape[1] > max_len:
        raise ValueError(f"sequence length N={x.shape[1]} exceeds max_len={max_len}; "
                         f"crop the input or build the model with a larger max_len")
    if x.min() < 0 or x.max() >= vocab_size:
        raise ValueError(f"{name} must hold ids in 0..vocab_size-1={vocab_size - 1}, "
                         f"got values in {int(x.min())}..{int(x.max())}")


def check_embeddings(embeddings: torch.Tensor, tokens: torch.Tensor, table: torch.nn.Embedding) -> None:
    """``embeddings`` given in place of ``table(tokens)``: a (B, M, D) tensor in the table's dtype and device.

    Shapes and dtypes only (no values are read), so this check also runs inside ``torch.compile``.
    """
    weight = table.weight
    want = (*tokens.shape, table.embedding_dim)
    if not isinstance(embeddings, torch.Tensor) or tuple(embeddings.shape) != want:
        raise ValueError(f"embeddings must be a (B, M, D) = {want} tensor, one vector per token (what "
                         f"model.wte(tokens) returns), got {type(embeddings).__name__} of shape "
                         f"{tuple(getattr(embeddings, 'shape', ()))}")
    if embeddings.dtype != weight.dtype or embeddings.device != weight.device:
        raise ValueError(f"embeddings must have the model's dtype and device ({weight.dtype}, {weight.device}), "
                         f"got ({embeddings.dtype}, {embeddings.device}); convert with "
                         f"embeddings.to(model.wte.weight)")
