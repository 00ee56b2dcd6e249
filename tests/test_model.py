"""The ARMD network's defining properties, in float64: strict causality over blocks, permutation
equivariance, exact normalisation. Each property is also shown to FAIL on a model that breaks it
(``query_stream_init="token"`` builds the naive query from x_n itself, the leak of the paper's Sec. 3),
so these tests can fail."""
import itertools

import pytest
import torch

from conftest import make_model
from minarmd import masking, masks, permutation
from minarmd.loss import armd_loss


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():  # these tests only read logits
        yield


def structures(n, generator):
    """(name, order, blocks) for one sequence of length n: the block structures ARMD uses."""
    yield ("left-to-right", *permutation.left_to_right(1, n))
    yield ("random", *permutation.random_order(1, n, generator))
    yield ("strided S=2", *permutation.strided_order(n, 2))
    for T in (2, 3):
        tau = masking.sample_mask_times(masking.alpha_schedule("linear", T), (1, n), generator)
        yield (f"T={T} masking", *permutation.order_from_mask_times(tau, T))


def causality_violations(model, tokens, pos, blocks, vocab):
    """Change each token in turn; list every (changed, affected) pair that breaks strict causality:
    a logit of the same or an earlier block that moved (> 1e-12), or a later one that did not."""
    base = model(tokens, pos, blocks)
    problems = []
    for k in range(tokens.shape[1]):
        changed = tokens.clone()
        changed[0, k] = (changed[0, k] + 1) % vocab
        diff = (model(changed, pos, blocks) - base).abs().amax(-1)[0]  # (M,)
        for j in range(tokens.shape[1]):
            later = blocks[0, j] > blocks[0, k]
            if (not later and diff[j] > 1e-12) or (later and diff[j] < 1e-9):
                problems.append((k, j, float(diff[j])))
    return problems


def test_strict_causality_for_every_token_and_block_structure():
    model = make_model()
    g = torch.Generator().manual_seed(0)
    n = 10
    tokens_orig = torch.randint(0, 13, (1, n), generator=g)
    for name, order, blocks in structures(n, g):
        tokens = tokens_orig.gather(1, order)
        assert causality_violations(model, tokens, order, blocks, 13) == [], name


def test_causality_check_catches_the_naive_query_leak():
    leaky = make_model(query_stream_init="token")
    order, blocks = permutation.left_to_right(1, 6)
    tokens = torch.randint(0, 13, (1, 6), generator=torch.Generator().manual_seed(0))
    problems = causality_violations(leaky, tokens, order, blocks, 13)
    # the token's own logit moves when the token changes: the strict mask alone does not prevent it
    assert any(k == j for k, j, _ in problems)


@pytest.mark.parametrize("n_two_stream", [0, 1, 2, 4])
def test_causality_holds_for_every_split_of_layers(n_two_stream):
    model = make_model(n_two_stream=n_two_stream)
    g = torch.Generator().manual_seed(1)
    _, order, blocks = list(structures(8, g))[3]  # a T=2 masking trajectory: multi-token blocks
    tokens = torch.randint(0, 13, (1, 8), generator=g).gather(1, order)
    assert causality_violations(model, tokens, order, blocks, 13) == []


def random_within_block_permutation(blocks_row, generator):
    perm = torch.arange(len(blocks_row))
    for b in blocks_row.unique():
        idx = (blocks_row == b).nonzero().flatten()
        perm[idx] = idx[torch.randperm(len(idx), generator=generator)]
    return perm


def test_permuting_tokens_inside_blocks_permutes_the_logits_and_nothing_else():
    model = make_model()
    g = torch.Generator().manual_seed(2)
    n = 12
    x = torch.randint(0, 13, (1, n), generator=g)
    for name, order, blocks in structures(n, g):
        if name in ("left-to-right", "random"):
            continue  # singleton blocks: nothing to permute
        tokens = x.gather(1, order)
        base = model(tokens, order, blocks)
        perm = random_within_block_permutation(blocks[0], g)
        assert not torch.equal(perm, torch.arange(n)), name
        moved = model(tokens[:, perm], order[:, perm], blocks)  # tokens move with their positions
        assert (moved - base[:, perm]).abs().max() <= 1e-10, name


