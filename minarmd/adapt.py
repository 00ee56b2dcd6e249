r"""From GPT to ARMD: start an ARMD from a pretrained autoregressive model (the paper's Remark 1).

ARMD's content stream is an ordinary causal transformer over the tokens in generation order: with
the same weights it *is* the GPT. Under M^c with singleton blocks, row k of every layer sees BOS and
the tokens listed before it, at their original positions, so for every layer l

.. math::  X^l_{k} \;=\; h^l_{k}\big(\mathrm{GPT};\ [\mathrm{BOS}, x_{\sigma_1}, \dots, x_{\sigma_M}],
           \ \text{positions } [0, \sigma_1 + 1, \dots, \sigma_M + 1]\big),

the GPT's hidden state of the k-th listed token when it reads the same list at the same positions
(``Transformer.hidden_states(..., pos=)``). In left-to-right order that list is the GPT's own input,
so rows 0..N-1 of X^l equal the GPT's hidden states of BOS, x_1 .. x_{N-1} — and ``lm_head(ln_f(X^L))``
reproduces its next-token logits. (With blocks of several tokens M^c lets a block's tokens see each
other, which no causal pass does; the equality is for singleton blocks, in any order.)

What a conversion copies: token embeddings (the GPT's BOS row becomes ARMD's ``bos``), every layer
(layer i of the GPT becomes two-stream layer i for i < L2s, then causal layer i - L2s), the final
LayerNorm, the head, learned positions if any. What is new (``NEW_PARAMETERS``): only the prefix-
aggregation table PE of Eq. 6 — nothing else is added, the query stream shares the GPT's weights by
Eq. 7. Its init decides where the query stream starts (``pe_init``):

* ``"neighbours"`` (the default, as for a fresh ARMD; needs d_pe >= max_len + 1): PE is the Cholesky
  factor of K = 2 I + [|p - q| = 1] (``two_stream.neighbour_pe``), so
  :math:`\langle PE_p, PE_q\rangle = 1` for adjacent positions and 0 for any other pair, and
  :math:`g^0_n = x_{n-1} + x_{n+1}` over the neighbours already visible. Left to right that is
  :math:`x_{n-1}`: the query stream starts from the very row the GPT predicts x_n from, only with its
  attention one position further on (RoPE at the target's position), which is why the
  converted model starts near the GPT (tiny shape, Shakespeare, 3 seeds: 2.47 nats/char before any
  adaptation against the GPT's 1.83, and 4.15 with the random init; benchmarks/RESULTS.md §12).
* ``"random"``: N(0, pe_init_std) (g^0 ~ 0), any d_pe.

Two sources: the project's own GPT baseline (``armd_from_gpt``, RoPE or GPT-2 architecture) and
Hugging Face's GPT-2 (``armd_from_hf_gpt2``; Conv1D weights are transposed into Linear layers; needs
``transformers``). Training starts from either with ``--init-from-ar CKPT`` / ``--init-from-hf gpt2``
(``TrainConfig.init_from_ar``, ``init_from_hf``; ``init_pretrained`` is the hook the loop calls).
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import asdict

import torch

from .ar import GPT
from .config import PE_INITS, ARMDConfig
from .kinds import get_kind
from .model import ARMD
from .two_stream import neighbour_pe  # noqa: F401 (its former home: adapt.neighbour_pe still works)

__all__ = ["NEW_PARAMETERS", "PE_INITS", "neighbour_pe", "armd_from_gpt", "armd_from_hf_gpt2", "init_pretrained",
           "freeze_pretrained"]

NEW_PARAMETERS = ("prefix.pe.weight",)  # what a converted ARMD does not take from the GPT

_BLOCK_PARTS = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                "mlp.c_proj.weight", "mlp.c_proj.bias")


def _layer(i: int, n_two_stream: int) -> str:
    """The ARMD module that takes the GPT's layer i."""
    return f"two_stream.{i}" if i < n_two_stream else f"causal.{i - n_two_stream}"


