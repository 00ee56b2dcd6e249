"""Shared fixtures: small seeded ARMD models (float64 by default, for tight tolerances)."""
import pytest
import torch

from minarmd import ARMD, ARMDConfig


def make_model(dtype=torch.float64, seed=0, **overrides) -> ARMD:
    """A small untrained ARMD; overrides change any ARMDConfig field."""
    # a random PE table: every pair of positions carries weight, so a wrong position index shows up (the
    # default "neighbours" table is zero off the band and would hide it; tests/test_two_stream.py tests it)
    fields = dict(vocab_size=13, max_len=24, n_layer=4, n_two_stream=2, n_head=2, n_embd=16, d_pe=8, pe_init="random")
    fields.update(overrides)
    torch.manual_seed(seed)  # nn.Module initialisation draws from the global generator
    return ARMD(ARMDConfig(**fields)).to(dtype).eval()


@pytest.fixture
def model64():
    return make_model()
