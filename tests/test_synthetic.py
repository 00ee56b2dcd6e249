"""Synthetic sources: the exact stationary distribution, entropy rate and window NLL; copy sequences."""
import math

import numpy as np
import pytest
import torch

from minarmd.synthetic import CopyTask, MarkovSource


@pytest.fixture(scope="module")
def source():
    return MarkovSource()


@pytest.fixture(scope="module")
def small():
    return MarkovSource(vocab_size=5, order=2, concentration=0.5, seed=3)


def dense_context_matrix(src: MarkovSource) -> np.ndarray:
    """Brute force: the (V^k, V^k) transition matrix of the context chain, built by explicit loops."""
    V, k = src.vocab_size, src.order
    C = V ** k
    Q = np.zeros((C, C))
    P = src.transition.numpy()
    for c in range(C):
        for x in range(V):
            Q[c, (c * V + x) % C] += P[c, x]
    return Q


def test_defaults_have_a_nontrivial_entropy_rate(source):
    h, log_v = source.entropy_rate(), math.log(source.vocab_size)
    assert 0.3 * log_v < h < 0.8 * log_v
    assert source.transition.shape == (32 ** 2, 32) and source.transition.dtype == torch.float64
    assert torch.allclose(source.transition.sum(1), torch.ones(32 ** 2, dtype=torch.float64), atol=1e-12)
    assert MarkovSource() == source and torch.equal(MarkovSource().transition, source.transition)
    assert not torch.equal(MarkovSource(seed=1).transition, source.transition)


def test_stationary_distribution_is_stationary(source, small):
    for src in (source, small):
        pi = src.stationary()
        assert pi.dtype == torch.float64 and (pi > 0).all()
        assert abs(float(pi.sum()) - 1.0) < 1e-12
        # one step of the context chain by scatter-adding every (context, next symbol) pair
        V, C = src.vocab_size, src.vocab_size ** src.order
        ctx = torch.arange(C).repeat_interleave(V)  # (C*V,)
        nxt = torch.arange(V).repeat(C)  # (C*V,)
        stepped = torch.zeros(C, dtype=torch.float64).index_add_(
            0, (ctx * V + nxt) % C, pi[ctx] * src.transition.flatten())
        assert (stepped - pi).abs().max() < 1e-12


def test_stationary_matches_dense_eigenvector(small):
    Q = dense_context_matrix(small)
    pi = small.stationary().numpy()
    assert np.abs(pi @ Q - pi).max() < 1e-12
    vals, vecs = np.linalg.eig(Q.T)
    top = np.real(vecs[:, np.argmin(np.abs(vals - 1))])
    assert np.abs(top / top.sum() - pi).max() < 1e-10


def test_entropy_rate_matches_brute_force(small, source):
    for src in (small, source):
        P, pi = src.transition.numpy(), src.stationary().numpy()
        brute = sum(pi[c] * -sum(p * math.log(p) for p in P[c]) for c in range(len(pi)))
        assert abs(src.entropy_rate() - brute) < 1e-12
        # chain rule: h = H(x_1..x_{k+1}) - H(x_1..x_k) under the stationary joint
        joint = pi[:, None] * P
        chain = -(joint * np.log(joint)).sum() + (pi * np.log(pi)).sum()
        assert abs(src.entropy_rate() - chain) < 1e-12


def test_log_prob_by_hand(small):
    x = torch.tensor([4, 0, 2, 2, 1])
    V, P, pi = 5, small.transition, small.stationary()
    by_hand = (math.log(pi[4 * V + 0]) + math.log(P[4 * V + 0, 2]) + math.log(P[0 * V + 2, 2])
               + math.log(P[2 * V + 2, 1]))
    assert abs(float(small.log_prob(x)) - by_hand) < 1e-12
    assert torch.allclose(small.log_prob(x.expand(3, 5)), small.log_prob(x).expand(3))


@pytest.mark.parametrize("n", [2, 3, 16, 64])
def test_window_nll_matches_monte_carlo(source, n):
    windows = source.sample(n, torch.Generator().manual_seed(n), batch=4096)  # (W, n) independent windows
    nll = -source.log_prob(windows) / n  # (W,)
    mean, stderr = float(nll.mean()), float(nll.std()) / math.sqrt(len(nll))
    # The mean of 4096 i.i.d. windows is close to Gaussian: a correct formula misses by more than
    # 4 standard errors with probability ~6e-5, while a wrong head term (e.g. k*h instead of H(pi))
    # is off by (H(pi) - k h)/n = 0.2 nats at n = 16, hundreds of standard errors. The generator is
    # fixed, so the test is deterministic anyway.
    assert abs(mean - source.window_nll(n)) < 4 * stderr, (mean, stderr, source.window_nll(n))


def test_window_nll_limits(source):
    h = source.entropy_rate()
    assert abs(source.window_nll(2) - float(-(source.stationary() * source.stationary().log()).sum()) / 2) < 1e-12
    assert source.window_nll(2) > source.window_nll(16) > source.window_nll(1024) > h
    assert abs(source.window_nll(10 ** 7) - h) < 1e-5


def test_stream_is_stationary_and_matches_batch_sampler(source):
    a = source.sample(300, torch.Generator().manual_seed(5))
    b = source.sample(300, torch.Generator().manual_seed(5), batch=1)
    assert a.shape == (300,) and a.dtype == torch.long and torch.equal(a, b[0])
    assert torch.equal(source.sample(1, torch.Generator().manual_seed(5)), a[:1])
    n = 200_000
    x = source.sample(n, torch.Generator().manual_seed(0))
    assert x.min() >= 0 and x.max() < 32
    freq = torch.bincount(x[:-1] * 32 + x[1:], minlength=32 ** 2).double() / (n - 1)
    pi = source.stationary()
    # Context frequencies of a Markov stream have a larger variance than i.i.d. counts; 8 i.i.d.
    # standard errors per context is still a tight check (the sampler shares its tables with log_prob).
    assert ((freq - pi).abs() < 8 * torch.sqrt(pi / n)).all()


def test_copy_task():
    task = CopyTask()
    x = task.sample(7, 10, torch.Generator().manual_seed(0))
    assert x.shape == (7, 10) and x.dtype == torch.long
    assert torch.equal(x[:, :5], x[:, 5:]) and x.min() >= 0 and x.max() < 16
    assert torch.equal(x, task.sample(7, 10, torch.Generator().manual_seed(0)))
    assert not torch.equal(x, task.sample(7, 10, torch.Generator().manual_seed(1)))
    assert task.window_nll(10) == pytest.approx(math.log(16) / 2, abs=1e-15)


def test_bad_arguments(source):
    for kwargs in (dict(vocab_size=1), dict(order=0), dict(concentration=0.0), dict(concentration=-1),
                   dict(vocab_size=1024, order=3), dict(order=1.5)):
        with pytest.raises(ValueError):
            MarkovSource(**kwargs)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        source.window_nll(1)
    with pytest.raises(ValueError, match="n_tokens"):
        source.sample(0)
    with pytest.raises(ValueError, match="batch"):
        source.sample(5, batch=0)
    with pytest.raises(ValueError, match="int64"):
        source.log_prob(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="symbols in"):
        source.log_prob(torch.tensor([1, 32]))
    with pytest.raises(ValueError, match="even"):
        CopyTask().sample(2, 9)
    with pytest.raises(ValueError, match="even"):
        CopyTask().window_nll(7)
    with pytest.raises(ValueError, match="vocab_size"):
        CopyTask(vocab_size=1)
    with pytest.raises(ValueError, match="batch"):
        CopyTask().sample(0, 4)
