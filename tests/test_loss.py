"""The single-pass loss equals the T-pass sum, and (in expectation) MDLM's discrete-time loss."""
import itertools
import random

import pytest
import torch

from conftest import make_model
from minarmd import attention, masking, permutation
from minarmd.loss import armd_loss, t_pass_loss

CONFIGS = [  # several shapes of network: depth, split, heads, width, PE width, biases, tying
    dict(n_layer=4, n_two_stream=2, n_head=2, n_embd=16, d_pe=8),
    dict(n_layer=3, n_two_stream=3, n_head=4, n_embd=32, d_pe=4, bias=True),
    dict(n_layer=2, n_two_stream=0, n_head=1, n_embd=8, d_pe=16, tie_weights=False),
    dict(n_layer=5, n_two_stream=1, n_head=2, n_embd=12, d_pe=8, attn_backend="dense"),
]


def trajectory(T, batch, n, generator, schedule="linear"):
    tau = masking.sample_mask_times(masking.alpha_schedule(schedule, T), (batch, n), generator)
    return permutation.order_from_mask_times(tau, T)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("T", [1, 2, 8, "N"])
def test_single_pass_equals_t_pass_float64(config, T):
    n = 16
    T = n if T == "N" else T
    g = torch.Generator().manual_seed(T)
    model = make_model(seed=T, **config)
    x = torch.randint(0, 13, (3, n), generator=g)
    order, blocks = trajectory(T, 3, n, g, schedule=random.Random(T).choice(masking.SCHEDULES))
    with torch.no_grad():
        single = armd_loss(model, x, order, blocks, per_token=True)
        reference = t_pass_loss(model, x, order, blocks, per_token=True)
        mean = armd_loss(model, x, order, blocks)
    assert single.dtype == torch.float64 and single.shape == (3, n)
    assert (single - reference).abs().max() <= 1e-10
    assert abs(float(single.mean() - mean)) <= 1e-12


def test_single_pass_equals_t_pass_float32_relative():
    g = torch.Generator().manual_seed(0)
    model = make_model(dtype=torch.float32, vocab_size=50, max_len=64, n_embd=32, n_head=4)
    x = torch.randint(0, 50, (2, 64), generator=g)
    for T in (4, 64):
        order, blocks = trajectory(T, 2, 64, g)
        with torch.no_grad():
            single, reference = armd_loss(model, x, order, blocks), t_pass_loss(model, x, order, blocks)
        assert abs(float(single - reference)) <= 1e-5 * abs(float(reference))


def test_the_identity_fails_for_a_network_that_sees_later_blocks(monkeypatch):
    # With every attention mask opened, logits of early blocks see later tokens in the single pass
    # but not in the T-pass reference: the test's comparison must then fail.
    model = make_model(attn_backend="dense")
    monkeypatch.setattr(attention.AttentionMask, "from_blocks", classmethod(lambda cls, *a, **k: cls.full()))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 13, (1, 12), generator=g)
    order, blocks = trajectory(4, 1, 12, g)
    with torch.no_grad():
        assert abs(float(armd_loss(model, x, order, blocks) - t_pass_loss(model, x, order, blocks))) > 1e-6


def conditional_nll(model, x, visible_slots_tau, target, t, T):
    """-log p(x_target | x_t) from ARMD: the visible tokens in their trajectory blocks, the target after."""
    pos = [p for p, _ in visible_slots_tau] + [target]
    blocks = [T - tau + 1 for _, tau in visible_slots_tau] + [T - t + 1]
    pos_t = torch.tensor([pos])
    tokens = x[:, pos_t[0]]
    logits = model(tokens, pos_t, torch.tensor([blocks]))
    return -torch.log_softmax(logits[0, -1], -1)[x[0, target]]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_expected_armd_loss_equals_mdlm_discrete_loss_by_enumeration(schedule):
    """E_tau[sum_n -log p(x_n | earlier blocks)] = sum_t w_t E[sum_{j masked in x_t} -log p(z_j | x_t)],
    with w_t = (alpha_{t-1} - alpha_t)/(1 - alpha_t): exact, by enumerating all T^N trajectories.

    The identity needs the per-token conditional to depend on the earlier blocks only. ARMD's causal
    stack (M^c on the query stream) also lets the tokens of one block see each other's *positions*,
    so there p(x_n | ...) also depends on which other positions are generated in the same step, and
    the two sides differ (by ~1e-2 here). Both are normalised models; only the two-stream part has
    exactly MDLM's conditional, so this test uses n_two_stream = n_layer."""
    n, T = 3, 3
    model = make_model(vocab_size=5, max_len=n, n_layer=2, n_two_stream=2)
    alpha = masking.alpha_schedule(schedule, T)
    p_tau = masking.masking_probs(alpha)
    x = torch.tensor([[1, 4, 2]])
    lhs = rhs = rhs_unweighted = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for taus in itertools.product(range(1, T + 1), repeat=n):
            prob = torch.prod(p_tau[torch.tensor(taus) - 1])
            order, blocks = permutation.order_from_mask_times(torch.tensor([taus]), T)
            lhs = lhs + prob * armd_loss(model, x, order, blocks, per_token=True).sum()
            for t in range(1, T + 1):  # MDLM: score every token masked in x_t
                visible = sorted(((p, tau) for p, tau in enumerate(taus) if tau > t), key=lambda v: (-v[1], v[0]))
                step = sum(conditional_nll(model, x, visible, j, t, T) for j in range(n) if taus[j] <= t)
                rhs = rhs + prob * masking.mdlm_weight(alpha, t) * step
                rhs_unweighted = rhs_unweighted + prob * step
    assert abs(float(lhs - rhs)) <= 1e-12
    assert abs(float(lhs - rhs_unweighted)) > 1e-2  # the weights matter: w_t = 1 would be wrong


def test_loss_inputs_are_checked():
    model = make_model()
    x = torch.randint(0, 13, (2, 6))
    order, blocks = permutation.left_to_right(2, 6)
    with pytest.raises(ValueError, match="order must be a permutation"):
        armd_loss(model, x, torch.zeros_like(order), blocks)
    with pytest.raises(ValueError, match="order"):
        armd_loss(model, x, order[:, :5], blocks)
    with pytest.raises(ValueError, match="x must"):
        armd_loss(model, x.float(), order, blocks)
    with pytest.raises(ValueError, match="blocks"):
        t_pass_loss(model, x, order, blocks.flip(1))  # decreasing
