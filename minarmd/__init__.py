"""minarmd: Auto-Regressive Masked Diffusion (ARMD, arXiv 2601.16971), small and readable.

The public API is deliberately small (notebooks and later code depend on it):

    from minarmd import ARMD, ARMDConfig
    model = ARMD(ARMDConfig(vocab_size=256, max_len=64, n_layer=4, n_head=4, n_embd=128))
    logits = model(tokens, pos, blocks)           # (B, M, V), all in generation order

One concept per module: ``masking`` (forward process), ``permutation`` (orders and blocks),
``masks`` (M^c, M^sc), ``attention`` (backends), ``layers`` (transformer block),
``two_stream`` (Eq. 6-7), ``model`` (ARMD), ``transformer`` (plain baseline), ``loss``.
"""
from .config import ARMDConfig, TransformerConfig
from .loss import armd_loss, t_pass_loss
from .masking import alpha_schedule, sample_mask_times
from .masks import block_causal_mask, strictly_causal_mask, to_original_order
from .model import ARMD
from .permutation import (ProgressiveSchedule, left_to_right, order_from_mask_times, random_order,
                          shuffle_k, strided_order)
from .transformer import Transformer

__version__ = "0.1.0"

__all__ = [
    "ARMD", "ARMDConfig", "Transformer", "TransformerConfig",
    "armd_loss", "t_pass_loss",
    "alpha_schedule", "sample_mask_times",
    "order_from_mask_times", "left_to_right", "random_order", "shuffle_k", "strided_order",
    "ProgressiveSchedule",
    "block_causal_mask", "strictly_causal_mask", "to_original_order",
]
