"""On a CUDA GPU, the fast paths compute what the dense-mask path computes (skipped without one).

An ARMD of moderate size (L 4, d 128, 4 heads so head_dim 32 >= 16 for compiled FlexAttention,
N 128, batch 4) runs through the dense-mask SDPA reference and through each fast path with the
same weights; logits, loss and every parameter gradient must agree to a tolerance relative to the
reference's scale (max |value|; for gradients the largest gradient entry of the model):
fp32 <= 1e-5 (TF32 off) and bf16 autocast <= 2e-2.

* the fused causal kernel for singleton blocks in a shuffled order (base training);
* compiled FlexAttention for SBP blocks (strided orders, S = 2, 4: block ids shared by the batch,
  one cached mask broadcast over it) and for T-step masking trajectories (different blocks in
  every row: a per-sample mask);
* ``torch.compile``'d ARMD against the eager one (fp32), on both paths;
* KV-cached decoding on the GPU against the single-pass logits (``tests/test_cache.py``'s method);
* the AR and MDM baselines under bf16 + compile give finite losses and gradients;
* fused AdamW takes the same step as the unfused one (<= 1e-6).

Run: ``python -m pytest -q -p no:cacheprovider -o addopts="" tests/test_gpu.py`` (or
``bash benchmarks/gpu_check.sh``, which also runs the throughput benchmark).
"""
import math
from contextlib import nullcontext

import pytest
import torch

from conftest import make_model
from minarmd import ARMD, ARMDConfig, masking, permutation
from minarmd.loss import token_nll
from minarmd.kinds import build_model, training_loss
from minarmd.train_config import TrainConfig
import test_cache
from test_cache import incremental_logits, orders, sharp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DEVICE = torch.device("cuda")
V, N, B = 97, 128, 4
TOL = {"fp32": 1e-5, "bf16": 2e-2}


@pytest.fixture(autouse=True, scope="module")
def exact_fp32_and_room_to_recompile():
    """TF32 off (fp32 matmuls in full precision), and room for the compiled flex kernel's
    recompilations: one per mask shape (3), dtype (2) and mask kind (per-sample or batch-shared)."""
    precision, cudnn_tf32 = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    old_limit = getattr(config, limit)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    setattr(config, limit, max(old_limit, 64))
    yield
    torch._dynamo.reset()  # later modules start with an empty compile cache and the usual limit
    torch.set_float32_matmul_precision(precision)
    torch.backends.cudnn.allow_tf32 = cudnn_tf32
    setattr(config, limit, old_limit)


def armd(backend: str) -> ARMD:
    torch.manual_seed(0)  # the same weights for every backend
    cfg = ARMDConfig(vocab_size=V, max_len=N, n_layer=4, n_two_stream=2, n_head=4, n_embd=128, d_pe=32, pe_init="random",
                     attn_backend=backend)
    return ARMD(cfg).to(DEVICE)


