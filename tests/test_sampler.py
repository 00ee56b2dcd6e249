"""The plain (uncached) samplers draw from the distributions the models define."""
import itertools

import pytest
import torch

from conftest import make_model
from minarmd.ar import GPT, ar_loss
from minarmd.config import TransformerConfig
from minarmd.loss import armd_loss
from minarmd.mdm import MDM
from minarmd.permutation import random_order, strided_order
from minarmd.sampler import draw, sample_armd, sample_ar, sample_mdm

V, N, DRAWS = 3, 3, 6000


def empirical_vs_model(samples, logp):
    """Total-variation distance between sample frequencies and the model's probabilities.

    With 6000 draws over 27 outcomes the expected TV distance of an exact sampler is about
    0.5 * sum sqrt(p(1-p)/n) <= 0.5 * sqrt(27/6000) = 0.034; 0.06 leaves room, and a sampler
    that ignores the context (tested below) is off by far more.
    """
    seqs = torch.tensor(list(itertools.product(range(V), repeat=N)))
    index = (samples * torch.tensor([V * V, V, 1])).sum(1)
    freq = torch.bincount(index, minlength=V ** N).double() / samples.shape[0]
    return 0.5 * float((freq - logp.exp()).abs().sum()), seqs


def test_armd_sampler_matches_the_model_in_any_order():
    model = make_model(vocab_size=V, max_len=N)
    with torch.no_grad():
        model.wte.weight.mul_(40)  # sharpen the untrained model's (tied) logits: far from uniform
    seqs = torch.tensor(list(itertools.product(range(V), repeat=N)))
    gen = torch.Generator().manual_seed(0)
    order, blocks = random_order(1, N, torch.Generator().manual_seed(5))
    o, b = order.expand(DRAWS, N), blocks.expand(DRAWS, N)
    samples = sample_armd(model, DRAWS, N, o, b, generator=gen)
    with torch.no_grad():
        logp = -armd_loss(model, seqs, order.expand(len(seqs), N), blocks.expand(len(seqs), N),
                          per_token=True).sum(1)
    tv, _ = empirical_vs_model(samples, logp)
    assert tv < 0.06
    uniform = torch.randint(0, V, (DRAWS, N), generator=gen)  # the check rejects a wrong sampler
    assert empirical_vs_model(uniform, logp)[0] > 0.06


def test_ar_sampler_matches_the_model():
    torch.manual_seed(0)
    model = GPT(TransformerConfig(vocab_size=V, max_len=N, n_layer=2, n_head=2, n_embd=16)).double()
    samples = sample_ar(model, DRAWS, N, generator=torch.Generator().manual_seed(1))
    seqs = torch.tensor(list(itertools.product(range(V), repeat=N)))
    with torch.no_grad():
        logp = -ar_loss(model, seqs, per_token=True).sum(1)
    assert empirical_vs_model(samples, logp)[0] < 0.06


def test_strided_and_mdm_samplers_fill_every_position():
    model = make_model(vocab_size=V, max_len=8)
    x = sample_armd(model, 2, 8, *strided_order(8, 2, 2), generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 8) and x.min() >= 0 and x.max() < V
    torch.manual_seed(0)
    mdm = MDM(TransformerConfig(vocab_size=V, max_len=8, n_layer=2, n_head=2, n_embd=16))
    y = sample_mdm(mdm, 2, 8, steps=4, generator=torch.Generator().manual_seed(0))
    assert y.shape == (2, 8) and (y != mdm.mask_id).all()


def test_draw_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        draw(torch.zeros(2, 3), temperature=0.0)
