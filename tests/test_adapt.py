"""From GPT to ARMD (adapt.py): the converted content stream is the GPT, layer by layer, in any order.

The equality is exact arithmetic on the same weights, so float64 agrees to 1e-12; against Hugging Face's
GPT-2 (float32, another implementation of the same maths) to 1e-5.
"""
import itertools
import json
import sys

import pytest
import torch

from minarmd import adapt
from minarmd.adapt import NEW_PARAMETERS, armd_from_gpt, armd_from_hf_gpt2
from minarmd.ar import GPT
from minarmd.checkpoint import load_model
from minarmd.config import ARCHS, ARMDConfig, TransformerConfig
from minarmd.loss import token_nll
from minarmd.model import ARMD
from minarmd.train_config import TrainConfig
from minarmd.training import train_model

V, N = 13, 10


def gpt(arch="rope", n_layer=3, seed=0):
    torch.manual_seed(seed)
    return GPT(TransformerConfig(vocab_size=V, max_len=N, n_layer=n_layer, n_head=2, n_embd=16,
                                 **ARCHS[arch])).double().eval()


def listed(x, order):
    """The GPT's view of tokens listed in ``order``: [BOS, x_order] at positions [0, order + 1]."""
    B = x.shape[0]
    bos = torch.full((B, 1), V, dtype=torch.long)
    zeros = torch.zeros(B, 1, dtype=torch.long)
    return torch.cat([bos, x.gather(1, order)], 1), torch.cat([zeros, order + 1], 1)


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("n_two_stream", [1, 3])
@pytest.mark.parametrize("order_kind", ["l2r", "random", "reversed"])
def test_content_stream_is_the_gpt_in_any_order(arch, n_two_stream, order_kind):
    """X^l (every two-stream layer, BOS row included) == the GPT's h^l of the same list, <= 1e-12.
    The GPT reads at most N tokens, BOS and the first N - 1 listed ones: rows 0..N-1 are compared."""
    g = gpt(arch)
    armd = armd_from_gpt(g, n_two_stream=n_two_stream).eval()
    assert armd.cfg.position_embedding == g.cfg.position_embedding
    x = torch.randint(V, (3, N), generator=torch.Generator().manual_seed(1))
    order = {"l2r": torch.arange(N).expand(3, N),
             "random": torch.stack([torch.randperm(N, generator=torch.Generator().manual_seed(s)) for s in range(3)]),
             "reversed": torch.arange(N - 1, -1, -1).expand(3, N)}[order_kind]
    content = armd.content_states(x.gather(1, order), order)
    tokens, pos = listed(x, order)
    hidden = g.net.hidden_states(tokens[:, :N], pos=pos[:, :N])
    assert len(content) == n_two_stream + 1
    for l, (a, b) in enumerate(zip(content, hidden)):
        assert a.dtype == torch.float64 and a.shape == (3, N + 1, 16)
        assert (a[:, :N] - b).abs().max() < 1e-12, (l, (a[:, :N] - b).abs().max())


@pytest.mark.parametrize("arch", list(ARCHS))
def test_left_to_right_content_stream_reproduces_the_gpts_logits(arch):
    """With L2s = L, lm_head(ln_f(X^L)) rows 0..N-1 are the GPT's own next-token logits (its input is
    BOS, x_1..x_{N-1}, the first N rows of the content stream)."""
    g = gpt(arch)
    armd = armd_from_gpt(g, n_two_stream=3).eval()
    x = torch.randint(V, (2, N), generator=torch.Generator().manual_seed(2))
    top = armd.content_states(x, torch.arange(N).expand(2, N))[-1]  # (B, N+1, D)
    logits = armd.lm_head(armd.ln_f(top))[:, :N]
    assert (logits - g(x)).abs().max() < 1e-12


