"""The samplers draw from the distributions the models define, with or without the KV cache."""
import itertools

import pytest
import torch

from conftest import make_model
from minarmd.ar import GPT, ar_loss
from minarmd.config import TransformerConfig
from minarmd.loss import armd_loss
from minarmd.mdm import MDM
from minarmd.permutation import random_order, singleton_blocks
from minarmd.kinds import fill
from minarmd.sampler import FREE, PAD, draw, generate, generate_steps, make_template, sample_ar, sample_mdm
from minarmd.template import plan, stack_rows

V, N, DRAWS = 3, 3, 6000


def empirical_vs_model(samples, logp):
    """Total-variation distance between sample frequencies and the model's probabilities.

    With 6000 draws over 27 outcomes the expected TV distance of an exact sampler is about
    0.5 * sum sqrt(p(1-p)/n) <= 0.5 * sqrt(27/6000) = 0.034; 0.06 leaves room, and a sampler
    that ignores the context (tested below) is off by far more.
    """
    index = (samples * torch.tensor([V * V, V, 1])).sum(1)
    freq = torch.bincount(index, minlength=V ** N).double() / samples.shape[0]
    return 0.5 * float((freq - logp.exp()).abs().sum())


SEQS = torch.tensor(list(itertools.product(range(V), repeat=N)))  # all 27 sequences


def sharp_armd(n=N, vocab=V, **kw):
    model = make_model(vocab_size=vocab, max_len=n, **kw)
    with torch.no_grad():
        model.wte.weight.mul_(40)  # sharpen the untrained model's (tied) logits: far from uniform
    return model


def armd_logp(model, order):
    o = order.expand(len(SEQS), N)
    with torch.no_grad():
        return -armd_loss(model, SEQS, o, singleton_blocks(len(SEQS), N), per_token=True).sum(1)


@pytest.mark.parametrize("cache", [True, False])
def test_armd_sampler_matches_the_model_in_a_given_order(cache):
    model = sharp_armd()
    order, _ = random_order(1, N, torch.Generator().manual_seed(5))
    samples = generate(model, N, DRAWS, order=order[0], generator=torch.Generator().manual_seed(0),
                       cache=cache).tokens
    logp = armd_logp(model, order)
    assert empirical_vs_model(samples, logp) < 0.06
    uniform = torch.randint(0, V, (DRAWS, N), generator=torch.Generator().manual_seed(0))
    assert empirical_vs_model(uniform, logp) > 0.06  # the check rejects a wrong sampler


def test_random_order_sampler_is_the_mixture_over_orders():
    # order="random" draws a uniform order per row, so samples follow the average of the 6 joints
    model = sharp_armd()
    samples = generate(model, N, DRAWS, order="random", generator=torch.Generator().manual_seed(0)).tokens
    mixture = torch.stack([armd_logp(model, torch.tensor([p])).exp()
                           for p in itertools.permutations(range(N))]).mean(0)
    assert empirical_vs_model(samples, mixture.log()) < 0.06
    assert empirical_vs_model(samples, armd_logp(model, torch.tensor([[2, 1, 0]]))) > 0.06


@pytest.mark.parametrize("cache", [True, False])
def test_ar_sampler_matches_the_model(cache):
    torch.manual_seed(0)
    model = GPT(TransformerConfig(vocab_size=V, max_len=N, n_layer=2, n_head=2, n_embd=16)).double()
    with torch.no_grad():
        model.net.wte.weight.mul_(40)
    samples = sample_ar(model, N, DRAWS, generator=torch.Generator().manual_seed(1), cache=cache).tokens
    with torch.no_grad():
        logp = -ar_loss(model, SEQS, per_token=True).sum(1)
    assert empirical_vs_model(samples, logp) < 0.06


@pytest.mark.parametrize("streams,order", [(1, "l2r"), (1, "random"), (2, "l2r"), (4, "l2r")])
def test_cached_and_uncached_armd_samples_are_identical(streams, order):
    # float64 logits agree to ~1e-15, so the same generator gives the same draws
    model = sharp_armd(n=16, vocab=13)
    runs = [generate(model, 16, 3, streams=streams, order=order, generator=torch.Generator().manual_seed(7),
                     cache=cache) for cache in (True, False)]
    assert torch.equal(runs[0].tokens, runs[1].tokens) and runs[0].calls == runs[1].calls