def case(kind: str, seed: int = 0):
    """Tokens (B, N) and a generation order with its blocks, all on the GPU."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (B, N), generator=g)
    if kind == "shuffled":
        order, blocks = permutation.random_order(B, N, g)
    elif kind.startswith("sbp"):
        order, blocks = permutation.strided_order(N, int(kind[3:]), B)
    else:  # "mask": T = 8 masking trajectories, drawn per row
        tau = masking.sample_mask_times(masking.alpha_schedule("linear", 8), (B, N), g)
        order, blocks = permutation.order_from_mask_times(tau, 8)
        assert not torch.equal(blocks[0], blocks[1])
    return x.to(DEVICE), order.to(DEVICE), blocks.to(DEVICE)


def forward_backward(model, x, order, blocks, precision: str, params=None):
    """(logits fp32, loss, {name: grad}) of the single-pass loss, as ``loss.armd_loss`` computes it."""
    params = dict((params or model).named_parameters())
    for p in params.values():
        p.grad = None
    tokens = x.gather(1, order)
    bf16 = torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    with bf16:
        logits = model(tokens, order, blocks)
        loss = token_nll(logits, tokens).mean()
    loss.backward()
    return logits.detach().float(), loss.detach().float(), {n: p.grad for n, p in params.items()}


def assert_close(got, want, tol: float, what: str, scale: float | None = None) -> None:
    scale = float(want.abs().max()) if scale is None else scale
    err = float((got.float() - want.float()).abs().max())
    assert err <= tol * scale, f"{what}: max abs diff {err:.3g} > {tol:g} x scale {scale:.3g}"


def assert_same_pass(got, want, tol: float) -> None:
    (logits, loss, grads), (logits_ref, loss_ref, grads_ref) = got, want
    assert torch.isfinite(loss_ref) and torch.isfinite(logits_ref).all()
    assert_close(logits, logits_ref, tol, "logits")
    assert_close(loss, loss_ref, tol, "loss")
    scale = max(float(g.abs().max()) for g in grads_ref.values() if g is not None)
    assert scale > 0
    for name, g in grads_ref.items():
        assert g is not None and grads[name] is not None, f"no gradient for {name}"
        assert_close(grads[name], g, tol, f"grad {name}", scale)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("backend, kind", [("causal", "shuffled"), ("flex", "sbp2"), ("flex", "sbp4"),
                                           ("flex", "mask")])
def test_fast_path_matches_dense_mask(backend, kind, precision):
    x, order, blocks = case(kind)
    want = forward_backward(armd("dense"), x, order, blocks, precision)
    got = forward_backward(armd(backend), x, order, blocks, precision)
    assert_same_pass(got, want, TOL[precision])


@pytest.mark.parametrize("kind", ["shuffled", "sbp4"])  # auto: the fused causal kernel / compiled flex
def test_compiled_model_matches_eager(kind):
    x, order, blocks = case(kind, seed=1)
    want = forward_backward(armd("auto"), x, order, blocks, "fp32")
    raw = armd("auto")
    got = forward_backward(torch.compile(raw), x, order, blocks, "fp32", params=raw)
    assert_same_pass(got, want, TOL["fp32"])


@pytest.mark.parametrize("name", ["left to right", "random", "strided S=3", "mask trajectory T=4"])
def test_cached_decoding_on_cuda_reproduces_single_pass_logits(name):
    model = sharp(make_model(max_len=test_cache.N)).to(DEVICE)  # float64, as in tests/test_cache.py
    x = torch.randint(0, test_cache.V, (3, test_cache.N), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    order, blocks = (t.to(DEVICE) for t in orders(3)[name])
    with torch.no_grad():
        full = model(x.gather(1, order), order, blocks)
    cached = incremental_logits(model, x, order, blocks)
    assert cached.device.type == DEVICE.type
    assert (cached - full).abs().max() < test_cache.TOL


@pytest.mark.parametrize("kind", ["shuffled", "sbp4"])
def test_cached_decoding_fp32_at_moderate_size(kind, monkeypatch):
    monkeypatch.setattr(test_cache, "N", N)  # its helper reads the sequence length from there
    model = armd("dense").eval()
    x, order, blocks = case(kind, seed=2)
    with torch.no_grad():
        full = model(x.gather(1, order), order, blocks)
    cached = incremental_logits(model, x, order, blocks)
    assert_close(cached, full, TOL["fp32"], "cached logits")


@pytest.mark.parametrize("kind", ["ar", "mdm"])
def test_baselines_train_under_bf16_and_compile(kind):
    cfg = TrainConfig.from_preset("tiny", model=kind, n_layer=2, n_head=4, n_embd=128, seq_len=N)
    torch.manual_seed(0)
    raw = build_model(cfg, V).to(DEVICE)
    model = torch.compile(raw)
    gen = torch.Generator().manual_seed(0)
    for step in range(2):  # the second call runs the compiled graphs again
        x = torch.randint(0, V, (B, N), generator=gen).to(DEVICE)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = training_loss(model, cfg, x, step, gen)
        loss.backward()
        value = float(loss.detach())
        assert math.isfinite(value) and value > 0, f"{kind} step {step}: loss {value}"
        assert all(torch.isfinite(p.grad).all() for p in raw.parameters() if p.grad is not None)
        raw.zero_grad(set_to_none=True)


def test_fused_adamw_matches_unfused():
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, generator=gen).to(DEVICE) for shape in [(97, 128), (128,), (512, 128), (3, 5, 7)]]
    grads = [[torch.randn(p.shape, generator=gen).to(DEVICE) for p in start] for _ in range(5)]

    def run(fused: bool):
        params = [p.clone().requires_grad_() for p in start]
        groups = [{"params": params[0::2], "weight_decay": 0.1}, {"params": params[1::2], "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.999), fused=fused)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            opt.step()
        return params, opt

    (fused, opt_fused), (plain, opt_plain) = run(True), run(False)
    assert opt_fused.defaults["fused"] and not opt_plain.defaults["fused"]
    with torch.no_grad():
        assert float((fused[0] - start[0]).abs().max()) > 1e-2  # the steps moved the weights
        for a, b in zip(fused, plain):
            assert float((a - b).abs().max()) <= 1e-6
            for key in ("exp_avg", "exp_avg_sq"):
                assert float((opt_fused.state[a][key] - opt_plain.state[b][key]).abs().max()) <= 1e-6
