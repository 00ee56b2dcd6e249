r"""Sample quality: generative perplexity under a judge, always beside entropy and repetition.

**Generative perplexity** scores samples with a separate *judge* language model. Two protocols,
named by ``measure(..., protocol=...)`` and recorded in ``Quality.protocol``:

* ``"bos"`` (the default; every small char-level run uses it): the judge reads ``BOS, x_1 .. x_N``
  and every one of the N tokens is scored,

  .. math::  \mathrm{GenPPL}_{\mathrm{bos}} = \exp\Big(\frac{1}{|S| N} \sum_{x \in S}
             \sum_{n=1}^{N} -\log p_{\mathrm{judge}}(x_n \mid \mathrm{BOS}, x_{<n})\Big).

* ``"mdlm"``: MDLM's protocol (kuleshov-group/mdlm, ``diffusion.py``,
  ``Diffusion.compute_generative_perplexity``), meant for 1024-token GPT-2-BPE samples scored by
  GPT-2 Large (GPT-2-scale runs; MDLM's ``model.length`` is 1024). Each sample is split into chunks
  ``c`` of the judge's context (``torch.split``: the last chunk may be shorter), each chunk is read
  as it is, with no BOS prepended, and its first token is context only. Position j >= 2 of a chunk
  is scored iff ``c_j`` is not end-of-text or is the chunk's *first* end-of-text, ``c_1`` included
  in the count (MDLM's mask ``(c == eos).cumsum(-1) == 1`` OR ``c != eos``). All scored tokens of
  all samples are pooled, a mean over tokens, not over samples (a torchmetrics ``MeanMetric``
  updated with the NLLs weighted by that mask):

  .. math::  \mathrm{GenPPL}_{\mathrm{mdlm}} = \exp\Big(\frac{\sum_{x \in S} \sum_{c \in x}
             \sum_{j=2}^{|c|} m_j \cdot -\log p_{\mathrm{judge}}(c_j \mid c_{<j})}
             {\sum_{x \in S} \sum_{c \in x} \sum_{j=2}^{|c|} m_j}\Big),
     \qquad m_j = [c_j \ne \mathrm{EOS}] \lor [c_j \text{ is the first EOS of } c].

  Note what the mask does *not* do: text after the first end-of-text still counts (only the
  later end-of-text tokens themselves are dropped), although MDLM's ``main.py`` comments that
  the function "discards any text after the first EOS token"; we follow the code. When a sample
  starts with end-of-text, as MDLM's OWT training blocks ``[BOS] text [EOS]`` do (GPT-2's BOS and
  EOS are both id 50256), that token is context only and every later end-of-text is dropped: only
  the text tokens are scored.

  MDLM decodes samples to text and retokenises them with the judge's tokenizer (truncated to
  1024 tokens, padded with end-of-text under an attention mask). Our GPT-2 tokenizer uses the
  judge's ids, so GPT-2-BPE sample ids are scored as they are, with no retokenising: this is
  MDLM's own ``retokenize=False`` branch (attention mask all ones), except that long samples are
  chunked at the judge's context rather than read whole. Decode-then-encode is not always the
  identity for BPE, so a sampler that emits non-canonical tokenisations can score a little
  differently here than after MDLM's retokenising. MDLM also skips the last ``B mod batch_size``
  samples (``num_batches = B // batch_size``); we score them all.

For either protocol the standard error is over samples, by the delta method for the ratio
estimate :math:`R = \sum_i s_i / \sum_i c_i` (per-sample NLL sums :math:`s_i` over :math:`c_i`
scored tokens): :math:`\mathrm{se}(R) = \sqrt{\sum_i (s_i - R c_i)^2 / (B (B - 1))} / \bar c`,
times GenPPL. With equal counts (``"bos"``) it is the standard error of the per-sample means.

Lower means the judge finds the samples likely. A sampler can always lower it by being
repetitive or low-temperature, so it is never reported alone:

* **entropy**: the entropy of each sample's own token histogram (nats), averaged over samples.
  Degenerate, repetitive text has low entropy. Real text of the same length is the reference.
* **repetition**: rep-n = 1 - (distinct n-grams) / (n-grams) within each sample, averaged.

Both are computed on the whole sample, whatever the protocol.

Judges: ``ARJudge`` wraps a trained ``ar.GPT`` baseline (on the embedded corpora, an AR model that
is *not* one of the models compared). ``HFJudge`` loads GPT-2 Large through ``transformers`` for
GPT-2-BPE samples (OpenWebText): our GPT-2 tokenizer uses the same ids, so samples are scored
without retokenising; under ``"bos"`` after ``<|endoftext|>`` as BOS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .ar import ar_loss

__all__ = ["GPT2_EOS", "PROTOCOLS", "ARJudge", "HFJudge", "Quality", "sample_entropy", "repetition",
           "mdlm_mask", "scored_nll", "measure"]

GPT2_EOS = 50256  # <|endoftext|>: GPT-2's BOS for scoring ("bos") and its end-of-text ("mdlm")
PROTOCOLS = ("bos", "mdlm")


def check_protocol(protocol) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(map(repr, PROTOCOLS))} ('bos': BOS prepended, "
                         f"every token scored; 'mdlm': MDLM's generative perplexity), got {protocol!r}")
    return protocol


def check_judge(judge, protocol: str) -> None:
    """A ValueError, naming the fix, if ``judge`` cannot score by ``protocol``."""
    if protocol == "mdlm":
        if not hasattr(judge, "chunk_nll"):
            raise ValueError(f"protocol='mdlm' needs a judge with chunk_nll (ARJudge, HFJudge); "
                             f"{type(judge).__name__} has none: use protocol='bos'")
        if getattr(judge, "eos_id", None) is None:
            raise ValueError("protocol='mdlm' scores end-of-text tokens by MDLM's rule and needs the judge's "
                             "end-of-text id: build the judge with eos_id=... (e.g. ARJudge(model, eos_id=...)), "
                             "or use protocol='bos' for a vocabulary without one")


class ARJudge:
    """A trained ``ar.GPT`` as judge: per-token NLL given BOS and the prefix.

    ``eos_id``: the vocabulary's end-of-text id, needed by ``protocol="mdlm"`` only (the embedded
    char-level corpora have none: they use ``"bos"``). Under ``"mdlm"`` no *vocabulary* token is
    prepended and the first token of each chunk is context only, as MDLM scores GPT-2; the GPT's own
    BOS embedding row (not a vocabulary token) stays at position 0, because the model was only ever
    trained with it there: dropping it would put the first token where the model has only seen BOS.
    """

    def __init__(self, model, eos_id: int | None = None):
        self.model = model.eval()
        self.vocab_size, self.max_len = model.cfg.vocab_size, model.cfg.max_len
        self.context = self.max_len  # tokens per chunk under "mdlm" (the BOS row is not one of them)
        if eos_id is not None and (not isinstance(eos_id, int) or isinstance(eos_id, bool)
                                   or not 0 <= eos_id < self.vocab_size):
            raise ValueError(f"eos_id must be None or a token id in 0..{self.vocab_size - 1}, got {eos_id!r}")
        self.eos_id = eos_id

    @torch.no_grad()
    def nll(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) ids -> (B, N) float64 NLL of every token."""
        device = next(self.model.parameters()).device
        return ar_loss(self.model, tokens.to(device), per_token=True).double().cpu()

    def chunk_nll(self, chunk: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L - 1) float64 NLL of tokens 2..L given the preceding ones ("mdlm")."""
        return self.nll(chunk)[:, 1:]


class HFJudge:
    """A Hugging Face causal LM as judge (default GPT-2 Large), for GPT-2-BPE ids.

    ``eos_id`` (default ``<|endoftext|>``) is the BOS prepended under ``protocol="bos"`` and the
    end-of-text of ``protocol="mdlm"``.
    """

    def __init__(self, name: str = "gpt2-large", device: str | torch.device = "cpu", eos_id: int = GPT2_EOS):
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
        if not isinstance(eos_id, int) or isinstance(eos_id, bool) or not 0 <= eos_id < self.vocab_size:
            raise ValueError(f"eos_id must be a token id in 0..{self.vocab_size - 1}, got {eos_id!r}")
        config = self.model.config
        positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings")
        self.max_len = positions - 1  # "bos": one slot for the BOS
        self.context = positions  # "mdlm": chunks fill the whole context (MDLM: eval_context_size 1024)
        self.eos_id, self.device = eos_id, device

    @torch.no_grad()
    def nll(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) ids -> (B, N) float64 NLL of every token given ``eos_id`` as BOS and the prefix."""
        bos = torch.full((tokens.shape[0], 1), self.eos_id, dtype=torch.long)
        return self.chunk_nll(torch.cat([bos, tokens.cpu()], dim=1))

    @torch.no_grad()
    def chunk_nll(self, chunk: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L - 1) float64 NLL of tokens 2..L given the preceding ones, nothing prepended."""
        if chunk.shape[1] < 2:
            return torch.zeros(chunk.shape[0], 0, dtype=torch.float64)
        ids = chunk.to(self.device)
        logits = self.model(ids).logits[:, :-1].double()  # (B, L - 1, V): row j predicts token j + 1
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").cpu()


@dataclass
class Quality:
    gen_ppl: float  # exp(judge NLL per scored token)
    gen_ppl_se: float  # its standard error over samples (delta method)
    entropy: float  # mean per-sample unigram entropy, nats
    rep: dict  # {n: mean rep-n}
    samples: int
    protocol: str = "bos"  # how gen_ppl was scored: "bos" or "mdlm" (see the module docstring)

    def describe(self) -> str:
        reps = ", ".join(f"rep-{n} {r:.3f}" for n, r in self.rep.items())
        return (f"gen. ppl {self.gen_ppl:.2f} +- {self.gen_ppl_se:.2f} (protocol {self.protocol}), "
                f"entropy {self.entropy:.3f} nats, {reps} ({self.samples} samples)")


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


def mdlm_mask(chunk: torch.Tensor, eos_id: int) -> torch.Tensor:
    """(B, L) chunk -> (B, L - 1) bool: which of tokens 2..L MDLM scores.

    As MDLM's diffusion.py ``compute_generative_perplexity``: ``first_eos = (chunk == eos).cumsum(-1) == 1``
    and ``token_mask = chunk != eos``, summed (a logical or for bools) and cut to the targets ``[..., 1:]``.
    So every token that is not end-of-text is scored, and of the end-of-text tokens only the chunk's
    first (the count starts at the chunk's first token, which is itself never scored).
    """
    is_eos = chunk == eos_id
    return ((is_eos.cumsum(-1) == 1) | ~is_eos)[:, 1:]


def scored_nll(samples: torch.Tensor, judge, protocol: str = "bos", batch_size: int = 32):
    """(B, N) samples -> (nll, scored): (B, M) float64 judge NLLs and the (B, M) bool mask of the ones
    that count. ``"bos"``: M = N, all scored. ``"mdlm"``: the chunks' tokens 2.. side by side (M = N minus
    the number of chunks), scored by ``mdlm_mask``. The samples are checked by ``measure``."""
    check_judge(judge, check_protocol(protocol))
    nlls, masks = [], []
    for i in range(0, len(samples), batch_size):
        batch = samples[i:i + batch_size]
        if protocol == "bos":
            nlls.append(judge.nll(batch).double())
            masks.append(torch.ones(batch.shape, dtype=torch.bool))
        else:
            chunks = torch.split(batch, judge.context, dim=1)  # as MDLM: eval_context_size chunks
            nlls.append(torch.cat([judge.chunk_nll(c).double() for c in chunks], dim=1))
            masks.append(torch.cat([mdlm_mask(c, judge.eos_id) for c in chunks], dim=1))
    return torch.cat(nlls), torch.cat(masks)


def measure(samples: torch.Tensor, judge, batch_size: int = 32, ngrams=(1, 2, 4),
            protocol: str = "bos") -> Quality:
    """Generative perplexity under ``judge`` by ``protocol`` ("bos" or "mdlm"), entropy and repetition
    of (B, N) samples."""
    check_protocol(protocol)
    if not isinstance(samples, torch.Tensor) or samples.dtype != torch.long or samples.ndim != 2:
        raise ValueError("samples must be a (B, N) int64 tensor of token ids")
    if samples.min() < 0 or samples.max() >= judge.vocab_size:
        raise ValueError(f"samples hold ids outside the judge's vocabulary 0..{judge.vocab_size - 1}: "
                         "judge and samples must share a tokenizer")
    if protocol == "bos" and samples.shape[1] > judge.max_len:
        raise ValueError(f"samples of {samples.shape[1]} tokens exceed the judge's context {judge.max_len}")
    nll, scored = scored_nll(samples, judge, protocol, batch_size)
    sums = torch.where(scored, nll, 0.0).sum(1)  # (B,) s_i
    counts = scored.sum(1).double()  # (B,) c_i
    if counts.sum() == 0:
        raise ValueError("no token was scored: under protocol='mdlm' each chunk's first token is context only, "
                         "so samples need at least 2 tokens")
    mean = float(sums.sum() / counts.sum())  # pooled over every scored token
    B = len(samples)
    se = float(((sums - mean * counts) ** 2).sum().div(B * (B - 1)).sqrt() / counts.mean()) if B > 1 else 0.0
    ppl = math.exp(mean)
    return Quality(ppl, ppl * se, float(sample_entropy(samples).mean()),
                   {n: float(repetition(samples, n).mean()) for n in ngrams}, B, protocol)