def test_a_wrong_conversion_is_caught():
    """The check above fails on a conversion that shifts positions by one: it can fail."""
    g = gpt("gpt2")
    armd = armd_from_gpt(g, n_two_stream=3).eval()
    with torch.no_grad():
        armd.wpe.weight.copy_(armd.wpe.weight.roll(1, dims=0))
    x = torch.randint(V, (2, N), generator=torch.Generator().manual_seed(2))
    top = armd.content_states(x, torch.arange(N).expand(2, N))[-1]
    assert (armd.lm_head(armd.ln_f(top))[:, :N] - g(x)).abs().max() > 1e-3


def test_what_is_copied_and_what_is_new():
    g = gpt("rope", n_layer=4)
    gen = torch.Generator().manual_seed(5)
    armd = armd_from_gpt(g, n_two_stream=2, d_pe=8, pe_init="random", pe_init_std=0.02, generator=gen)
    assert torch.equal(armd.wte.weight, g.net.wte.weight[:V]) and torch.equal(armd.bos, g.net.wte.weight[V])
    assert armd.lm_head.weight is armd.wte.weight  # still tied
    for i, block in enumerate(g.net.blocks):
        target = armd.two_stream[i] if i < 2 else armd.causal[i - 2]
        for (na, a), (nb, b) in zip(block.named_parameters(), target.named_parameters()):
            assert na == nb and torch.equal(a, b)
    pe = armd.prefix.pe.weight
    assert NEW_PARAMETERS == ("prefix.pe.weight",) and pe.shape == (N + 1, 8)
    assert 0.01 < pe.std() < 0.03  # N(0, 0.02): 88 draws, the std within +-50 %
    again = armd_from_gpt(g, n_two_stream=2, d_pe=8, pe_init="random", generator=torch.Generator().manual_seed(5))
    assert torch.equal(again.prefix.pe.weight, pe)  # the generator alone decides PE
    state = torch.get_rng_state()
    armd_from_gpt(g, pe_init="random", generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)  # with a generator the global RNG is untouched


def test_neighbour_pe_kernel():
    """<PE_p, PE_q> = 1 for |p - q| = 1 and 0 for other p != q, to 1e-12; too narrow a table is refused."""
    table = adapt.neighbour_pe(9, 12)
    gram = table @ table.T
    p, q = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    off = p != q
    assert ((gram - ((p - q).abs() == 1).double())[off]).abs().max() < 1e-12
    assert torch.equal(table[:, 9:], torch.zeros(9, 3))
    with pytest.raises(ValueError, match="d_pe >= max_len \\+ 1 = 9"):
        adapt.neighbour_pe(9, 8)
    with pytest.raises(ValueError, match="pe_init must be one of"):
        armd_from_gpt(gpt(), pe_init="zeros")


@pytest.mark.parametrize("arch", list(ARCHS))
def test_neighbours_init_starts_the_query_stream_at_the_previous_token(arch):
    """Left to right, g^0_n = X^0_{n-1} (the row the GPT predicts x_n from), + wpe at the target for GPT-2's
    architecture; in another order, the sum of the neighbours already visible."""
    g = gpt(arch)
    armd = armd_from_gpt(g).eval()
    x = torch.randint(V, (2, N), generator=torch.Generator().manual_seed(4))
    pos = torch.arange(N).expand(2, N)
    x0 = armd.content_states(x, pos)[0]  # (B, N+1, D), BOS first
    pos_x = torch.cat([torch.zeros(2, 1, dtype=torch.long), pos + 1], 1)
    g0 = armd.prefix(x0, pos_x, pos + 1, None)
    assert (g0 - x0[:, :N]).abs().max() < 1e-12
    order = torch.tensor([[3, 5, 4, 0, 1, 2, 6, 7, 8, 9]])
    xs = armd.content_states(x[:1, order[0]], order)[0]  # listed order
    visible = torch.ones(N, N + 1, dtype=torch.bool).tril()  # singleton blocks: query k sees BOS + k earlier
    g0 = armd.prefix(xs, torch.cat([torch.zeros(1, 1, dtype=torch.long), order + 1], 1), order + 1, visible[None])
    # token 4 (listed third) sees 3 and 5: the sum of their rows; token 0 (fourth) sees none of 1 yet -> BOS? no:
    # position 0's neighbours are BOS (internal 0) and position 1 (not yet listed): BOS's row
    assert (g0[0, 2] - xs[0, 1] - xs[0, 2]).abs().max() < 1e-12
    assert (g0[0, 3] - xs[0, 0]).abs().max() < 1e-12


