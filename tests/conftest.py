"""Shared fixtures: small seeded ARMD models (float64 by default, for tight tolerances)."""
import pytest
import torch

from minarmd import ARMD, ARMDConfig


def make_model(dtype=torch.float64, seed=0, **overrides) -> ARMD:
    """A small untrained ARMD; overrides change any ARMDConfig field."""
    fields = dict(vocab_size=13, max_len=24, n_layer=4, n_two_stream=2, n_head=2, n_embd=16, d_pe=8)
    fields.update(overrides)
    torch.manual_seed(seed)  # nn.Module initialisation draws from the global generator
    return ARMD(ARMDConfig(**fields)).to(dtype).eval()


@pytest.fixture
def model64():
    return make_model()
