"""Every attention backend that can run here agrees with the dense-mask SDPA reference.

On the CPU: the fused-causal path (singleton blocks) forward and backward, and FlexAttention
forward (its backward is CUDA-only). On CUDA (skipped on CPU): compiled FlexAttention and the
causal path, fp32 <= 1e-5."""
import pytest
import torch

from conftest import make_model
from minarmd import attention, masking, permutation
from minarmd.loss import armd_loss

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
flex = pytest.mark.skipif(not attention.flex_available(), reason="needs torch >= 2.5 (FlexAttention)")


def pair(backend, device="cpu", **kw):
    reference = make_model(dtype=torch.float32, attn_backend="dense", **kw).to(device)
    other = make_model(dtype=torch.float32, attn_backend=backend, **kw).to(device)
    return reference, other


def multi_token_blocks(batch, n, seed):
    g = torch.Generator().manual_seed(seed)
    tau = masking.sample_mask_times(masking.alpha_schedule("linear", 4), (batch, n), g)
    order, blocks = permutation.order_from_mask_times(tau, 4)  # different blocks in every row
    return torch.randint(0, 13, (batch, n), generator=g), order, blocks


@pytest.mark.parametrize("order_kind", ["left-to-right", "random"])
def test_causal_path_matches_dense_forward_and_backward(order_kind):
    dense, causal = pair("causal")
    g = torch.Generator().manual_seed(0)
    order, blocks = (permutation.left_to_right(3, 20) if order_kind == "left-to-right"
                     else permutation.random_order(3, 20, g))
    x = torch.randint(0, 13, (3, 20), generator=g)
    losses = []
    for model in (dense, causal):
        loss = armd_loss(model, x, order, blocks)
        loss.backward()
        losses.append(loss)
    assert abs(float((losses[0] - losses[1]).detach())) <= 1e-5
    tokens = x.gather(1, order)
    with torch.no_grad():
        assert (dense(tokens, order, blocks) - causal(tokens, order, blocks)).abs().max() <= 1e-5
        assert (causal(tokens, order, None) - causal(tokens, order, blocks)).abs().max() == 0  # None = singletons
    for (name, p), q in zip(dense.named_parameters(), causal.parameters()):
        assert (p.grad - q.grad).abs().max() <= 1e-5, name


def test_auto_picks_causal_for_singletons_and_dense_otherwise_on_cpu():
    dev = torch.device("cpu")
    assert attention.resolve_backend("auto", True, dev) == "causal"
    assert attention.resolve_backend("auto", False, dev) == "dense"
    with pytest.raises(ValueError, match="attn_backend='causal'"):
        attention.resolve_backend("causal", False, dev)
    cuda = torch.device("cuda")  # no GPU needed: only the rule is checked
    assert attention.resolve_backend("auto", False, cuda, head_dim=8) == "dense"
    with pytest.raises(ValueError, match="head_dim"):
        attention.resolve_backend("flex", False, cuda, head_dim=8)
    _, causal = pair("causal")
    x, order, blocks = multi_token_blocks(2, 10, 0)
    with pytest.raises(ValueError, match="singleton"):
        causal(x.gather(1, order), order, blocks)


@flex
def test_flex_forward_matches_dense_with_per_sample_blocks_on_cpu():
    dense, flexible = pair("flex")
    x, order, blocks = multi_token_blocks(3, 24, 1)
    assert not torch.equal(blocks[0], blocks[1])  # masks differ per sample: B=batch must be honoured
    tokens = x.gather(1, order)
    with torch.no_grad():
        assert (dense(tokens, order, blocks) - flexible(tokens, order, blocks)).abs().max() <= 1e-5


@flex
def test_flex_block_mask_for_batch_shared_blocks_is_built_once_and_cached():
    dense, flexible = pair("flex")
    order, blocks = permutation.strided_order(24, 4, batch=3)  # SBP: one block structure for the batch
    x = torch.randint(0, 13, (3, 24), generator=torch.Generator().manual_seed(2))
    tokens = x.gather(1, order)
    attention._SHARED_MASKS.clear()
    with torch.no_grad():
        assert (dense(tokens, order, blocks) - flexible(tokens, order, blocks)).abs().max() <= 1e-5
        cached = dict(attention._SHARED_MASKS)
        assert cached and all(m.shape[0] == 1 for m in cached.values())  # one sample's mask, broadcast
        flexible(tokens, order, blocks)  # the next step with the same S reuses them
        assert attention._SHARED_MASKS.keys() == cached.keys()
        assert all(attention._SHARED_MASKS[k] is cached[k] for k in cached)
        _, order2, blocks2 = multi_token_blocks(3, 24, 3)  # per-sample blocks: never cached
        flexible(x.gather(1, order2), order2, blocks2)
    assert attention._SHARED_MASKS.keys() == cached.keys()


@cuda
@flex
def test_cuda_flex_and_causal_match_dense():
    torch.backends.cuda.matmul.allow_tf32 = False
    x, order, blocks = multi_token_blocks(4, 128, 2)
    tokens, order, blocks = x.gather(1, order).cuda(), order.cuda(), blocks.cuda()
    dense, flexible = pair("flex", device="cuda", max_len=128, n_embd=64)  # head_dim 32 >= 16
    with torch.no_grad():
        assert (dense(tokens, order, blocks) - flexible(tokens, order, blocks)).abs().max() <= 1e-5
    dense, causal = pair("causal", device="cuda", max_len=128, n_embd=64)
    order, blocks = permutation.random_order(4, 128)
    order, blocks = order.cuda(), blocks.cuda()
    tokens = x.cuda().gather(1, order)
    with torch.no_grad():
        assert (dense(tokens, order, blocks) - causal(tokens, order, blocks)).abs().max() <= 1e-5


def test_singleton_rule_reads_the_block_ids_only_when_nothing_else_says(monkeypatch):
    grouped = torch.tensor([[1, 1, 2]])
    assert attention.is_singleton(None, "auto") and attention.is_singleton(None, "dense")  # None = singletons
    assert not attention.is_singleton(torch.tensor([[1, 2, 3]]), "dense")  # dense / flex never take it
    assert attention.is_singleton(grouped, "auto", singleton=True)  # a claim is taken as given (checked eagerly)
    assert not attention.is_singleton(torch.tensor([[1, 2, 3]]), "auto", singleton=False)
    assert attention.is_singleton(torch.tensor([[1, 2, 3]]), "auto") and not attention.is_singleton(grouped, "auto")
    monkeypatch.setattr(attention, "compiling", lambda: True)
    assert attention.is_singleton(grouped, "causal")  # compiled: as configured, no look at the ids


def test_singleton_claims_pick_the_backend_without_changing_the_numbers():
    dense, auto = pair("auto")
    g = torch.Generator().manual_seed(4)
    order, blocks = permutation.random_order(2, 12, g)
    tokens = torch.randint(0, 13, (2, 12), generator=g).gather(1, order)
    with torch.no_grad():
        assert torch.equal(auto(tokens, order, blocks, singleton=True), auto(tokens, order, blocks))  # causal
        assert torch.equal(auto(tokens, order, blocks, singleton=False), dense(tokens, order, blocks))  # dense
        x, s_order, s_blocks = multi_token_blocks(2, 12, 5)
        s_tokens = x.gather(1, s_order)
        assert torch.equal(auto(s_tokens, s_order, s_blocks, singleton=False), auto(s_tokens, s_order, s_blocks))
