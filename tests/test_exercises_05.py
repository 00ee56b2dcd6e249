"""Exercises 05 (training): deliberately wrong answers fail, with a message that says what is wrong.

(That every checker passes its solution and reports the stub as not attempted: tests/test_notebooks.py.)
"""
import math

import pytest
import torch

from course import failed, load_solution
from minarmd.check import PASSED, run
from minarmd.optim import learning_rate

solution = load_solution("05_training")


def test_library_functions_pass_their_own_checks():
    from minarmd.permutation import ProgressiveSchedule

    assert run("05.1", learning_rate).status == PASSED
    assert run("05.2", lambda s, a, p, r: ProgressiveSchedule(a, p, r).k(s)).status == PASSED


# ---- 05.1 learning rate ---------------------------------------------------------------------------

def test_05_1_wrong_answers():
    def no_warmup(cfg, step):  # cosine from step 0
        progress = min(1.0, step / max(1, cfg.max_steps))
        return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))

    def warmup_from_zero(cfg, step):  # lr * step / W: the first step gets learning rate 0
        return cfg.lr * step / cfg.warmup if step < cfg.warmup else solution.lr_at(cfg, step)

    def decays_to_zero(cfg, step):  # forgets min_lr_frac
        if step < cfg.warmup or cfg.lr_decay == "constant":
            return solution.lr_at(cfg, step)
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))

    def ignores_constant(cfg, step):  # always cosine
        return solution.lr_at(cfg, step) if cfg.lr_decay == "cosine" else learning_rate(
            type(cfg)(**{**vars(cfg), "lr_decay": "cosine"}), step)

    def no_clamp(cfg, step):  # past max_steps the cosine rises again
        if step < cfg.warmup or cfg.lr_decay == "constant":
            return solution.lr_at(cfg, step)
        progress = (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup)
        return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))

    def as_tensor_pair(cfg, step):  # not one number
        return torch.tensor([solution.lr_at(cfg, step)] * 2)

    def as_string(cfg, step):
        return f"{solution.lr_at(cfg, step):.6f}"

    failed("05.1", no_warmup, "learning rate: got", "step=0")
    failed("05.1", warmup_from_zero, "learning rate: got 0", "step=0", "hint: a learning rate of")
    failed("05.1", decays_to_zero, "learning rate: got", "min_lr_frac", "hint: the cosine must end")
    failed("05.1", ignores_constant, "lr_decay='constant'", "hint: lr_decay='constant'")
    failed("05.1", no_clamp, "step=607", "hint: past max_steps the learning")
    failed("05.1", as_tensor_pair, "tensor of shape (2,), expected one number")
    failed("05.1", as_string, "returned a str, expected a number")


# ---- 05.2 k(step) ---------------------------------------------------------------------------------

def test_05_2_wrong_answers():
    def off_by_one_at_i_ar(step, i_ar, i_perm, rho):  # shuffles from step i_ar + 1 only
        return 0 if step <= i_ar else solution.k_at(step, i_ar, i_perm, rho)

    def ramp_from_one(step, i_ar, i_perm, rho):  # the old reading: k = 1 + floor(frac (rho - 1)), from 1
        if step < i_ar:
            return 0
        if step >= i_perm or rho <= 1:
            return rho
        return 1 + int((step - i_ar) / (i_perm - i_ar) * (rho - 1))

    def ramp_from_zero(step, i_ar, i_perm, rho):  # k = floor(frac * rho): starts at 0, not 2
        if step < i_ar:
            return 0
        if step >= i_perm or rho <= 2:
            return rho
        return int((step - i_ar) / (i_perm - i_ar) * rho)

    def rounds(step, i_ar, i_perm, rho):  # round() instead of floor
        if step < i_ar:
            return 0
        if step >= i_perm or rho <= 2:
            return rho
        return 2 + round((step - i_ar) / (i_perm - i_ar) * (rho - 2))

    def as_float(step, i_ar, i_perm, rho):
        return float(solution.k_at(step, i_ar, i_perm, rho))

    def as_tensor(step, i_ar, i_perm, rho):
        return torch.tensor(solution.k_at(step, i_ar, i_perm, rho))

    def divides_by_zero(step, i_ar, i_perm, rho):  # i_ar == i_perm is a valid schedule (no ramp)
        if step < i_ar:
            return 0
        frac = min(1.0, (step - i_ar) / (i_perm - i_ar))
        return rho if frac >= 1 else 2 + int(frac * (rho - 2))

    failed("05.2", off_by_one_at_i_ar, "k: got 0, expected 2", "step=200", "hint: shuffling starts AT step i_ar, "
           "with k = 2")
    failed("05.2", ramp_from_one, "k: got 1, expected 2", "step=200", "hint: k = 1 never happens", "starts at 2")
    failed("05.2", ramp_from_zero, "k: got 0, expected 2", "hint: shuffling starts AT step")
    failed("05.2", rounds, "k: got 3, expected 2", "hint: k is off by one inside the ramp: it starts at 2")
    failed("05.2", as_float, "returned a float", "expected an int")
    failed("05.2", as_tensor, "returned a Tensor", "expected an int")
    failed("05.2", divides_by_zero, "raised ZeroDivisionError", "i_ar=5, i_perm=5")


