r"""Sampling from ARMD and the two baselines: KV-cached, in any order, strided block-parallel.

**ARMD** (paper, §3.1). Tokens are generated block by block along a generation order. For block b,
one network call gives

.. math::  p_\theta(x_n \mid x_i : B(i) < b) \quad\text{for every } n \text{ in block } b,

and block b's tokens are drawn independently from these distributions.

* *Sequential decoding*: singleton blocks, in any order: left to right, random, or your own.
* *Strided block-parallel (SBP)* with S streams: the m positions to generate are cut into S runs
  of m/S consecutive positions. Phase 1 draws the S run heads one at a time. Phase 2 draws, for each
  relative position j = 1 .. m/S - 1, the S tokens {x_j^(1..S)} in one call. That is
  S + m/S - 1 calls instead of m. Tokens drawn together are m/S positions apart; this spatial
  separation is what makes drawing them independently reasonable. S must divide m.
* *Conditioning*: a **template** fixes tokens anywhere (prompt, suffix, scattered). ``FREE`` (-1)
  marks the positions to generate. The given tokens become the first blocks: singletons, left to
  right. They are committed in one call and never changed.

With ``cache=True`` (the default) each call is incremental (``cache.py``): O(1) layer work per token.
``cache=False`` re-runs the network on the whole prefix. It is the reference the tests compare
against and the baseline of the speed benchmark.

**AR**: the GPT's KV cache, one token per call. **MDM**: ancestral sampling over T steps
t = 1, 1 - 1/T, ..., 0, MDLM style. Each still-masked token is revealed between t and s with
probability (t - s)/t, drawn from the model's prediction; unmasked tokens are carried over. With no
time conditioning the prediction depends only on x_t, so it can be reused while no token has changed
(MDLM's caching). Here which tokens to reveal is decided first, so a step that reveals nothing
simply makes no call.

**Draws**: softmax in float64 on the CPU with an explicit ``torch.Generator``; temperature, top-k
and top-p (nucleus). (Gumbel-max sampling in float32 is known to lower sample entropy.)
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .cache import ARMDCache, GPTCache
from .evaluate import model_kind
from .permutation import strided_order

FREE = -1  # template value of a position to generate


@dataclass
class Generation:
    """Samples plus how they were made."""

    tokens: torch.Tensor  # (B, N) int64, in original order
    order: torch.Tensor  # (B, N) original positions in generation order (given tokens first)
    blocks: torch.Tensor  # (B, N) block ids along ``order``
    calls: int  # network calls spent (a prompt's prefill shares the first call)


# ----------------------------------------------------------------------------- drawing tokens

def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0 (1.0 = the model's distribution), "
                         f"got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or in (0, 1] (1 keeps every token), got {top_p!r}")


def draw(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
         top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """(..., V) logits -> (...) int64 samples, drawn in float64 on the CPU, returned on logits' device.

    ``top_k`` keeps the k most likely tokens; ``top_p`` keeps the smallest set of most likely tokens
    whose probability reaches p (the most likely token is always kept).
    """
    check_sampling(temperature, top_k, top_p)
    scaled = logits.detach().double().cpu() / temperature  # (..., V)
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[..., -1:]  # (..., 1)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if top_p is not None and top_p < 1:
        sorted_p, index = probs.sort(dim=-1, descending=True)
        drop_sorted = sorted_p.cumsum(-1) - sorted_p >= top_p  # mass before this token already >= p
        probs = probs.masked_fill(torch.zeros_like(drop_sorted).scatter(-1, index, drop_sorted), 0.0)
    flat = probs.reshape(-1, probs.shape[-1])  # multinomial renormalises each row
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1]).to(logits.device)


# ----------------------------------------------------------------------------- templates and plans

def make_template(n: int, batch: int = 1, prompt=None, suffix=None) -> torch.Tensor:
    """(batch, n) int64: ``prompt`` at the start, ``suffix`` at the end, ``FREE`` elsewhere.

    ``prompt`` and ``suffix`` are id lists or tensors, (P,) or (batch, P).
    """
    if not isinstance(n, int) or n < 1 or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"n and batch must be integers >= 1, got n={n!r}, batch={batch!r}")
    parts = []
    for name, ids in (("prompt", prompt), ("suffix", suffix)):
        ids = torch.zeros(batch, 0, dtype=torch.long) if ids is None else torch.as_tensor(ids)
        if ids.dtype not in (torch.int32, torch.int64) or ids.ndim not in (1, 2):
            raise ValueError(f"{name} must be token ids, shaped (P,) or (batch, P); "
                             f"got dtype {ids.dtype} and shape {tuple(ids.shape)}")
        parts.append(ids.long().expand(batch, -1) if ids.ndim == 1 else ids.long())
    prompt, suffix = parts
    if prompt.shape[1] + suffix.shape[1] >= n:
        raise ValueError(f"prompt ({prompt.shape[1]} tokens) and suffix ({suffix.shape[1]}) leave nothing "
                         f"to generate in n={n} positions; raise n or shorten them")
    template = torch.full((batch, n), FREE, dtype=torch.long)
    template[:, :prompt.shape[1]] = prompt
    if suffix.shape[1]:
        template[:, n - suffix.shape[1]:] = suffix
    return template


def check_template(template: torch.Tensor, vocab_size: int, max_len: int) -> int:
    """Validate a (B, N) template; returns the number of given tokens per row."""
    if not isinstance(template, torch.Tensor) or template.dtype != torch.long or template.ndim != 2:
        raise ValueError("template must be a (B, N) int64 tensor: token ids where given, FREE (-1) where "
                         "to generate (build one with make_template)")
    B, N = template.shape
    if N > max_len:
        raise ValueError(f"template length N={N} exceeds the model's max_len={max_len}: "
                         f"generate at most {max_len} tokens (or a shorter prompt)")
    if template.min() < FREE or template.max() >= vocab_size:
        raise ValueError(f"template ids must be in 0..vocab_size-1={vocab_size - 1} (or FREE = -1), "
                         f"got values in {int(template.min())}..{int(template.max())}")
    given = (template != FREE).sum(dim=1)  # (B,)
    if (given != given[0]).any():
        raise ValueError(f"every row of the template must give the same number of tokens "
                         f"(blocks are shared by the batch), got {given.tolist()}")
    if int(given[0]) == N:
        raise ValueError("the template gives every position: nothing to generate")
    return int(given[0])


def plan(template: torch.Tensor, streams: int = 1, order: str | torch.Tensor = "l2r",
         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Generation order and blocks (both (B, N)) for a template.

    Given tokens come first (singleton blocks, left to right). Then the FREE positions: left to
    right ("l2r"), in a random order per row ("random"), or in your order. A tensor ``order``,
    (m,) or (B, m), is a permutation of 0..m-1 that ranks the m free positions (taken in ascending
    position order), so for an empty template it is simply the order of positions. With
    ``streams`` > 1 the free positions are strided over S runs (SBP; order "l2r").
    """
    B, N = template.shape
    given = template != FREE
    n_given = int(given[0].sum())
    m = N - n_given
    if not isinstance(streams, int) or streams < 1:
        raise ValueError(f"streams must be an integer >= 1, got {streams!r}")
    custom = isinstance(order, torch.Tensor)
    if custom:
        order = order.long().expand(B, -1) if order.ndim == 1 else order.long()
        if order.shape != (B, m) or not torch.equal(order.sort(dim=1).values, torch.arange(m).expand(B, m)):
            raise ValueError(f"a tensor order must be a permutation of 0..{m - 1} (one rank per free "
                             f"position), shaped ({m},) or ({B}, {m}); got shape {tuple(order.shape)}")
    elif order not in ("l2r", "random"):
        raise ValueError(f"order must be 'l2r', 'random' or a permutation tensor, got {order!r}")
    if streams > 1 and (custom or order != "l2r"):
        raise ValueError("strided generation (streams > 1) runs its streams left to right: use order='l2r'")
    if m % streams:
        raise ValueError(f"streams={streams} must divide the number of positions to generate ({m}): "
                         f"each stream holds m/S consecutive positions; change n, the prompt or S")
    # stable sort of "is free": given positions ascending, then free positions ascending
    by_position = torch.sort((~given).long(), dim=1, stable=True).indices  # (B, N)
    free = by_position[:, n_given:]  # (B, m)
    free_blocks = torch.arange(1, m + 1).expand(B, m)
    if custom:
        free = free.gather(1, order.to(free.device))
    elif order == "random":
        free = free.gather(1, torch.argsort(torch.rand(B, m, generator=generator, dtype=torch.float64), dim=1))
    elif streams > 1:
        slots, free_blocks = strided_order(m, streams, B)
        free = free.gather(1, slots)
    given_blocks = torch.arange(1, n_given + 1).expand(B, n_given)
    return (torch.cat([by_position[:, :n_given], free], dim=1),
            torch.cat([given_blocks, free_blocks + n_given], dim=1))


