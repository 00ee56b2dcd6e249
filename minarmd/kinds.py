r"""The model kinds: ARMD and its two baselines, and everything that differs between them, in one file.

A *kind* is the name a run's ``TrainConfig.model`` holds and the recipe that goes with it. Every
other module asks this registry instead of switching on the name itself:

==================  ========================  =====================  ========================
                    ``"armd"``                ``"ar"``               ``"mdm"``
==================  ========================  =====================  ========================
network             ``model.ARMD``            ``ar.GPT``             ``mdm.MDM``
its config          ``ARMDConfig``            ``TransformerConfig``  ``TransformerConfig``
noise per batch     order + blocks (Eq. 2)    none                   t and the masked set
training loss       ``loss.armd_loss``        ``ar.ar_loss``         ``mdm.mdm_loss``
protocols           l2r, random, mask         l2r                    nelbo
sampler             ``sampler.generate``      ``sampler.sample_ar``  ``sampler.sample_mdm``
FLOPs               ``throughput.armd_*``     ``throughput.transformer_*`` (V + 1 rows)
==================  ========================  =====================  ========================

The single-pass loss of ARMD for an order σ with blocks B,

.. math::  \mathcal{L}(x) = -\sum_{n} \log p_\theta\big(x_n \mid x_i : B(i) < B(n)\big),

needs an order and blocks drawn per micro-batch (``draw_noise``); which orders is ``TrainConfig.order``
(``ORDERS``). The baselines need nothing (AR) or a time and a masked set (MDM's NELBO).

**Adding a kind** is one module of your own (its network, loss and sampler) and one
``register_kind(ModelKind(...))`` call: then ``python -m minarmd.train --model NAME`` trains it,
``load_model`` reloads it, ``evaluate`` scores it under its protocols, ``fill`` and ``generate_text``
sample it and ``throughput`` counts its FLOPs. ``tests/test_kinds.py`` does this for a toy kind.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from . import throughput
from .ar import GPT, ar_loss
from .config import ARCHS, ARMDConfig, TransformerConfig
from .loss import armd_loss
from .masking import alpha_schedule, sample_mask_times
from .mdm import MDM, mdm_loss, sample_t
from .model import ARMD
from .permutation import left_to_right, order_from_mask_times, random_order, strided_order
from .sampler import generate, sample_ar, sample_mdm

__all__ = ["ModelKind", "Protocol", "KINDS", "ORDERS", "DEFAULT_PROTOCOLS", "PROTOCOL_NAMES", "register_kind",
           "unregister_kind", "get_kind", "kind_of", "build_model", "draw_noise", "training_loss", "fill"]

ORDERS = ("progressive", "sbp", "mask", "random", "l2r")  # ARMD's training orders (TrainConfig.order)


@dataclass(frozen=True)
class Protocol:
    """One way to score a model on held-out windows (``evaluate.estimate``), in nats per token."""

    name: str  # key in PROTOCOL_NAMES, e.g. "l2r"
    title: str  # what the number is, e.g. "exact NLL, left to right"
    loss: Callable  # (model, x (B, N), gen, T, schedule) -> (B,) each window's mean loss in one draw
    exact: bool = False  # deterministic: one draw is the answer (no standard error)
    uses_T: bool = False  # depends on the masking steps T and the schedule (named in the estimate)


@dataclass(frozen=True)
class ModelKind:
    """Everything that differs between model kinds; every field's callable takes the run's TrainConfig."""

    name: str  # TrainConfig.model, e.g. "armd"
    label: str  # how messages name it, e.g. "AR baseline (GPT)"
    possessive: str  # "ARMD's", "the MDM baseline's": who owns a sampler setting, in messages
    model_class: type  # the network (an nn.Module with .cfg and .num_params())
    config_class: type  # the network's config class (throughput tells kinds apart by it)
    network_config: Callable  # (train_cfg, vocab_size) -> the network's config
    draw_noise: Callable  # (train_cfg, B, N, step, gen) -> dict of the loss's random inputs (CPU)
    loss: Callable  # (model, x (B, N), noise dict) -> scalar training loss
    protocols: tuple  # Protocols that apply; the first is the default
    sampler: Callable  # the kind's own sampler, e.g. sampler.generate; called with template=...
    param_count: Callable  # (network config) -> parameters (= model.num_params())
    forward_flops: Callable  # (network config, N) -> {"linear", "attention", "prefix", "head"} FLOPs
    settings: dict = field(default_factory=dict)  # sampler settings only this kind has -> their "unused" value
    ignores: tuple = ()  # sampler arguments other kinds take that this one drops (MDM: "cache")
    how_it_samples: str = ""  # one clause for messages: "the AR baseline generates left to right, ..."
    describe: Callable = lambda settings: ""  # (its settings' values) -> "S = 2, order l2r", for summaries
    orders: tuple = ()  # TrainConfig.order values it trains with (ARMD's ORDERS); () = order unused
    adapts_from: tuple = ()  # kinds whose trained networks convert into this one (ARMD: "ar", adapt.py)
    training_protocol: Callable = None  # (train_cfg) -> the protocol a run validates with (None: the first)
    step_info: Callable = lambda cfg, step: {}  # (train_cfg, step) -> extra fields of a step's metrics

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if not self.protocols or not all(isinstance(p, Protocol) for p in self.protocols):
            raise ValueError(f"protocols of kind {self.name!r} must be a non-empty tuple of Protocol")
        for field_name in ("network_config", "draw_noise", "loss", "sampler", "param_count", "forward_flops"):
            if not callable(getattr(self, field_name)):
                raise ValueError(f"{field_name} of kind {self.name!r} must be callable, "
                                 f"got {getattr(self, field_name)!r}")

    def build(self, cfg, vocab_size: int):
        """The untrained network a TrainConfig describes (weights from the global RNG)."""
        return self.model_class(self.network_config(cfg, vocab_size))

    def protocol(self, name: str) -> Protocol:
        for p in self.protocols:
            if p.name == name:
                return p
        raise ValueError(f"protocol {name!r} does not apply to a {self.name} model; "
                         f"choose from {tuple(p.name for p in self.protocols)}")

    def validation_protocol(self, cfg) -> str:
        return self.training_protocol(cfg) if self.training_protocol else self.protocols[0].name

    def foreign(self, values: dict) -> tuple[list[str], "ModelKind | None"]:
        """The sampler settings in ``values`` that belong to another kind and are set away from their
        "unused" value, and the kind that owns the first of them (None when there are none)."""
        names = [name for name, value in values.items()
                 if name in _ALL_SETTINGS and name not in self.settings and value != _ALL_SETTINGS[name]]
        return names, next((k for k in KINDS.values() if names and names[0] in k.settings), None)

    def fill(self, model, template: torch.Tensor, **kwargs):
        """``sampler``(model, template=template, **kwargs) after refusing other kinds' settings."""
        foreign, owner = self.foreign(kwargs)
        if foreign:
            names = " and ".join(foreign)
            raise ValueError(f"{names} {'is' if len(foreign) == 1 else 'are'} {owner.possessive} setting"
                             f"{'s' if len(foreign) > 1 else ''}; {self.how_it_samples}")
        kwargs = {k: v for k, v in kwargs.items()
                  if (k not in _ALL_SETTINGS or k in self.settings) and k not in self.ignores}
        return self.sampler(model, template=template, **kwargs)