def test_converted_model_is_strictly_causal_and_normalised():
    """p(x_n | earlier blocks) ignores x_n and later tokens; summed over all V^N sequences p(x) = 1."""
    torch.manual_seed(0)
    small = GPT(TransformerConfig(vocab_size=3, max_len=3, n_layer=2, n_head=2, n_embd=8)).double()
    armd = armd_from_gpt(small, n_two_stream=1).eval()
    order = torch.tensor([[2, 0, 1]])
    seqs = torch.tensor(list(itertools.product(range(3), repeat=3)))  # (27, 3)
    listed_tokens = seqs[:, order[0]]
    logits = armd(listed_tokens, order.expand(27, 3))
    logp = -token_nll(logits, listed_tokens).sum(1)
    assert abs(logp.exp().sum() - 1) < 1e-12
    a, b = listed_tokens.clone(), listed_tokens.clone()
    b[:, 1] = (b[:, 1] + 1) % 3  # change the 2nd listed token: rows 0 and 1 must not move
    la, lb = armd(a, order.expand(27, 3)), armd(b, order.expand(27, 3))
    assert torch.equal(la[:, :2], lb[:, :2]) and not torch.equal(la[:, 2], lb[:, 2])


# ----------------------------------------------------------------------------- Hugging Face GPT-2

transformers = pytest.importorskip("transformers")


def tiny_hf(seed=0, **extra):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=50, n_positions=17, n_embd=32, n_layer=3, n_head=4,
                                     bos_token_id=49, eos_token_id=49, **extra)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("n_two_stream", [1, 3])
def test_hf_gpt2_content_stream_and_logits(n_two_stream):
    """Offline, a random GPT2LMHeadModel: hidden states (fp32, <= 1e-5) and, with L2s = L, logits."""
    hf = tiny_hf()
    armd = armd_from_hf_gpt2(hf, n_two_stream=n_two_stream).eval()
    assert armd.cfg.max_len == 16 and armd.cfg.position_embedding == "learned" and armd.cfg.bias
    x = torch.randint(49, (2, 16), generator=torch.Generator().manual_seed(3))
    inputs = torch.cat([torch.full((2, 1), 49), x[:, :-1]], 1)  # GPT-2 reads [eot, x_1..x_{N-1}]
    with torch.no_grad():
        out = hf(inputs, output_hidden_states=True)
        content = armd.content_states(x, torch.arange(16).expand(2, 16))
    for l in range(n_two_stream):  # hidden_states[l] is the input of block l (the last one has ln_f applied)
        assert (content[l][:, :16] - out.hidden_states[l]).abs().max() < 1e-5, l
    if n_two_stream == 3:
        top = armd.ln_f(content[-1][:, :16])
        assert (top - out.hidden_states[-1]).abs().max() < 1e-5
        assert (armd.lm_head(top) - out.logits).abs().max() < 1e-4  # logits ~ 1e1: 1e-5 relative


def test_hf_gpt2_converted_model_is_strictly_causal():
    armd = armd_from_hf_gpt2(tiny_hf()).double().eval()
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0))[None]
    a = torch.randint(49, (1, 16), generator=torch.Generator().manual_seed(1))
    b = a.clone()
    b[0, 7] = (b[0, 7] + 1) % 49
    la, lb = armd(a, order), armd(b, order)
    assert torch.equal(la[:, :8], lb[:, :8]) and not torch.equal(la[:, 8:], lb[:, 8:])


