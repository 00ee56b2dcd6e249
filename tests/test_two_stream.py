"""Prefix aggregation (Eq. 6): parallel form == definition == recurrent form; the two-stream layer
(Eq. 7) uses one set of weights for both streams."""
import pytest
import torch

from conftest import make_model
from minarmd import masks
from minarmd.attention import AttentionMask
from minarmd.config import ARMDConfig
from minarmd.layers import Block
from minarmd.model import ARMD
from minarmd.two_stream import PrefixAggregation, TwoStreamLayer


def setup(seed=0, n=9, d=6, d_pe=4):
    torch.manual_seed(seed)
    agg = PrefixAggregation(n + 1, d_pe).double()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, n + 1, d, generator=g, dtype=torch.float64)  # BOS row first
    return agg, x, g


def test_parallel_form_matches_the_definition_sum():
    agg, x, g = setup()
    blocks = torch.tensor([[1, 1, 2, 3, 3, 3, 4, 5, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]])
    pos_q = torch.stack([torch.randperm(9, generator=g) + 1 for _ in range(2)])  # (B, M) internal
    pos_x = torch.cat([torch.zeros(2, 1, dtype=torch.long), pos_q], 1)
    blocks_x = torch.cat([torch.zeros(2, 1, dtype=torch.long), blocks], 1)
    out = agg(x, pos_x, pos_q, masks.block_mask(blocks, blocks_x, strict=True))
    pe = agg.pe.weight
    for b in range(2):
        for n in range(9):
            expected = sum(torch.dot(pe[pos_q[b, n]], pe[pos_x[b, i]]) * x[b, i]
                           for i in range(10) if blocks_x[b, i] < blocks[b, n])
            assert (out[b, n] - expected).abs().max() <= 1e-13


def test_singleton_fast_path_matches_the_masked_form():
    agg, x, _ = setup()
    pos_q = torch.arange(1, 10).expand(2, 9)
    pos_x = torch.arange(10).expand(2, 10)
    blocks = torch.arange(1, 10).expand(2, 9)
    blocks_x = torch.arange(10).expand(2, 10)
    dense = agg(x, pos_x, pos_q, masks.block_mask(blocks, blocks_x, strict=True))
    assert (agg(x, pos_x, pos_q, None) - dense).abs().max() <= 1e-14


def test_recurrent_form_matches_the_parallel_form_block_by_block():
    agg, x, _ = setup()
    blocks = torch.tensor([[1, 2, 2, 2, 3, 4, 4, 5, 5]] * 2)
    pos_q = torch.tensor([[4, 1, 9, 2, 3, 8, 5, 7, 6]] * 2)
    pos_x = torch.cat([torch.zeros(2, 1, dtype=torch.long), pos_q], 1)
    blocks_x = torch.cat([torch.zeros(2, 1, dtype=torch.long), blocks], 1)
    parallel = agg(x, pos_x, pos_q, masks.block_mask(blocks, blocks_x, strict=True))
    state = agg.update(agg.init_state(x), x[:, :1], pos_x[:, :1])  # commit BOS
    for b in range(1, 6):
        idx = (blocks[0] == b).nonzero().flatten()
        g0 = agg.read(state, pos_q[:, idx])  # read before committing the block itself
        assert (g0 - parallel[:, idx]).abs().max() <= 1e-13
        state = agg.update(state, x[:, idx + 1], pos_q[:, idx])  # then commit it
    assert state.shape == (2, 4, 6)


def test_two_stream_layer_shares_one_blocks_weights():
    cfg = ARMDConfig(vocab_size=5, max_len=8, n_layer=2, n_head=2, n_embd=8)
    layer, block = TwoStreamLayer(cfg), Block(cfg)
    assert sum(p.numel() for p in layer.parameters()) == sum(p.numel() for p in block.parameters())
    assert layer.state_dict().keys() == block.state_dict().keys()


def test_two_stream_content_stream_equals_a_plain_block_and_can_be_skipped():
    cfg = ARMDConfig(vocab_size=5, max_len=8, n_layer=2, n_head=2, n_embd=8)
    torch.manual_seed(0)
    layer = TwoStreamLayer(cfg).double()
    block = Block(cfg).double()
    block.load_state_dict(layer.state_dict())
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    g = torch.randn(1, 4, 8, dtype=torch.float64)
    pos_x, pos_g = torch.arange(5)[None], torch.arange(1, 5)[None]
    causal = AttentionMask.causal()
    x1, g1 = layer(x, g, pos_x, pos_g, causal, causal)
    assert (x1 - block(x, pos_x, causal)).abs().max() <= 1e-14  # X stream: an ordinary block under M^c
    x2, g2 = layer(x, g, pos_x, pos_g, causal, causal, update_content=False)
    assert x2 is x and (g1 - g2).abs().max() <= 1e-14  # skipping the X update does not change G