def _build(cfg: ARMDConfig, weights: dict, generator: torch.Generator | None,
           dtype: torch.dtype = torch.float32) -> ARMD:
    """An ARMD of ``cfg`` holding ``weights`` (ARMD parameter name -> tensor) and a new PE table, initialised
    as ``cfg.pe_init`` says (``two_stream.PrefixAggregation``; "random" from ``generator`` when given)."""
    with torch.random.fork_rng(devices=[]) if generator is not None else nullcontext():
        model = ARMD(cfg).to(dtype)  # random weights everywhere; all but PE are overwritten below
    pe = model.prefix.pe.weight
    with torch.no_grad():
        if cfg.pe_init == "neighbours":
            model.prefix.reset_parameters()  # the table again, at ``dtype``'s precision (ARMD(cfg) built it in float32)
        elif generator is not None:
            pe.copy_(torch.randn(pe.shape, generator=generator, dtype=torch.float64).to(pe.dtype) * cfg.pe_init_std)
        params = dict(model.named_parameters())
        missing = sorted(set(params) - set(weights) - set(NEW_PARAMETERS))
        if missing:  # a bug in a mapping, not a user error
            raise RuntimeError(f"conversion left ARMD parameters {missing} unset")
        for name, tensor in weights.items():
            if name not in params:
                continue  # e.g. a tied head, or biases of a bias-free model
            if params[name].shape != tensor.shape:
                raise ValueError(f"{name}: the source has shape {tuple(tensor.shape)}, the ARMD "
                                 f"{tuple(params[name].shape)}")
            params[name].copy_(tensor)
    return model


def armd_from_gpt(gpt: GPT, n_two_stream: int | None = None, d_pe: int | None = None, pe_init: str = "neighbours",
                  pe_init_std: float = 0.02, attn_backend: str = "auto",
                  generator: torch.Generator | None = None) -> ARMD:
    """An ARMD whose content stream is ``gpt`` (the project's AR baseline, ``ar.GPT``), in gpt's dtype.

    ``n_two_stream``: L2s (default n_layer // 2). The new PE table: ``pe_init`` ("neighbours" or "random",
    module docstring), ``d_pe`` (default max_len + 1 for "neighbours", 64 for "random"), ``pe_init_std``
    and ``generator`` (default: the global RNG) for "random". Width, depth, heads, vocabulary, max_len
    and the architecture (RoPE or GPT-2's) are the GPT's.
    """
    if not isinstance(gpt, get_kind("ar").model_class):
        raise ValueError(f"gpt must be the project's GPT baseline (minarmd.ar.GPT, e.g. load_model of a "
                         f"--model ar checkpoint), got {type(gpt).__name__}; for Hugging Face GPT-2 use "
                         f"armd_from_hf_gpt2")
    src, V = gpt.cfg, gpt.cfg.vocab_size
    cfg = ARMDConfig(**asdict(src), n_two_stream=n_two_stream, d_pe=d_pe, pe_init=pe_init,
                     pe_init_std=pe_init_std, attn_backend=attn_backend)
    sd = gpt.state_dict()
    weights = {"wte.weight": sd["net.wte.weight"][:V], "bos": sd["net.wte.weight"][V],  # row V: GPT's BOS
               "ln_f.weight": sd["net.ln_f.weight"], "lm_head.weight": sd["net.lm_head.weight"][:V]}
    for name in ("net.ln_f.bias", "net.wpe.weight"):
        if name in sd:
            weights[name[4:]] = sd[name]
    for i in range(src.n_layer):
        for part in _BLOCK_PARTS:
            if f"net.blocks.{i}.{part}" in sd:
                weights[f"{_layer(i, cfg.n_two_stream)}.{part}"] = sd[f"net.blocks.{i}.{part}"]
    model = _build(cfg, weights, generator, gpt.net.wte.weight.dtype)
    return model.to(gpt.net.wte.weight.device)


# ----------------------------------------------------------------------- Hugging Face GPT-2

