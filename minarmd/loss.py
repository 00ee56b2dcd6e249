r"""ARMD's training loss in one forward pass, and the T-pass reference it must equal.

For one masking trajectory tau of a sequence x (``masking.py``), order the tokens by descending
tau into blocks (``permutation.order_from_mask_times``). Masked diffusion scores step t with

.. math::  \mathcal{L}_t = \sum_{n:\,\tau(n) = t} -\log p\big(x_n \mid \{x_i : \tau(i) > t\}\big),

one network call per step: T calls for the whole trajectory (``t_pass_loss``, the reference).
Because ARMD is strictly causal over blocks, **one** forward pass yields every term at once
(``armd_loss``, Eq. 2 with gamma = 1):

.. math::  \sum_{t=1}^{T} \mathcal{L}_t = \sum_n -\log p\big(x_n \mid x_i : B(i) < B(n)\big).

Averaged over trajectories, this equals MDLM's discrete-time loss with weights
(alpha_{t-1} - alpha_t)/(1 - alpha_t), since that weight is P(tau = t | tau <= t)
(``tests/test_loss.py`` checks this by exact enumeration).

Both functions take ``x`` (B, N) in original order, ``order`` (B, N) a permutation of 0..N-1
(generation order) and ``blocks`` (B, N) block ids in generation order, and return the mean NLL
per token in nats — or, with ``per_token=True``, the (B, N) NLLs in generation order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .validation import compiling

__all__ = ["check_loss_inputs", "token_nll", "armd_loss", "t_pass_loss"]


def check_loss_inputs(x: torch.Tensor, order: torch.Tensor, blocks: torch.Tensor | None) -> None:
    """Shapes, dtypes and the permutation property; the model checks ids and block monotonicity.
    The permutation check reads values: skipped while ``torch.compile`` traces (``validation.compiling``)."""
    for name, t in (("x", x), ("order", order), ("blocks", blocks)):
        if t is None and name == "blocks":
            continue
        if not isinstance(t, torch.Tensor) or t.dtype != torch.long or t.ndim != 2:
            raise ValueError(f"{name} must be a (B, N) int64 tensor, got "
                             f"{getattr(t, 'dtype', type(t).__name__)} of shape {tuple(getattr(t, 'shape', ()))}")
        if t.shape != x.shape:
            raise ValueError(f"{name} must have the shape of x {tuple(x.shape)}, got {tuple(t.shape)}")
    if compiling():
        return
    arange = torch.arange(x.shape[1], device=order.device)
    if not torch.equal(order.sort(dim=1).values, arange.expand_as(order)):
        raise ValueError("order must be a permutation of 0..N-1 in every row (the generation order); "
                         "build it with minarmd.permutation")


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, M, V) logits, (B, M) targets -> (B, M) negative log-likelihoods."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # softmax over 50k entries in half precision is too coarse
    B, M, V = logits.shape
    # flattened (B*M, V): the (B, V, M) "spatial" layout runs a kernel that was 60 % of a GPT-2-small
    # training step on an H200
    return F.cross_entropy(logits.reshape(B * M, V), targets.reshape(B * M), reduction="none").view(B, M)


def armd_loss(model, x: torch.Tensor, order: torch.Tensor, blocks: torch.Tensor | None = None,
              per_token: bool = False, singleton: bool | None = None) -> torch.Tensor:
    """Single pass: every block scored given the earlier blocks, in one forward call.

    ``singleton`` (every block one token?) goes to the model when given, so that it need not read
    ``blocks`` to choose the fused causal path (``attention.is_singleton``): no graph break compiled."""
    check_loss_inputs(x, order, blocks)
    tokens = x.gather(1, order)  # (B, N) in generation order
    logits = model(tokens, order, blocks) if singleton is None else model(tokens, order, blocks, singleton=singleton)
    nll = token_nll(logits, tokens)  # (B, N)
    return nll if per_token else nll.mean()


def t_pass_loss(model, x: torch.Tensor, order: torch.Tensor, blocks: torch.Tensor | None = None,
                per_token: bool = False) -> torch.Tensor:
    """Reference: one forward call per block b, fed only the tokens of blocks <= b, scoring block b.
    ``blocks=None`` means singleton blocks, as in ``armd_loss`` (N calls per row).

    Like an MDM step, each call also holds block b's own tokens, so agreement with ``armd_loss``
    proves that later blocks do not leak into earlier predictions; that a token cannot see itself
    or its block-mates is a separate property (``tests/test_model.py``, strict causality).
    """
    check_loss_inputs(x, order, blocks)
    if blocks is None:  # singleton blocks: block n (ids from 1; 0 is BOS's) holds the n-th generated token
        blocks = torch.arange(1, x.shape[1] + 1, device=x.device).expand_as(x)
    tokens = x.gather(1, order)  # (B, N) in generation order
    rows = []
    for row in range(x.shape[0]):
        _, counts = torch.unique_consecutive(blocks[row], return_counts=True)
        pieces, end = [], 0
        for count in counts.tolist():
            start, end = end, end + count
            prefix = slice(row, row + 1), slice(0, end)  # this row, blocks <= b only
            logits = model(tokens[prefix], order[prefix], blocks[prefix])  # (1, end, V)
            pieces.append(token_nll(logits[:, start:end], tokens[row:row + 1, start:end])[0])
        rows.append(torch.cat(pieces))  # (N,)
    nll = torch.stack(rows)  # (B, N)
    return nll if per_token else nll.mean()
