"""Interactive widgets for the notebooks, drawn by the pure plotting functions of ``viz.py``.

* ``mask_explorer`` (notebook 02): type a sentence, pick T, a seed and an order kind; the
  generation order, the blocks and both attention masks (M^c, M^sc, in generation and in
  original order) are redrawn.
* ``sampler_stepper`` (notebook 06): step through a generation block by block and watch the
  tokens appear in the order the sampler produced them;
* ``live_stepper`` (notebook 06): the same picture for a generation that runs as you step: each
  step of the slider (or of play) makes the next network call of ``sampler.generate_steps``.

Each widget is an ``ipywidgets.VBox`` whose picture is an ``ipywidgets.Image`` holding PNG bytes,
so it renders in JupyterLab, Notebook 7 and Colab alike, and is testable without a browser:
set ``widget.controls[name].value`` and read ``widget.figure`` (the last Figure drawn),
``widget.image.value`` (its PNG) and ``widget.info.value`` (the text under the controls).
Core ipywidgets only. Widgets do not render on GitHub: the notebooks put a static figure above each.
"""
from __future__ import annotations

import html

import ipywidgets
import torch

from .masking import alpha_schedule, sample_mask_times
from .permutation import left_to_right, order_from_mask_times, random_order, shuffle_k, strided_order
from .sampler import FREE, generate_steps, make_template
from .template import call_slots, plan
from .viz import DPI, figure_png, generation_figure, masks_figure

__all__ = ["DEFAULT_SENTENCE", "MAX_TOKENS", "ORDER_KINDS", "show", "words", "explorer_order", "MaskExplorer",
           "mask_explorer", "SamplerStepper", "sampler_stepper", "LiveStepper", "live_stepper"]

DEFAULT_SENTENCE = "the cat sat on the mat"
MAX_TOKENS = 16  # more words make unreadable tick labels
ORDER_KINDS = {  # dropdown label -> what it draws
    "diffusion": "masking trajectory with T steps (blocks = tokens masked at the same step)",
    "left-to-right": "autoregressive order, singleton blocks",
    "random": "uniformly random order, singleton blocks (T -> infinity)",
    "strided S=2": "strided block-parallel order with 2 streams (needs an even number of tokens)",
    "k-shuffle k=3": "left to right except 3 positions shuffled among themselves",
}


def show(image: ipywidgets.Image, figure) -> None:
    """Put the figure's PNG into the Image widget at its natural size (not stretched to the cell's width)."""
    image.value = figure_png(figure)
    image.width = str(round(figure.get_figwidth() * DPI))


def words(sentence: str) -> list[str]:
    """The explorer's tokens: whitespace-separated words."""
    return sentence.split()


