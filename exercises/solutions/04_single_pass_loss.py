"""Solutions to exercises/04_single_pass_loss.ipynb (try the exercises first!).

Each function has the name of its stub in the notebook; ``check("04.k", fn)`` compares it with
the library (``minarmd/loss.py``, ``minarmd/masking.py``).
"""
import math

import torch

from minarmd.loss import armd_loss, token_nll
from minarmd.masking import sample_mask_times
from minarmd.permutation import order_from_mask_times


# Exercise 04.1: -log p(target) for every slot, from raw logits
def my_token_nll(logits, targets):
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # a softmax in half precision is too coarse
    logp = torch.log_softmax(logits, dim=-1)  # (B, M, V), stable: subtracts the max first
    return -logp.gather(-1, targets[..., None])[..., 0]  # (B, M)


# Exercise 04.2: one model call per non-empty block, fed only the blocks up to it
def my_t_pass_loss(model, x, order, blocks):
    tokens = x.gather(1, order)  # (B, N) in generation order
    rows = []
    for row in range(x.shape[0]):
        _, counts = torch.unique_consecutive(blocks[row], return_counts=True)
        pieces, end = [], 0
        for count in counts.tolist():
            start, end = end, end + count  # block b occupies slots start..end-1
            logits = model(tokens[row:row + 1, :end], order[row:row + 1, :end], blocks[row:row + 1, :end])
            pieces.append(token_nll(logits[:, start:end], tokens[row:row + 1, start:end])[0])
        rows.append(torch.cat(pieces))  # (N,)
    return torch.stack(rows)  # (B, N)


# Exercise 04.3: L_t = sum of the NLLs of the tokens masked at step t, all from one pass
def my_step_losses(model, x, tau, T):
    order, blocks = order_from_mask_times(tau, T)
    nll = armd_loss(model, x, order, blocks, per_token=True)  # (B, N) in generation order
    tau_sorted = T - blocks + 1  # (B, N): the masking time of each slot
    losses = torch.zeros(x.shape[0], T, dtype=nll.dtype)
    return losses.scatter_add_(1, tau_sorted - 1, nll)  # (B, T), column t-1 = L_t


# Exercise 04.4: w_t = (alpha_{t-1} - alpha_t) / (1 - alpha_t) for t = 1..T
def my_mdlm_weights(alpha):
    alpha = alpha.to(torch.float64)
    return (alpha[:-1] - alpha[1:]) / (1.0 - alpha[1:])  # (T,)


# Exercise 04.5: mean and standard error of the total ARMD NLL over K sampled trajectories
def my_mc_estimate(model, x, alpha, K, generator):
    T = alpha.numel() - 1
    tau = sample_mask_times(alpha, (K, x.shape[1]), generator)  # (K, N), one draw for all
    order, blocks = order_from_mask_times(tau, T)
    totals = armd_loss(model, x.expand(K, -1), order, blocks, per_token=True).sum(1)  # (K,)
    return float(totals.mean()), float(totals.std() / math.sqrt(K))

