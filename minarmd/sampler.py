r"""Sampling from ARMD and the two baselines: KV-cached, in any order, strided block-parallel.

**ARMD** (paper, §3.1). Tokens are generated block by block along a generation order. For block b,
one network call gives

.. math::  p_\theta(x_n \mid x_i : B(i) < b) \quad\text{for every } n \text{ in block } b,

and block b's tokens are drawn independently from these distributions.

* *Sequential decoding*: singleton blocks, in any order: left to right, random, or your own.
* *Strided block-parallel (SBP)* with S streams: the m positions to generate are cut into S runs
  of consecutive positions. Phase 1 draws the S run heads one at a time. Phase 2 draws, for each
  relative position j = 1, 2, ..., the S tokens {x_j^(1..S)} in one call. That is
  S + ceil(m/S) - 1 calls instead of m. Tokens drawn together are about m/S positions apart; this
  spatial separation is what makes drawing them independently reasonable. When S does not divide m
  the first m mod S runs are one position longer (``template.plan``).
* *Conditioning*: a **template** (``template.py``) fixes tokens anywhere (prompt, suffix, scattered),
  and its rows may differ in what they give and in length. The given tokens become each row's first
  blocks: singletons, left to right. The first call commits them and predicts the first block to
  draw; with a causal stack it also predicts the given tokens' own rows, because under M^c the
  stack's rows of later blocks attend to them (``cache.py``). They are never changed.

With ``cache=True`` (the default) each call is incremental (``cache.py``): O(1) layer work per token.
``cache=False`` runs the network on the whole prefix. It is the reference: the two draw identical
tokens from the same generator, for every template, order, S and split of the layers (tested).

**AR**: the GPT's KV cache, one token per call, given tokens fed where a row has them (a prompt;
rows may differ in length). **MDM**: ancestral sampling over T steps t = 1, 1 - 1/T, ..., 0, MDLM
style. Each still-masked token is revealed between t and s with probability (t - s)/t, drawn from
the model's prediction; unmasked tokens are carried over. With no time conditioning the prediction
depends only on x_t, so it can be reused while no token has changed (MDLM's caching). Here which
tokens to reveal is decided first, so a step that reveals nothing simply makes no call.

**Draws**: softmax in float64 on the CPU with an explicit ``torch.Generator``; temperature, top-k
and top-p (nucleus). (Gumbel-max sampling in float32 is known to lower sample entropy.) Every
sampler also returns the **log-probability** of each drawn token under the model (temperature 1,
no top-k/top-p), so that summed over a left-to-right sample it is the model's log-likelihood.

**Stopping** (``stop_token``, e.g. GPT-2's end-of-text): every FREE position after the first drawn
stop token, in position order, is set to the stop token (log-probability NaN). Left to right with
one stream and the given tokens all before the free ones (a prompt), the samplers also stop calling
the network once every row has drawn it. In any other order the later positions may have been drawn
first, so generation runs to the end and only the cut applies.

**Watching**: ``callback(step)`` is called after every network call with a ``Step``;
``generate_steps`` yields the same steps one by one (a live generation to step through).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .cache import ARMDCache, GPTCache
from .deprecated import moved
from .template import FREE, PAD, block_spans, call_slots, check_template, make_template, plan
from .validation import check_int

# FREE, PAD and make_template are the samplers' input vocabulary, re-exported from their home, template.py
__all__ = ["FREE", "PAD", "Generation", "Step", "check_sampling", "draw", "generate", "generate_steps",
           "make_template", "sample_ar", "sample_mdm"]


@dataclass
class Generation:
    """Samples plus how they were made."""

    tokens: torch.Tensor  # (B, N) int64, in original order; PAD (-2) after the end of a shorter row
    order: torch.Tensor  # (B, N) original positions in generation order (given tokens first)
    blocks: torch.Tensor  # (B, N) block ids along ``order``
    calls: int  # network calls spent (a prompt's prefill shares the first call)
    logprobs: torch.Tensor | None = None  # (B, N) float64 log p_model(token | its context); NaN where not drawn


@dataclass
class Step:
    """One network call of a sampler, as ``callback`` and ``generate_steps`` see it."""

    call: int  # 0-based index of this call
    positions: torch.Tensor  # (B, K) original positions drawn in this call; -1 where a row draws nothing
    tokens: torch.Tensor  # (B, K) the tokens drawn; -1 where none
    logprobs: torch.Tensor  # (B, K) float64 log-probabilities of the tokens drawn; NaN where none
    logits: torch.Tensor  # (B, K, V) the model's logits at those positions (0 where none)
    sequence: torch.Tensor  # (B, N) every token so far in original order; FREE where not drawn yet


# ----------------------------------------------------------------------------- drawing tokens

def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0 (1.0 = the model's distribution), "
                         f"got {temperature!r}")
    if top_k is not None:
        check_int("top_k", top_k, hint=" or None")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or in (0, 1] (1 keeps every token), got {top_p!r}")


def _draw(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
          generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, V) logits -> (n,) int64 samples on the CPU and their (n,) float64 model log-probabilities."""
    logits = logits.detach().double().cpu()  # (n, V)
    if not logits.isfinite().all() and (logits.isnan().any() or logits.isposinf().any()
                                        or not logits.isfinite().any(dim=-1).all()):  # -inf alone is a mask
        raise ValueError("the model produced non-finite logits (NaN or inf): its weights are probably broken "
                         "(a diverged run?); check the checkpoint, or evaluate it first")
    scaled = logits / temperature
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[..., -1:]  # (n, 1)
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    if top_p is not None and top_p < 1:
        sorted_p, index = probs.sort(dim=-1, descending=True)
        drop_sorted = sorted_p.cumsum(-1) - sorted_p >= top_p  # mass before this token already >= p
        probs = probs.masked_fill(torch.zeros_like(drop_sorted).scatter(-1, index, drop_sorted), 0.0)
    tokens = torch.multinomial(probs, 1, generator=generator)  # (n, 1); multinomial renormalises each row
    return tokens[:, 0], torch.log_softmax(logits, dim=-1).gather(1, tokens)[:, 0]


