"""KV-cached incremental decoding reproduces the single-pass logits (float64, <= 1e-10)."""
import pytest
import torch

from conftest import make_model
from minarmd.ar import GPT
from minarmd.cache import ARMDCache, GPTCache
from minarmd.config import ARCHS, TransformerConfig
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


# every test that builds the streams' inputs runs for both architectures: RoPE, and GPT-2's learned
# positions (added to content rows at their own position, to query rows at their target's: cache.py)
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("name", ["left to right", "random", "strided S=3", "mask trajectory T=4"])
def test_cached_decoding_reproduces_single_pass_logits(name, arch):
    model = sharp(make_model(max_len=N, **ARCHS[arch]))
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


@pytest.mark.parametrize("arch", list(ARCHS))
def test_gpt_cache_reproduces_the_forward_pass(arch):
    torch.manual_seed(0)
    model = GPT(TransformerConfig(vocab_size=V, max_len=N, n_layer=2, n_head=2, n_embd=16,
                                  **ARCHS[arch])).double().eval()
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


@pytest.mark.parametrize("name", ["left to right", "random", "strided S=3", "mask trajectory T=4"])
def test_cache_with_the_default_neighbours_table(name):
    """ARMD's default PE ("neighbours": zero off the band) through the recurrent state: still the full pass.
    Every other weight is sharpened as above; the table keeps its init, whose zeros a wrong position would hit."""
    model = make_model(max_len=N, pe_init="neighbours", d_pe=None)
    table = model.prefix.pe.weight.detach().clone()
    sharp(model)
    with torch.no_grad():
        model.prefix.pe.weight.copy_(table)
    x = torch.randint(0, V, (2, N), generator=torch.Generator().manual_seed(6))
    order, blocks = orders(2)[name]
    with torch.no_grad():
        full = model(x.gather(1, order), order, blocks)
    assert (incremental_logits(model, x, order, blocks) - full).abs().max() < TOL


# ----------------------------------------------------------------------------- generation with templates
# The KV cache used to be exact only without given tokens: the first call committed the given tokens
# but never predicted their query rows, so the causal stack's cache missed rows that later blocks
# attend to under M^c. These tests enumerate what the sampler accepts: template kinds x orders x S x
# every split of the layers, batch > 1.

from minarmd.sampler import FREE, PAD, generate, make_template  # noqa: E402
from minarmd.template import stack_rows  # noqa: E402

NG = 16  # positions per generated row


def templates(B=3):
    """Every kind of template the sampler accepts (name -> (B, NG) template)."""
    out = {"none": make_template(NG, B),
           "prompt": make_template(NG, B, prompt=[1, 2, 3, 4, 5]),
           "suffix": make_template(NG, B, suffix=[6, 7, 8, 9]),
           "prompt+suffix": make_template(NG, B, prompt=[1, 2, 3], suffix=[4, 5])}
    scattered = make_template(NG, B)
    scattered[:, [3, 7, 8, 12]] = torch.tensor([1, 2, 3, 4])
    out["scattered"] = scattered
    ragged = make_template(NG, B)  # rows give different tokens at different places (equal free counts)
    ragged[0, [0, 1, 2]] = torch.tensor([1, 2, 3])
    ragged[1, [5, 14, 15]] = torch.tensor([4, 5, 6])
    ragged[2, [0, 9, 10]] = torch.tensor([7, 8, 9])
    out["ragged, equal free counts"] = ragged
    out["ragged prompts and lengths"] = stack_rows([  # different prompt lengths, rows of different lengths
        torch.tensor([1, 2] + [FREE] * 14), torch.tensor([3, 4, 5, 6, 7] + [FREE] * 8),
        torch.tensor([FREE] * 10 + [8, 9])][:B])
    return out


PLANS = {"l2r": dict(), "random": dict(order="random"), "tensor order": "tensor",
         "S=2": dict(streams=2), "S=4": dict(streams=4)}


