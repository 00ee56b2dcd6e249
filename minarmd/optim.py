r"""The optimiser side of a run: the learning-rate schedule, AdamW's parameter groups and the EMA.

**Schedule.** Linear warm-up over ``warmup`` steps, then constant (MDLM) or cosine decay to
``min_lr_frac`` of the peak at ``max_steps``:

.. math::  \eta_s = \eta\,\frac{s+1}{s_w}\ (s < s_w), \qquad
           \eta_s = \eta\Big(f + (1-f)\,\tfrac12\big(1 + \cos \pi \tfrac{s - s_w}{S - s_w}\big)\Big).

**AdamW** decays the weight matrices only (not norms, biases, ARMD's BOS row or its PE table).
**EMA** keeps :math:`\bar\theta \leftarrow \beta\bar\theta + (1-\beta)\theta` in float32 after every step.
"""
from __future__ import annotations

import math

import torch

__all__ = ["learning_rate", "make_optimizer", "EMA"]


def learning_rate(cfg, step: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) under ``cfg``'s schedule."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.lr_decay == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model, cfg) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (``"prefix"``: ARMD's PE table is an embedding)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "prefix" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "prefix" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    fused = next(model.parameters()).is_cuda  # one fused kernel for all parameters on the GPU
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


class EMA:
    """Exponential moving average of every floating-point entry of a state dict, kept in float32."""

    def __init__(self, model, decay: float):
        self.decay = decay
        self.state = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model) -> None:
        for k, v in model.state_dict().items():
            if k in self.state:
                self.state[k].lerp_(v.detach().float(), 1.0 - self.decay)

    def state_dict_for(self, model) -> dict:
        """A full state dict for ``model`` with the averaged weights (other entries as they are)."""
        return {k: self.state[k].to(v.dtype) if k in self.state else v for k, v in model.state_dict().items()}