# ---- 05.3 random windows --------------------------------------------------------------------------

def test_05_3_wrong_answers():
    def misses_last_offset(stream, batch_size, n, generator):  # randint's high is exclusive
        offsets = torch.randint(0, len(stream) - n, (batch_size,), generator=generator)
        return stream[offsets[:, None] + torch.arange(n)].long()

    def keeps_dtype(stream, batch_size, n, generator):
        return solution.random_windows(stream, batch_size, n, generator).to(stream.dtype)

    def transposed(stream, batch_size, n, generator):
        return solution.random_windows(stream, batch_size, n, generator).T

    def own_seed(stream, batch_size, n, generator):  # ignores the generator
        return solution.random_windows(stream, batch_size, n, torch.Generator().manual_seed(12345))

    def as_list(stream, batch_size, n, generator):
        return solution.random_windows(stream, batch_size, n, generator).tolist()

    def consecutive(stream, batch_size, n, generator):  # eval-style windows, not random ones
        return stream[:batch_size * n].long().reshape(batch_size, n)

    failed("05.3", misses_last_offset, "windows: ", "entries differ", "stream [0, 1, 2, 3")
    failed("05.3", keeps_dtype, "windows dtype: got torch.int32, expected torch.int64", "hint: convert with .long()")
    failed("05.3", transposed, "windows shape: got (5, 3), expected (3, 5)", "hint: the last two dimensions")
    failed("05.3", own_seed, "entries differ")
    failed("05.3", as_list, "returned a list, expected a torch.Tensor")
    failed("05.3", consecutive, "windows")


# ---- 05.4 estimate and standard error -------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:std:UserWarning")  # torch.std of one value (one_draw_nan)
def test_05_4_wrong_answers():
    def population_sd(means):  # divides by K instead of K - 1
        k, mean = len(means), sum(means) / len(means)
        return mean, math.sqrt(sum((m - mean) ** 2 for m in means) / k / k)

    def sd_not_se(means):  # the spread of one draw, not of the mean of K draws
        k, mean = len(means), sum(means) / len(means)
        return mean, math.sqrt(sum((m - mean) ** 2 for m in means) / (k - 1)) if k > 1 else 0.0

    def one_draw_crashes(means):  # K = 1 divides by zero
        k, mean = len(means), sum(means) / len(means)
        return mean, math.sqrt(sum((m - mean) ** 2 for m in means) / (k - 1) / k)

    def one_draw_nan(means):  # torch.std of a single value is nan
        t = torch.tensor(means, dtype=torch.float64)
        return t.mean().item(), (t.std() / math.sqrt(len(means))).item()

    def only_mean(means):
        return sum(means) / len(means)

    failed("05.4", population_sd, "standard error: got", "K=2", "hint: the variance was divided")
    failed("05.4", sd_not_se, "standard error: got", "K=2", "hint: that is the standard")
    failed("05.4", one_draw_crashes, "raised ZeroDivisionError", "K=1")
    failed("05.4", one_draw_nan, "standard error: got nan", "K=1", "hint: NaN comes from 0")
    failed("05.4", only_mean, "returned a float, expected a pair")
    # torch's unbiased std gives the same numbers as the library wherever K > 1
    def torch_se(means):
        t = torch.tensor(means, dtype=torch.float64)
        return t.mean().item(), (t.std() / math.sqrt(len(t))).item() if len(t) > 1 else 0.0
    assert run("05.4", torch_se).status == PASSED


# ---- 05.5 bits per character and perplexity --------------------------------------------------------

def test_05_5_wrong_answers():
    def log10(nats, cpt):  # wrong logarithm
        return nats / math.log(10) / cpt, math.exp(nats)

    def multiplies(nats, cpt):  # per token -> per character the wrong way round
        return nats / math.log(2) * cpt, math.exp(nats)

    def ppl_base2(nats, cpt):  # 2 ** nats is not the perplexity
        return nats / math.log(2) / cpt, 2 ** nats

    def ppl_per_char(nats, cpt):  # the library's perplexity is per token
        return nats / math.log(2) / cpt, math.exp(nats / cpt)

    def swapped(nats, cpt):
        return math.exp(nats), nats / math.log(2) / cpt

    failed("05.5", log10, "bits per character: got", "nats=2.0300", "hint: bits use log base")
    failed("05.5", multiplies, "bits per character", "chars_per_token=4.2", "hint: per token -> per")
    failed("05.5", ppl_base2, "perplexity: got", "hint: nats are natural-log units")
    failed("05.5", ppl_per_char, "perplexity: got", "chars_per_token=4.2", "hint: the perplexity is per")
    failed("05.5", swapped, "bits per character: got", "hint: that is the perplexity")