def _kwargs(plan_name, template):
    if PLANS[plan_name] == "tensor":
        m = int((template[0] == FREE).sum())
        if ((template == FREE).sum(1) != m).any():
            return None  # a tensor order needs equal free counts (tested as an error elsewhere)
        return dict(order=torch.randperm(m, generator=torch.Generator().manual_seed(4)))
    return PLANS[plan_name]


def full_forward_logits(model, out):
    """Logits of one forward pass over a finished Generation, in original position order (B, N, V)."""
    toks = out.tokens.gather(1, out.order).clamp(min=0)  # PAD slots are in the last block: seen by nobody
    with torch.no_grad():
        gen_logits = model(toks, out.order, out.blocks)  # (B, N, V) in generation order
    return torch.empty_like(gen_logits).scatter_(1, out.order[..., None].expand_as(gen_logits), gen_logits)


def run_both(model, template, kwargs, seed=7):
    """generate() with and without the cache, recording every call's Step."""
    runs = {}
    for cache in (True, False):
        steps = []
        out = generate(model, template=template, cache=cache, generator=torch.Generator().manual_seed(seed),
                       callback=steps.append, **kwargs)
        runs[cache] = (out, steps)
    return runs


@pytest.mark.parametrize("arch_l2s", [(a, l2s) for a in ARCHS for l2s in (1, 2, 3, 4)], ids=lambda a: f"{a[0]}-L2s{a[1]}")
@pytest.mark.parametrize("plan_name", list(PLANS))
@pytest.mark.parametrize("kind", list(templates()))
def test_cached_generation_is_exact_for_every_template_order_and_split(kind, plan_name, arch_l2s):
    arch, l2s = arch_l2s
    model = sharp(make_model(max_len=NG, n_two_stream=l2s, **ARCHS[arch]))
    template = templates()[kind]
    kwargs = _kwargs(plan_name, template)
    if kwargs is None:
        pytest.skip("a tensor order needs the same number of free positions in every row")
    runs = run_both(model, template, kwargs)
    (cached, cached_steps), (plain, plain_steps) = runs[True], runs[False]
    # 1. the same generator draws the same tokens, with the same calls, and keeps the given tokens
    assert torch.equal(cached.tokens, plain.tokens) and cached.calls == plain.calls == len(cached_steps)
    given = template >= 0
    assert torch.equal(cached.tokens[given], template[given]) and torch.equal(cached.tokens == PAD, template == PAD)
    # 2. every cached call's logits equal one forward pass over the finished sample (float64)
    full = full_forward_logits(model, cached)
    worst = 0.0
    for step in cached_steps:
        rows, cols = (step.positions >= 0).nonzero(as_tuple=True)
        worst = max(worst, float((step.logits[rows, cols] - full[rows, step.positions[rows, cols]]).abs().max()))
    assert worst < TOL, f"max |cached - full| = {worst:.2e}"
    for a, b in zip(cached_steps, plain_steps):  # and the uncached calls saw the same logits
        assert torch.equal(a.positions, b.positions) and (a.logits - b.logits).abs().max() < TOL
    # 3. and every position to generate was drawn exactly once
    drawn = torch.cat([s.positions[s.positions >= 0] + NG * (s.positions >= 0).nonzero()[:, 0] for s in cached_steps])
    expected = (template == FREE).flatten().nonzero()[:, 0]
    assert torch.equal(drawn.sort().values, expected)


