"""Prefix aggregation (Eq. 6): parallel form == definition == recurrent form; the two-stream layer
(Eq. 7) uses one set of weights for both streams."""
import torch

from conftest import make_model
from minarmd import masks
from minarmd.attention import AttentionMask
from minarmd.config import ARMDConfig
from minarmd.layers import Block
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
