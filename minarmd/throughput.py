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

from .config import TransformerConfig
from .deprecated import moved, warn
from .validation import check_int as _check_int
from .validation import check_number as _check_number

# dense (no sparsity) bf16 tensor-core peaks in FLOP/s, from NVIDIA's data sheets; "H100" is the SXM part
PEAKS = {"H100": 989e12, "H100 PCIe": 756e12, "H200": 989e12, "A100": 312e12}


# ------------------------------------------------ the formulas, one pair per network (kinds.py picks)

def _layer_params(cfg) -> int:
    d, b = cfg.n_embd, int(cfg.bias)
    return (4 + 2 * cfg.mlp_ratio) * d * d + b * (3 * d + d + cfg.mlp_ratio * d + d) + 2 * (d + b * d)  # + 2 LNs


def transformer_param_count(cfg) -> int:
    """Parameters of a baseline (GPT, MDM) with this TransformerConfig: V + 1 embedding rows (BOS or [MASK])."""
    rows, d = cfg.vocab_size + 1, cfg.n_embd
    total = rows * d + cfg.n_layer * _layer_params(cfg) + (d + cfg.bias * d) + (0 if cfg.tie_weights else rows * d)
    return total + _position_params(cfg)


def armd_param_count(cfg) -> int:
    """Parameters of an ARMD with this ARMDConfig: V rows, plus the BOS embedding and the PE table."""
    V, d = cfg.vocab_size, cfg.n_embd
    total = V * d + cfg.n_layer * _layer_params(cfg) + (d + cfg.bias * d) + (0 if cfg.tie_weights else V * d)
    total += _position_params(cfg)
    return total + d + (cfg.max_len + 1) * cfg.d_pe  # BOS embedding, PE table (BOS's position included)


def _position_params(cfg) -> int:
    """The learned absolute position table of the GPT-2 architecture (max_len + 1 rows), or 0 (RoPE)."""
    return (cfg.max_len + 1) * cfg.n_embd if getattr(cfg, "position_embedding", "rope") == "learned" else 0


def transformer_forward_flops(cfg, N: int) -> dict[str, int]:
    """The plain transformer's forward matmuls for one sequence of N tokens (module docstring)."""
    d, L = cfg.n_embd, cfg.n_layer
    full = 2 * (4 + 2 * cfg.mlp_ratio) * d * d  # per row: W_q, W_k, W_v, W_o and the MLP
    return {"linear": L * N * full, "attention": L * 4 * d * N * N, "prefix": 0,
            "head": 2 * d * (cfg.vocab_size + 1) * N}


def armd_forward_flops(cfg, N: int) -> dict[str, int]:
    """ARMD's forward matmuls for one sequence of N tokens: X stream, query stream, stack, Eq. 6, head."""
    d, L, L2s = cfg.n_embd, cfg.n_layer, cfg.n_two_stream
    full = 2 * (4 + 2 * cfg.mlp_ratio) * d * d  # per row: W_q, W_k, W_v, W_o and the MLP
    kv = 2 * 2 * d * d  # per row: W_k and W_v alone
    M = N + 1  # content-stream rows: BOS + N tokens
    linear = (max(L2s - 1, 0) * M * full + (M * kv if L2s else 0)  # content stream X
              + L2s * N * (full - kv)  # query stream G: no K/V projections of its own
              + (L - L2s) * N * full)  # the block-causal stack on G
    attention = max(L2s - 1, 0) * 4 * d * M * M + L2s * 4 * d * N * M + (L - L2s) * 4 * d * N * N
    prefix = 2 * N * M * (cfg.d_pe + d) if cfg.query_stream_init == "prefix" else 0
    return {"linear": linear, "attention": attention, "prefix": prefix, "head": 2 * d * cfg.vocab_size * N}


# ------------------------------------------------------------- any config in, the right formula out

