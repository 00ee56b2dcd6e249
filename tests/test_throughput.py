"""throughput.py: parameter and FLOP counts against hand counts, real models and torch's FLOP counter."""
import contextlib

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from minarmd import ARMD, ARMDConfig, GPT, MDM, TransformerConfig, ar_loss, armd_loss, left_to_right, mdm_loss
from minarmd import throughput as tp
from minarmd.permutation import strided_order
from minarmd.kinds import build_model

# a tiny shape whose counts are easy to do by hand: d = 8, r = 4, L = 3, L2s = 2, N = 8, V = 11, d_pe = 4
from minarmd.train_config import TrainConfig

# a tiny shape whose counts are easy to do by hand: d = 8, r = 4, L = 3, L2s = 2, N = 8, V = 11, d_pe = 4
TINY = dict(vocab_size=11, max_len=8, n_layer=3, n_head=2, n_embd=8)


def tiny_armd(**overrides) -> ARMDConfig:
    return ARMDConfig(**{**TINY, "n_two_stream": 2, "d_pe": 4, "pe_init": "random", **overrides})


def test_hand_count_armd():
    # per row, a full layer's linear maps: 2 (4 + 2r) d^2 = 2 * 12 * 64 = 1536; K/V alone: 2 * 2 * 64 = 256
    # X stream: 1 full layer on M = 9 rows + K/V of the last two-stream layer; G: 2 layers x 8 rows
    # x (1536 - 256); stack: 1 layer x 8 rows
    linear = 9 * 1536 + 9 * 256 + 2 * 8 * 1280 + 8 * 1536
    attention = 4 * 8 * 9 * 9 + 2 * 4 * 8 * 8 * 9 + 4 * 8 * 8 * 8  # 4 d per (query, key) pair
    prefix = 2 * 8 * 9 * (4 + 8)
    head = 2 * 8 * 11 * 8
    got = tp.forward_flops(tiny_armd())
    assert got == {"linear": linear, "attention": attention, "prefix": prefix, "head": head}
    assert all(type(v) is int for v in got.values())
    assert (linear, attention, prefix, head) == (48896, 9248, 1728, 1408)
    per_token = tp.flops_per_token(tiny_armd())
    assert type(per_token) is float and per_token == 3 * 61280 / 8 == 22980.0
    assert tp.flops_per_token(tiny_armd(), training=False) == 61280 / 8


def test_hand_count_baselines_match_nanogpt():
    cfg = TransformerConfig(**TINY)
    # GPT: L N 2(4+2r)d^2 + L 4 d N^2 + 2 d (V+1) N, and per token x 3 that is 6 P_matmul + 12 L d N
    assert tp.forward_flops(cfg, "ar") == {"linear": 3 * 8 * 1536, "attention": 3 * 4 * 8 * 64, "prefix": 0,
                                           "head": 2 * 8 * 12 * 8}
    matmul_params = 3 * 12 * 64 + 12 * 8  # layers + tied head over V + 1 rows
    assert tp.flops_per_token(cfg, "ar") == 6 * matmul_params + 12 * 3 * 8 * 8
    assert tp.flops_per_token(cfg, "mdm") == tp.flops_per_token(cfg, "ar")  # same matmuls, other mask
    assert tp.nanogpt_flops_per_token(1000, 3, 8, 8) == 6 * 1000 + 12 * 3 * 8 * 8


def test_armd_special_cases():
    # L2s = 0: no two-stream layer, the X stream only feeds prefix aggregation
    zero = tp.forward_flops(tiny_armd(n_two_stream=0))
    assert zero["linear"] == 3 * 8 * 1536 and zero["attention"] == 3 * 4 * 8 * 64
    # L2s = 1: the only two-stream layer computes K/V of X, no full X layer
    one = tp.forward_flops(tiny_armd(n_two_stream=1))
    assert one["linear"] == 9 * 256 + 8 * 1280 + 2 * 8 * 1536
    # the naive "token" query stream has no prefix aggregation
    assert tp.forward_flops(tiny_armd(query_stream_init="token"))["prefix"] == 0
    # seq_len shorter than max_len; seq_len = 1
    assert tp.forward_flops(tiny_armd(), seq_len=1)["prefix"] == 2 * 1 * 2 * 12
    short = tp.forward_flops(tiny_armd(max_len=64), seq_len=8)
    assert short == tp.forward_flops(tiny_armd())  # only max_len differs: the PE table is not a matmul
    # ARMD costs more than a GPT of the same shape, never more than (L + L2s) / L times
    ratio = tp.flops_per_token(tiny_armd()) / tp.flops_per_token(TransformerConfig(**TINY), "ar")
    assert 1.0 < ratio < 5 / 3