def test_hf_converted_model_is_normalised():
    """Summed over all 3^3 sequences of a 3-token vocabulary, p(x) = 1 in a random order (float64)."""
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=3, n_positions=4, n_embd=8, n_layer=2,
                                                              n_head=2, bos_token_id=2, eos_token_id=2))
    armd = armd_from_hf_gpt2(hf, n_two_stream=1).double().eval()
    seqs = torch.tensor(list(itertools.product(range(3), repeat=3)))
    order = torch.tensor([1, 2, 0])
    logits = armd(seqs[:, order], order.expand(27, 3))
    assert abs((-token_nll(logits, seqs[:, order]).sum(1)).exp().sum() - 1) < 1e-12


def test_hf_bad_input():
    with pytest.raises(ValueError, match="model_or_name must be a GPT-2"):
        armd_from_hf_gpt2(transformers.BertModel(transformers.BertConfig(
            vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)))
    with pytest.raises(ValueError, match="model_or_name must be a GPT-2"):
        armd_from_hf_gpt2(gpt())
    with pytest.raises(ValueError, match="max_len must be an integer in 1..16"):
        armd_from_hf_gpt2(tiny_hf(), max_len=17)
    with pytest.raises(ValueError, match="activation_function"):
        armd_from_hf_gpt2(tiny_hf(activation_function="relu"))
    small = armd_from_hf_gpt2(tiny_hf(), max_len=8)
    assert small.wpe.weight.shape == (9, 32)


def test_transformers_missing_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(ValueError, match="pip install transformers"):
        armd_from_hf_gpt2("gpt2")


def test_hub_unreachable_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="could not be loaded"):
        armd_from_hf_gpt2(str(tmp_path / "no-such-model"))


# ----------------------------------------------------------------------------- bad input, training

def test_from_gpt_refuses_what_is_not_a_gpt():
    with pytest.raises(ValueError, match="gpt must be the project's GPT baseline"):
        armd_from_gpt(ARMD(ARMDConfig(vocab_size=5, max_len=4, n_layer=1, n_head=1, n_embd=8)))
    with pytest.raises(ValueError, match="n_two_stream must be an integer in 0..n_layer=3"):
        armd_from_gpt(gpt(), n_two_stream=4)
    assert isinstance(ARMD.from_gpt(gpt()), ARMD)


SMALL = dict(n_layer=2, n_head=2, n_embd=32, d_pe=33, seq_len=32, batch_size=4, warmup=2, eval_every=0,
             eval_windows=4, ckpt_every=3)


@pytest.fixture(scope="module")
def ar_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ar")
    train_model(TrainConfig.from_preset(model="ar", out=str(out), max_steps=3, **SMALL))
    return out / "ckpt.pt"


def losses(out):
    return [r["loss"] for r in map(json.loads, open(out / "metrics.jsonl")) if "loss" in r]


def test_init_from_ar_starts_at_the_conversion_and_freezes(tmp_path, ar_ckpt):
    """freeze_pretrained=2 of 2 steps: the copied weights are the GPT's after training, PE moved."""
    cfg = TrainConfig.from_preset(model="armd", out=str(tmp_path / "a"), max_steps=2, init_from_ar=str(ar_ckpt),
                                  freeze_pretrained=2, i_ar=0, i_perm=2, **SMALL)
    train_model(cfg)
    model, saved, _ = load_model(tmp_path / "a" / "ckpt.pt")
    assert saved.init_from_ar == str(ar_ckpt)
    reference = armd_from_gpt(load_model(ar_ckpt)[0])
    before = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        if name in NEW_PARAMETERS:
            assert not torch.equal(p, before[name])
        else:
            assert torch.equal(p, before[name]), name