def _resolve(cfg, model: str | None, seq_len: int | None, vocab_size: int | None):
    """(kind, network config, N) for an ARMDConfig, a TransformerConfig with ``model``, or a TrainConfig
    with ``vocab_size``."""
    from .kinds import KINDS, get_kind  # imported here: kinds.py imports this module's formulas

    fitting = [k.name for k in KINDS.values() if type(cfg) is k.config_class]
    if not fitting and hasattr(cfg, "seq_len") and hasattr(cfg, "model"):
        # a TrainConfig (duck-typed: train_config.py imports kinds.py, which imports this module)
        if vocab_size is None:
            raise ValueError("vocab_size is needed with a TrainConfig (it depends on the data): "
                             "e.g. vocab_size=50257 for GPT-2 BPE")
        _check_int("vocab_size", vocab_size)
        if model is not None and model != cfg.model:
            raise ValueError(f"model={model!r} contradicts the TrainConfig's model={cfg.model!r}; leave it out")
        kind = get_kind(cfg.model)
        cfg = kind.network_config(cfg, vocab_size)
    elif not fitting:
        raise ValueError(f"cfg must be an ARMDConfig, a TransformerConfig (or another registered kind's network "
                         f"config) or a TrainConfig, got {type(cfg).__name__}")
    elif vocab_size is not None:
        raise ValueError("vocab_size is given only with a TrainConfig; this config has its own vocab_size")
    else:
        if model is None and len(fitting) == 1:
            model = fitting[0]
        if model not in fitting:
            raise ValueError(f"model={model!r} does not fit a {type(cfg).__name__}: pass model= one of "
                             f"{tuple(fitting)} (an ARMD model needs an ARMDConfig)")
        kind = get_kind(model)
    N = cfg.max_len if seq_len is None else seq_len
    _check_int("seq_len", N)
    if N > cfg.max_len:
        raise ValueError(f"seq_len={N} exceeds the config's max_len={cfg.max_len}")
    return kind, cfg, N


def network_config(cfg, vocab_size: int) -> TransformerConfig:
    """Deprecated: ``TrainConfig.network_config(vocab_size)`` (the kind's own recipe, ``kinds.py``)."""
    warn("minarmd.throughput.network_config", "cfg.network_config(vocab_size)")
    _check_int("vocab_size", vocab_size)
    return cfg.network_config(vocab_size)


def param_count(cfg, model: str | None = None, vocab_size: int | None = None) -> int:
    """Parameters of the model ``cfg`` describes, without building it (= ``model.num_params()``).

    ``cfg``: an ARMDConfig, a TransformerConfig with ``model`` "ar" or "mdm", or a TrainConfig with
    ``vocab_size``. A tied LM head is counted once.
    """
    kind, net, _ = _resolve(cfg, model, None, vocab_size)
    return kind.param_count(net)


def forward_flops(cfg, model: str | None = None, seq_len: int | None = None,
                  vocab_size: int | None = None) -> dict[str, int]:
    """Forward matmul FLOPs for ONE sequence of ``seq_len`` tokens (default: max_len), by part.

    Keys: ``"linear"`` (projections and MLPs of every layer and stream), ``"attention"`` (QK^T and AV),
    ``"prefix"`` (ARMD's Eq. 6; 0 for the baselines) and ``"head"`` (the LM head). Exact integers.
    """
    kind, net, N = _resolve(cfg, model, seq_len, vocab_size)
    return kind.forward_flops(net, N)


def flops_per_token(cfg, model: str | None = None, seq_len: int | None = None, vocab_size: int | None = None,
                    training: bool = True) -> float:
    """Matmul FLOPs per token of a training step (forward + backward = 3 x forward), or of a forward
    pass alone with ``training=False``. Arguments as in ``forward_flops``."""
    if not isinstance(training, bool):
        raise ValueError(f"training must be True or False, got {training!r}")
    kind, net, N = _resolve(cfg, model, seq_len, vocab_size)
    return (3 if training else 1) * sum(kind.forward_flops(net, N).values()) / N


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
    _check_int("tokens", tokens, minimum=0)
    _check_int("tokens_per_step", tokens_per_step)
    return -(-tokens // tokens_per_step)


def training_hours(tokens: float, tokens_per_s: float) -> float:
    """Wall-clock hours to train on ``tokens`` tokens at a steady ``tokens_per_s``."""
    tokens = _check_number("tokens", tokens, positive=False)
    return tokens / _check_number("tokens_per_s", tokens_per_s, positive=True) / 3600.0


__all__ = ["PEAKS", "transformer_param_count", "armd_param_count", "transformer_forward_flops",
           "armd_forward_flops", "param_count", "forward_flops", "flops_per_token",
           "nanogpt_flops_per_token", "mfu", "peak_flops", "tokens_per_step", "steps_for_tokens",
           "training_hours"]

__getattr__ = moved(__name__, {"MODELS": "minarmd.kinds:KINDS"})