@pytest.mark.parametrize("overrides", [{}, {"bias": True}, {"tie_weights": False}, {"mlp_ratio": 2},
                                       {"n_two_stream": 0}, {"bias": True, "tie_weights": False, "d_pe": 6}])
def test_param_count_equals_built_models(overrides):
    torch.manual_seed(0)
    cfg = tiny_armd(**overrides)
    assert tp.param_count(cfg) == ARMD(cfg).num_params()
    plain = TransformerConfig(**{**TINY, **{k: v for k, v in overrides.items() if k not in ("n_two_stream", "d_pe")}})
    assert tp.param_count(plain, "ar") == GPT(plain).num_params()
    assert tp.param_count(plain, "mdm") == MDM(plain).num_params()


@pytest.mark.parametrize("model", ["armd", "ar", "mdm"])
def test_train_config_gpt2_small(model):
    cfg = TrainConfig.from_preset("gpt2-small", model=model)
    with torch.device("meta"):  # shapes only: no memory, no time
        net = build_model(cfg, 50257)
    assert tp.param_count(cfg, vocab_size=50257) == net.num_params()
    assert tp.flops_per_token(cfg, vocab_size=50257) == tp.flops_per_token(net.cfg, None if model == "armd" else model)
    assert tp.tokens_per_step(cfg) == 32 * 16 * 1024 == 524_288


def test_gpt2_small_numbers():
    armd, ar = TrainConfig.from_preset("gpt2-small"), TrainConfig.from_preset("gpt2-small", model="ar")
    f_armd, f_ar = tp.flops_per_token(armd, vocab_size=50257), tp.flops_per_token(ar, vocab_size=50257)
    # nanoGPT's rule for the GPT is exactly ours (P_matmul = 12 L d^2 + (V + 1) d)
    assert f_ar == 6 * (12 * 12 * 768 ** 2 + 50258 * 768) + 12 * 12 * 768 * 1024
    assert 1.2 < f_armd / f_ar < 1.3  # the query stream costs ~25 % more at this shape
    # RESULTS.md section 4 (NVIDIA H200): AR 277,343 tokens/s was 24.0 % MFU by nanoGPT's formula
    p_ar = tp.param_count(ar, vocab_size=50257)
    assert round(100 * tp.mfu(277_343, tp.nanogpt_flops_per_token(p_ar, 12, 768, 1024), 989e12), 1) == 24.0


