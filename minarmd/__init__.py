"""minarmd: Auto-Regressive Masked Diffusion (ARMD, arXiv 2601.16971), small and readable.

The public API is deliberately small (notebooks and later code depend on it):

    from minarmd import ARMD, ARMDConfig
    model = ARMD(ARMDConfig(vocab_size=256, max_len=64, n_layer=4, n_head=4, n_embd=128))
    logits = model(tokens, pos, blocks)           # (B, M, V), all in generation order

    from minarmd import make_config, load_model, load_data
    from minarmd.train import train
    from minarmd.evaluate import evaluate
    train(make_config("tiny", model="armd", max_steps=600, out="runs/armd"))   # or model="ar" / "mdm"
    model, cfg, tok = load_model("runs/armd/ckpt.pt")
    evaluate(model, load_data("shakespeare").eval_windows(128, 64))   # {protocol: Estimate}

    from minarmd import generate, generate_text, make_template
    out = generate(model, n=128, batch=4, streams=2)   # KV-cached SBP: 2 + 64 - 1 network calls
    out.tokens, out.calls                               # (4, 128) ids in original order, 65
    generate_text(model, tok, prompt="ROMEO:", n=3, streams=2).texts   # strings in, strings out

One concept per module: ``masking`` (forward process), ``permutation`` (orders and blocks),
``masks`` (M^c, M^sc), ``attention`` (backends), ``layers`` (transformer block),
``two_stream`` (Eq. 6-7), ``model`` (ARMD), ``transformer`` (plain baseline), ``loss``;
``ar`` and ``mdm`` (the baselines), ``tokenizer``, ``corpus``, ``synthetic``, ``openwebtext``,
``data``, ``zeroshot``, ``checkpoint``, ``train``, ``evaluate``, ``cache`` (KV caches),
``template`` (templates and generation plans), ``sampler`` (any-order, SBP, infilling; AR and MDM
samplers), ``textgen`` (text in, text out; ``python -m minarmd.sample``), ``quality`` (generative perplexity),
``compare``. For the course (``notebooks/``, ``exercises/``): ``viz`` (pure plotting functions),
``widgets`` (the mask explorer, the sampler stepper) and ``check`` (``check("02.1", fn)``, the
exercises' checkers); import them as modules, ``from minarmd import viz, widgets``.
"""
from .ar import GPT, ar_loss
from .config import ARMDConfig, TransformerConfig
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
from .transformer import Transformer

__version__ = "0.1.0"

# Imported on first use: these modules also run as scripts (python -m minarmd.train, ...), and
# importing them here would load them twice under "-m".
# (``train`` and ``evaluate`` are module names too: import those functions from their modules.)
_LAZY = {"load_data": "data", "estimate": "evaluate", "TrainConfig": "train", "make_config": "train",
         "load_model": "train"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'minarmd' has no attribute {name!r}")

__all__ = [
    "ARMD", "ARMDConfig", "Transformer", "TransformerConfig",
    "armd_loss", "t_pass_loss",
    "alpha_schedule", "sample_mask_times",
    "order_from_mask_times", "left_to_right", "random_order", "shuffle_k", "strided_order",
    "ProgressiveSchedule",
    "block_causal_mask", "strictly_causal_mask", "to_original_order",
    "GPT", "ar_loss", "MDM", "mdm_loss",
    "generate", "generate_steps", "generate_text", "make_template", "FREE", "PAD", "sample_ar", "sample_mdm",
    "load_data", "get_tokenizer", "TrainConfig", "make_config", "load_model", "estimate",
]
