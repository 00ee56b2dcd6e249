"""The absorbing forward process: schedules, the masking-time distribution, x_t, the MDLM weight."""
import math

import pytest
import torch

from minarmd import masking


@pytest.mark.parametrize("kind", masking.SCHEDULES)
def test_schedules_start_at_one_end_at_zero_and_decrease(kind):
    for T in (1, 2, 8, 100):
        alpha = masking.alpha_schedule(kind, T)
        assert alpha.shape == (T + 1,) and alpha.dtype == torch.float64
        assert alpha[0] == 1.0 and alpha[-1] == 0.0
        assert (alpha[1:] <= alpha[:-1]).all()
        assert torch.isclose(masking.masking_probs(alpha).sum(), torch.tensor(1.0, dtype=torch.float64))


def test_schedule_values_against_formulas():
    T = 4
    t = torch.arange(T + 1, dtype=torch.float64) / T
    assert torch.allclose(masking.alpha_schedule("linear", T), 1 - t)
    cos = torch.cos(math.pi / 2 * t)
    cos[-1] = 0.0
    assert torch.allclose(masking.alpha_schedule("cosine", T), cos, atol=1e-15)
    loglin = 1 - (1 - masking.LOGLINEAR_EPS) * t
    loglin[-1] = 0.0
    assert torch.allclose(masking.alpha_schedule("loglinear", T), loglin)


@pytest.mark.parametrize("kind", masking.SCHEDULES)
def test_empirical_tau_distribution_matches_alpha(kind):
    T, n = 8, 200_000
    alpha = masking.alpha_schedule(kind, T)
    tau = masking.sample_mask_times(alpha, (n // 100, 100), torch.Generator().manual_seed(1))
    assert tau.dtype == torch.long and tau.min() >= 1 and tau.max() <= T
    freq = torch.bincount(tau.flatten(), minlength=T + 1)[1:].double() / n
    p = masking.masking_probs(alpha)
    # Each bin frequency has standard deviation sqrt(p(1-p)/n) <= 0.0011; 5 sigma per bin makes a
    # false alarm over 24 bins less likely than 1e-5 (and the generator is fixed anyway).
    assert ((freq - p).abs() <= 5 * torch.sqrt(p * (1 - p) / n) + 1e-12).all(), (freq, p)
    # ... and the visible fraction after t steps is alpha_t
    for t in range(T + 1):
        assert abs(masking.visible(tau, t).double().mean() - alpha[t]) <= 5 * 0.5 / math.sqrt(n) + 1e-12


def test_sampler_is_reproducible_with_a_generator():
    alpha = masking.alpha_schedule("cosine", 5)
    a = masking.sample_mask_times(alpha, (4, 9), torch.Generator().manual_seed(3))
    b = masking.sample_mask_times(alpha, (4, 9), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_noisy_sequence_shows_exactly_tokens_with_tau_above_t():
    z = torch.tensor([[5, 6, 7, 8]])
    tau = torch.tensor([[1, 3, 2, 3]])
    assert masking.noisy_sequence(z, tau, 0, mask_id=0).tolist() == [[5, 6, 7, 8]]
    assert masking.noisy_sequence(z, tau, 1, mask_id=0).tolist() == [[0, 6, 7, 8]]
    assert masking.noisy_sequence(z, tau, 2, mask_id=0).tolist() == [[0, 6, 0, 8]]
    assert masking.noisy_sequence(z, tau, 3, mask_id=0).tolist() == [[0, 0, 0, 0]]


def test_mdlm_weight_is_conditional_probability_of_tau():
    alpha = masking.alpha_schedule("cosine", 6)
    p = masking.masking_probs(alpha)
    for t in range(1, 7):
        assert masking.mdlm_weight(alpha, t) == pytest.approx(float(p[t - 1] / p[:t].sum()), abs=1e-14)
    assert masking.mdlm_weight(alpha, 6) == pytest.approx(float(p[5]))  # alpha_T = 0


def test_bad_inputs_raise_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="kind"):
        masking.alpha_schedule("quadratic", 4)
    with pytest.raises(ValueError, match="T must"):
        masking.alpha_schedule("linear", 0)
    with pytest.raises(ValueError, match="alpha"):
        masking.masking_probs(torch.tensor([1.0, 0.7, 0.8, 0.0]))  # increases
    with pytest.raises(ValueError, match="alpha"):
        masking.masking_probs(torch.tensor([0.9, 0.0]))  # does not start at 1
    with pytest.raises(ValueError, match="t must"):
        masking.mdlm_weight(masking.alpha_schedule("linear", 4), 5)
    with pytest.raises(ValueError, match="same shape"):
        masking.noisy_sequence(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long), 1, 0)