KINDS: dict[str, ModelKind] = {}  # name -> ModelKind, in registration order
DEFAULT_PROTOCOLS: dict[str, tuple[str, ...]] = {}  # kind name -> its protocol names (first: default)
PROTOCOL_NAMES: dict[str, str] = {}  # protocol name -> title
_ALL_SETTINGS: dict = {}  # every kind-specific sampler setting -> the value that means "not used"


def register_kind(kind: ModelKind, replace: bool = False) -> ModelKind:
    """Make ``kind`` known to training, loading, evaluation, sampling and FLOP counting."""
    if not isinstance(kind, ModelKind):
        raise ValueError(f"kind must be a ModelKind, got {type(kind).__name__}")
    if kind.name in KINDS and not replace:
        raise ValueError(f"a model kind named {kind.name!r} is registered already; pass replace=True")
    for p in kind.protocols:
        if PROTOCOL_NAMES.get(p.name, p.title) != p.title:
            raise ValueError(f"protocol {p.name!r} means {PROTOCOL_NAMES[p.name]!r} already; name yours otherwise")
    KINDS[kind.name] = kind
    DEFAULT_PROTOCOLS[kind.name] = tuple(p.name for p in kind.protocols)
    PROTOCOL_NAMES.update({p.name: p.title for p in kind.protocols})
    _ALL_SETTINGS.update(kind.settings)
    return kind


