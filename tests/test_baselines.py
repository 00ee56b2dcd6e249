"""The AR (GPT) and MDM (MDLM-style) baselines: causality, normalisation, and an unbiased NELBO."""
import itertools
import math

import numpy as np
import pytest
import torch

from minarmd.ar import GPT, ar_loss
from minarmd.config import TransformerConfig
from minarmd.mdm import MDM, T_MIN, mdm_loss, sample_t
from minarmd.loss import token_nll

V, N = 3, 4


def make(cls, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = TransformerConfig(vocab_size=V, max_len=8, n_layer=2, n_head=2, n_embd=16, **kw)
    return cls(cfg).double().eval()


def all_sequences(n=N):
    return torch.tensor(list(itertools.product(range(V), repeat=n)), dtype=torch.long)  # (V^n, n)


def test_gpt_is_causal():
    model = make(GPT)
    x = torch.tensor([[0, 1, 2, 1, 0, 2]])
    base = model(x)
    for j in range(x.shape[1]):
        y = x.clone()
        y[0, j] = (y[0, j] + 1) % V
        moved = (model(y) - base).abs().amax(-1)[0]  # (N,)
        assert moved[:j + 1].max() <= 1e-12  # row n predicts x_n from x_<n: rows <= j cannot move
        assert j == x.shape[1] - 1 or moved[j + 1:].min() > 1e-9


def test_gpt_probabilities_sum_to_one():
    model = make(GPT)
    with torch.no_grad():
        nll = ar_loss(model, all_sequences(), per_token=True).sum(1)  # (V^N,)
    assert abs(float(torch.exp(-nll).sum()) - 1.0) <= 1e-12


def test_gpt_next_logits_match_forward():
    model = make(GPT)
    x = torch.tensor([[2, 0, 1, 1]])
    full = model(x)
    for k in range(N):
        assert torch.allclose(model.next_logits(x[:, :k]), full[:, k], atol=1e-12, rtol=0)


def test_gpt_never_predicts_bos():
    model = make(GPT)
    assert model(all_sequences()[:5]).shape == (5, N, V)


def test_sample_t_antithetic_is_evenly_spread():
    t = sample_t(8, torch.Generator().manual_seed(0))
    gaps = t.sort().values.diff()
    assert torch.allclose(gaps, torch.full_like(gaps, (1 - T_MIN) / 8), atol=1e-12)
    assert t.min() >= T_MIN and t.max() < 1


def test_mdm_carry_over_and_mask_never_predicted():
    model = make(MDM)
    x_t = torch.tensor([[0, model.mask_id, 2, model.mask_id]])
    logp = model.log_probs(x_t)  # (1, N, V)
    assert logp.shape == (1, N, V)
    assert logp[0, 0, 0] == 0 and logp[0, 2, 2] == 0  # unmasked tokens are copied
    assert torch.allclose(logp[0, 1].exp().sum(), torch.tensor(1.0, dtype=torch.float64))


@torch.no_grad()
def exact_nelbo(model, x, weight_power=-1):
    """sum_M c_|M| sum_{j in M} -log p(x_j | x with M masked), c_k = int_{t_min}^1 t^(k+p)(1-t)^(N-k) dt.

    With weight 1/t (p = -1) this is E_t,mask[mdm_loss * N] exactly; the integral of a polynomial is
    computed exactly by Gauss-Legendre quadrature with enough nodes.
    """
    nodes, w = np.polynomial.legendre.leggauss(20)
    t = T_MIN + (1 - T_MIN) * (nodes + 1) / 2  # map [-1, 1] -> [t_min, 1]
    w = w * (1 - T_MIN) / 2
    total = 0.0
    for mask in itertools.product([False, True], repeat=N):
        k = sum(mask)
        if k == 0:
            continue
        c_k = float(np.sum(w * t ** (k + weight_power) * (1 - t) ** (N - k)))
        m = torch.tensor([mask])
        x_t = torch.where(m, torch.full_like(x, model.mask_id), x)
        nll = token_nll(model(x_t), x)[m]
        total += c_k * float(nll.sum())
    return total / N


@pytest.mark.parametrize("weight_power, should_match", [(-1, True), (0, False)])
def test_mdm_loss_is_unbiased_for_the_nelbo(weight_power, should_match):
    """Monte Carlo mean of mdm_loss vs the exact NELBO by enumerating all 2^N masks.

    The estimator's per-sample terms have a finite variance (t >= t_min), so with 40k draws the mean
    lies within 4 standard errors of its expectation with probability > 0.9999. The wrong-weight row
    (weight 1 instead of 1/t) shows the comparison can fail: its expectation differs by > 100 SE.
    """
    model = make(MDM)
    x = torch.tensor([[2, 0, 1, 1]])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        batch = x.expand(4000, N)
        draws = []
        for _ in range(10):
            t = sample_t(4000, gen)
            terms = mdm_loss(model, batch, gen, t=t, per_token=True)  # (4000, N)
            if weight_power == 0:
                terms = terms * t[:, None]  # the wrong estimator: drop the 1/t weight
            draws.append(terms.mean(1))
    draws = torch.cat(draws)
    mean, se = float(draws.mean()), float(draws.std() / math.sqrt(draws.numel()))
    exact = exact_nelbo(model, x)
    assert (abs(mean - exact) <= 4 * se) == should_match, (mean, exact, se)


def test_baselines_reject_bad_tokens():
    for cls in (GPT, MDM):
        model = make(cls)
        with pytest.raises(ValueError, match="ids in 0"):
            model(torch.tensor([[0, 9]]))
        with pytest.raises(ValueError, match="int64"):
            model(torch.zeros(1, 3))
        with pytest.raises(ValueError, match="max_len"):
            model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="TransformerConfig"):
        GPT({"vocab_size": 3})


def test_given_embeddings_give_the_same_logits_bit_for_bit():
    x = torch.tensor([[0, 1, 2, 1, 0, 2], [2, 2, 1, 0, 1, 1]])
    gpt, mdm = make(GPT), make(MDM)
    assert torch.equal(gpt(x, embeddings=gpt.net.wte(x)), gpt(x))  # row n = the vector of x_n
    x_t = torch.where(x == 1, torch.full_like(x, mdm.mask_id), x)
    assert torch.equal(mdm(x_t, embeddings=mdm.net.wte(x_t)), mdm(x_t))
    net = gpt.net  # the plain Transformer underneath
    assert torch.equal(net(x, embeddings=net.wte(x)), net(x))


def test_gpt_as_a_function_of_its_embeddings_is_causal_and_never_reads_the_last():
    gpt = make(GPT)
    x = torch.zeros(1, 5, dtype=torch.long)
    jac = torch.autograd.functional.jacobian(lambda e: gpt(x, embeddings=e[None])[0],
                                             torch.randn(5, 16, dtype=torch.float64))  # (N, V, N, D)
    depends = jac.pow(2).sum(dim=(1, 3)) > 0  # (N, N): logits of x_n depend on x_<n only
    assert torch.equal(depends, torch.ones(5, 5, dtype=torch.bool).tril(-1))


def test_baselines_reject_bad_embeddings():
    x = torch.zeros(2, 4, dtype=torch.long)
    for model in (make(GPT), make(MDM)):
        e = model.net.wte(x)  # (2, 4, 16)
        for bad in (e[:, :3], e[0], e[..., :8]):
            with pytest.raises(ValueError, match=r"embeddings must be a \(B, M, D\) = \(2, 4, 16\)"):
                model(x, embeddings=bad)
        with pytest.raises(ValueError, match="embeddings must have the model's dtype"):
            model(x, embeddings=e.float())