def measured_flops(model, loss_fn, math_sdpa: bool) -> dict:
    """FLOPs torch counts in one forward + backward, by op. With the math SDPA backend attention is plain
    bmm (counted fwd 2 + bwd 4 products); the CPU flash kernel is not counted by FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with (sdpa_kernel(SDPBackend.MATH) if math_sdpa else contextlib.nullcontext()), counter:
        loss_fn(model).backward()
    return {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}


B, N = 2, 16
CFG = dict(vocab_size=29, max_len=N, n_layer=4, n_head=2, n_embd=16)


def armd_step(backend: str, blocks: str):
    torch.manual_seed(0)
    cfg = ARMDConfig(**CFG, n_two_stream=2, d_pe=8, pe_init="random", attn_backend=backend)
    model = ARMD(cfg).double()
    x = torch.randint(0, 29, (B, N), generator=torch.Generator().manual_seed(1))
    order, blk = left_to_right(B, N) if blocks == "singleton" else strided_order(N, 4, B)
    return cfg, model, lambda m: armd_loss(m, x, order, blk)


@pytest.mark.parametrize("backend, blocks", [("dense", "singleton"), ("dense", "strided"), ("auto", "strided")])
def test_flop_counter_armd_exact(backend, blocks):
    cfg, model, loss = armd_step(backend, blocks)
    got = measured_flops(model, loss, math_sdpa=True)
    assert sum(got.values()) == B * tp.flops_per_token(cfg) * N  # every matmul, exactly


def test_flop_counter_armd_fused_causal_path():
    # singleton blocks + "auto": the fused causal kernel gets N keys, not N + 1, in the query stream
    cfg, model, loss = armd_step("auto", "singleton")
    got = measured_flops(model, loss, math_sdpa=True)
    missing = 3 * cfg.n_two_stream * 4 * cfg.n_embd * N  # fwd + bwd, per sequence: BOS's key column
    assert sum(got.values()) == B * (tp.flops_per_token(cfg) * N - missing)
    assert abs(sum(got.values()) / (B * tp.flops_per_token(cfg) * N) - 1) < 0.02


def test_flop_counter_cpu_flash_kernel_is_not_counted():
    # the default CPU SDPA kernel is invisible to FlopCounterMode: it then sees the linear, prefix
    # and head matmuls only -- which match our count without attention, exactly
    cfg, model, loss = armd_step("dense", "strided")
    got = measured_flops(model, loss, math_sdpa=False)
    f = tp.forward_flops(cfg)
    assert got.get("aten.mm") == 3 * B * (f["linear"] + f["head"])
    assert got.get("aten.bmm") == 3 * B * f["prefix"]


@pytest.mark.parametrize("model_name", ["ar", "mdm"])
def test_flop_counter_baselines_exact(model_name):
    torch.manual_seed(0)
    cfg = TransformerConfig(**CFG)
    model = (GPT if model_name == "ar" else MDM)(cfg).double()
    x = torch.randint(0, 29, (B, N), generator=torch.Generator().manual_seed(1))
    loss = (lambda m: ar_loss(m, x)) if model_name == "ar" else \
        (lambda m: mdm_loss(m, x, torch.Generator().manual_seed(2)))
    got = measured_flops(model, loss, math_sdpa=True)
    assert sum(got.values()) == B * N * tp.flops_per_token(cfg, model_name)


def test_mfu_peaks_and_time():
    assert tp.mfu(1000, 6e9, 1e13) == 1000 * 6e9 / 1e13
    assert tp.mfu(0, 1.0, 1.0) == 0.0
    assert tp.mfu(np.float32(2.0), np.int64(3), 6.0) == 1.0  # numpy scalars are numbers too
    assert tp.peak_flops("NVIDIA H100 80GB HBM3") == tp.PEAKS["H100"] == 989e12
    assert tp.peak_flops("NVIDIA H100 PCIe") == 756e12  # the PCIe part is slower than the SXM one
    assert tp.peak_flops("NVIDIA H200") == 989e12 and tp.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert tp.training_hours(3600 * 1000, 1000) == 1.0
    assert tp.steps_for_tokens(10, 4) == 3 and tp.steps_for_tokens(8, 4) == 2 and tp.steps_for_tokens(0, 4) == 0
    assert tp.steps_for_tokens(10 ** 10, 524_288) == 19_074


@pytest.mark.parametrize("call, name", [
    (lambda: tp.mfu(-1, 1.0, 1.0), "tokens_per_s"),
    (lambda: tp.mfu(1, 0, 1.0), "flops_per_token"),
    (lambda: tp.mfu(1, 1.0, float("nan")), "peak_flops"),
    (lambda: tp.mfu(1, 1.0, "989e12"), "peak_flops"),
    (lambda: tp.mfu(torch.tensor(5.0), 1.0, 1.0), "tokens_per_s"),
    (lambda: tp.mfu(True, 1.0, 1.0), "tokens_per_s"),
    (lambda: tp.peak_flops("Tesla T4"), "device_name"),
    (lambda: tp.peak_flops(None), "device_name"),
    (lambda: tp.training_hours(-5, 1.0), "tokens"),
    (lambda: tp.training_hours(5, 0), "tokens_per_s"),
    (lambda: tp.steps_for_tokens(10, 0), "tokens_per_step"),
    (lambda: tp.steps_for_tokens(1.5, 4), "tokens"),
    (lambda: tp.tokens_per_step(object()), "cfg.batch_size"),
    (lambda: tp.nanogpt_flops_per_token(0, 12, 768, 1024), "num_params"),
    (lambda: tp.flops_per_token(tiny_armd(), seq_len=9), "seq_len"),
    (lambda: tp.flops_per_token(tiny_armd(), seq_len=0), "seq_len"),
    (lambda: tp.flops_per_token(tiny_armd(), training="yes"), "training"),
    (lambda: tp.flops_per_token(tiny_armd(), model="ar"), "model"),
    (lambda: tp.flops_per_token(TransformerConfig(**TINY)), "model"),
    (lambda: tp.flops_per_token(TransformerConfig(**TINY), "armd"), "model"),
    (lambda: tp.flops_per_token(tiny_armd(), vocab_size=11), "vocab_size"),
    (lambda: tp.flops_per_token(TrainConfig.from_preset("tiny")), "vocab_size"),
    (lambda: tp.flops_per_token(TrainConfig.from_preset("tiny"), vocab_size=0), "vocab_size"),
    (lambda: tp.flops_per_token(TrainConfig.from_preset("tiny"), model="ar", vocab_size=65), "model"),
    (lambda: tp.param_count("armd"), "cfg"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