def test_reordering_earlier_blocks_leaves_later_logits_unchanged():
    model = make_model()
    g = torch.Generator().manual_seed(3)
    order, blocks = permutation.strided_order(12, 3)  # blocks 1,2,3 singletons, then blocks of 3
    tokens = torch.randint(0, 13, (1, 12), generator=g).gather(1, order)
    base = model(tokens, order, blocks)
    early = blocks[0] <= 4  # reorder only the tokens of blocks 1..4 (each keeps its block id)
    perm = random_within_block_permutation(blocks[0], g)
    perm[~early] = torch.arange(12)[~early]
    out = model(tokens[:, perm], order[:, perm], blocks)
    assert (out[:, ~early] - base[:, ~early]).abs().max() <= 1e-10


def test_equivariance_check_is_sensitive_to_positions():
    # moving tokens WITHOUT their positions is a different input: the logits must change
    model = make_model()
    order, blocks = permutation.strided_order(8, 2)
    tokens = torch.randint(0, 13, (1, 8), generator=torch.Generator().manual_seed(4)).gather(1, order)
    perm = torch.tensor([0, 1, 3, 2, 4, 5, 6, 7])  # swap within block 3
    base = model(tokens, order, blocks)
    wrong = model(tokens[:, perm], order, blocks)  # positions not moved along
    assert (wrong - base[:, perm]).abs().max() > 1e-6


def all_sequences(vocab, n):
    return torch.tensor(list(itertools.product(range(vocab), repeat=n)))  # (V^n, n)


def total_probability(model, order, blocks, vocab, n):
    xs = all_sequences(vocab, n)
    nll = armd_loss(model, xs, order.expand_as(xs), blocks.expand_as(xs), per_token=True)
    return torch.exp(-nll.sum(1)).sum()


def test_probabilities_of_all_sequences_sum_to_one():
    model = make_model(vocab_size=3, max_len=4)
    g = torch.Generator().manual_seed(5)
    for name, order, blocks in structures(4, g):
        total = total_probability(model, order, blocks, vocab=3, n=4)
        assert abs(float(total) - 1.0) <= 1e-12, (name, float(total))


def test_normalisation_check_catches_a_leaky_model():
    leaky = make_model(vocab_size=3, max_len=4, query_stream_init="token")
    order, blocks = permutation.left_to_right(1, 4)
    assert abs(float(total_probability(leaky, order, blocks, vocab=3, n=4)) - 1.0) > 1e-6


def test_first_block_conditions_on_bos_and_position_only():
    model = make_model()
    pos = torch.tensor([[5]])
    a = model(torch.tensor([[2]]), pos, torch.tensor([[1]]))
    b = model(torch.tensor([[7]]), pos, torch.tensor([[1]]))
    assert torch.equal(a, b) and torch.isfinite(a).all()
    c = model(torch.tensor([[2]]), torch.tensor([[6]]), torch.tensor([[1]]))
    assert (a - c).abs().max() > 1e-9  # ... but it knows where it is


def test_a_subset_of_positions_is_a_valid_call():
    model = make_model()
    g = torch.Generator().manual_seed(6)
    pos = torch.tensor([[20, 3, 11, 7, 0]])  # any distinct positions, any order of listing
    blocks = torch.tensor([[1, 1, 2, 3, 3]])
    tokens = torch.randint(0, 13, (1, 5), generator=g)
    logits = model(tokens, pos, blocks)
    assert logits.shape == (1, 5, 13) and logits.dtype == torch.float64
    # the prefix of the call (blocks <= 2) gives the same logits for those tokens
    assert (model(tokens[:, :3], pos[:, :3], blocks[:, :3]) - logits[:, :3]).abs().max() <= 1e-12