def test_query_stream_never_reads_its_own_token():
    # g^0 for a block-1 token is <PE_pos, PE_bos> * bos: independent of every real token
    model = make_model()
    tokens = torch.tensor([[3, 4]])
    pos, blocks = torch.tensor([[2, 5]]), torch.tensor([[1, 1]])
    with torch.no_grad():
        a = model(tokens, pos, blocks)
        b = model(torch.tensor([[9, 0]]), pos, blocks)
    assert torch.equal(a, b)


# ------------------------------------------------------------------ the default PE: the "neighbours" start

def prefix_of(cfg):
    """The prefix aggregation of a fresh ARMD built from ``cfg``, in float64 (its table re-initialised in
    float64: the model was built in float32, which rounds the neighbours table to ~1e-8)."""
    agg = ARMD(cfg).prefix.double()
    agg.reset_parameters()
    return agg


def neighbours_expected(x, pos_x, pos_q, visible):
    """The definition: g^0_n = the sum of the visible rows whose position is pos(n) +- 1 (B, Mq, D)."""
    adjacent = (pos_q[:, :, None] - pos_x[:, None, :]).abs() == 1  # (B, Mq, Mk)
    return (adjacent & visible).double() @ x


def test_the_default_table_starts_each_query_from_its_visible_neighbours():
    cfg = ARMDConfig(vocab_size=7, max_len=9, n_layer=2, n_head=1, n_embd=6)
    assert (cfg.pe_init, cfg.d_pe) == ("neighbours", 10)  # one column per internal position, BOS included
    torch.manual_seed(0)
    agg = prefix_of(cfg)
    _, x, g = setup()
    pe = agg.pe.weight
    gram = pe @ pe.T
    off = ~torch.eye(10, dtype=torch.bool)
    band = (torch.arange(10)[:, None] - torch.arange(10)[None]).abs() == 1
    assert (gram[off] - band[off].double()).abs().max() <= 1e-12  # <PE_p, PE_q> = [|p - q| = 1], p != q
    # left to right, singleton blocks: g^0_n = x_{n-1} (BOS for the first token), the row a GPT predicts x_n from
    pos_q, pos_x = torch.arange(1, 10).expand(2, 9), torch.arange(10).expand(2, 10)
    assert (agg(x, pos_x, pos_q, None) - x[:, :-1]).abs().max() <= 1e-12
    # any order and blocks of several tokens: the neighbours already generated, nothing else
    blocks = torch.tensor([[1, 1, 2, 3, 3, 3, 4, 5, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]])
    pos_q = torch.stack([torch.randperm(9, generator=g) + 1 for _ in range(2)])
    pos_x = torch.cat([torch.zeros(2, 1, dtype=torch.long), pos_q], 1)
    visible = masks.block_mask(blocks, torch.cat([torch.zeros(2, 1, dtype=torch.long), blocks], 1), strict=True)
    assert (agg(x, pos_x, pos_q, visible) - neighbours_expected(x, pos_x, pos_q, visible)).abs().max() <= 1e-12
    # and the recurrent form (what generation reads) gives the same start
    state = agg.update(agg.init_state(x), x[:, :1], pos_x[:, :1])
    parallel = agg(x, pos_x, pos_q, visible)
    for b in range(1, 6):
        idx = (blocks[0] == b).nonzero().flatten()
        assert (agg.read(state, pos_q[:, idx])[0] - parallel[0, idx]).abs().max() <= 1e-12
        state = agg.update(state, x[:, idx + 1], pos_q[:, idx])


def test_the_neighbours_check_fails_for_a_random_table():
    """The identity above is no accident of the test: a random table (the former default) breaks it."""
    torch.manual_seed(0)
    agg = prefix_of(ARMDConfig(vocab_size=7, max_len=9, n_layer=2, n_head=1, n_embd=6, pe_init="random"))
    assert agg.pe.weight.shape == (10, 64)  # d_pe None -> 64 for the random init
    _, x, _ = setup()
    pos_q, pos_x = torch.arange(1, 10).expand(2, 9), torch.arange(10).expand(2, 10)
    assert (agg(x, pos_x, pos_q, None) - x[:, :-1]).abs().max() > 0.1


def test_a_table_too_narrow_for_the_neighbours_is_refused():
    with pytest.raises(ValueError, match=r"pe_init='neighbours' needs d_pe >= max_len \+ 1 = 10 .* pass d_pe=10"):
        ARMDConfig(vocab_size=7, max_len=9, n_layer=2, n_head=1, n_embd=6, d_pe=9)
    with pytest.raises(ValueError, match="pe_init must be one of"):
        ARMDConfig(vocab_size=7, max_len=9, n_layer=2, n_head=1, n_embd=6, pe_init="zeros")
    with pytest.raises(ValueError, match="needs d_pe >= max_len"):
        PrefixAggregation(10, 4, init="neighbours")
    assert ARMDConfig(vocab_size=7, max_len=9, n_layer=2, n_head=1, n_embd=6, d_pe=12).d_pe == 12  # wider is fine