def test_ar_cached_and_uncached_samples_are_identical():
    torch.manual_seed(0)
    model = GPT(TransformerConfig(vocab_size=13, max_len=16, n_layer=2, n_head=2, n_embd=16)).double()
    runs = [sample_ar(model, 16, 3, prompt=[1, 2, 3], generator=torch.Generator().manual_seed(7), cache=c)
            for c in (True, False)]
    assert torch.equal(runs[0].tokens, runs[1].tokens) and (runs[0].tokens[:, :3] == torch.tensor([1, 2, 3])).all()


@pytest.mark.parametrize("streams", [1, 2, 4, 8])
def test_every_position_is_generated_once_with_the_expected_calls(streams):
    model = make_model(vocab_size=13, max_len=16)
    out = generate(model, 16, 2, streams=streams, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.order.sort(dim=1).values, torch.arange(16).expand(2, 16))
    assert out.calls == streams + 16 // streams - 1 if streams > 1 else out.calls == 16
    assert int(out.blocks.max()) == out.calls and out.tokens.min() >= 0 and out.tokens.max() < 13


def test_one_stream_is_sequential_left_to_right():
    model = make_model(vocab_size=13, max_len=16)
    a = generate(model, 16, 2, streams=1, generator=torch.Generator().manual_seed(3))
    b = generate(model, 16, 2, order=torch.arange(16), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.order, torch.arange(16).expand(2, 16))


@pytest.mark.parametrize("streams", [1, 2, 3])
def test_given_tokens_stay_and_come_first(streams):
    model = make_model(vocab_size=13, max_len=16)
    template = make_template(16, 2, prompt=[5, 6, 7], suffix=[8, 9, 10, 11, 12, 0])
    template[1, 5] = 4  # scattered given tokens: same count per row
    template[0, 6] = 4
    out = generate(model, template=template, streams=streams, generator=torch.Generator().manual_seed(0))
    given = template != FREE
    assert torch.equal(out.tokens[given], template[given]) and (out.tokens >= 0).all()
    assert (given.gather(1, out.order[:, :10])).all()  # the 10 given positions open the order
    assert out.calls == (6 if streams == 1 else streams + 6 // streams - 1)


def test_strided_plan_matches_the_paper_example():
    order, blocks = plan(make_template(8), streams=2)
    assert order[0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7] and blocks[0].tolist() == [1, 2, 3, 3, 4, 4, 5, 5]
    order, blocks = plan(make_template(10, prompt=[1, 2]), streams=2)  # strided over the 8 free positions
    assert order[0].tolist() == [0, 1, 2, 6, 3, 7, 4, 8, 5, 9]
    assert blocks[0].tolist() == [1, 2, 3, 4, 5, 5, 6, 6, 7, 7]


def test_mdm_sampler_fills_every_position_and_keeps_given_tokens():
    torch.manual_seed(0)
    mdm = MDM(TransformerConfig(vocab_size=V, max_len=8, n_layer=2, n_head=2, n_embd=16))
    out = sample_mdm(mdm, 8, 2, steps=4, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape == (2, 8) and (out.tokens != mdm.mask_id).all() and 1 <= out.calls <= 4
    template = make_template(8, 2, prompt=[2, 1])
    kept = sample_mdm(mdm, template=template, generator=torch.Generator().manual_seed(0))
    assert (kept.tokens[:, :2] == torch.tensor([2, 1])).all() and kept.calls <= 6


def test_mdm_sampler_matches_the_model_with_one_step():
    # with a single step every token is revealed at once from p(x_n | all masked): a product law
    torch.manual_seed(0)
    mdm = MDM(TransformerConfig(vocab_size=V, max_len=N, n_layer=2, n_head=2, n_embd=16)).double()
    with torch.no_grad():
        mdm.net.wte.weight.mul_(40)
    samples = sample_mdm(mdm, N, DRAWS, steps=1, generator=torch.Generator().manual_seed(0)).tokens
    with torch.no_grad():
        logp1 = torch.log_softmax(mdm(torch.full((1, N), mdm.mask_id)), -1)[0]  # (N, V)
    logp = logp1[torch.arange(N), SEQS].sum(1)
    assert empirical_vs_model(samples, logp) < 0.06


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.tensor([0.5, 0.3, 0.2]).log().expand(20000, 3)
    gen = torch.Generator().manual_seed(0)
    assert (draw(logits, top_k=1, generator=gen) == 0).all()
    x = draw(logits, top_p=0.6, generator=gen)  # keeps {0.5, 0.3}: renormalised 0.625 / 0.375
    freq = torch.bincount(x, minlength=3).double() / len(x)
    # binomial std of a frequency from 20000 draws is sqrt(.625 * .375 / 20000) = 0.0034: 0.015 is 4.4 std
    assert freq[2] == 0 and abs(freq[0] - 0.625) < 0.015
    y = draw(logits, top_k=2, temperature=0.5, generator=gen)  # p^2: .25, .09 -> .735 / .265
    freq = torch.bincount(y, minlength=3).double() / len(y)
    assert freq[2] == 0 and abs(freq[0] - 0.25 / 0.34) < 0.015


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=16, streams=17), "exceeds the number of positions"),
    (dict(template=torch.tensor([[3, 4, FREE, FREE]]), streams=3), "exceeds the number of positions"),
    (dict(template=torch.tensor([[3, 4, 5, 6]])), "nothing to generate"),
    (dict(n=16, temperature=0.0), "temperature"),
    (dict(n=16, temperature=-1.0), "temperature"),
    (dict(n=16, top_p=0.0), "top_p"),
    (dict(n=16, top_p=1.5), "top_p"),
    (dict(n=16, top_k=0), "top_k"),
    (dict(n=32), "max_len"),
    (dict(template=torch.tensor([[3, 99, FREE, FREE]])), "vocab"),
    (dict(template=torch.tensor([[3, FREE, FREE], [FREE, FREE, FREE]]), order=torch.tensor([0, 1])),
     "same number of FREE"),
    (dict(template=torch.tensor([[3, PAD, FREE, FREE]])), "PAD .* may only end a row"),
    (dict(template=torch.tensor([[3, 4, PAD, PAD]])), "no FREE position"),
    (dict(n=16, stop_token=13), "stop_token"),
    (dict(n=16, order="backwards"), "order"),
    (dict(n=4, order=torch.tensor([0, 0, 1, 2])), "permutation"),
])
def test_bad_input_gets_a_clear_error(kwargs, match):
    model = make_model(vocab_size=13, max_len=16)
    with pytest.raises(ValueError, match=match):
        generate(model, **kwargs)