def test_batch_rows_are_independent():
    model = make_model()
    g = torch.Generator().manual_seed(7)
    tau = masking.sample_mask_times(masking.alpha_schedule("cosine", 3), (3, 9), g)
    order, blocks = permutation.order_from_mask_times(tau, 3)
    tokens = torch.randint(0, 13, (3, 9), generator=g).gather(1, order)
    batched = model(tokens, order, blocks)
    for row in range(3):
        one = model(tokens[row:row + 1], order[row:row + 1], blocks[row:row + 1])
        assert (one - batched[row:row + 1]).abs().max() <= 1e-12


def test_parameter_count_is_a_plain_transformer_plus_the_pe_table():
    from minarmd import Transformer, TransformerConfig
    model = make_model(dtype=torch.float32)
    cfg = model.cfg
    plain = Transformer(TransformerConfig(vocab_size=cfg.vocab_size, max_len=cfg.max_len, n_layer=cfg.n_layer,
                                          n_head=cfg.n_head, n_embd=cfg.n_embd))
    extra = (cfg.max_len + 1) * cfg.d_pe + cfg.n_embd  # the PE table and the BOS embedding
    assert model.num_params() == plain.num_params() + extra


def test_return_hidden_and_float32():
    model = make_model(dtype=torch.float32)
    order, blocks = permutation.left_to_right(2, 6)
    logits, hidden = model(torch.zeros(2, 6, dtype=torch.long), order, blocks, return_hidden=True)
    assert logits.dtype == torch.float32 and hidden.shape == (2, 6, 16)


# ---- embeddings=: the model as a function of its input vectors --------------------------------------

def test_given_embeddings_of_the_tokens_give_the_same_logits_bit_for_bit():
    g = torch.Generator().manual_seed(5)
    for dtype in (torch.float64, torch.float32):
        model = make_model(dtype=dtype)
        for name, order, blocks in structures(8, g):
            tokens = torch.randint(0, 13, (1, 8), generator=g).gather(1, order)
            expected = model(tokens, order, blocks, return_hidden=True)
            got = model(tokens, order, blocks, return_hidden=True, embeddings=model.wte(tokens))
            assert all(torch.equal(a, b) for a, b in zip(got, expected)), (name, dtype)


def test_jacobian_with_respect_to_the_embeddings_is_strictly_causal():
    model = make_model()  # float64
    order, blocks = permutation.strided_order(8, 2)
    ids = torch.zeros(1, 8, dtype=torch.long)  # only the shape counts: the vectors are given

    def f(e):  # (N, D) -> (N, D), the final query stream
        return model(ids, order, blocks, embeddings=e[None], return_hidden=True)[1][0]

    with torch.enable_grad():
        jac = torch.autograd.functional.jacobian(f, torch.randn(8, 16, dtype=torch.float64))  # (N, D, N, D)
    depends = jac.pow(2).sum(dim=(1, 3)).sqrt() > 0  # (N, N)
    assert torch.equal(depends, masks.strictly_causal_mask(blocks)[0])


@pytest.mark.parametrize("bad,match", [
    (lambda e: e[0], r"embeddings must be a \(B, M, D\) = \(2, 6, 16\) tensor"),
    (lambda e: e[:, :5], r"embeddings must be a \(B, M, D\)"),
    (lambda e: e[..., :8], r"got Tensor of shape \(2, 6, 8\)"),
    (lambda e: e.float(), "embeddings must have the model's dtype and device"),
    (lambda e: e.tolist(), "embeddings must be a"),
])
def test_bad_embeddings_name_the_argument(bad, match):
    model = make_model()
    tokens, (order, blocks) = torch.zeros(2, 6, dtype=torch.long), permutation.left_to_right(2, 6)
    with pytest.raises(ValueError, match=match):
        model(tokens, order, blocks, embeddings=bad(model.wte(tokens)))