_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # three spellings of 0.5x(1 + tanh(...))


def _hf_model(model_or_name):
    """A transformers GPT-2 module (``GPT2LMHeadModel`` or ``GPT2Model``), loading a name if given one."""
    try:
        import transformers
    except ImportError as err:
        raise ValueError("model_or_name: converting Hugging Face GPT-2 needs the transformers package: "
                         "pip install transformers (or pip install -e '.[hf]')") from err
    if isinstance(model_or_name, str):
        try:
            return transformers.GPT2LMHeadModel.from_pretrained(model_or_name)
        except OSError as err:
            raise ValueError(f"model_or_name={model_or_name!r} could not be loaded from the Hugging Face hub or a "
                             f"local folder (offline? it needs a download once): pass a GPT2LMHeadModel you "
                             f"loaded, or a folder saved with save_pretrained") from err
    if not isinstance(model_or_name, torch.nn.Module) or getattr(getattr(model_or_name, "config", None),
                                                                 "model_type", None) != "gpt2":
        kind = getattr(getattr(model_or_name, "config", None), "model_type", None)
        raise ValueError(f"model_or_name must be a GPT-2 model (transformers GPT2LMHeadModel or GPT2Model) or "
                         f"its hub name, got {type(model_or_name).__name__}"
                         f"{f' (model_type {kind!r})' if kind else ''}; other architectures are not converted")
    return model_or_name


def armd_from_hf_gpt2(model_or_name="gpt2", n_two_stream: int | None = None, d_pe: int | None = None,
                      pe_init: str = "neighbours", pe_init_std: float = 0.02, max_len: int | None = None,
                      attn_backend: str = "auto", generator: torch.Generator | None = None) -> ARMD:
    """An ARMD whose content stream is Hugging Face GPT-2: ``"gpt2"`` (124M, downloads once), a local
    folder, or a ``GPT2LMHeadModel`` / ``GPT2Model`` object (e.g. one built from a ``GPT2Config``).

    GPT-2's end-of-text token becomes BOS (at position 0), so ``max_len`` is at most n_positions - 1
    (1023 for GPT-2; a smaller value keeps the first max_len + 1 position rows). The PE options are
    ``armd_from_gpt``'s. float32, on the CPU.
    """
    hf = _hf_model(model_or_name)
    c = hf.config
    body = getattr(hf, "transformer", hf)  # GPT2LMHeadModel wraps a GPT2Model
    if c.activation_function not in _TANH_GELUS + ("gelu",):
        raise ValueError(f"model_or_name: activation_function={c.activation_function!r} is not converted "
                         f"(tanh-GELU or exact GELU only)")
    if abs(c.layer_norm_epsilon - 1e-5) > 1e-12 or not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx:
        raise ValueError("model_or_name: this GPT-2 variant (layer_norm_epsilon != 1e-5 or other attention "
                         "scaling) differs from the architecture minarmd implements")
    n_inner = c.n_inner or 4 * c.n_embd
    if n_inner % c.n_embd:
        raise ValueError(f"model_or_name: n_inner={n_inner} must be a multiple of n_embd={c.n_embd}")
    limit = c.n_positions - 1  # position 0 is BOS
    max_len = limit if max_len is None else max_len
    if not isinstance(max_len, int) or not 1 <= max_len <= limit:
        raise ValueError(f"max_len must be an integer in 1..{limit} (n_positions - 1: BOS takes position 0), "
                         f"got {max_len!r}")
    eos = c.eos_token_id if c.eos_token_id is not None else c.vocab_size - 1
    cfg = ARMDConfig(vocab_size=c.vocab_size, max_len=max_len, n_layer=c.n_layer, n_head=c.n_head,
                     n_embd=c.n_embd, mlp_ratio=n_inner // c.n_embd, bias=True, tie_weights=True,
                     position_embedding="learned",
                     activation="gelu" if c.activation_function == "gelu" else "gelu_tanh",
                     n_two_stream=n_two_stream, d_pe=d_pe, pe_init=pe_init, pe_init_std=pe_init_std,
                     attn_backend=attn_backend)
    sd = {k: v.detach().float().cpu() for k, v in body.state_dict().items()}
    weights = {"wte.weight": sd["wte.weight"], "bos": sd["wte.weight"][eos],  # end-of-text is BOS
               "wpe.weight": sd["wpe.weight"][:max_len + 1],
               "ln_f.weight": sd["ln_f.weight"], "ln_f.bias": sd["ln_f.bias"], "lm_head.weight": sd["wte.weight"]}
    for i in range(c.n_layer):
        for part in _BLOCK_PARTS:
            tensor = sd[f"h.{i}.{part}"]
            if part.endswith("weight") and tensor.ndim == 2:
                tensor = tensor.t()  # Conv1D stores (in, out); nn.Linear (out, in)
            weights[f"{_layer(i, cfg.n_two_stream)}.{part}"] = tensor.contiguous()
    return _build(cfg, weights, generator)