def draw(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
         top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """(..., V) logits -> (...) int64 samples, drawn in float64 on the CPU, returned on logits' device.

    ``top_k`` keeps the k most likely tokens; ``top_p`` keeps the smallest set of most likely tokens
    whose probability reaches p (the most likely token is always kept).
    """
    check_sampling(temperature, top_k, top_p)
    tokens, _ = _draw(logits.reshape(-1, logits.shape[-1]), temperature, top_k, top_p, generator)
    return tokens.view(logits.shape[:-1]).to(logits.device)


# ----------------------------------------------------------------------------- shared helpers

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
    from .kinds import kind_of  # imported here: kinds.py registers these samplers, so it imports this module

    has = kind_of(model)
    if has.name != kind:
        raise ValueError(f"this sampler needs a {kind!r} model, got a {has.name!r} one: "
                         f"use {has.sampler.__name__}() for it (or fill(), which picks it)")
    return next(model.parameters()).device


def _template(template, n, batch, prompt=None) -> torch.Tensor:
    if template is None:
        if n is None:
            raise ValueError("pass n (the number of positions) or a template")
        return make_template(n, batch, prompt=prompt)
    if n is not None and template.shape[-1] != n:
        raise ValueError(f"n={n} disagrees with the template's length {template.shape[-1]}; pass one of them")
    return template


def _check_stop(stop_token, vocab_size: int) -> None:
    if stop_token is not None and (not isinstance(stop_token, int) or isinstance(stop_token, bool)
                                   or not 0 <= stop_token < vocab_size):
        raise ValueError(f"stop_token must be None or a token id in 0..{vocab_size - 1}, got {stop_token!r}")


def _prompt_only(template: torch.Tensor) -> bool:
    """Every row's given tokens come before its free positions (a prompt, no suffix, no scattered tokens)."""
    pos = torch.arange(template.shape[1])
    last_given = torch.where(template >= 0, pos, -1).max(dim=1).values
    first_free = torch.where(template == FREE, pos, template.shape[1]).min(dim=1).values
    return bool((last_given < first_free).all())


def _cut_at_stop(tokens: torch.Tensor, logprobs: torch.Tensor, template: torch.Tensor, stop_token) -> None:
    """In place, original order: every FREE position after a row's first drawn stop token -> stop token."""
    if stop_token is None:
        return
    free = template.to(tokens.device) == FREE
    hit = free & (tokens == stop_token)
    after = (torch.cumsum(hit.long(), dim=1) - hit.long()) > 0  # strictly after the first hit
    cut = free & (after | (tokens == FREE))  # (B, N); FREE left undrawn only by an early stop
    tokens[cut] = stop_token
    logprobs[cut.cpu()] = float("nan")


def _step_record(call: int, rows: torch.Tensor, cols: torch.Tensor, positions: torch.Tensor,
                 drawn: torch.Tensor, logprobs: torch.Tensor, logits: torch.Tensor, sequence: torch.Tensor,
                 batch: int) -> Step:
    """A Step from the flat list of what one call drew: row, index within the row, position, token, ..."""
    width = int(cols.max()) + 1 if cols.numel() else 0
    pos = torch.full((batch, width), -1, dtype=torch.long)
    tok, lp = pos.clone(), torch.full((batch, width), float("nan"), dtype=torch.float64)
    out_logits = torch.zeros(batch, width, logits.shape[-1], dtype=logits.dtype)
    rows, cols = rows.cpu(), cols.cpu()
    pos[rows, cols], tok[rows, cols], lp[rows, cols] = positions.cpu(), drawn.cpu(), logprobs
    out_logits[rows, cols] = logits.detach().cpu()
    return Step(call, pos, tok, lp, out_logits, sequence.cpu().clone())


def _run(steps: Iterator, callback: Callable | None):
    """Drive a sampler's step generator; pass each Step to ``callback``; return its Generation."""
    while True:
        try:
            step = next(steps)
        except StopIteration as done:
            return done.value
        if callback is not None:
            callback(step)


# ----------------------------------------------------------------------------- ARMD

def generate(model, n: int | None = None, batch: int = 1, template: torch.Tensor | None = None,
             streams: int = 1, order: str | torch.Tensor = "l2r", temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, generator: torch.Generator | None = None,
             cache: bool = True, stop_token: int | None = None,
             callback: Callable[[Step], None] | None = None) -> Generation:
    """Sample from an ARMD model: ``batch`` sequences of ``n`` tokens, or fill a ``template``.

    ``streams`` = S > 1 gives SBP; ``order`` ("l2r", "random" or a permutation) orders the free
    positions (see ``template.plan``). ``cache=False`` re-runs the network at every call.
    ``stop_token`` and ``callback``: see the module docstring.
    """
    return _run(_armd_steps(model, n, batch, template, streams, order, temperature, top_k, top_p,
                            generator, cache, stop_token, record=callback is not None), callback)


def generate_steps(model, n: int | None = None, batch: int = 1, template: torch.Tensor | None = None,
                   streams: int = 1, order: str | torch.Tensor = "l2r", temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
                   cache: bool = True, stop_token: int | None = None, **unknown) -> Iterator[Step]:
    """``generate`` one network call at a time: yields a ``Step`` after each call (a live generation).

    ``for step in generate_steps(model, 64, streams=4): ...``; the last step's ``sequence`` holds the
    samples (before the ``stop_token`` cut). Same arguments as ``generate`` (no ``callback``).
    """
    if unknown:
        raise ValueError(f"unknown arguments {sorted(unknown)}; generate_steps takes generate's arguments")
    yield from _armd_steps(model, n, batch, template, streams, order, temperature, top_k, top_p, generator,
                           cache, stop_token, record=True)


class _Slots:
    """One call's slots in every row, along the generation order: a range shared by the batch when
    it has one block structure (``span``), else a padded (B, K) ``index`` with a ``valid`` mask."""

    def __init__(self, batch: int, index: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                 span: tuple[int, int] | None = None):
        self.batch, self.index, self.valid, self.span = batch, index, valid, span

    def take(self, t: torch.Tensor) -> torch.Tensor:  # (B, N, ...) -> (B, K, ...)
        if self.span is not None:
            return t[:, self.span[0]:self.span[1]]
        return t.gather(1, self.index if t.ndim == 2 else self.index[..., None].expand(-1, -1, t.shape[-1]))

    def flat(self, t: torch.Tensor) -> torch.Tensor:  # (B, K, ...) -> (n, ...): the real entries, row-major
        return t.reshape(-1, *t.shape[2:]) if self.span is not None else t[self.valid]

    def blocks(self, blocks: torch.Tensor, ids: list[int] | None):  # block ids for ARMDCache.step
        if self.span is not None:
            return ids[self.span[0]:self.span[1]]
        return torch.where(self.valid, blocks.gather(1, self.index), PAD)

    def widths(self) -> torch.Tensor:  # (B,) real entries per row
        if self.span is not None:
            return torch.full((self.batch,), self.span[1] - self.span[0], dtype=torch.long)
        return self.valid.sum(dim=1).cpu()

    def end(self) -> int:  # one past the last slot of any row
        return self.span[1] if self.span is not None else int(self.index[self.valid].max()) + 1

    def entries(self):  # (rows, slots, index within the row) of the real entries, row-major, CPU
        if self.span is not None:
            a, b = self.span
            return (torch.arange(self.batch).repeat_interleave(b - a), torch.arange(a, b).repeat(self.batch),
                    torch.arange(b - a).repeat(self.batch))
        rows, cols = self.valid.nonzero(as_tuple=True)
        return rows.cpu(), self.index[rows, cols].cpu(), cols.cpu()

    def put(self, t: torch.Tensor, values: torch.Tensor) -> None:  # write the (n,) values into (B, N) t
        values = values.to(t.device)
        if self.span is not None:
            t[:, self.span[0]:self.span[1]] = values.view(self.batch, -1)
        else:
            rows, slots, _ = self.entries()
            t[rows.to(t.device), slots.to(t.device)] = values


def _armd_steps(model, n, batch, template, streams, order, temperature, top_k, top_p, generator, cache,
                stop_token, record: bool):
    """The ARMD sampler as a generator: yields a Step per call when ``record``; returns the Generation."""
    device = _device(model, "armd")
    check_sampling(temperature, top_k, top_p)
    _check_stop(stop_token, model.cfg.vocab_size)
    template = _template(template, n, batch)
    n_given = check_template(template, model.cfg.vocab_size, model.cfg.max_len)  # (B,)
    n_real = (template != PAD).sum(dim=1)  # (B,)
    stop_early = stop_token is not None and streams == 1 and isinstance(order, str) and order == "l2r" \
        and _prompt_only(template)
    gen_order, blocks = plan(template, streams, order, generator)  # (B, N) each, CPU
    B, N = template.shape
    # one block structure for the whole batch (no ragged rows): every call's slots are one range
    if bool((blocks == blocks[:1]).all()) and bool((n_real == N).all()):
        ids = blocks[0].tolist()
        calls = [_Slots(B, span=span) for span in block_spans(blocks)[int(n_given[0]):]]
    else:
        ids = None
        calls = [_Slots(B, index.to(device), valid.to(device)) for index, valid in call_slots(blocks, n_given, n_real)]
    gen_order, blocks, template = gen_order.to(device), blocks.to(device), template.to(device)
    tokens = template.gather(1, gen_order)  # (B, N) in generation order; FREE where still to draw
    logprobs = torch.full((B, N), float("nan"), dtype=torch.float64)  # generation order, CPU
    stopped = torch.zeros(B, dtype=torch.bool, device=device)

    def leading(widths: torch.Tensor) -> _Slots:  # the first widths[b] slots of each row
        index = torch.arange(int(widths.max()), device=device).expand(B, -1).contiguous()
        return _Slots(B, index, index < widths.to(device)[:, None])

    n_given_dev = n_given.to(device)[:, None]  # (B, 1)
    made = 0
    with inference(model):
        kv = ARMDCache(model, B, capacity=N, check=False) if cache else None
        # with a causal stack the first call also predicts the given tokens' rows (see cache.py)
        ask_given = cache and len(model.causal) > 0 and int(n_given.max()) > 0
        commit = leading(n_given)  # the first call commits every row's given tokens
        for j, call in enumerate(calls):
            if cache:
                query = leading(n_given + call.widths()) if j == 0 and ask_given else call  # given, then block
                logits = kv.step(commit.take(tokens), commit.take(gen_order), commit.blocks(blocks, ids),
                                 query.take(gen_order), query.blocks(blocks, ids))  # (B, Kq, V)
                # (n, V): this call's block in every row, row-major
                logits = call.flat(logits) if query is call else logits[query.valid & (query.index >= n_given_dev)]
            else:
                end = call.end()  # every row's block of this call lies in [0, end)
                logits = call.flat(call.take(model(tokens[:, :end].clamp(min=0), gen_order[:, :end], blocks[:, :end])))
            made += 1
            drawn, lp = _draw(logits, temperature, top_k, top_p, generator)
            if stop_early:  # rows that already drew the stop token keep it
                ended = stopped.cpu()[call.entries()[0]]
                drawn, lp = torch.where(ended, stop_token, drawn), torch.where(ended, float("nan"), lp)
            call.put(tokens, drawn)
            call.put(logprobs, lp)
            commit = call
            if record:
                rows, slots, cols = call.entries()
                sequence = torch.empty_like(tokens).scatter_(1, gen_order, tokens)
                yield _step_record(j, rows, cols, gen_order.cpu()[rows, slots], drawn, lp, logits, sequence, B)
            if stop_early:
                stopped[call.entries()[0][drawn == stop_token].to(device)] = True
                if j + 1 < len(calls) and bool((stopped.cpu() | (calls[j + 1].widths() == 0)).all()):
                    break
    out = torch.empty_like(tokens).scatter_(1, gen_order, tokens)  # back to original order
    out_lp = torch.empty_like(logprobs).scatter_(1, gen_order.cpu(), logprobs)
    _cut_at_stop(out, out_lp, template, stop_token)
    return Generation(out, gen_order, blocks, calls=made, logprobs=out_lp)


# ----------------------------------------------------------------------------- baselines

def sample_ar(model, n: int | None = None, batch: int = 1, prompt=None, temperature: float = 1.0,
              top_k: int | None = None, top_p: float | None = None,
              generator: torch.Generator | None = None, cache: bool = True,
              template: torch.Tensor | None = None, stop_token: int | None = None,
              callback: Callable[[Step], None] | None = None) -> Generation:
    """Left-to-right samples from the GPT baseline: ``n`` tokens in all, ``prompt`` first.

    A ``template`` may give each row its own prompt and length (given tokens first, then FREE,
    then PAD); the AR model cannot condition on anything after the free positions.
    """
    return _run(_ar_steps(model, n, batch, prompt, template, temperature, top_k, top_p, generator, cache,
                          stop_token, record=callback is not None), callback)


def _ar_steps(model, n, batch, prompt, template, temperature, top_k, top_p, generator, cache, stop_token,
              record: bool):
    device = _device(model, "ar")
    check_sampling(temperature, top_k, top_p)
    _check_stop(stop_token, model.cfg.vocab_size)
    if template is not None and prompt is not None:
        raise ValueError("pass a prompt or a template, not both")
    template = _template(template, n, batch, prompt)
    n_given = check_template(template, model.cfg.vocab_size, model.cfg.max_len)
    if not _prompt_only(template):
        raise ValueError("the AR baseline generates left to right: given tokens must form a prompt (all before "
                         "the FREE positions of their row); use ARMD (generate) or MDM for suffixes and infilling")
    B, N = template.shape
    x = template.to(device, copy=True)  # (B, N); the caller's template stays as it is
    logprobs = torch.full((B, N), float("nan"), dtype=torch.float64)
    start, end = int(n_given.min()), int((template != PAD).sum(dim=1).max())
    stopped = torch.zeros(B, dtype=torch.bool, device=device)
    made = 0
    with inference(model):
        kv = GPTCache(model, B, capacity=N) if cache else None
        logits = kv.step(x[:, :start].clamp(min=0))[:, -1] if cache else None  # (B, V)
        for k in range(start, end):
            free = x[:, k] == FREE  # (B,) rows that draw position k (others give it, or have ended)
            if free.any():
                if not cache:
                    logits = model.next_logits(x[:, :k].clamp(min=0))
                drawn, lp = _draw(logits[free], temperature, top_k, top_p, generator)
                if stop_token is not None:  # rows that already drew the stop token keep it
                    ended = stopped[free].cpu()
                    drawn, lp = torch.where(ended, stop_token, drawn), torch.where(ended, float("nan"), lp)
                x[free, k] = drawn.to(device)
                logprobs[free.cpu(), k] = lp
                if stop_token is not None:
                    stopped[free.nonzero()[:, 0][drawn.to(device) == stop_token]] = True
                rows = free.nonzero()[:, 0]
                if record:
                    yield _step_record(made, rows, torch.zeros_like(rows), torch.full_like(rows, k), drawn, lp,
                                       logits[free], x, B)
            made += 1 if cache or free.any() else 0
            if stop_token is not None and bool((stopped | (x[:, k + 1:end] != FREE).all(dim=1)).all()):
                break
            if cache and k + 1 < end:
                logits = kv.step(x[:, k:k + 1].clamp(min=0))[:, -1]
    order = torch.arange(N).expand(B, N)
    _cut_at_stop(x, logprobs, template, stop_token)
    return Generation(x, order, order + 1, calls=made, logprobs=logprobs)


def sample_mdm(model, n: int | None = None, batch: int = 1, steps: int | None = None,
               template: torch.Tensor | None = None, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None,
               generator: torch.Generator | None = None, stop_token: int | None = None,
               callback: Callable[[Step], None] | None = None) -> Generation:
    """Ancestral samples from the MDM baseline over ``steps`` (default: the most free positions of a row).

    ``order``/``blocks`` of the result record when each position was revealed (block = step).
    Rows of a template may differ in what they give and in length (PAD keys are masked out).
    """
    return _run(_mdm_steps(model, n, batch, steps, template, temperature, top_k, top_p, generator, stop_token,
                           record=callback is not None), callback)


def _mdm_steps(model, n, batch, steps, template, temperature, top_k, top_p, generator, stop_token, record: bool):
    device = _device(model, "mdm")
    check_sampling(temperature, top_k, top_p)
    _check_stop(stop_token, model.cfg.vocab_size)
    template = _template(template, n, batch)
    check_template(template, model.cfg.vocab_size, model.cfg.max_len)
    B, N = template.shape
    steps = int((template == FREE).sum(dim=1).max()) if steps is None else steps
    check_int("steps", steps)
    present = template != PAD  # (B, N)
    keys = None if bool(present.all()) else present.to(device)  # rows of different lengths: mask PAD keys
    x = torch.where(template == FREE, model.mask_id, template.clamp(min=0)).to(device)  # (B, N)
    revealed_at = torch.where(template == FREE, steps + 1, 0)  # (B, N) step of each reveal (CPU)
    logprobs = torch.full((B, N), float("nan"), dtype=torch.float64)
    calls = 0
    with inference(model):
        for k in range(steps):
            t, s = 1.0 - k / steps, 1.0 - (k + 1) / steps
            masked = (x == model.mask_id).cpu() & present  # (B, N)
            reveal = masked & (torch.rand(B, N, generator=generator, dtype=torch.float64) < (t - s) / t)
            if not reveal.any():  # x unchanged: the last prediction would be reused, no call
                continue
            # reveals are decided before the call, so a call happens only when x is about to change
            reveal_dev = reveal.to(device)
            logits = model(x, keys)[reveal_dev]  # (revealed, V)
            drawn, lp = _draw(logits, temperature, top_k, top_p, generator)
            x[reveal_dev] = drawn.to(device)
            logprobs[reveal] = lp
            revealed_at[reveal] = k + 1
            if record:
                rows, positions = reveal.nonzero(as_tuple=True)
                cols = torch.cumsum(reveal.long(), dim=1)[rows, positions] - 1
                yield _step_record(calls, rows, cols, positions, drawn, lp, logits,
                                   torch.where(present.to(device), torch.where(x == model.mask_id, FREE, x), PAD), B)
            calls += 1
    x = torch.where(present.to(device), x, PAD)
    order = torch.sort(revealed_at, dim=1, stable=True).indices
    _cut_at_stop(x, logprobs, template, stop_token)
    return Generation(x, order, revealed_at.gather(1, order), calls, logprobs)


__getattr__ = moved(__name__, {"fill": "minarmd.kinds:fill"})  # sampler.fill moved to kinds.fill
