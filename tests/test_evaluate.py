"""Evaluation protocols: exact where they claim to be, reproducible estimates, named protocols."""
import math

import pytest
import torch

from conftest import make_model
from minarmd.ar import GPT, ar_loss
from minarmd.config import TransformerConfig
from minarmd.evaluate import Estimate, estimate, evaluate, paired_difference
from minarmd.loss import armd_loss
from minarmd.mdm import MDM
from minarmd.permutation import left_to_right, random_order

WINDOWS = torch.randint(0, 13, (10, 12), generator=torch.Generator().manual_seed(0))


def test_armd_l2r_is_the_exact_single_pass_nll():
    model = make_model()
    est = estimate(model, WINDOWS, "l2r", batch_size=3)  # uneven batches: token-weighted mean
    with torch.no_grad():
        ref = float(armd_loss(model, WINDOWS, *left_to_right(10, 12)))
    assert est.draws == 1 and est.se == 0.0
    assert abs(est.nats - ref) <= 1e-12


def test_random_order_estimate_is_reproducible_and_is_the_mean_of_its_draws():
    model = make_model()
    est = estimate(model, WINDOWS, "random", draws=5, seed=3, batch_size=10)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        draws = [float(armd_loss(model, WINDOWS, *random_order(10, 12, gen))) for _ in range(5)]
    assert abs(est.nats - sum(draws) / 5) <= 1e-12
    sd = math.sqrt(sum((d - est.nats) ** 2 for d in draws) / 4)
    assert abs(est.se - sd / math.sqrt(5)) <= 1e-12 and est.se > 0


def test_one_step_masking_predicts_everything_from_bos_only():
    """T = 1 puts every token in one block: the estimate is deterministic (all draws equal)."""
    est = estimate(make_model(), WINDOWS, "mask", draws=3, T=1)
    assert est.se <= 1e-12 and est.detail == "T=1, linear"


def test_ar_protocol_and_describe():
    torch.manual_seed(0)
    gpt = GPT(TransformerConfig(vocab_size=13, max_len=12, n_layer=2, n_head=2, n_embd=16)).double()
    est = evaluate(gpt, WINDOWS)["l2r"]
    with torch.no_grad():
        assert abs(est.nats - float(ar_loss(gpt, WINDOWS))) <= 1e-12
    assert "exact NLL, left to right" in est.describe()
    assert est.ppl == pytest.approx(math.exp(est.nats))


def test_mdm_nelbo_has_a_standard_error():
    torch.manual_seed(0)
    mdm = MDM(TransformerConfig(vocab_size=13, max_len=12, n_layer=2, n_head=2, n_embd=16)).double()
    est = evaluate(mdm, WINDOWS, draws=4)["nelbo"]
    assert est.draws == 4 and est.se > 0 and est.nats > 0


def test_bits_per_char():
    est = Estimate("l2r", math.log(2) * 3, 0.0, 1)
    assert est.bits_per_char(1.5) == pytest.approx(2.0)
    assert est.bits_per_char(None) is None


def test_bad_evaluation_requests():
    model = make_model()
    with pytest.raises(ValueError, match="does not apply"):
        estimate(model, WINDOWS, "nelbo")
    with pytest.raises(ValueError, match="windows"):
        estimate(model, WINDOWS.float(), "l2r")
    with pytest.raises(ValueError, match="max_len"):  # windows longer than the model was built for
        estimate(model, torch.zeros(2, 30, dtype=torch.long), "l2r")
    with pytest.raises(ValueError, match="ARMD, GPT or MDM"):
        estimate(torch.nn.Linear(2, 2), WINDOWS, "l2r")


def test_zero_shot_on_a_local_stand_in_file(tmp_path):
    """The WikiText2 path end to end, offline: local file -> detokenised -> GPT-2 BPE -> windows."""
    from minarmd.evaluate import zero_shot

    (tmp_path / "wiki.txt").write_text(" = Title = \n \n The river is 1 @,@ 000 km long . \n" * 20)
    torch.manual_seed(0)
    gpt = GPT(TransformerConfig(vocab_size=50257, max_len=16, n_layer=1, n_head=2, n_embd=16))
    est = zero_shot(gpt, "wikitext2", 16, data_files=str(tmp_path / "wiki.txt"), cache_dir=str(tmp_path / "c"))
    assert est.protocol == "l2r" and math.log(50257) - 0.5 < est.nats < math.log(50257) + 0.5  # untrained
    with pytest.raises(ValueError, match="fewer than one window"):
        zero_shot(gpt, "wikitext2", 16 * 1000, data_files=str(tmp_path / "wiki.txt"), cache_dir=str(tmp_path / "c"))


def test_standard_error_over_windows_and_the_paired_difference():
    """se_windows is sqrt(var / W) of the per-window means (float64, by hand); the paired error of two
    models on the same windows is that of the per-window differences, and a model against itself is 0."""
    model = make_model()
    est = estimate(model, WINDOWS, "random", draws=3, seed=1, batch_size=4)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        losses = torch.stack([torch.cat([armd_loss(model, WINDOWS[i:i + 4], *random_order(len(WINDOWS[i:i + 4]), 12, gen),
                                                   per_token=True).mean(1) for i in range(0, 10, 4)])
                              for _ in range(3)])  # (K, W)
    per_window = losses.mean(0)  # (W,)
    assert est.windows == 10 and torch.allclose(torch.tensor(est.per_window, dtype=torch.float64), per_window,
                                                atol=1e-12, rtol=0)
    assert abs(est.se_windows - float(per_window.std() / math.sqrt(10))) <= 1e-12 and est.se_windows > 0
    assert abs(est.nats - float(losses.mean())) <= 1e-12
    assert "over 10 windows" in est.describe() and "over 3 draws" in est.describe()
    l2r = estimate(model, WINDOWS, "l2r")
    diff, se = paired_difference(est, l2r)
    d = per_window - torch.tensor(l2r.per_window, dtype=torch.float64)
    assert abs(diff - float(d.mean())) <= 1e-12 and abs(se - float(d.std() / math.sqrt(10))) <= 1e-12
    assert paired_difference(l2r, l2r) == (0.0, 0.0)
    with pytest.raises(ValueError, match="same windows"):
        paired_difference(l2r, estimate(model, WINDOWS[:5], "l2r"))


def test_a_protocol_must_score_each_window():
    """A custom protocol returning one number per batch (not per window) is refused, naming the fix."""
    from minarmd import kinds
    model = make_model()
    kind = kinds.kind_of(model)
    scalar = kinds.Protocol("l2r", kinds.PROTOCOL_NAMES["l2r"], lambda m, x, g, T, s: torch.tensor(1.0), exact=True)
    original = kinds.KINDS[kind.name]
    kinds.register_kind(kinds.ModelKind(**{**vars(kind), "protocols": (scalar,)}), replace=True)
    try:
        with pytest.raises(ValueError, match=r"one loss per window, shape \(10,\)"):
            estimate(model, WINDOWS, "l2r", batch_size=10)
    finally:
        kinds.register_kind(original, replace=True)