def block_spans(blocks: torch.Tensor) -> list[tuple[int, int]]:
    """[(start, end), ...] slots of each block along a (B, N) blocks tensor (shared by the batch)."""
    ids = blocks[0].tolist()
    starts = [k for k in range(len(ids)) if k == 0 or ids[k] != ids[k - 1]]
    return list(zip(starts, starts[1:] + [len(ids)]))


@contextmanager
def inference(model):
    """Evaluation mode (no dropout) and ``torch.inference_mode`` for the duration; the previous
    mode is restored. (inference_mode skips autograd's bookkeeping: 15 % faster than no_grad for
    the tiny model's decoding steps. The samplers return ordinary tensors, made outside it.)"""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _device(model, kind: str) -> torch.device:
    """The model's device, after checking that it is the kind of model the sampler needs."""
    if model_kind(model) != kind:
        fits = {"armd": "generate", "ar": "sample_ar", "mdm": "sample_mdm"}[model_kind(model)]
        raise ValueError(f"this sampler needs a {kind!r} model, got a {model_kind(model)!r} one: "
                         f"use {fits}() for it")
    return next(model.parameters()).device


def _template(template, n, batch) -> torch.Tensor:
    if template is None:
        return make_template(n, batch)
    if n is not None and template.shape[-1] != n:
        raise ValueError(f"n={n} disagrees with the template's length {template.shape[-1]}; pass one of them")
    return template


