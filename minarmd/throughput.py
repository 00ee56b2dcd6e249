r"""What a training step costs: parameters, FLOPs per token, MFU and projected wall time.

**Counting rule.** Only matrix multiplications are counted (LayerNorm, GELU, RoPE, softmax and the
cross-entropy are a few % of the work and are left out, as in nanoGPT and PaLM). Multiplying an
(m, k) by a (k, n) matrix costs 2 m k n FLOPs. The backward pass of every matmul computes two
products of the same size (the gradients of both inputs), so a training step costs
**3 x the forward FLOPs**. Per sequence of N tokens, with width d, MLP width r d, L layers and
vocabulary V, the forward pass of a plain transformer (``ar``/``mdm``) does

.. math::  F_{\mathrm{fwd}} = \underbrace{2\,(4 + 2r)\,d^2\; L N}_{\text{linear layers}}
           + \underbrace{4\,d\,N^2 L}_{QK^\top\ \text{and}\ AV}
           + \underbrace{2\,d\,(V{+}1)\,N}_{\text{LM head}}

(V + 1: the baselines' head also scores their extra BOS or [MASK] id, cut afterwards). Per token,
times 3, this is nanoGPT's :math:`6P + 12 L d N` with P the parameters used in matmuls. Attention is counted over
the whole (queries x keys) rectangle the kernel is given, as nanoGPT does: a causal kernel that
skips masked tiles does about half of it, but the convention keeps MFU comparable across models.

**ARMD** runs more (``model.py``, ``two_stream.py``). With L2s two-stream layers and M = N + 1
rows in the content stream X (BOS first):

* X stream: L2s - 1 full layers on M rows (attention M x M), and in the last two-stream layer only
  the K/V projections (its X update is never used): :math:`(L_{2s}-1)(2(4+2r)d^2 M + 4 d M^2) + 4 d^2 M`;
* query stream G, L2s layers of N rows: its own W_q, W_o and MLP but keys/values from X,
  :math:`L_{2s}(2(2+2r)d^2 N + 4 d N M)` (N queries over M keys);
* the block-causal stack, L - L2s ordinary layers on G: :math:`(L-L_{2s})(2(4+2r)d^2 N + 4 d N^2)`;
* prefix aggregation (Eq. 6), two dense products :math:`(PE\,PE^\top)\,X`:  :math:`2 N M (d_{pe} + d)`;
* the LM head over V (no extra row): :math:`2 d V N`.

The fused causal path (singleton blocks) hands the query stream N keys instead of M (BOS's column
is never needed there): 4 d N fewer FLOPs per two-stream layer, under 0.1 % at N = 1024.

**MFU** (model FLOPs utilisation, PaLM appendix B): useful FLOPs per second over the chip's peak,

.. math::  \mathrm{MFU} = \frac{\text{tokens/s} \times \text{FLOPs/token}}{\text{peak FLOP/s}} .

Peaks (``PEAKS``) are dense bf16 tensor-core numbers from the vendors' data sheets. nanoGPT's
formula with P = all parameters (``nanogpt_flops_per_token``) counts ARMD like a GPT of its size
("GPT-equivalent"), so it undercounts ARMD's extra query stream; ``flops_per_token`` counts it.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .config import ARMDConfig, TransformerConfig

MODELS = ("armd", "ar", "mdm")

# dense (no sparsity) bf16 tensor-core peaks in FLOP/s, from NVIDIA's data sheets; "H100" is the SXM part
PEAKS = {"H100": 989e12, "H100 PCIe": 756e12, "H200": 989e12, "A100": 312e12}


@dataclass(frozen=True)
class _Shape:
    """The numbers the counts depend on, whatever kind of config they came from."""

    model: str  # "armd", "ar" or "mdm"
    V: int  # vocabulary (real tokens; the baselines add one row)
    N: int  # tokens per sequence
    L: int  # layers
    L2s: int  # ARMD's two-stream layers (0 for the baselines)
    d: int  # width
    r: int  # MLP ratio
    d_pe: int  # ARMD's prefix-aggregation width
    prefix: bool  # ARMD computes G^0 by prefix aggregation (query_stream_init == "prefix")
    bias: bool  # Linear and LayerNorm biases (parameters only: a bias add is not a matmul)
    tie: bool  # LM head tied to the token embeddings (parameters only)
    max_len: int  # rows of ARMD's PE table (parameters only)


def _check_int(name: str, value, low: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_number(name: str, value, positive: bool) -> float:
    """A finite real number, > 0 (positive) or >= 0; numpy scalars welcome, bools and tensors not."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value > 0 if positive else value >= 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def network_config(cfg, vocab_size: int) -> TransformerConfig:
    """The network config a TrainConfig describes (what ``train.build_model`` builds), without weights."""
    _check_int("vocab_size", vocab_size)
    shape = dict(vocab_size=vocab_size, max_len=cfg.seq_len, n_layer=cfg.n_layer, n_head=cfg.n_head,
                 n_embd=cfg.n_embd, dropout=cfg.dropout)
    if cfg.model == "armd":
        return ARMDConfig(**shape, n_two_stream=cfg.n_two_stream, d_pe=cfg.d_pe, pe_init_std=cfg.pe_init_std,
                          attn_backend=cfg.attn_backend)
    return TransformerConfig(**shape)


