"""Bad input raises ValueError naming the argument (and how to fix it), never a deep traceback."""
import pytest
import torch

from conftest import make_model
from minarmd import ARMDConfig, TransformerConfig, masking, permutation
from minarmd.loss import armd_loss

SIZE = dict(vocab_size=13, max_len=24, n_layer=4, n_head=2, n_embd=16)


@pytest.mark.parametrize("overrides,match", [
    (dict(n_embd=15, n_head=2), "n_embd=15 must be divisible by n_head=2"),
    (dict(n_embd=12, n_head=4), "must be even"),  # head_dim 3: RoPE needs pairs
    (dict(n_two_stream=5), "n_two_stream"),
    (dict(n_two_stream=-1), "n_two_stream"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(max_len=2.5), "max_len"),
    (dict(dropout=1.0), "dropout"),
    (dict(attn_backend="triton"), "attn_backend"),
    (dict(query_stream_init="zeros"), "query_stream_init"),
    (dict(d_pe=0), "d_pe"),
])
def test_inconsistent_configs(overrides, match):
    with pytest.raises(ValueError, match=match):
        ARMDConfig(**{**SIZE, **overrides})


def test_config_defaults():
    cfg = ARMDConfig(**SIZE)
    assert cfg.n_two_stream == 2 and cfg.dropout == 0.0  # L2s = L/2 by default, as in the paper
    with pytest.raises(ValueError, match="n_head"):
        TransformerConfig(vocab_size=5, max_len=8, n_layer=1, n_head=3, n_embd=8)


@pytest.fixture(scope="module")
def model():
    return make_model()


def good_inputs(m=6):
    order, blocks = permutation.left_to_right(2, m)
    return torch.randint(0, 13, (2, m)), order, blocks


@pytest.mark.parametrize("change,match", [
    (lambda t, p, b: (t.float(), p, b), "tokens must be int64"),
    (lambda t, p, b: (t.int(), p, b), "tokens must be int64"),
    (lambda t, p, b: (t[0], p, b), r"tokens must have shape \(B, M\)"),
    (lambda t, p, b: (t, p[:, :5], b), "pos must have the same shape"),
    (lambda t, p, b: (t, p, b[:1]), "blocks must have the same shape"),
    (lambda t, p, b: (t, p.float(), b), "pos must be int64"),
    (lambda t, p, b: (t.tolist(), p, b), "tokens must be a torch.Tensor"),
    (lambda t, p, b: (t + 13, p, b), "tokens must be ids in 0..vocab_size-1=12"),
    (lambda t, p, b: (t - 14, p, b), "tokens must be ids"),
    (lambda t, p, b: (t, p + 20, b), "pos must be original positions in 0..max_len-1=23"),
    (lambda t, p, b: (t, torch.zeros_like(p), b), "pos must not repeat"),
    (lambda t, p, b: (t, p, b - 1), "blocks must be block ids >= 1"),
    (lambda t, p, b: (t, p, b.flip(1)), "blocks must be non-decreasing"),
])
def test_bad_forward_inputs(model, change, match):
    with pytest.raises(ValueError, match=match):
        model(*change(*good_inputs()))


def test_sequence_longer_than_max_len(model):
    tokens = torch.zeros(1, 25, dtype=torch.long)
    order, blocks = permutation.left_to_right(1, 25)
    with pytest.raises(ValueError, match="exceeds max_len=24"):
        model(tokens, order, blocks)
    with pytest.raises(ValueError, match="exceeds max_len=24"):
        armd_loss(model, tokens, order, blocks)


def test_non_permutation_order(model):
    x, order, blocks = good_inputs()
    order[0, 1] = order[0, 0]
    with pytest.raises(ValueError, match="order must be a permutation"):
        armd_loss(model, x, order, blocks)


def test_wrong_config_type():
    from minarmd import ARMD
    with pytest.raises(ValueError, match="cfg must be an ARMDConfig"):
        ARMD(TransformerConfig(**SIZE))


def test_singleton_claims_are_checked(model):
    tokens, order, blocks = good_inputs()
    with pytest.raises(ValueError, match="singleton must be True, False or None"):
        model(tokens, order, blocks, singleton="yes")
    grouped = torch.tensor([[1, 1, 2, 3, 3, 4]]).expand(2, 6)
    with pytest.raises(ValueError, match="singleton=True needs one token per block"):
        model(tokens, order, grouped, singleton=True)


@pytest.mark.parametrize("make,match", [
    (lambda: ARMDConfig(**{**SIZE, "vocab_size": 0}), "vocab_size must be an integer >= 1, got 0"),
    (lambda: ARMDConfig(**{**SIZE, "n_head": True}), "n_head must be an integer >= 1, got True"),
    (lambda: ARMDConfig(**SIZE, d_pe=0), "d_pe must be an integer >= 1, got 0"),
    (lambda: permutation.ProgressiveSchedule(i_ar=10, i_perm=5, rho=4), r"i_perm must be an integer >= 10 \(i_ar\)"),
    (lambda: permutation.strided_order(8, 0), "streams must be an integer >= 1, got 0"),
    (lambda: masking.alpha_schedule("linear", 0), r"T must be an integer >= 1 \(number of masking steps\), got 0"),
])
def test_integer_arguments_share_one_message(make, match):
    with pytest.raises(ValueError, match=match):
        make()