def test_sbp_fine_tuning_of_an_adapted_model(tmp_path, ar_ckpt):
    """finetune_sbp starts from the adapted weights (its checkpoint's init_from_ar is not re-applied)."""
    from minarmd.training import finetune_sbp
    train_model(TrainConfig.from_preset(model="armd", out=str(tmp_path / "a"), max_steps=2, init_from_ar=str(ar_ckpt),
                                        i_ar=0, i_perm=2, **SMALL))
    finetune_sbp(tmp_path / "a" / "ckpt.pt", tmp_path / "sbp", max_steps=2, streams=(1, 2), eval_every=0)
    _, cfg, _ = load_model(tmp_path / "sbp" / "ckpt.pt")
    assert cfg.order == "sbp" and cfg.init_from_ar is None and cfg.init_from == str(tmp_path / "a" / "ckpt.pt")


def test_init_from_ar_resumes_exactly(tmp_path, ar_ckpt):
    kw = dict(model="armd", max_steps=6, init_from_ar=str(ar_ckpt), freeze_pretrained=2, i_ar=2, i_perm=5, **SMALL)
    train_model(TrainConfig.from_preset(out=str(tmp_path / "full"), **kw))
    cut = TrainConfig.from_preset(out=str(tmp_path / "cut"), **kw)

    def interrupt(step, rec):
        if step == 4:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_model(cut, on_step=interrupt)
    train_model(cut, resume=True)
    assert losses(tmp_path / "cut") == losses(tmp_path / "full") and len(losses(tmp_path / "full")) == 6


def test_adaptation_settings_are_checked(tmp_path, ar_ckpt):
    with pytest.raises(ValueError, match="use model='armd'"):
        TrainConfig.from_preset(model="mdm", init_from_ar=str(ar_ckpt))
    with pytest.raises(ValueError, match="exclusive"):
        TrainConfig.from_preset(init_from_ar=str(ar_ckpt), init_from="x.pt")
    with pytest.raises(ValueError, match="--arch gpt2 --tokenizer gpt2"):
        TrainConfig.from_preset(init_from_hf="gpt2")
    with pytest.raises(ValueError, match="freeze_pretrained needs init_from_ar"):
        TrainConfig.from_preset(freeze_pretrained=3)
    with pytest.raises(ValueError, match=r"leave --d-pe out \(or pass --d-pe 33\), or pass --pe-init random"):
        TrainConfig.from_preset(init_from_ar=str(ar_ckpt), **{**SMALL, "d_pe": 8})
    with pytest.raises(ValueError, match="freeze_pretrained must be >= 0"):
        TrainConfig.from_preset(init_from_ar=str(ar_ckpt), pe_init="random", freeze_pretrained=-1)
    for change, message in (({"n_embd": 64}, r"n_embd 32 \(this run: 64\)"), ({"n_head": 4}, r"n_head 2 \(this run: 4\)"),
                            ({"seq_len": 16}, r"max_len 32 \(this run: 16\)"),
                            ({"data": "python"}, r"vocab_size \d+ \(this run: \d+\)")):
        other = TrainConfig.from_preset(model="armd", out=str(tmp_path / "w"), max_steps=1, init_from_ar=str(ar_ckpt),
                                        **{**SMALL, "warmup": 1, **change})
        with pytest.raises(ValueError, match=message):
            train_model(other, overwrite=True)
    with pytest.raises(ValueError, match="no such file; train the GPT first"):
        train_model(TrainConfig.from_preset(model="armd", out=str(tmp_path / "m"), max_steps=1,
                                            init_from_ar=str(tmp_path / "missing.pt"), **{**SMALL, "warmup": 1}))
    armd_run = tmp_path / "armd"
    train_model(TrainConfig.from_preset(model="armd", out=str(armd_run), max_steps=1, **{**SMALL, "warmup": 1}))
    with pytest.raises(ValueError, match="needs a checkpoint of the GPT baseline"):
        train_model(TrainConfig.from_preset(model="armd", out=str(tmp_path / "b"), max_steps=1,
                                            init_from_ar=str(armd_run / "ckpt.pt"), **{**SMALL, "warmup": 1}))
