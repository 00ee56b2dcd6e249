r"""Sample quality: generative perplexity under a judge, always beside entropy and repetition.

**Generative perplexity** scores samples with a separate *judge* language model:

.. math::  \mathrm{GenPPL} = \exp\Big(\frac{1}{|S| N} \sum_{x \in S} \sum_{n=1}^{N} -\log p_{\mathrm{judge}}(x_n \mid x_{<n})\Big).

Lower means the judge finds the samples likely. A sampler can always lower it by being
repetitive or low-temperature, so it is never reported alone:

* **entropy**: the entropy of each sample's own token histogram (nats), averaged over samples.
  Degenerate, repetitive text has low entropy. Real text of the same length is the reference.
* **repetition**: rep-n = 1 - (distinct n-grams) / (n-grams) within each sample, averaged.

Judges: ``ARJudge`` wraps a trained ``ar.GPT`` baseline (on the embedded corpora, an AR model that
is *not* one of the models compared). ``HFJudge`` loads GPT-2 Large through ``transformers`` for
GPT-2-BPE samples (OpenWebText): our GPT-2 tokenizer uses the same ids, so samples are scored
without retokenising, after ``<|endoftext|>`` as BOS, as in MDLM's evaluation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .ar import ar_loss

__all__ = ["GPT2_EOS", "ARJudge", "HFJudge", "Quality", "sample_entropy", "repetition", "measure"]

GPT2_EOS = 50256  # <|endoftext|>: GPT-2's BOS for scoring


class ARJudge:
    """A trained ``ar.GPT`` as judge: per-token NLL given BOS and the prefix."""

    def __init__(self, model):
        self.model = model.eval()
        self.vocab_size, self.max_len = model.cfg.vocab_size, model.cfg.max_len

    @torch.no_grad()
    def nll(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) ids -> (B, N) float64 NLL of every token."""
        device = next(self.model.parameters()).device
        return ar_loss(self.model, tokens.to(device), per_token=True).double().cpu()


class HFJudge:
    """A Hugging Face causal LM as judge (default GPT-2 Large), for GPT-2-BPE ids."""

    def __init__(self, name: str = "gpt2-large", device: str | torch.device = "cpu"):
        try:
            from transformers import AutoModelForCausalLM
        except ImportError as err:
            raise ValueError("the GPT-2 Large judge needs the transformers package: "
                             "pip install transformers (and internet access, or a local copy of "
                             f"{name!r} in the Hugging Face cache)") from err
        try:
            self.model = AutoModelForCausalLM.from_pretrained(name).to(device).eval()
        except OSError as err:
            raise ValueError(f"could not load judge {name!r} ({err}); it downloads from the Hugging Face "
                             "hub on first use: go online once, or pass a local directory") from err
        self.vocab_size = self.model.config.vocab_size
        config = self.model.config
        positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings")
        self.max_len = positions - 1  # one slot for the BOS
        self.device = device

    @torch.no_grad()
    def nll(self, tokens: torch.Tensor) -> torch.Tensor:
        bos = torch.full((tokens.shape[0], 1), GPT2_EOS, dtype=torch.long)
        ids = torch.cat([bos, tokens.cpu()], dim=1).to(self.device)
        logits = self.model(ids).logits[:, :-1].double()  # (B, N, V): row n predicts token n
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").cpu()


@dataclass
class Quality:
    gen_ppl: float  # exp(mean judge NLL per token)
    gen_ppl_se: float  # its standard error over samples (delta method)
    entropy: float  # mean per-sample unigram entropy, nats
    rep: dict  # {n: mean rep-n}
    samples: int

    def describe(self) -> str:
        reps = ", ".join(f"rep-{n} {r:.3f}" for n, r in self.rep.items())
        return (f"gen. ppl {self.gen_ppl:.2f} +- {self.gen_ppl_se:.2f}, entropy {self.entropy:.3f} nats, "
                f"{reps} ({self.samples} samples)")


def sample_entropy(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N) ids -> (B,) entropy in nats of each row's token histogram."""
    out = torch.empty(tokens.shape[0], dtype=torch.float64)
    for i, row in enumerate(tokens):
        p = torch.unique(row, return_counts=True)[1].double() / row.numel()
        out[i] = -(p * p.log()).sum()
    return out


def repetition(tokens: torch.Tensor, n: int) -> torch.Tensor:
    """(B, N) ids -> (B,) rep-n: the fraction of each row's n-grams that repeat an earlier one."""
    if not isinstance(n, int) or n < 1 or n > tokens.shape[1]:
        raise ValueError(f"n must be an integer in 1..N={tokens.shape[1]}, got {n!r}")
    grams = tokens.unfold(1, n, 1)  # (B, N - n + 1, n)
    return torch.tensor([1.0 - len(torch.unique(g, dim=0)) / len(g) for g in grams], dtype=torch.float64)


def measure(samples: torch.Tensor, judge, batch_size: int = 32, ngrams=(1, 2, 4)) -> Quality:
    """Generative perplexity under ``judge``, entropy and repetition of (B, N) samples."""
    if not isinstance(samples, torch.Tensor) or samples.dtype != torch.long or samples.ndim != 2:
        raise ValueError("samples must be a (B, N) int64 tensor of token ids")
    if samples.min() < 0 or samples.max() >= judge.vocab_size:
        raise ValueError(f"samples hold ids outside the judge's vocabulary 0..{judge.vocab_size - 1}: "
                         "judge and samples must share a tokenizer")
    if samples.shape[1] > judge.max_len:
        raise ValueError(f"samples of {samples.shape[1]} tokens exceed the judge's context {judge.max_len}")
    nll = torch.cat([judge.nll(samples[i:i + batch_size]).mean(1) for i in range(0, len(samples), batch_size)])
    mean = float(nll.mean())
    se = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else 0.0
    ppl = math.exp(mean)
    return Quality(ppl, ppl * se, float(sample_entropy(samples).mean()),
                   {n: float(repetition(samples, n).mean()) for n in ngrams}, len(samples))