# ----------------------------------------------------------------------------- ARMD

def generate(model, n: int | None = None, batch: int = 1, template: torch.Tensor | None = None,
             streams: int = 1, order: str | torch.Tensor = "l2r", temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, generator: torch.Generator | None = None,
             cache: bool = True) -> Generation:
    """Sample from an ARMD model: ``batch`` sequences of ``n`` tokens, or fill a ``template``.

    ``streams`` = S > 1 gives SBP; ``order`` ("l2r", "random" or a permutation) orders the free
    positions (see ``plan``). ``cache=False`` re-runs the whole prefix at every call.
    """
    device = _device(model, "armd")
    check_sampling(temperature, top_k, top_p)
    template = _template(template, n, batch)
    n_given = check_template(template, model.cfg.vocab_size, model.cfg.max_len)
    order, blocks = plan(template, streams, order, generator)
    order, blocks, template = order.to(device), blocks.to(device), template.to(device)
    tokens = template.gather(1, order)  # (B, N) in generation order; FREE where still to draw
    B, N = tokens.shape
    spans = block_spans(blocks)[n_given:]  # the blocks to generate
    ids = blocks[0].tolist()
    with inference(model):
        if cache:
            kv = ARMDCache(model, B, capacity=N)
            committed = (0, n_given)  # the given tokens are committed with the first prediction
            for start, end in spans:
                c0, c1 = committed
                logits = kv.step(tokens[:, c0:c1], order[:, c0:c1], ids[c0:c1],
                                 order[:, start:end], ids[start:end])  # (B, end - start, V)
                tokens[:, start:end] = draw(logits, temperature, top_k, top_p, generator)
                committed = (start, end)
        else:
            for start, end in spans:
                seen = tokens[:, :end].clamp(min=0)  # FREE slots of this block: never seen (M^sc)
                logits = model(seen, order[:, :end], blocks[:, :end])[:, start:end]
                tokens[:, start:end] = draw(logits, temperature, top_k, top_p, generator)
    out = torch.empty_like(tokens).scatter_(1, order, tokens)  # back to original order
    return Generation(out, order, blocks, calls=len(spans))


# ----------------------------------------------------------------------------- baselines

def sample_ar(model, n: int, batch: int = 1, prompt=None, temperature: float = 1.0,
              top_k: int | None = None, top_p: float | None = None,
              generator: torch.Generator | None = None, cache: bool = True) -> Generation:
    """Left-to-right samples from the GPT baseline: ``n`` tokens in all, ``prompt`` first."""
    device = _device(model, "ar")
    check_sampling(temperature, top_k, top_p)
    template = make_template(n, batch, prompt=prompt)
    n_given = check_template(template, model.cfg.vocab_size, model.cfg.max_len)
    x = template.to(device)  # (B, N)
    with inference(model):
        kv = GPTCache(model, batch, capacity=n) if cache else None
        logits = kv.step(x[:, :n_given])[:, -1] if cache else None  # (B, V)
        for k in range(n_given, n):
            if not cache:
                logits = model.next_logits(x[:, :k])
            x[:, k] = draw(logits, temperature, top_k, top_p, generator)
            if cache and k + 1 < n:
                logits = kv.step(x[:, k:k + 1])[:, -1]
    order = torch.arange(n).expand(batch, n)
    return Generation(x, order, order + 1, calls=n - n_given)


def sample_mdm(model, n: int | None = None, batch: int = 1, steps: int | None = None,
               template: torch.Tensor | None = None, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None) -> Generation:
    """Ancestral samples from the MDM baseline over ``steps`` (default: the number of free positions).

    ``order``/``blocks`` of the result record when each position was revealed (block = step).
    """
    device = _device(model, "mdm")
    check_sampling(temperature, top_k, top_p)
    template = _template(template, n, batch)
    n_given = check_template(template, model.cfg.vocab_size, model.cfg.max_len)
    B, N = template.shape
    steps = N - n_given if steps is None else steps
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    x = torch.where(template == FREE, model.mask_id, template).to(device)  # (B, N)
    revealed_at = torch.where(template == FREE, steps + 1, 0)  # (B, N) step of each reveal (CPU)
    calls = 0
    with inference(model):
        for k in range(steps):
            t, s = 1.0 - k / steps, 1.0 - (k + 1) / steps
            masked = (x == model.mask_id).cpu()  # (B, N)
            reveal = masked & (torch.rand(B, N, generator=generator, dtype=torch.float64) < (t - s) / t)
            if not reveal.any():  # x unchanged: the last prediction would be reused, no call
                continue
            # reveals are decided before the call, so a call happens only when x is about to change
            reveal_dev = reveal.to(device)
            logits = model(x)[reveal_dev]  # (revealed, V)
            x[reveal_dev] = draw(logits, temperature, top_k, top_p, generator)
            calls += 1
            revealed_at[reveal] = k + 1
    order = torch.sort(revealed_at, dim=1, stable=True).indices
    return Generation(x, order, revealed_at.gather(1, order), calls)