def unregister_kind(name: str) -> None:
    """Forget a kind registered with ``register_kind`` (its protocol names stay known)."""
    KINDS.pop(name, None), DEFAULT_PROTOCOLS.pop(name, None)


def get_kind(name: str) -> ModelKind:
    if name not in KINDS:
        raise ValueError(f"model must be one of {tuple(KINDS)}, got {name!r}")
    return KINDS[name]


def kind_of(model) -> ModelKind:
    """The registered kind whose network class ``model`` is (a ``torch.compile`` wrapper unwrapped)."""
    model = getattr(model, "_orig_mod", model)
    for cls in type(model).__mro__:  # the most specific registered class wins (a subclass may be a kind)
        for kind in KINDS.values():
            if kind.model_class is cls:
                return kind
    names = [k.model_class.__name__ for k in KINDS.values()]
    listed = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
    raise ValueError(f"model must be an {listed} (the registered kinds' networks), got {type(model).__name__}")


# ------------------------------------------------------------------------ what every run asks for

def build_model(cfg, vocab_size: int):
    """The network ``cfg.model`` names, with ``cfg``'s shape (the same width/depth for every kind)."""
    return get_kind(cfg.model).build(cfg, vocab_size)


def draw_noise(cfg, B: int, N: int, step: int, gen: torch.Generator) -> dict:
    """The random inputs of one micro-batch's loss, drawn from ``gen`` on the CPU. Drawing them apart
    from the loss lets every DDP rank keep the generator in step while computing only its own batches."""
    return get_kind(cfg.model).draw_noise(cfg, B, N, step, gen)


def training_loss(model, cfg, x: torch.Tensor, step: int, gen: torch.Generator, noise: dict | None = None):
    """The objective for one micro-batch x (B, N); its random inputs come from ``noise``
    (``draw_noise``), or are drawn from ``gen`` (CPU) when it is None."""
    kind = get_kind(cfg.model)
    if noise is None:
        noise = kind.draw_noise(cfg, *x.shape, step, gen)
    return kind.loss(model, x, noise)


def fill(model, template: torch.Tensor, **kwargs):
    """Fill a template with whichever sampler fits the model: ARMD ``generate``, ``sample_ar`` or ``sample_mdm``.

    Keyword arguments go to that sampler; ``streams`` and ``order`` are ARMD's, ``steps`` MDM's,
    and asking another kind for them is an error that says why.
    """
    return kind_of(model).fill(model, template, **kwargs)


# ------------------------------------------------------------------------------------------ ARMD

def _shape(cfg, vocab_size: int) -> dict:
    """The fields every kind's network shares, from a TrainConfig."""
    return dict(vocab_size=vocab_size, max_len=cfg.seq_len, n_layer=cfg.n_layer, n_head=cfg.n_head,
                n_embd=cfg.n_embd, dropout=cfg.dropout, **ARCHS[getattr(cfg, "arch", "rope")])


def _armd_config(cfg, vocab_size: int) -> ARMDConfig:
    return ARMDConfig(**_shape(cfg, vocab_size), n_two_stream=cfg.n_two_stream, d_pe=cfg.d_pe,
                      pe_init=cfg.pe_init, pe_init_std=cfg.pe_init_std, attn_backend=cfg.attn_backend)


def _armd_noise(cfg, B: int, N: int, step: int, gen: torch.Generator) -> dict:
    """Orders and blocks (B, N) each, from the order family ``cfg.order``, and whether every block is
    one token (so the compiled model need not read the ids to pick the fused causal path)."""
    singleton = True  # progressive (k shuffled slots, still one token each), random, l2r
    if cfg.order == "progressive":
        order, blocks = cfg.schedule.sample(step, B, N, gen)
    elif cfg.order == "sbp":
        S = cfg.sbp_streams[int(torch.randint(len(cfg.sbp_streams), (1,), generator=gen))]
        order, blocks = strided_order(N, S, B)
        singleton = S == 1
    elif cfg.order == "mask":
        tau = sample_mask_times(alpha_schedule(cfg.mask_schedule, cfg.mask_T), (B, N), gen)
        order, blocks = order_from_mask_times(tau, cfg.mask_T)
        singleton = False if N > cfg.mask_T else None  # N tokens in at most T blocks: some block holds two
    elif cfg.order == "random":
        order, blocks = random_order(B, N, gen)
    else:
        order, blocks = left_to_right(B, N)
    return {"order": order, "blocks": blocks, "singleton": singleton}


