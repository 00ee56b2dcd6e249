"""Widgets without a browser: set a control's value, check the order, masks and picture that result."""
import pytest
import torch

from minarmd.masking import alpha_schedule, sample_mask_times
from minarmd.masks import block_causal_mask
from minarmd.permutation import order_from_mask_times, strided_order
from minarmd.widgets import ORDER_KINDS, mask_explorer, sampler_stepper


def image_data(ax) -> torch.Tensor:
    return torch.as_tensor(ax.get_images()[0].get_array()).long()


def test_mask_explorer_draws_the_library_order_for_its_settings():
    explorer = mask_explorer("the cat sat on the mat", T=4, seed=0)
    tau = sample_mask_times(alpha_schedule("linear", 4), (1, 6), generator=torch.Generator().manual_seed(0))
    order, blocks = order_from_mask_times(tau, 4)
    assert torch.equal(explorer.order, order) and torch.equal(explorer.blocks, blocks)
    assert torch.equal(image_data(explorer.figure.axes[0]), block_causal_mask(blocks)[0].long())
    assert f"blocks: {blocks[0].tolist()}" in explorer.info.value
    assert explorer.image.value[:4] == b"\x89PNG"


@pytest.mark.parametrize("name, value", [("seed", 5), ("T", 1), ("kind", "left-to-right"),
                                         ("sentence", "to be or not to be")])
def test_mask_explorer_redraws_when_a_control_moves(name, value):
    explorer = mask_explorer(seed=0, T=4)
    before_png, before = explorer.image.value, (explorer.order, explorer.blocks)
    explorer.controls[name].value = value
    assert explorer.image.value != before_png
    if name == "T":  # T = 1: every token is masked at step 1 -> one block
        assert explorer.blocks.unique().tolist() == [1]
    if name == "kind":
        assert explorer.order[0].tolist() == list(range(6)) and explorer.blocks[0].tolist() == list(range(1, 7))
        assert explorer.controls["T"].disabled  # T only matters for diffusion orders
    if name == "seed":
        assert not (torch.equal(explorer.order, before[0]) and torch.equal(explorer.blocks, before[1]))


def test_mask_explorer_every_kind_draws():
    explorer = mask_explorer()
    for kind in ORDER_KINDS:
        explorer.controls["kind"].value = kind
        assert sorted(explorer.order[0].tolist()) == list(range(6)), kind


def test_mask_explorer_explains_bad_settings_and_keeps_the_picture():
    explorer = mask_explorer()
    png = explorer.image.value
    explorer.controls["sentence"].value = "   "
    assert "type at least one word" in explorer.info.value and explorer.image.value == png
    explorer.controls["sentence"].value = "one two three"
    explorer.controls["kind"].value = "strided S=2"
    assert "even number of words" in explorer.info.value
    explorer.controls["sentence"].value = " ".join(["w"] * 17)
    assert "at most 16" in explorer.info.value
    with pytest.raises(ValueError, match="kind must be one of"):
        mask_explorer(kind="zigzag")


def test_sampler_stepper_steps_through_blocks():
    order, blocks = strided_order(8, 2)
    stepper = sampler_stepper(list("abcdefgh"), order[0], blocks[0], title="S = 2")
    assert stepper.n_blocks == 5 and stepper.controls["step"].max == 5
    texts = lambda: [t.get_text() for t in stepper.figure.axes[0].texts]
    stepper.controls["step"].value = 0
    assert texts() == [""] * 8
    png = stepper.image.value
    stepper.controls["step"].value = 3
    assert texts() == ["a", "b", "", "", "e", "f", "", ""] and stepper.image.value != png
    with pytest.raises(ValueError, match="order has 8 entries but there are 3 tokens"):
        sampler_stepper(list("abc"), order, blocks)


def test_live_stepper_calls_the_model_only_when_stepping_forward():
    from conftest import make_model
    from minarmd.sampler import generate
    from minarmd.tokenizer import CharTokenizer
    from minarmd.widgets import live_stepper
    tok = CharTokenizer("abcdefghijklm")  # 13 characters, the test model's vocabulary
    model = make_model(vocab_size=13, max_len=16)
    calls = []
    model.lm_head.register_forward_hook(lambda *args: calls.append(1))
    stepper = live_stepper(model, tok, n=16, streams=4, prompt="abcd", seed=3)
    assert stepper.n_calls == 4 + 3 - 1 and not calls and stepper.controls["step"].max == 6
    texts = lambda: [t.get_text() for t in stepper.figure.axes[0].texts]
    assert texts()[:4] == list("abcd") and texts()[4:] == [""] * 12  # before the first call: the prompt only
    stepper.controls["step"].value = 2
    assert len(calls) == 2 and sum(t != "" for t in texts()) == 6  # two run heads drawn
    stepper.controls["step"].value = 1
    assert len(calls) == 2 and sum(t != "" for t in texts()) == 5  # back: no call, an earlier state
    stepper.controls["step"].value = 6
    assert len(calls) == 6 and "" not in texts()
    expected = generate(model, template=stepper.template, streams=4, generator=torch.Generator().manual_seed(3))
    assert "".join(texts()) == tok.decode(expected.tokens[0])  # the live run is generate()'s sample
    png = stepper.image.value
    stepper.controls["again"].click()  # a new sample: seed 4, back to call 0
    assert stepper.seed == 4 and stepper.controls["step"].value == 0 and stepper.image.value != png
