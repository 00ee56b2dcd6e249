"""The plotting functions draw what the library computes (read back from the figures' images and texts)."""
import matplotlib
import pytest
import torch

from minarmd import viz
from minarmd.masks import block_causal_mask, strictly_causal_mask, to_original_order
from minarmd.permutation import strided_order

matplotlib.use("Agg")
TOKENS = list("abcdefgh")


def image_data(ax) -> torch.Tensor:
    return torch.as_tensor(ax.get_images()[0].get_array()).long()


def test_masks_figure_shows_both_masks_in_both_orders():
    order, blocks = strided_order(8, 2)  # the paper's n = 8, S = 2 plan
    fig = viz.masks_figure(TOKENS, order, blocks)
    axes = fig.axes
    assert len(axes) == 4
    mc, msc = block_causal_mask(blocks), strictly_causal_mask(blocks)
    assert torch.equal(image_data(axes[0]), mc[0].long())
    assert torch.equal(image_data(axes[1]), msc[0].long())
    assert torch.equal(image_data(axes[2]), to_original_order(mc, order)[0].long())
    assert torch.equal(image_data(axes[3]), to_original_order(msc, order)[0].long())
    # generation-order labels are token.block in generation order: a.1 e.2 b.3 f.3 ...
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels[:4] == ["a\u00b71", "e\u00b72", "b\u00b73", "f\u00b73"]
    # block boundaries drawn between blocks (5 blocks -> 4 horizontal + 4 vertical lines)
    assert len(axes[0].lines) == 8


def test_mask_figure_accepts_batched_mask_and_rejects_bad_shape():
    mask = block_causal_mask(torch.tensor([[1, 1, 2]]))
    fig = viz.mask_figure(mask, list("xyz"), title="M")
    assert torch.equal(image_data(fig.axes[0]), mask[0].long())
    with pytest.raises(ValueError, match="mask must be"):
        viz.mask_figure(torch.ones(2, 3, 3), list("xyz"))


def test_order_figure_labels_slots_and_blocks():
    order, blocks = strided_order(8, 2)
    texts = [t.get_text() for t in viz.order_figure(TOKENS, order, blocks).axes[0].texts]
    # position 4 ('e') is generated second (slot 1) in block 2
    i = texts.index("e")
    assert texts[i + 1: i + 3] == ["#1", "B2"]


def test_trajectory_figure_masks_from_tau_on():
    tau = torch.tensor([[3, 1, 2]])
    fig = viz.trajectory_figure(list("xyz"), tau, 3)
    shown = image_data(fig.axes[0])  # (T+1, N)
    assert torch.equal(shown, (tau[0][None, :] > torch.arange(4)[:, None]).long())
    with pytest.raises(ValueError, match="tau must lie in 1..T=2"):
        viz.trajectory_figure(list("xyz"), tau, 2)


def test_generation_figure_reveals_blocks_in_order():
    order, blocks = strided_order(8, 2)
    texts = lambda step: [t.get_text() for t in viz.generation_figure(TOKENS, order, blocks, step).axes[0].texts]
    assert texts(0) == [""] * 8
    assert texts(2) == ["a", "", "", "", "e", "", "", ""]  # the two stream heads
    assert texts(3) == ["a", "b", "", "", "e", "f", "", ""]  # block 3 = {b, f}
    assert texts(5) == TOKENS
    with pytest.raises(ValueError, match="step must be an integer in 0..5"):
        viz.generation_figure(TOKENS, order, blocks, 6)


def test_bad_inputs_name_the_argument():
    order, blocks = strided_order(8, 2)
    with pytest.raises(ValueError, match="order has 8 entries but there are 3 tokens"):
        viz.masks_figure(list("abc"), order, blocks)
    with pytest.raises(ValueError, match="blocks must be an"):
        viz.order_figure(TOKENS, order, blocks.double())
    with pytest.raises(ValueError, match=r"values must be \(2, 2\)"):
        viz.matrix_figure(torch.zeros(3, 2), ["a", "b"], ["c", "d"])
    with pytest.raises(ValueError, match="curve 'ar'"):
        viz.curves_figure({"ar": ([1, 2], [1.0])})


def test_schedules_curves_and_png():
    fig = viz.schedules_figure(8)
    left, right = fig.axes
    assert [line.get_label() for line in left.lines] == ["linear", "cosine", "loglinear"]
    assert len(right.lines[0].get_xdata()) == 8
    png = viz.figure_png(viz.curves_figure({"ar": ([0, 1], [2.0, 1.5])}))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig._repr_png_()[:4] == b"\x89PNG"  # displays as an image in IPython, with or without pyplot
