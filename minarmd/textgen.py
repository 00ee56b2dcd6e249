"""Text in, text out: a tokenizer and strings around the samplers of ``sampler.py``.

    from minarmd.textgen import generate_text
    out = generate_text(model, tok, prompt="ROMEO:", max_new_tokens=100, n=3, streams=2, seed=0)
    print(out.texts[0]); out.calls, out.seconds, out.samples[0].logprobs

One call for every model kind (``kinds.fill`` picks the sampler): ARMD in any order, with S
streams, with a prompt and/or a suffix (infilling); the AR baseline left to right with a prompt;
the MDM baseline over ``steps`` denoising steps with a prompt and/or a suffix. ``prompt`` may be a
list of strings of different lengths: each gets ``n`` samples, one batch in all (rows of different
lengths, ``template.stack_rows``), each row generated exactly as if it were alone.

Each row is ``prompt | max_new_tokens free positions | suffix``. ``stop=True`` cuts the new text at
the tokenizer's end-of-text token (GPT-2's ``<|endoftext|>``; a character tokenizer has none).
Left to right with one stream and no suffix the sampler also stops calling the network once every
row has drawn it; in other orders the rest is generated first and then cut (``sampler`` docstring).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .kinds import fill
from .sampler import FREE, Generation, Step
from .template import stack_rows
from .validation import check_int

__all__ = ["TextSample", "TextGeneration", "generate_text"]


@dataclass
class TextSample:
    """One generated sequence as text."""

    text: str  # the whole sequence: prompt + new text + suffix
    prompt: str  # what was given before the new text ("" for none)
    new_text: str  # the generated part, cut at the end-of-text token when stopping
    suffix: str  # what was given after it ("" for none)
    token_ids: list[int] = field(repr=False)  # the new tokens (up to the cut)
    logprobs: list[float] = field(repr=False)  # log p_model of each new token, position order (nats)


@dataclass
class TextGeneration:
    samples: list[TextSample]  # len(prompts) * n, prompt-major
    calls: int  # network calls for the whole batch
    seconds: float  # wall time of the sampling (tokenisation excluded)
    generation: Generation = field(repr=False)  # the raw ids, order, blocks, log-probabilities

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.samples]


def _encode(tokenizer, text, name: str) -> list[int]:
    if text is None:
        return []
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a string (or None), got {type(text).__name__}")
    if not text:
        raise ValueError(f"{name} is an empty string: leave it out ({name}=None) to generate without one")
    try:
        return tokenizer.encode(text)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


def generate_text(model, tokenizer, prompt: str | list[str] | None = None, suffix: str | None = None,
                  max_new_tokens: int | None = None, n: int = 1, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, streams: int = 1,
                  order: str = "l2r", steps: int | None = None, seed: int = 0, stop: bool | int = True,
                  cache: bool = True, callback: Callable[[Step], None] | None = None) -> TextGeneration:
    """``n`` samples per prompt, each ``prompt`` + ``max_new_tokens`` new tokens (+ ``suffix``), as text.

    ``max_new_tokens`` defaults to what fits in the model's ``max_len``. ``streams`` (S) and
    ``order`` ("l2r", "random") are ARMD's, ``steps`` the MDM baseline's; ``temperature``,
    ``top_k``, ``top_p`` shape every draw; ``seed`` fixes the generator. ``stop``: True cuts at the
    tokenizer's end-of-text token, an int at that token id, False never. ``callback(step)`` is
    called after every network call (``sampler.Step``).
    """
    max_len = model.cfg.max_len
    prompts = prompt if isinstance(prompt, (list, tuple)) else [prompt]
    if not prompts:
        raise ValueError("prompt is an empty list: give at least one string, or None")
    prompt_ids = [_encode(tokenizer, p, "prompt" if len(prompts) == 1 else f"prompt[{i}]")
                  for i, p in enumerate(prompts)]
    suffix_ids = _encode(tokenizer, suffix, "suffix")
    longest = max(len(p) for p in prompt_ids)
    room = max_len - longest - len(suffix_ids)
    if max_new_tokens is None:
        if room < 1:
            raise ValueError(f"prompt ({longest} tokens) + suffix ({len(suffix_ids)} tokens) leave no room for "
                             f"new tokens in the model's max_len={max_len}: shorten the prompt or suffix")
        max_new_tokens = room
    check_int("max_new_tokens", max_new_tokens)
    if longest + max_new_tokens + len(suffix_ids) > max_len:
        raise ValueError(f"prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) + suffix "
                         f"({len(suffix_ids)} tokens) = {longest + max_new_tokens + len(suffix_ids)} exceeds "
                         f"the model's max_len={max_len}: shorten the prompt or suffix, or lower max_new_tokens")
    check_int("n (samples per prompt)", n)
    if stop is True:
        stop_token = getattr(tokenizer, "eot_token", None)
    elif stop is False or stop is None:
        stop_token = None
    else:
        stop_token = stop
    rows = [torch.tensor(p + [FREE] * max_new_tokens + suffix_ids, dtype=torch.long)
            for p in prompt_ids for _ in range(n)]
    kwargs = dict(streams=streams, order=order, temperature=temperature, top_k=top_k, top_p=top_p,
                  generator=torch.Generator().manual_seed(seed), cache=cache, stop_token=stop_token,
                  callback=callback)
    if steps is not None:
        kwargs["steps"] = steps
    t0 = time.perf_counter()
    out = fill(model, stack_rows(rows), **kwargs)
    seconds = time.perf_counter() - t0

    samples = []
    for r in range(len(rows)):
        p_ids = prompt_ids[r // n]
        start = len(p_ids)
        new = out.tokens[r, start:start + max_new_tokens].tolist()
        logprobs = out.logprobs[r, start:start + max_new_tokens].tolist()
        if stop_token is not None and stop_token in new:
            cut = new.index(stop_token)
            new, logprobs = new[:cut], logprobs[:cut]
        samples.append(TextSample(text=tokenizer.decode(p_ids + new + suffix_ids),
                                  prompt=tokenizer.decode(p_ids), new_text=tokenizer.decode(new),
                                  suffix=tokenizer.decode(suffix_ids), token_ids=new, logprobs=logprobs))
    return TextGeneration(samples, out.calls, seconds, out)
