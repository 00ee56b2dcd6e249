"""No graph breaks under ``torch.compile`` in the models' forward passes and the baselines' losses (CPU).

A graph break is eager Python inside a compiled step: on a GPU a host sync where a tensor's value is
read (input checks, the singleton test). The value checks step aside while compiling; the choice of
the fused causal path reads the block ids only when nothing else says (``attention.is_singleton``),
so ``blocks=None``, ``singleton=`` or a configured backend give one graph, and a training step (whose
noise says whether its blocks are singletons) is one graph for every kind and order family.
``benchmarks/graph_breaks.py`` prints the whole table, the bare calls that still read the ids included.
"""
import warnings

import pytest
import torch

from minarmd import ARMD, ARMDConfig, TrainConfig, TransformerConfig
from minarmd.ar import GPT, ar_loss
from minarmd.kinds import draw_noise, get_kind, training_loss
from minarmd.mdm import MDM, mdm_loss
from minarmd.permutation import ProgressiveSchedule, strided_order

dynamo = pytest.importorskip("torch._dynamo")
if not hasattr(dynamo, "explain"):  # pragma: no cover - depends on the installed torch
    pytest.skip("torch._dynamo.explain is unavailable", allow_module_level=True)

SIZE = dict(vocab_size=1000, max_len=64, n_layer=4, n_head=4, n_embd=64)  # gpt2-small-shaped, narrow
B, N = 2, 64


def breaks(fn, *args, **kwargs):
    """(graph breaks, reasons) of one call, traced from a clean dynamo state."""
    dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = dynamo.explain(fn)(*args, **kwargs)
    return out.graph_break_count, [b.reason for b in out.break_reasons]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    armd = ARMD(ARMDConfig(**SIZE))  # validate_inputs=True, attn_backend="auto" (the gpt2-small preset's)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, SIZE["vocab_size"], (B, N), generator=g)
    progressive = ProgressiveSchedule(i_ar=0, i_perm=1, rho=8).sample(5, B, N, g)
    return armd, x, progressive, strided_order(N, 2, B)


def test_armd_forward_has_no_graph_break_when_the_blocks_need_not_be_read(setup):
    armd, x, (order, blocks), (s_order, s_blocks) = setup
    tokens, s_tokens = x.gather(1, order), x.gather(1, s_order)
    assert breaks(armd, tokens, order, None) == (0, [])  # singleton blocks, given as None
    assert breaks(armd, tokens, order, blocks, singleton=True) == (0, [])  # progressive orders
    assert breaks(armd, s_tokens, s_order, s_blocks, singleton=False) == (0, [])  # SBP: dense on the CPU
    torch.manual_seed(0)
    dense = ARMD(ARMDConfig(**SIZE, attn_backend="dense"))  # a configured backend never reads blocks
    assert breaks(dense, s_tokens, s_order, s_blocks) == (0, [])


def test_armd_forward_reads_the_block_ids_only_for_the_singleton_choice(setup):
    armd, x, (order, blocks), _ = setup
    count, reasons = breaks(armd, x.gather(1, order), order, blocks)  # nothing says: the ids are read, once
    assert count == 1 and "item" in reasons[0]


def test_compiled_forward_computes_what_the_eager_one_does(setup):
    armd, x, (order, blocks), (s_order, s_blocks) = setup
    dynamo.reset()
    compiled = torch.compile(armd, backend="eager", fullgraph=True)  # fullgraph: a break would raise
    for o, b, singleton in ((order, None, None), (order, blocks, True), (s_order, s_blocks, False)):
        tokens = x.gather(1, o)
        assert torch.equal(compiled(tokens, o, b, singleton=singleton), armd(tokens, o, b))


def test_baseline_losses_have_no_graph_break(setup):
    _, x, _, _ = setup
    torch.manual_seed(0)
    gpt, mdm = GPT(TransformerConfig(**SIZE)), MDM(TransformerConfig(**SIZE))
    assert breaks(ar_loss, gpt, x) == (0, [])
    t = torch.full((B,), 0.5, dtype=torch.float64)
    masked = torch.rand(B, N, generator=torch.Generator().manual_seed(2)) < 0.5
    assert breaks(mdm_loss, mdm, x, t=t, masked=masked) == (0, [])


@pytest.mark.parametrize("model, order", [("armd", "progressive"), ("armd", "sbp"), ("armd", "mask"),
                                          ("armd", "l2r"), ("ar", "progressive"), ("mdm", "progressive")])
def test_a_training_step_has_no_graph_break(model, order):
    # the loss of one micro-batch exactly as the training loop computes it (kinds.training_loss with the
    # noise of kinds.draw_noise), for the gpt2-small recipe at a narrow shape: one graph, whole
    cfg = TrainConfig.from_preset("gpt2-small", model=model, order=order, n_layer=4, n_head=4, n_embd=64,
                                  seq_len=N, batch_size=B, rho=8, i_ar=0, i_perm=1, sbp_streams=(2,))
    torch.manual_seed(0)
    network = get_kind(model).build(cfg, SIZE["vocab_size"])
    assert getattr(network.cfg, "validate_inputs", True)  # the input checks stay on, as in the preset
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, SIZE["vocab_size"], (B, N), generator=g)
    noise = draw_noise(cfg, B, N, 5, g)
    assert breaks(training_loss, network, cfg, x, 5, g, noise) == (0, [])
