"""minarmd: Auto-Regressive Masked Diffusion (ARMD, arXiv 2601.16971), small and readable.

The public API (notebooks and your code depend on it; ``tests/test_public_api.py`` holds the course
to it): the names below, and the ``__all__`` of every module named in ``PUBLIC_MODULES``.

    from minarmd import ARMD, ARMDConfig
    model = ARMD(ARMDConfig(vocab_size=256, max_len=64, n_layer=4, n_head=4, n_embd=128))
    logits = model(tokens, pos, blocks)           # (B, M, V), all in generation order

    from minarmd import TrainConfig, train_model, load_model, load_data, estimate
    train_model(TrainConfig.from_preset("tiny", model="armd", max_steps=600, out="runs/armd"))  # or "ar"/"mdm"
    model, cfg, tok = load_model("runs/armd/ckpt.pt")
    estimate(model, load_data("shakespeare").eval_windows(128, 64), "l2r")   # an Estimate, with its protocol

    from minarmd import generate, generate_text, make_template
    out = generate(model, n=128, batch=4, streams=2)   # KV-cached SBP: 2 + 64 - 1 network calls
    out.tokens, out.calls                               # (4, 128) ids in original order, 65
    generate_text(model, tok, prompt="ROMEO:", n=3, streams=2).texts   # strings in, strings out

One concept per module. The method: ``masking`` (forward process), ``permutation`` (orders and
blocks), ``masks`` (M^c, M^sc: the one mask rule), ``attention`` (backends), ``layers`` (transformer
block), ``two_stream`` (Eq. 6-7), ``model`` (ARMD), ``transformer`` (plain baseline), ``loss``; ``ar``
and ``mdm`` (the baselines); ``adapt`` (a pretrained GPT, ours or GPT-2, turned into an ARMD:
``ARMD.from_gpt``, ``ARMD.from_hf_gpt2``). Runs: ``kinds`` (the model kinds: everything that differs between
ARMD, AR and MDM), ``train_config`` (TrainConfig, presets), ``training`` (the loop), ``optim``,
``metrics``, ``checkpoint`` (files, ``load_model``), ``distributed``, ``data``, ``tokenizer``,
``corpus``, ``synthetic``, ``openwebtext``, ``zeroshot``, ``evaluate``, ``throughput`` (FLOPs, MFU).
Generation: ``cache`` (KV caches), ``template``, ``sampler``, ``textgen``, ``quality``. Command lines:
``python -m minarmd`` (the main job), ``minarmd.train``, ``minarmd.sample``, ``minarmd.compare``,
``minarmd.demo``. For the course (``notebooks/``, ``exercises/``): ``viz`` (pictures and text
tables), ``widgets`` (the mask explorer, the steppers) and ``check`` (``check("02.1", fn)``).
"""
from .ar import GPT, ar_loss
from .checkpoint import load_model
from .config import ARMDConfig, TransformerConfig
from .data import load_data
from .deprecated import moved
from .evaluate import estimate
from .kinds import ModelKind, fill, get_kind, kind_of, register_kind
from .loss import armd_loss, t_pass_loss
from .masking import alpha_schedule, sample_mask_times
from .masks import block_causal_mask, strictly_causal_mask, to_original_order
from .mdm import MDM, mdm_loss
from .model import ARMD
from .permutation import (ProgressiveSchedule, left_to_right, order_from_mask_times, random_order,
                          shuffle_k, strided_order)
from .sampler import FREE, PAD, generate, generate_steps, make_template, sample_ar, sample_mdm
from .textgen import generate_text
from .tokenizer import get_tokenizer
from .train_config import TrainConfig
from .training import finetune_sbp, train_model
from .transformer import Transformer

__version__ = "0.1.0"

# modules whose ``__all__`` is public too (import them as modules: ``from minarmd import viz``)
PUBLIC_MODULES = ("masking", "permutation", "masks", "attention", "layers", "two_stream", "model", "transformer",
                  "loss", "ar", "mdm", "adapt", "kinds", "train_config", "training", "optim", "metrics", "checkpoint",
                  "distributed", "data", "tokenizer", "corpus", "synthetic", "openwebtext", "zeroshot",
                  "evaluate", "throughput", "cache", "template", "sampler", "textgen", "quality", "viz",
                  "widgets", "check", "config", "validation")

__getattr__ = moved(__name__, {"make_config": "minarmd.train_config:TrainConfig.from_preset"})

__all__ = [
    "ARMD", "ARMDConfig", "Transformer", "TransformerConfig",
    "armd_loss", "t_pass_loss",
    "alpha_schedule", "sample_mask_times",
    "order_from_mask_times", "left_to_right", "random_order", "shuffle_k", "strided_order",
    "ProgressiveSchedule",
    "block_causal_mask", "strictly_causal_mask", "to_original_order",
    "GPT", "ar_loss", "MDM", "mdm_loss",
    "generate", "generate_steps", "generate_text", "make_template", "FREE", "PAD", "sample_ar", "sample_mdm",
    "load_data", "get_tokenizer", "TrainConfig", "train_model", "finetune_sbp", "load_model", "estimate",
    "ModelKind", "register_kind", "get_kind", "kind_of", "fill",
]