def _shape(cfg, model: str | None, seq_len: int | None, vocab_size: int | None) -> _Shape:
    if not isinstance(cfg, TransformerConfig) and hasattr(cfg, "seq_len") and hasattr(cfg, "model"):
        # a train.TrainConfig (not imported: train.py is heavy and may itself import this module)
        if vocab_size is None:
            raise ValueError("vocab_size is needed with a TrainConfig (it depends on the data): "
                             "e.g. vocab_size=50257 for GPT-2 BPE")
        if model is not None and model != cfg.model:
            raise ValueError(f"model={model!r} contradicts the TrainConfig's model={cfg.model!r}; leave it out")
        model, cfg = cfg.model, network_config(cfg, vocab_size)
    elif not isinstance(cfg, TransformerConfig):
        raise ValueError(f"cfg must be an ARMDConfig, a TransformerConfig or a TrainConfig, got {type(cfg).__name__}")
    elif vocab_size is not None:
        raise ValueError("vocab_size is given only with a TrainConfig; this config has its own vocab_size")
    if isinstance(cfg, ARMDConfig):
        if model not in (None, "armd"):
            raise ValueError(f"model={model!r} does not fit an ARMDConfig; leave it out or pass 'armd'")
        model = "armd"
    elif model not in ("ar", "mdm"):
        raise ValueError(f"model must be 'ar' or 'mdm' for a TransformerConfig (an ARMD model needs an "
                         f"ARMDConfig), got {model!r}")
    N = cfg.max_len if seq_len is None else seq_len
    _check_int("seq_len", N)
    if N > cfg.max_len:
        raise ValueError(f"seq_len={N} exceeds the config's max_len={cfg.max_len}")
    armd = model == "armd"
    return _Shape(model, cfg.vocab_size, N, cfg.n_layer, cfg.n_two_stream if armd else 0, cfg.n_embd,
                  cfg.mlp_ratio, cfg.d_pe if armd else 0, armd and cfg.query_stream_init == "prefix",
                  cfg.bias, cfg.tie_weights, cfg.max_len)


def param_count(cfg, model: str | None = None, vocab_size: int | None = None) -> int:
    """Parameters of the model ``cfg`` describes, without building it (= ``model.num_params()``).

    ``cfg``: an ARMDConfig, a TransformerConfig with ``model`` "ar" or "mdm", or a TrainConfig with
    ``vocab_size``. A tied LM head is counted once.
    """
    s = _shape(cfg, model, None, vocab_size)
    d, b = s.d, int(s.bias)
    rows = s.V if s.model == "armd" else s.V + 1  # the baselines' extra BOS / [MASK] row
    layer = (4 + 2 * s.r) * d * d + b * (3 * d + d + s.r * d + d) + 2 * (d + b * d)  # linears, biases, 2 LNs
    total = rows * d + s.L * layer + (d + b * d) + (0 if s.tie else rows * d)  # embeddings, layers, ln_f, head
    if s.model == "armd":
        total += d + (s.max_len + 1) * s.d_pe  # BOS embedding, PE table (BOS's position included)
    return total


