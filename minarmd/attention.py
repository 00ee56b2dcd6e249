r"""Attention backends: one mask pattern, prepared once per forward pass, used by every layer.

Softmax attention with a boolean mask (True = may attend),

.. math::  \mathrm{Attn}(Q, K, V; M) = \mathrm{softmax}\Big(\frac{QK^\top}{\sqrt{d_h}} + \log M\Big) V,

computed by one of three backends that must agree (``tests/test_backends.py``):

* ``"dense"``  — ``F.scaled_dot_product_attention`` with a dense (B, 1, Mq, Mk) bool mask built from
  block ids. Works for every block structure, on every device, forward and backward. CPU default.
* ``"causal"`` — the fused causal kernel (``is_causal=True``). Valid only when every block is a
  single token in sorted order (base training and sequential decoding). Then, with BOS at key
  slot 0, each ARMD pattern is the top-left lower triangle: M^c over [BOS, x] is plain causal,
  M^sc from the query stream to [BOS, x] is causal over keys shifted by one slot, and M^c inside
  the causal stack is plain causal. No mask is materialised.
* ``"flex"``   — ``torch.nn.attention.flex_attention`` with a block mask from a ``mask_mod`` that
  reads each sample's block ids (``B=batch``, so per-sample masks are honoured). The fast path for
  multi-token blocks (SBP) on CUDA, where it is compiled; on CPU it runs forward only (eager).
  Block ids shared by the whole batch (SBP's strided orders) get one mask, built once and cached.

``"auto"`` picks ``"causal"`` for singleton blocks, else ``"flex"`` on CUDA, else ``"dense"``.
Whether the blocks are singletons is decided by ``is_singleton``, reading the block ids only where
nothing else tells: ``blocks=None`` or ``singleton=`` (``ARMD.forward``) decide it without a look at
the values, which inside ``torch.compile`` would be a graph break and, on a GPU, a host sync.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from .masks import block_mask, visible
from .validation import compiling

__all__ = ["flex_available", "singleton_sorted", "is_singleton", "FLEX_MIN_HEAD_DIM", "resolve_backend",
           "AttentionMask"]

try:  # FlexAttention appeared in torch 2.5
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # pragma: no cover - depends on the installed torch
    create_block_mask = flex_attention = None

_compiled_flex = None  # flex_attention is only fast when compiled; compile lazily, once, on CUDA


def flex_available() -> bool:
    return flex_attention is not None


def singleton_sorted(blocks: torch.Tensor) -> bool:
    """True when every block holds exactly one token (block ids strictly increasing along each row)."""
    return bool((blocks[:, 1:] > blocks[:, :-1]).all())


def is_singleton(blocks: torch.Tensor | None, backend: str, singleton: bool | None = None) -> bool:
    """Whether the fused causal path may serve these blocks, for the configured ``backend``. In this order:

    1. ``blocks is None`` (every token its own block, in the order given): True;
    2. a backend other than "auto" / "causal" never takes the causal path: False;
    3. ``singleton`` given (True / False) by a caller who knows its blocks: that;
    4. "causal" while ``torch.compile`` traces: True, as configured (eager calls check it, below);
    5. otherwise the ids are read (``singleton_sorted``): eager calls always decide so. Compiled, this is
       the one graph break left in an ARMD forward; rules 1 to 3 avoid it.

    Only rule 5 reads a value. An eager call without ``singleton`` picks what it always did; a True
    claim is checked against the ids in eager calls (``model.check_inputs``), never while compiling.
    """
    if blocks is None:
        return True
    if backend not in ("auto", "causal"):
        return False
    if singleton is not None:
        return bool(singleton)
    if backend == "causal" and compiling():
        return True
    return singleton_sorted(blocks)


FLEX_MIN_HEAD_DIM = 16  # compiled FlexAttention on CUDA rejects smaller heads (NotImplementedError)


def resolve_backend(name: str, singleton: bool, device: torch.device, head_dim: int = 64) -> str:
    """Turn a configured backend name (maybe "auto") into the one that will run, or explain why not."""
    flex_ok = device.type != "cuda" or head_dim >= FLEX_MIN_HEAD_DIM
    if name == "auto":
        if singleton:
            return "causal"
        return "flex" if device.type == "cuda" and flex_available() and flex_ok else "dense"
    if name == "causal" and not singleton:
        raise ValueError("attn_backend='causal' needs singleton blocks (strictly increasing block ids); "
                         "use attn_backend='dense' or 'auto' for multi-token blocks")
    if name == "flex" and not flex_available():
        raise ValueError(f"attn_backend='flex' needs torch >= 2.5 (installed: {torch.__version__}); "
                         "use attn_backend='dense'")
    if name == "flex" and not flex_ok:
        raise ValueError(f"attn_backend='flex' on CUDA needs head_dim = n_embd // n_head >= {FLEX_MIN_HEAD_DIM}, "
                         f"got {head_dim}; use attn_backend='dense' or 'auto', or fewer heads")
    return name


class AttentionMask:
    """Which keys each query may see, in the form the chosen backend wants."""

    def __init__(self, kind: str, dense: torch.Tensor | None = None, flex_mask=None):
        self.kind = kind  # "full", "causal", "dense" or "flex"
        self.dense = dense  # (B, 1, Mq, Mk) bool for "dense"
        self.flex_mask = flex_mask  # a FlexAttention BlockMask for "flex"

    @classmethod
    def full(cls) -> "AttentionMask":
        """Every query sees every key (bidirectional attention)."""
        return cls("full")

    @classmethod
    def causal(cls) -> "AttentionMask":
        """Top-left lower triangle: query i sees keys 0..i (needs Mk >= Mq)."""
        return cls("causal")

    @classmethod
    def from_blocks(cls, blocks_q: torch.Tensor, blocks_k: torch.Tensor, strict: bool,
                    backend: str) -> "AttentionMask":
        """Query q sees key k iff B(k) < B(q) (strict) or B(k) <= B(q), for the given backend.

        For ``backend="causal"`` the caller guarantees that this pattern is the top-left triangle.
        """
        if backend == "causal":
            return cls.causal()
        if backend == "dense":
            return cls("dense", dense=block_mask(blocks_q, blocks_k, strict)[:, None])  # (B, 1, Mq, Mk)
        if backend == "flex":
            return cls("flex", flex_mask=_flex_block_mask(blocks_q, blocks_k, strict))
        raise ValueError(f"unknown attention backend {backend!r}")

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
        """q (B, H, Mq, hd), k and v (B, H, Mk, hd) -> (B, H, Mq, hd)."""
        if self.kind == "full":
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        if self.kind == "causal":
            # top-left causal: query i sees keys 0..i, so keys past Mq are never seen. Dropping them
            # gives the square pattern that FlashAttention requires for is_causal (ARMD's query
            # stream has Mq = M queries over Mk = M + 1 keys, BOS included).
            m_q = q.shape[-2]
            k, v = k[..., :m_q, :], v[..., :m_q, :]
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        if self.kind == "dense":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self.dense, dropout_p=dropout_p)
        if dropout_p > 0.0:
            raise ValueError("the flex backend has no attention dropout: set dropout=0 or attn_backend='dense'")
        return _run_flex(q, k, v, self.flex_mask)


_SHARED_MASKS: dict = {}  # (strict, device, block ids of q, of k) -> BlockMask, for batch-shared block ids
_SHARED_MASKS_MAX = 16  # SBP training cycles through a few patterns (one per S): a small cache suffices


def _flex_block_mask(blocks_q: torch.Tensor, blocks_k: torch.Tensor, strict: bool):
    """A FlexAttention BlockMask for these block ids.

    When every sample has the same block ids (SBP: the strided order is shared by the batch) the
    mask is built once for one sample (B=1 broadcasts over the batch) and cached across calls and
    steps; building it is a pass over the whole (queries x keys) grid. Per-sample block ids (mask
    trajectories, random orders) get a per-sample mask, rebuilt every call.
    """
    if not flex_available():
        raise ValueError(f"attn_backend='flex' needs torch >= 2.5 (installed: {torch.__version__})")
    batch, m_q = blocks_q.shape
    shared = bool((blocks_q == blocks_q[:1]).all() and (blocks_k == blocks_k[:1]).all())
    if shared:
        key = (strict, str(blocks_q.device), tuple(blocks_q[0].tolist()), tuple(blocks_k[0].tolist()))
        if key not in _SHARED_MASKS:
            if len(_SHARED_MASKS) >= _SHARED_MASKS_MAX:
                _SHARED_MASKS.pop(next(iter(_SHARED_MASKS)))  # the oldest pattern goes first
            q_ids, k_ids = blocks_q[0], blocks_k[0]  # (Mq,), (Mk,)

            def shared_mod(b, h, q_idx, kv_idx):  # the same for every sample b
                return visible(k_ids[kv_idx], q_ids[q_idx], strict)

            # B=None: one mask, broadcast over the batch
            _SHARED_MASKS[key] = create_block_mask(shared_mod, B=None, H=None, Q_LEN=m_q,
                                                   KV_LEN=blocks_k.shape[1], device=blocks_q.device)
        return _SHARED_MASKS[key]

    def mask_mod(b, h, q_idx, kv_idx):  # reads sample b's own block ids: masks differ per sample
        return visible(blocks_k[b, kv_idx], blocks_q[b, q_idx], strict)

    # B=batch is essential: with B=None the kernel would silently apply sample 0's mask to all samples
    return create_block_mask(mask_mod, B=batch, H=None, Q_LEN=m_q, KV_LEN=blocks_k.shape[1],
                             device=blocks_q.device)


def _run_flex(q, k, v, flex_mask):
    global _compiled_flex
    if q.device.type == "cuda":
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention, dynamic=False)
        return _compiled_flex(q, k, v, block_mask=flex_mask)
    with warnings.catch_warnings():  # eager flex on CPU warns that it is unfused: expected here
        warnings.simplefilter("ignore", UserWarning)
        return flex_attention(q, k, v, block_mask=flex_mask)