def _armd_loss(model, x, noise) -> torch.Tensor:
    return armd_loss(model, x, noise["order"].to(x.device), noise["blocks"].to(x.device),
                     singleton=noise.get("singleton"))


def _armd_protocol(order_fn) -> Callable:
    def loss(model, x, gen, T, schedule):
        order, blocks = order_fn(x.shape[0], x.shape[1], gen, T, schedule)
        return armd_loss(model, x, order.to(x.device), blocks.to(x.device), per_token=True).mean(dim=1)  # (B,)
    return loss


def _mask_order(b, n, gen, T, schedule):
    return order_from_mask_times(sample_mask_times(alpha_schedule(schedule, T), (b, n), gen), T)


L2R_TITLE = "exact NLL, left to right"

register_kind(ModelKind(
    name="armd", label="ARMD", possessive="ARMD's", model_class=ARMD, config_class=ARMDConfig,
    network_config=_armd_config, draw_noise=_armd_noise, loss=_armd_loss,
    protocols=(Protocol("l2r", L2R_TITLE, _armd_protocol(lambda b, n, gen, T, s: left_to_right(b, n)), exact=True),
               Protocol("random", "NELBO, uniformly random orders",
                        _armd_protocol(lambda b, n, gen, T, s: random_order(b, n, gen))),
               Protocol("mask", "NELBO, T-step masking trajectories", _armd_protocol(_mask_order), uses_T=True)),
    sampler=generate, param_count=throughput.armd_param_count, forward_flops=throughput.armd_forward_flops,
    settings={"streams": 1, "order": "l2r"}, how_it_samples="ARMD takes one call per block (use streams)",
    describe=lambda s: f"S = {s['streams']}, order {s['order']}", orders=ORDERS, adapts_from=("ar",),
    # a run trained on random or mask orders validates on them; otherwise the exact left-to-right NLL
    training_protocol=lambda cfg: cfg.order if cfg.order in ("mask", "random") else "l2r",
    step_info=lambda cfg, step: {"k": cfg.schedule.k(step)} if cfg.order == "progressive" else {}))

# ------------------------------------------------------------------------------ the two baselines

def _plain_config(cfg, vocab_size: int) -> TransformerConfig:
    return TransformerConfig(**_shape(cfg, vocab_size))


def _mdm_noise(cfg, B: int, N: int, step: int, gen: torch.Generator) -> dict:
    t = sample_t(B, gen)  # (B,) antithetic times
    return {"t": t, "masked": torch.rand(B, N, generator=gen, dtype=torch.float64) < t[:, None]}  # (B, N)


register_kind(ModelKind(
    name="ar", label="AR baseline (GPT)", possessive="the AR baseline's", model_class=GPT,
    config_class=TransformerConfig, network_config=_plain_config, draw_noise=lambda cfg, B, N, step, gen: {},
    loss=lambda model, x, noise: ar_loss(model, x),
    protocols=(Protocol("l2r", L2R_TITLE, lambda model, x, gen, T, s: ar_loss(model, x, per_token=True).mean(dim=1),
                        exact=True),),
    sampler=sample_ar, param_count=throughput.transformer_param_count,
    forward_flops=throughput.transformer_forward_flops,
    how_it_samples="the AR baseline generates left to right, one token per call", describe=lambda s: "left to right"))

register_kind(ModelKind(
    name="mdm", label="MDM baseline", possessive="the MDM baseline's", model_class=MDM,
    config_class=TransformerConfig, network_config=_plain_config, draw_noise=_mdm_noise,
    loss=lambda model, x, noise: mdm_loss(model, x, t=noise["t"], masked=noise["masked"]),
    protocols=(Protocol("nelbo", "MDM NELBO, antithetic t",
                        lambda model, x, gen, T, s: mdm_loss(model, x, gen, per_token=True).mean(dim=1)),),
    sampler=sample_mdm, param_count=throughput.transformer_param_count,
    forward_flops=throughput.transformer_forward_flops, settings={"steps": None},
    ignores=("cache",),  # a bidirectional pass over every position per step: nothing to cache
    how_it_samples="the MDM baseline reveals tokens over `steps` denoising steps",
    describe=lambda s: f"{s['steps'] or 'one per new token'} steps"))