def forward_flops(cfg, model: str | None = None, seq_len: int | None = None,
                  vocab_size: int | None = None) -> dict[str, int]:
    """Forward matmul FLOPs for ONE sequence of ``seq_len`` tokens (default: max_len), by part.

    Keys: ``"linear"`` (projections and MLPs of every layer and stream), ``"attention"`` (QK^T and AV),
    ``"prefix"`` (ARMD's Eq. 6; 0 for the baselines) and ``"head"`` (the LM head). Exact integers.
    """
    s = _shape(cfg, model, seq_len, vocab_size)
    d, N, L, L2s = s.d, s.N, s.L, s.L2s
    full = 2 * (4 + 2 * s.r) * d * d  # per row: W_q, W_k, W_v, W_o and the MLP
    kv = 2 * 2 * d * d  # per row: W_k and W_v alone
    if s.model != "armd":
        return {"linear": L * N * full, "attention": L * 4 * d * N * N, "prefix": 0,
                "head": 2 * d * (s.V + 1) * N}
    M = N + 1  # content-stream rows: BOS + N tokens
    linear = (max(L2s - 1, 0) * M * full + (M * kv if L2s else 0)  # content stream X
              + L2s * N * (full - kv)  # query stream G: no K/V projections of its own
              + (L - L2s) * N * full)  # the block-causal stack on G
    attention = max(L2s - 1, 0) * 4 * d * M * M + L2s * 4 * d * N * M + (L - L2s) * 4 * d * N * N
    prefix = 2 * N * M * (s.d_pe + d) if s.prefix else 0
    return {"linear": linear, "attention": attention, "prefix": prefix, "head": 2 * d * s.V * N}


def flops_per_token(cfg, model: str | None = None, seq_len: int | None = None, vocab_size: int | None = None,
                    training: bool = True) -> float:
    """Matmul FLOPs per token of a training step (forward + backward = 3 x forward), or of a forward
    pass alone with ``training=False``. Arguments as in ``forward_flops``."""
    if not isinstance(training, bool):
        raise ValueError(f"training must be True or False, got {training!r}")
    s = _shape(cfg, model, seq_len, vocab_size)
    total = sum(forward_flops(cfg, model, seq_len, vocab_size).values())
    return (3 if training else 1) * total / s.N


def nanogpt_flops_per_token(num_params: int, n_layer: int, n_embd: int, seq_len: int) -> int:
    """nanoGPT's estimate 6 P + 12 L d N (P: all parameters): a GPT's training FLOPs per token."""
    for name, value in (("num_params", num_params), ("n_layer", n_layer), ("n_embd", n_embd), ("seq_len", seq_len)):
        _check_int(name, value)
    return 6 * num_params + 12 * n_layer * n_embd * seq_len


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: tokens_per_s * flops_per_token / peak_flops (a fraction, 0.4 = 40 %)."""
    tokens_per_s = _check_number("tokens_per_s", tokens_per_s, positive=False)
    flops_per_token = _check_number("flops_per_token", flops_per_token, positive=True)
    return tokens_per_s * flops_per_token / _check_number("peak_flops", peak_flops, positive=True)


def peak_flops(device_name: str) -> float:
    """The dense bf16 peak of a GPU named like ``torch.cuda.get_device_name()`` ("NVIDIA H100 80GB HBM3")."""
    if not isinstance(device_name, str):
        raise ValueError(f"device_name must be a string, got {type(device_name).__name__}")
    for key in sorted(PEAKS, key=len, reverse=True):  # the most specific name first ("H100 PCIe")
        if key.lower() in device_name.lower():
            return PEAKS[key]
    raise ValueError(f"device_name {device_name!r} matches none of {tuple(PEAKS)}; pass the peak FLOP/s "
                     f"yourself (from the data sheet: dense bf16)")


def tokens_per_step(cfg) -> int:
    """Tokens of one optimiser step, batch_size x grad_accum x seq_len: the global batch, the same on
    any number of GPUs (torchrun's W processes each compute grad_accum / W micro-batches)."""
    for name in ("batch_size", "grad_accum", "seq_len"):
        _check_int(f"cfg.{name}", getattr(cfg, name, None))
    return cfg.batch_size * cfg.grad_accum * cfg.seq_len


def steps_for_tokens(tokens: int, tokens_per_step: int) -> int:
    """Optimiser steps needed to see at least ``tokens`` tokens (rounded up)."""
    _check_int("tokens", tokens, low=0)
    _check_int("tokens_per_step", tokens_per_step)
    return -(-tokens // tokens_per_step)


def training_hours(tokens: float, tokens_per_s: float) -> float:
    """Wall-clock hours to train on ``tokens`` tokens at a steady ``tokens_per_s``."""
    tokens = _check_number("tokens", tokens, positive=False)
    return tokens / _check_number("tokens_per_s", tokens_per_s, positive=True) / 3600.0


__all__ = ["MODELS", "PEAKS", "network_config", "param_count", "forward_flops", "flops_per_token",
           "nanogpt_flops_per_token", "mfu", "peak_flops", "tokens_per_step", "steps_for_tokens",
           "training_hours"]