# float32: rounding only (measured <= 1.4e-6 over this matrix). bf16: measured <= 0.035 for logits of
# size <= 1.7; 0.1 still separates rounding from the missing-rows bug, which moves them by 0.79 in bf16
DTYPE_TOL = {torch.float32: 1e-5, torch.bfloat16: 0.1}


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("dtype", list(DTYPE_TOL), ids=["float32", "bfloat16"])
def test_cached_generation_agrees_with_the_full_pass_in_lower_precision(dtype, arch):
    worst = 0.0
    for kind, template in templates().items():
        for plan_name in PLANS:
            kwargs = _kwargs(plan_name, template)
            if kwargs is None:
                continue
            for l2s in (1, 2, 4):
                model = sharp(make_model(max_len=NG, n_two_stream=l2s, **ARCHS[arch])).to(dtype)
                steps = []
                out = generate(model, template=template, generator=torch.Generator().manual_seed(7),
                               callback=steps.append, **kwargs)
                assert torch.equal(out.tokens[template >= 0], template[template >= 0])
                full = full_forward_logits(model, out).float()
                for step in steps:
                    rows, cols = (step.positions >= 0).nonzero(as_tuple=True)
                    diff = step.logits[rows, cols].float() - full[rows, step.positions[rows, cols]]
                    worst = max(worst, float(diff.abs().max()))
    assert worst < DTYPE_TOL[dtype], f"max |cached - full| = {worst:.2e} in {dtype}"


def test_the_exactness_check_can_fail():
    # the comparison in the test above is sensitive: without the given tokens' query rows in the
    # stack's cache (the old first call) the logits of later blocks move by far more than 1e-10
    model = sharp(make_model(max_len=NG, n_two_stream=2))
    template = templates()["prompt"]
    out = generate(model, template=template, generator=torch.Generator().manual_seed(7))
    full = full_forward_logits(model, out)
    order = out.order
    toks = out.tokens.gather(1, order)
    cache = ARMDCache(model, 3, check=False)  # commit the prompt, predict only the first free block (the old way)
    logits = cache.step(toks[:, :5], order[:, :5], list(range(1, 6)), order[:, 5:6], [6])
    assert (logits[:, 0] - full[torch.arange(3), order[:, 5]]).abs().max() > 1e-2
    with pytest.raises(ValueError, match="every committed token must also be predicted"):
        ARMDCache(model, 3).step(toks[:, :5], order[:, :5], list(range(1, 6)), order[:, 5:7], [6, 7])


def test_rows_of_a_ragged_batch_are_computed_as_if_alone():
    model = sharp(make_model(max_len=NG, n_two_stream=2))
    template = templates()["ragged prompts and lengths"]
    steps = []
    out = generate(model, template=template, streams=2, generator=torch.Generator().manual_seed(3),
                   callback=steps.append)
    for b in range(template.shape[0]):
        n_b = int((template[b] != PAD).sum())
        alone = generate(model, template=template[b:b + 1, :n_b], streams=2, generator=torch.Generator())
        order, blocks = alone.order, alone.blocks  # the row's own plan: same as in the batch
        assert torch.equal(order[0], out.order[b, :n_b]) and torch.equal(blocks[0], out.blocks[b, :n_b])
        with torch.no_grad():  # the batch's sample, scored by a forward pass of this row alone
            gen = model(out.tokens[b:b + 1, :n_b].gather(1, order), order, blocks)[0]
        by_pos = torch.empty_like(gen).scatter_(0, order[0][:, None].expand_as(gen), gen)
        for step in steps:
            for k in (step.positions[b] >= 0).nonzero()[:, 0]:
                assert (step.logits[b, k] - by_pos[step.positions[b, k]]).abs().max() < TOL


def test_cache_checks_the_calls_it_is_given():
    model = make_model(max_len=N)
    order, blocks = left_to_right(2, N)
    x = torch.randint(0, V, (2, N), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="must be committed before a later block"):  # block 2 sees block 1
        ARMDCache(model, 2).step(None, None, None, order[:, :2], [1, 2])
    cache = ARMDCache(model, 2)
    cache.step(None, None, None, order[:, :1], [1])
    cache.step(x[:, :1], order[:, :1], [1], order[:, 1:2], [2])
    with pytest.raises(ValueError, match="must be committed before a later block"):  # block 2 skipped
        cache.step(None, None, None, order[:, 2:3], [3])
    with pytest.raises(ValueError, match="twice"):
        ARMDCache(model, 2).step(None, None, None, torch.tensor([[0, 0], [1, 2]]), torch.tensor([[1, 1], [1, 1]]))
    with pytest.raises(ValueError, match=">= 1"):
        ARMDCache(model, 2).step(None, None, None, order[:, :1], [PAD])
    with pytest.raises(ValueError, match="query_pos must lie in"):
        ARMDCache(model, 2).step(None, None, None, order[:, :1] + N, [1])


