"""KV-cached incremental decoding reproduces the single-pass logits (float64, <= 1e-10)."""
import pytest
import torch

from conftest import make_model
from minarmd.ar import GPT
from minarmd.cache import ARMDCache, GPTCache
from minarmd.config import TransformerConfig
from minarmd.permutation import left_to_right, order_from_mask_times, random_order, strided_order

N, V, TOL = 12, 13, 1e-10


def sharp(model):
    """Re-draw every parameter at std 0.3 so logits vary by O(1): a wrong cache cannot hide in noise."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def incremental_logits(model, x, order, blocks, prefill_blocks=0):
    """Teacher-forced decoding with the cache: each step commits block b-1 and predicts block b.

    With ``prefill_blocks=k`` the first call predicts blocks 1..k+1 and commits blocks 1..k at
    once (the masked path used for prompts). Returns logits in generation order (B, N, V).
    """
    B = x.shape[0]
    toks = x.gather(1, order)  # (B, N) in generation order
    ids = blocks[0].tolist()
    starts = [k for k in range(N) if k == 0 or ids[k] != ids[k - 1]] + [N]
    cache, out = ARMDCache(model, B), []
    spans = list(zip(starts[:-1], starts[1:]))
    if prefill_blocks:
        end = spans[prefill_blocks][1]
        commit = spans[prefill_blocks - 1][1]
        out.append(cache.step(toks[:, :commit], order[:, :commit], ids[:commit],
                              order[:, :end], ids[:end]))
        prev, spans = spans[prefill_blocks], spans[prefill_blocks + 1:]
    else:
        prev = None
    for s, e in spans:
        if prev is None:
            out.append(cache.step(None, None, None, order[:, s:e], ids[s:e]))
        else:
            ps, pe = prev
            out.append(cache.step(toks[:, ps:pe], order[:, ps:pe], ids[ps:pe], order[:, s:e], ids[s:e]))
        prev = (s, e)
    return torch.cat(out, dim=1)


def orders(B):
    gen = torch.Generator().manual_seed(0)
    tau = torch.randint(1, 5, (1, N), generator=gen).expand(B, N)
    return {"left to right": left_to_right(B, N), "random": random_order(B, N, gen),
            "strided S=3": strided_order(N, 3, B), "mask trajectory T=4": order_from_mask_times(tau, 4)}


@pytest.mark.parametrize("name", ["left to right", "random", "strided S=3", "mask trajectory T=4"])
def test_cached_decoding_reproduces_single_pass_logits(name):
    model = sharp(make_model(max_len=N))
    B = 3
    x = torch.randint(0, V, (B, N), generator=torch.Generator().manual_seed(1))
    order, blocks = orders(B)[name]
    with torch.no_grad():
        full = model(x.gather(1, order), order, blocks)  # (B, N, V)
    cached = incremental_logits(model, x, order, blocks)
    assert (cached - full).abs().max() < TOL
    # the comparison is sensitive: the same tokens in another order give different logits
    other, other_blocks = random_order(B, N, torch.Generator().manual_seed(9))
    assert (incremental_logits(model, x, other, other_blocks) - full).abs().max() > 1e-2


@pytest.mark.parametrize("prefill", [1, 3])
def test_prefill_of_several_blocks_uses_the_masks(prefill):
    model = sharp(make_model(max_len=N))
    x = torch.randint(0, V, (2, N), generator=torch.Generator().manual_seed(2))
    order, blocks = strided_order(N, 2, 2)
    with torch.no_grad():
        full = model(x.gather(1, order), order, blocks)
    cached = incremental_logits(model, x, order, blocks, prefill_blocks=prefill)
    assert (cached - full).abs().max() < TOL


def test_cache_refuses_to_predict_a_block_it_already_holds():
    model = make_model(max_len=N)
    order, _ = left_to_right(1, N)
    cache = ARMDCache(model, 1)
    cache.step(None, None, None, order[:, :1], [1])
    cache.step(torch.tensor([[3]]), order[:, :1], [1], order[:, 1:2], [2])
    with pytest.raises(ValueError, match="leak"):  # block 2 again: its query rows are cached
        cache.step(None, None, [], order[:, 2:3], [2])
    with pytest.raises(ValueError, match="after the last committed block"):
        cache.step(torch.tensor([[3]]), order[:, :1], [1], order[:, 2:3], [3])
    with pytest.raises(ValueError, match="non-decreasing"):
        cache.step(None, None, None, order[:, 2:4], [4, 3])


def test_gpt_cache_reproduces_the_forward_pass():
    torch.manual_seed(0)
    model = GPT(TransformerConfig(vocab_size=V, max_len=N, n_layer=2, n_head=2, n_embd=16)).double().eval()
    sharp(model)
    x = torch.randint(0, V, (2, N), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(x)  # (B, N, V): row n is p(x_n | BOS, x_<n)
    cache = GPTCache(model, 2)
    logits = [cache.step(x[:, :5])]  # prefill: BOS + 5 tokens -> predictions for x_1..x_6
    for n in range(5, N - 1):
        logits.append(cache.step(x[:, n:n + 1]))
    assert (torch.cat(logits, dim=1) - full).abs().max() < TOL
    with pytest.raises(ValueError, match="capacity"):
        cache.step(x[:, :2])


@pytest.mark.parametrize("l2s", [0, 1, 4])  # no two-stream layer / one / no causal stack
def test_cache_for_every_split_of_the_layers(l2s):
    model = sharp(make_model(max_len=N, n_two_stream=l2s))
    x = torch.randint(0, V, (2, N), generator=torch.Generator().manual_seed(5))
    order, blocks = strided_order(N, 4, 2)
    with torch.no_grad():
        full = model(x.gather(1, order), order, blocks)
    assert (incremental_logits(model, x, order, blocks, prefill_blocks=2) - full).abs().max() < TOL
