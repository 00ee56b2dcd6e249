"""Solutions to exercises/05_training.ipynb (try the exercises first!).

Each function is checked against the library with ``check("05.k", function)``:
05.1 ``minarmd.optim.learning_rate``, 05.2 ``minarmd.permutation.ProgressiveSchedule.k``,
05.3 ``minarmd.data.TokenData.batch``, 05.4 ``minarmd.evaluate.estimate`` (mean and standard error),
05.5 ``minarmd.evaluate.Estimate.bits_per_char`` and ``.ppl``.
"""
import math

import torch


# Exercise 05.1: the learning rate at a (0-based) step: linear warm-up, then cosine or constant
def lr_at(cfg, step):
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup  # reaches the peak lr at step warmup - 1
    if cfg.lr_decay == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))  # 0 -> 1, then stays 1
    cosine = 0.5 * (1 + math.cos(math.pi * progress))  # 1 -> 0
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * cosine)


# Exercise 05.2: the progressive permutation schedule's number of shuffled tokens k(step)
def k_at(step, i_ar, i_perm, rho):
    if step < i_ar:
        return 0  # pure left to right first
    if step >= i_perm or rho <= 2:
        return rho  # the ramp is over (or there is nothing to ramp: rho is 0 or 2)
    frac = (step - i_ar) / (i_perm - i_ar)  # in [0, 1)
    return 2 + int(frac * (rho - 2))  # linear ramp 2 -> rho (the smallest shuffle is a swap), rounded down


# Exercise 05.3: B training windows of n tokens at uniform random offsets of a 1-D token stream
def random_windows(stream, batch_size, n, generator):
    offsets = torch.randint(0, len(stream) - n + 1, (batch_size,), generator=generator)  # (B,) every start
    index = offsets[:, None] + torch.arange(n)  # (B, n) positions in the stream
    return stream[index].long()  # (B, n) int64


# Exercise 05.4: a Monte Carlo estimate from K per-draw means, with its standard error
def estimate_from_draws(means):
    k = len(means)
    mean = sum(means) / k
    if k == 1:
        return mean, 0.0  # one draw: no spread to measure
    variance = sum((m - mean) ** 2 for m in means) / (k - 1)  # unbiased sample variance of one draw
    return mean, math.sqrt(variance / k)  # SE of the mean of k draws


# Exercise 05.5: nats per token -> (bits per character, perplexity per token)
def bits_and_perplexity(nats, chars_per_token):
    bits_per_char = nats / math.log(2) / chars_per_token  # nats -> bits, per token -> per character
    return bits_per_char, math.exp(nats)