# ----------------------------------------------------------------------- the training loop's hooks

def init_pretrained(cfg, model: ARMD) -> None:
    """Load ``cfg.init_from_ar`` (a GPT-baseline checkpoint) or ``cfg.init_from_hf`` into a fresh run's
    ``model``, whose own PE table (initialised as ``cfg.pe_init`` says, from the run's seed) is kept.
    A mismatch names the settings that differ."""
    from .checkpoint import load_checkpoint, load_model

    if cfg.init_from_ar:
        if not os.path.isfile(cfg.init_from_ar):
            raise ValueError(f"init_from_ar={cfg.init_from_ar}: no such file; train the GPT first "
                             f"(python -m minarmd.train --model ar --out DIR) and pass DIR/ckpt.pt")
        saved = load_checkpoint(cfg.init_from_ar).get("config") or {}
        if saved.get("model") not in get_kind(cfg.model).adapts_from:
            raise ValueError(f"init_from_ar={cfg.init_from_ar} holds a {saved.get('model')!r} model; it needs a "
                             f"checkpoint of the GPT baseline (trained with --model ar)")
        gpt = load_model(cfg.init_from_ar)[0]
        flag = f"init_from_ar={cfg.init_from_ar}"
    else:
        gpt, flag = cfg.init_from_hf, f"init_from_hf={cfg.init_from_hf!r}"
    options = dict(n_two_stream=model.cfg.n_two_stream, d_pe=model.cfg.d_pe, pe_init=model.cfg.pe_init)
    try:
        source = (armd_from_gpt(gpt, **options) if cfg.init_from_ar else
                  armd_from_hf_gpt2(gpt, max_len=min(cfg.seq_len, 1023), **options))
    except ValueError as err:
        raise ValueError(f"{flag}: {str(err).replace('d_pe=', '--d-pe ')}") from err
    names = ("vocab_size", "max_len", "n_layer", "n_head", "n_embd", "mlp_ratio", "bias", "tie_weights",
             "position_embedding", "activation")
    diffs = [f"{k} {getattr(source.cfg, k)!r} (this run: {getattr(model.cfg, k)!r})" for k in names
             if getattr(source.cfg, k) != getattr(model.cfg, k)]
    if diffs:
        raise ValueError(f"{flag} does not fit this run: " + ", ".join(diffs) + "; pass the source's shape "
                         "(--n-layer, --n-head, --n-embd, --seq-len, --arch, data/tokenizer for the vocabulary)")
    state = {k: v for k, v in source.state_dict().items() if k not in NEW_PARAMETERS}  # the run's own PE
    model.load_state_dict(state, strict=False)


def freeze_pretrained(model: ARMD) -> None:
    """Drop the gradients of every parameter a conversion copied: only ``NEW_PARAMETERS`` take this
    optimiser step (AdamW skips parameters without a gradient: no update, no decay, no moment change)."""
    for name, p in model.named_parameters():
        if name not in NEW_PARAMETERS:
            p.grad = None