def test_a_prompt_longer_than_n_is_refused():
    with pytest.raises(ValueError, match="prompt"):
        make_template(8, prompt=list(range(9)))
    torch.manual_seed(0)
    gpt = GPT(TransformerConfig(vocab_size=13, max_len=8, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="prompt"):
        sample_ar(gpt, 8, prompt=list(range(8)))
    with pytest.raises(ValueError, match="vocab"):
        sample_ar(gpt, 8, prompt=[1, 13])


def test_each_sampler_names_the_one_a_model_needs():
    torch.manual_seed(0)
    gpt = GPT(TransformerConfig(vocab_size=13, max_len=8, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="use sample_ar"):
        generate(gpt, 8)
    with pytest.raises(ValueError, match="use generate"):
        sample_mdm(make_model(vocab_size=13, max_len=8), 8)


def test_sampling_runs_without_dropout_and_restores_the_training_mode():
    model = make_model(vocab_size=13, max_len=16, dropout=0.5).train()
    a = generate(model, 16, 2, generator=torch.Generator().manual_seed(0))
    assert model.training  # restored
    b = generate(model.eval(), 16, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.tokens, b.tokens)  # dropout was off while sampling


def test_samples_are_ordinary_tensors_that_can_train_a_model():
    # the samplers run under torch.inference_mode; their outputs must still work with autograd
    model = make_model(vocab_size=13, max_len=16)
    torch.manual_seed(0)
    gpt = GPT(TransformerConfig(vocab_size=13, max_len=16, n_layer=1, n_head=2, n_embd=16))
    mdm = MDM(TransformerConfig(vocab_size=13, max_len=16, n_layer=1, n_head=2, n_embd=16))
    gen = torch.Generator().manual_seed(0)
    for out in (generate(model, 16, 2, generator=gen), sample_ar(gpt, 16, 2, generator=gen),
                sample_mdm(mdm, 16, 2, generator=gen)):
        assert not out.tokens.is_inference()
        ar_loss(gpt, out.tokens).backward()


# ----------------------------------------------------------------------------- ragged batches, S not dividing m

def test_rows_may_give_different_tokens_and_have_different_lengths():
    model = make_model(vocab_size=13, max_len=16)
    template = stack_rows([torch.tensor([5, 6, 7] + [FREE] * 9), torch.tensor([FREE] * 6 + [8] + [FREE] * 9),
                           torch.tensor([1] + [FREE] * 4)])
    out = generate(model, template=template, streams=2, generator=torch.Generator().manual_seed(0))
    given, absent = template >= 0, template == PAD
    assert torch.equal(out.tokens[given], template[given]) and torch.equal(out.tokens == PAD, absent)
    assert ((out.tokens >= 0) | absent).all()
    # each row takes S + ceil(m/S) - 1 calls for its m free positions; the batch as many as its longest row
    m = (template == FREE).sum(1).tolist()  # [9, 15, 4]
    assert out.calls == max(2 + -(-mb // 2) - 1 for mb in m) == 9


@pytest.mark.parametrize("m,streams", [(10, 4), (7, 2), (9, 4), (5, 5), (13, 3)])
def test_streams_not_dividing_the_free_count_make_the_last_runs_shorter(m, streams):
    order, blocks = plan(make_template(m + 2, prompt=[1, 2]), streams=streams)
    free_order, free_blocks = order[0, 2:] - 2, blocks[0, 2:] - 2  # the free part, as positions 0..m-1
    # runs as even as possible, the first m mod S one longer: run s starts at the s-th head
    base, extra = divmod(m, streams)
    lengths = [base + (s < extra) for s in range(streams)]
    heads = [sum(lengths[:s]) for s in range(streams)]
    assert free_order[:streams].tolist() == heads and free_blocks[:streams].tolist() == list(range(1, streams + 1))
    calls = len(torch.unique(free_blocks))
    assert calls == streams + -(-m // streams) - 1  # S + ceil(m/S) - 1
    for j in range(1, -(-m // streams)):  # block S + j holds x_j of every run long enough
        in_block = free_order[free_blocks == streams + j].tolist()
        assert in_block == [heads[s] + j for s in range(streams) if j < lengths[s]]
    assert sorted(free_order.tolist()) == list(range(m))


# ----------------------------------------------------------------------------- log-probabilities, stopping, steps

def test_logprobs_are_the_models_own_log_likelihood():
    model = sharp_armd(n=12, vocab=13)
    out = generate(model, 12, 4, temperature=0.7, top_k=5, generator=torch.Generator().manual_seed(0))
    order, blocks = out.order, out.blocks
    with torch.no_grad():
        nll = armd_loss(model, out.tokens, order, blocks, per_token=True)  # (B, N) in generation order
    assert torch.allclose(out.logprobs.sum(1), -nll.sum(1), atol=1e-10, rtol=0)  # temperature 1, untruncated
    template = make_template(12, 2, prompt=[1, 2], suffix=[3])
    filled = generate(model, template=template, streams=2, generator=torch.Generator().manual_seed(1))
    given = template >= 0
    assert filled.logprobs[given].isnan().all() and not filled.logprobs[~given].isnan().any()
    assert (filled.logprobs[~given] <= 0).all()


def test_stop_token_cuts_and_stops_early_left_to_right():
    model = sharp_armd(n=16, vocab=13)
    stop = int(generate(model, 16, 1, generator=torch.Generator().manual_seed(0)).tokens[0, 3])  # likely enough
    runs = {s: generate(model, template=make_template(16, 6, prompt=[1]), stop_token=s,
                        generator=torch.Generator().manual_seed(5)) for s in (None, stop)}
    free, cut = runs[None].tokens, runs[stop].tokens
    for b in range(6):
        hits = (free[b, 1:] == stop).nonzero()
        first = int(hits[0]) + 1 if len(hits) else 16
        assert torch.equal(cut[b, :first + 1], free[b, :first + 1]) and (cut[b, first:] == stop).all()
        assert cut[b, first + 1:].numel() == 0 or runs[stop].logprobs[b, first + 1:].isnan().all()
    assert runs[stop].calls <= runs[None].calls
    # in a random order the later positions may be drawn first: no early stop, the same cut
    rand = {s: generate(model, 16, 6, order="random", stop_token=s, generator=torch.Generator().manual_seed(5))
            for s in (None, stop)}
    assert rand[stop].calls == rand[None].calls == 16
    hit = rand[None].tokens == stop
    after = (torch.cumsum(hit.long(), 1) - hit.long()) > 0
    assert torch.equal(rand[stop].tokens, torch.where(after, stop, rand[None].tokens))


def test_callback_and_generate_steps_see_every_call():
    model = make_model(vocab_size=13, max_len=16)
    template = make_template(16, 2, prompt=[1, 2, 3, 4])
    steps = []
    out = generate(model, template=template, streams=4, generator=torch.Generator().manual_seed(0),
                   callback=steps.append)
    live = list(generate_steps(model, template=template, streams=4, generator=torch.Generator().manual_seed(0)))
    assert len(steps) == len(live) == out.calls == 4 + 12 // 4 - 1
    for a, b in zip(steps, live):
        assert torch.equal(a.sequence, b.sequence) and torch.equal(a.positions, b.positions)
    assert [int((s.positions[0] >= 0).sum()) for s in steps] == [1, 1, 1, 1, 4, 4]
    assert torch.equal(steps[-1].sequence, out.tokens) and (steps[0].sequence == FREE).sum() == 2 * 11
    with pytest.raises(ValueError, match="unknown arguments"):
        next(generate_steps(model, 16, streams=2, callback=print))


def test_non_finite_logits_get_a_clear_error():
    model = make_model(vocab_size=13, max_len=16)
    with torch.no_grad():
        model.wte.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite logits"):
        generate(model, 16)


# ----------------------------------------------------------------------------- baselines with templates

def _gpt(vocab=13, n=16):
    torch.manual_seed(0)
    return GPT(TransformerConfig(vocab_size=vocab, max_len=n, n_layer=2, n_head=2, n_embd=16)).double()


def test_ar_sampler_takes_prompts_of_different_lengths():
    gpt = _gpt()
    template = stack_rows([torch.tensor([1, 2] + [FREE] * 10), torch.tensor([3, 4, 5, 6, 7] + [FREE] * 11)])
    runs = [sample_ar(gpt, template=template, generator=torch.Generator().manual_seed(2), cache=c)
            for c in (True, False)]
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    out = runs[0]
    assert torch.equal(out.tokens[template >= 0], template[template >= 0]) and (out.tokens[0, 12:] == PAD).all()
    with torch.no_grad():  # each row's logprobs are the model's, row by row on its own
        for b, n_b in ((0, 12), (1, 16)):
            logp = torch.log_softmax(gpt(out.tokens[b:b + 1, :n_b]), -1)[0]
            drawn = template[b, :n_b] == FREE
            expected = logp[torch.arange(n_b), out.tokens[b, :n_b]][drawn]
            assert torch.allclose(out.logprobs[b, :n_b][drawn], expected, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="given tokens must form a prompt"):
        sample_ar(gpt, template=make_template(16, suffix=[1, 2]))


def test_mdm_rows_of_different_lengths_are_computed_as_if_alone():
    torch.manual_seed(0)
    mdm = MDM(TransformerConfig(vocab_size=13, max_len=12, n_layer=2, n_head=2, n_embd=16)).double()
    x = torch.randint(0, 14, (2, 12), generator=torch.Generator().manual_seed(0))
    present = torch.arange(12) < torch.tensor([[12], [7]])
    with torch.no_grad():
        both = mdm(x, present)
        assert (both[1, :7] - mdm(x[1:, :7])[0]).abs().max() < 1e-12
        assert (mdm(x)[1, :7] - mdm(x[1:, :7])[0]).abs().max() > 1e-3  # without the mask the padding leaks
    template = stack_rows([torch.tensor([2] + [FREE] * 11), torch.tensor([FREE] * 5 + [3, 4])])
    out = sample_mdm(mdm, template=template, generator=torch.Generator().manual_seed(0))
    assert (out.tokens[1, 7:] == PAD).all() and out.tokens[0, 0] == 2 and (out.tokens[:, :7] >= 0).all()
    assert not out.logprobs[template == FREE].isnan().any() and out.logprobs[template != FREE].isnan().all()


def test_fill_dispatches_on_the_model_kind_and_names_what_does_not_apply():
    template = make_template(16, 2, prompt=[1, 2])
    gen = torch.Generator().manual_seed(0)
    assert fill(make_model(vocab_size=13, max_len=16), template, streams=2, generator=gen).calls == 2 + 7 - 1
    assert fill(_gpt(), template, generator=gen).calls == 14
    torch.manual_seed(0)
    mdm = MDM(TransformerConfig(vocab_size=13, max_len=16, n_layer=1, n_head=2, n_embd=16))
    assert fill(mdm, template, steps=4, generator=gen).calls <= 4
    with pytest.raises(ValueError, match="generates left to right"):
        fill(_gpt(), template, streams=2)
    with pytest.raises(ValueError, match="denoising steps"):
        fill(mdm, template, order="random")
    with pytest.raises(ValueError, match="steps is the MDM"):
        fill(make_model(vocab_size=13, max_len=16), template, steps=3)


def test_no_sampler_changes_the_template_it_is_given():
    template = stack_rows([torch.tensor([1, 2] + [FREE] * 6), torch.tensor([3] + [FREE] * 9)])
    torch.manual_seed(0)
    mdm = MDM(TransformerConfig(vocab_size=13, max_len=16, n_layer=1, n_head=2, n_embd=16))
    for model in (make_model(vocab_size=13, max_len=16), _gpt(), mdm):
        for cache in (True, False):
            before = template.clone()
            extra = {} if model is mdm else {"cache": cache}
            fill(model, template, generator=torch.Generator().manual_seed(0), **extra)
            assert torch.equal(template, before)