def explorer_order(tokens: list[str], T: int, seed: int, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Order and blocks, both (1, N), that the explorer draws for these settings."""
    n = len(tokens)
    gen = torch.Generator().manual_seed(seed)
    if kind == "diffusion":
        tau = sample_mask_times(alpha_schedule("linear", T), (1, n), generator=gen)  # (1, N) in 1..T
        return order_from_mask_times(tau, T)
    if kind == "left-to-right":
        return left_to_right(1, n)
    if kind == "random":
        return random_order(1, n, generator=gen)
    if kind == "strided S=2":
        return strided_order(n, 2)
    if kind == "k-shuffle k=3":
        return shuffle_k(1, n, min(3, n) if n > 1 else 0, generator=gen)  # one token cannot move alone
    raise ValueError(f"kind must be one of {tuple(ORDER_KINDS)}, got {kind!r}")


class MaskExplorer(ipywidgets.VBox):
    """Sentence, T, seed and order kind -> order, blocks and both masks, redrawn on every change."""

    def __init__(self, sentence: str = DEFAULT_SENTENCE, T: int = 4, seed: int = 0, kind: str = "diffusion"):
        if kind not in ORDER_KINDS:
            raise ValueError(f"kind must be one of {tuple(ORDER_KINDS)}, got {kind!r}")
        self.controls = {
            "sentence": ipywidgets.Text(value=sentence, description="sentence", continuous_update=False,
                                        layout=ipywidgets.Layout(width="420px")),
            "T": ipywidgets.IntSlider(value=T, min=1, max=12, description="T (steps)", continuous_update=False),
            "seed": ipywidgets.IntSlider(value=seed, min=0, max=20, description="seed", continuous_update=False),
            "kind": ipywidgets.Dropdown(options=list(ORDER_KINDS), value=kind, description="order"),
        }
        self.info = ipywidgets.HTML()
        self.image = ipywidgets.Image(format="png")
        self.figure = None  # the last Figure drawn
        self.order = self.blocks = None  # (1, N) each, for the current settings
        super().__init__([ipywidgets.HBox([self.controls["sentence"], self.controls["kind"]]),
                          ipywidgets.HBox([self.controls["T"], self.controls["seed"]]), self.info, self.image])
        for control in self.controls.values():
            control.observe(lambda change: self.redraw(), names="value")
        self.redraw()

    def redraw(self) -> None:
        c = {name: control.value for name, control in self.controls.items()}
        tokens = words(c["sentence"])
        problem = None
        if not tokens:
            problem = "type at least one word"
        elif len(tokens) > MAX_TOKENS:
            problem = f"{len(tokens)} words: at most {MAX_TOKENS} fit in the picture"
        elif c["kind"] == "strided S=2" and len(tokens) % 2:
            problem = f"strided S=2 needs an even number of words, got {len(tokens)}"
        if problem:  # keep the last picture, say what to change
            self.info.value = f"<b style='color:#c53030'>{html.escape(problem)}</b>"
            return
        self.controls["T"].disabled = c["kind"] != "diffusion"
        self.order, self.blocks = explorer_order(tokens, c["T"], c["seed"], c["kind"])
        self.figure = masks_figure(tokens, self.order, self.blocks)
        show(self.image, self.figure)
        shown = [tokens[p] for p in self.order[0].tolist()]
        self.info.value = (f"<i>{html.escape(ORDER_KINDS[c['kind']])}</i><br>"
                           f"generation order (positions): {self.order[0].tolist()}<br>"
                           f"blocks: {self.blocks[0].tolist()}<br>"
                           f"tokens in generation order: {html.escape(' '.join(shown))}")


def mask_explorer(sentence: str = DEFAULT_SENTENCE, T: int = 4, seed: int = 0, kind: str = "diffusion") -> MaskExplorer:
    """The interactive mask explorer of notebook 02 (see ``MaskExplorer``)."""
    return MaskExplorer(sentence, T, seed, kind)


class SamplerStepper(ipywidgets.VBox):
    """A generation replayed block by block: slider (or play button) = number of blocks produced."""

    def __init__(self, tokens: list[str], order, blocks, title: str = "", width: int = 32):
        self.tokens, self.width = list(tokens), width
        self.order, self.blocks = order, blocks
        self.n_blocks = len(torch.unique(torch.as_tensor(blocks)))
        # validate once, up front, with the figure's own checks (order/blocks shape, lengths)
        generation_figure(self.tokens, order, blocks, 0, width)
        step = ipywidgets.IntSlider(value=self.n_blocks // 2, min=0, max=self.n_blocks, description="blocks",
                                    continuous_update=True)
        play = ipywidgets.Play(value=step.value, min=0, max=self.n_blocks, interval=300, description="play")
        ipywidgets.jslink((play, "value"), (step, "value"))
        self.controls = {"step": step, "play": play}
        self.info = ipywidgets.HTML(f"<b>{html.escape(title)}</b>" if title else "")
        self.image = ipywidgets.Image(format="png")
        self.figure = None
        super().__init__([ipywidgets.HBox([play, step]), self.info, self.image])
        step.observe(lambda change: self.redraw(), names="value")
        self.redraw()

    def redraw(self) -> None:
        self.figure = generation_figure(self.tokens, self.order, self.blocks, self.controls["step"].value, self.width)
        show(self.image, self.figure)


def sampler_stepper(tokens: list[str], order, blocks, title: str = "", width: int = 32) -> SamplerStepper:
    """The sampler stepper of notebook 06: ``tokens`` in original order (strings), one row's order and blocks.

    For a ``Generation`` ``g`` of a character model:
    ``sampler_stepper([tok.decode([i]) for i in g.tokens[0].tolist()], g.order[0], g.blocks[0])``.
    """
    return SamplerStepper(tokens, order, blocks, title, width)


def _progress(template: torch.Tensor, steps: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, blocks) of one row, (N,) each, from the calls made so far: the given positions first
    (singleton blocks), then each call's positions as one block, then the positions still to draw."""
    given = (template[0] >= 0).nonzero()[:, 0].tolist()
    drawn = [step.positions[0][step.positions[0] >= 0].tolist() for step in steps]
    seen = set(given).union(*map(set, drawn))
    rest = [p for p in range(template.shape[1]) if p not in seen]
    order = given + [p for call in drawn for p in call] + rest
    blocks = list(range(1, len(given) + 1))
    for j, call in enumerate(drawn):
        blocks += [len(given) + 1 + j] * len(call)
    blocks += [len(given) + len(drawn) + 1] * len(rest)
    return torch.tensor(order), torch.tensor(blocks)


class LiveStepper(ipywidgets.VBox):
    """An ARMD generation that runs as you step: slider (or play) = number of network calls made.

    Moving forward makes the missing calls (``sampler.generate_steps``, one per step); moving back
    shows an earlier state without calling the model; "new sample" restarts with the next seed.
    """

    def __init__(self, model, tokenizer, n: int, streams: int = 1, order: str = "l2r", prompt: str | None = None,
                 seed: int = 0, temperature: float = 1.0, width: int = 32):
        self.model, self.tokenizer, self.width = model, tokenizer, width
        ids = tokenizer.encode(prompt) if prompt else None
        self.template = make_template(n, 1, prompt=ids)  # (1, n)
        self.settings = dict(streams=streams, order=order, temperature=temperature)
        given = (self.template >= 0).sum(dim=1)
        _, blocks = plan(self.template, streams, "l2r")  # the number of calls does not depend on the order
        self.n_calls = len(call_slots(blocks, given, torch.tensor([n])))
        step = ipywidgets.IntSlider(value=0, min=0, max=self.n_calls, description="calls", continuous_update=False)
        play = ipywidgets.Play(value=0, min=0, max=self.n_calls, interval=400, description="play")
        ipywidgets.jslink((play, "value"), (step, "value"))
        again = ipywidgets.Button(description="new sample")
        self.controls = {"step": step, "play": play, "again": again}
        self.info = ipywidgets.HTML()
        self.image = ipywidgets.Image(format="png")
        self.figure = None
        super().__init__([ipywidgets.HBox([play, step, again]), self.info, self.image])
        step.observe(lambda change: self.redraw(), names="value")
        again.on_click(lambda button: self.restart(self.seed + 1))
        self.restart(seed)

    def restart(self, seed: int) -> None:
        """A fresh generation with this seed, shown before its first call."""
        self.seed = seed
        self.running = generate_steps(self.model, template=self.template,
                                      generator=torch.Generator().manual_seed(seed), **self.settings)
        self.steps = []  # the Steps made so far
        if self.controls["step"].value:
            self.controls["step"].value = 0  # redraws
        else:
            self.redraw()

    def redraw(self) -> None:
        k = self.controls["step"].value
        while len(self.steps) < k:  # the live part: one network call per missing step
            self.steps.append(next(self.running))
        sequence = self.steps[k - 1].sequence[0] if k else self.template[0]
        strings = ["" if int(t) == FREE else self.tokenizer.decode([int(t)]) for t in sequence]
        order, blocks = _progress(self.template, self.steps[:k])
        given = int((self.template[0] >= 0).sum())
        self.figure = generation_figure(strings, order, blocks, given + k, self.width)
        show(self.image, self.figure)
        text = "".join(s if s else "\u00b7" for s in strings)  # middle dot: not drawn yet
        self.info.value = (f"seed {self.seed}, call {k} of {self.n_calls} ({self.settings['streams']} stream(s), "
                           f"order {self.settings['order']})<br><code>{html.escape(text)}</code>")


def live_stepper(model, tokenizer, n: int, streams: int = 1, order: str = "l2r", prompt: str | None = None,
                 seed: int = 0, temperature: float = 1.0, width: int = 32) -> LiveStepper:
    """The live sampler stepper of notebook 06: an ARMD model generates ``n`` tokens as you step."""
    return LiveStepper(model, tokenizer, n, streams, order, prompt, seed, temperature, width)