@pytest.mark.parametrize("arch", list(ARCHS))
def test_ragged_calls_with_pad_entries_agree_with_the_full_pass(arch):
    # row 1 starts one call late: its entries of the first call are PAD, and stay masked afterwards
    model = sharp(make_model(max_len=N, **ARCHS[arch]))
    order, blocks = left_to_right(2, N)
    x = torch.randint(0, V, (2, N), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(x, order, blocks)  # (2, N, V)
    cache = ARMDCache(model, 2)
    first = cache.step(None, None, None, torch.tensor([[0], [0]]), torch.tensor([[1], [PAD]]))
    assert (first[0, 0] - full[0, 0]).abs().max() < TOL
    lag = torch.tensor([[0], [1]])  # row 1 is one position behind row 0
    for k in range(1, N):
        commit = torch.tensor([[k - 1], [k - 2]])
        commit_blocks = torch.tensor([[k], [k - 1 if k > 1 else PAD]])
        logits = cache.step(x.gather(1, commit.clamp(min=0)), commit.clamp(min=0), commit_blocks,
                            k - lag, k + 1 - lag)
        assert (logits[0, 0] - full[0, k]).abs().max() < TOL and (logits[1, 0] - full[1, k - 1]).abs().max() < TOL


def _bf16_drift(n=512):
    """Max |logit - fp32 full pass| of (full bf16 pass, cached bf16 decoding), left to right over n tokens."""
    import copy
    torch.manual_seed(0)
    m32 = make_model(torch.float32, vocab_size=65, max_len=n, n_layer=4, n_head=4, n_embd=64, d_pe=64,
                     pe_init="random")
    with torch.no_grad():  # a trained PE table is far from its 0.02 init; 0.3 makes S carry real weight
        m32.prefix.pe.weight.normal_(0.0, 0.3)
    x = torch.randint(0, 65, (2, n), generator=torch.Generator().manual_seed(1))
    order, blocks = left_to_right(2, n)
    mbf = copy.deepcopy(m32).to(torch.bfloat16)
    with torch.no_grad():
        ref, full = m32(x, order, blocks).float(), mbf(x, order, blocks).float()
    cache = ARMDCache(mbf, 2, check=False)
    out = [cache.step(None, None, None, order[:, :1], [1])]
    for k in range(1, n):
        out.append(cache.step(x[:, k - 1:k], order[:, k - 1:k], [k], order[:, k:k + 1], [k + 1]))
    cached = torch.cat(out, dim=1).float()
    return float((full - ref).abs().max()), float((cached - ref).abs().max()), cache.state.dtype


def test_bf16_cached_decoding_drifts_no_more_than_the_full_bf16_pass(monkeypatch):
    # the prefix state S sums one outer product per token: kept in bf16 it is rounded at every step.
    # Measured (N = 512): full bf16 pass 0.0060, cached with a float32 S 0.0056, with a bf16 S 0.0198
    full, cached, dtype = _bf16_drift()
    assert dtype == torch.float32 and cached <= 1.5 * full
    from minarmd.two_stream import PrefixAggregation  # the check fails for a bf16 state (the old code)
    monkeypatch.setattr(PrefixAggregation, "init_state",
                        lambda self, x: x.new_zeros(x.shape[0], self.pe.embedding_dim, x.shape[-1]))
    full, cached, dtype = _bf16_drift()
    assert dtype == torch.bfloat16 and cached > 2 * full
