"""kinds.py: one registry owns the model kinds. A toy kind registered from outside the package trains,
resumes, reloads, evaluates, samples and is counted by every generic code path, and nothing outside
kinds.py switches on a kind's name."""
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minarmd import (ARMD, GPT, MDM, ARMDConfig, TrainConfig, TransformerConfig, estimate, generate_text, kind_of,
                     load_data, load_model, train_model)
from minarmd import throughput as tp
from minarmd.evaluate import DEFAULT_PROTOCOLS, PROTOCOL_NAMES, evaluate
from minarmd.kinds import KINDS, ModelKind, Protocol, fill, get_kind, register_kind, unregister_kind
from minarmd.sampler import FREE, Generation, draw
from minarmd.train import main

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the toy kind: a bigram model
# Everything a new kind brings lives here, as it would in its own module: config, network, loss,
# sampler and FLOP count; then one register_kind call.

@dataclass(kw_only=True)
class BigramConfig:
    vocab_size: int  # real token ids; id vocab_size is BOS
    max_len: int  # longest sequence
    n_embd: int = 16  # width of the previous-token embedding


class Bigram(nn.Module):
    """p(x_n | x_{n-1}) = softmax(W e(x_{n-1})), BOS before the first token."""

    def __init__(self, cfg: BigramConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size + 1, cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x):  # (B, N) -> (B, N, V): logits of x_n given x_{n-1}
        prev = torch.cat([torch.full_like(x[:, :1], self.cfg.vocab_size), x[:, :-1]], dim=1)
        return self.head(self.wte(prev))


def bigram_nll(model, x):
    logits = model(x)
    return F.cross_entropy(logits.flatten(0, 1), x.flatten())


def bigram_window_nll(model, x):  # (B,): a protocol scores each window
    return F.cross_entropy(model(x).transpose(1, 2), x, reduction="none").mean(dim=1)


@torch.inference_mode()
def sample_bigram(model, template, generator=None, temperature=1.0, top_k=None, top_p=None, stop_token=None,
                  cache=True, callback=None):
    """Left to right, one call per position (no prompt support beyond given tokens kept as they are)."""
    tokens = template.clone()
    for n in range(template.shape[1]):
        free = tokens[:, n] == FREE
        if free.any():
            logits = model(tokens[:, :n + 1].clamp(min=0))[:, n]
            tokens[free, n] = draw(logits[free], temperature, top_k, top_p, generator)
    order = torch.arange(template.shape[1]).expand_as(template)
    logprobs = torch.full(template.shape, float("nan"), dtype=torch.float64)
    return Generation(tokens, order, order + 1, template.shape[1], logprobs)


BIGRAM = ModelKind(
    name="bigram", label="bigram toy", possessive="the bigram's", model_class=Bigram, config_class=BigramConfig,
    network_config=lambda cfg, V: BigramConfig(vocab_size=V, max_len=cfg.seq_len, n_embd=cfg.n_embd),
    draw_noise=lambda cfg, B, N, step, gen: {}, loss=lambda model, x, noise: bigram_nll(model, x),
    protocols=(Protocol("l2r", PROTOCOL_NAMES["l2r"], lambda model, x, gen, T, s: bigram_window_nll(model, x),
                        exact=True),),
    sampler=sample_bigram, how_it_samples="the bigram draws left to right",
    param_count=lambda c: (c.vocab_size + 1) * c.n_embd + c.n_embd * c.vocab_size,
    forward_flops=lambda c, N: {"linear": 0, "attention": 0, "prefix": 0, "head": 2 * c.n_embd * c.vocab_size * N})


@pytest.fixture
def bigram():
    register_kind(BIGRAM)
    yield BIGRAM
    unregister_kind("bigram")
    assert "bigram" not in KINDS and "bigram" not in DEFAULT_PROTOCOLS


def test_a_registered_toy_kind_runs_through_every_generic_path(bigram, tmp_path):
    cfg = TrainConfig.from_preset("tiny", model="bigram", max_steps=4, warmup=1, batch_size=4, seq_len=32,
                                  n_embd=16, eval_every=2, eval_windows=4, ckpt_every=2, out=str(tmp_path / "b"))
    summary = train_model(cfg)
    assert summary["protocol"] == "l2r" and math.isfinite(summary["final_val"])
    # the command line knows the kind too (it validates through TrainConfig), and resumes it
    main(["--model", "bigram", "--max-steps", "6", "--warmup", "1", "--batch-size", "4", "--seq-len", "32",
          "--n-embd", "16", "--eval-every", "2", "--eval-windows", "4", "--ckpt-every", "2",
          "--out", str(tmp_path / "b"), "--resume"])
    model, saved, tok = load_model(tmp_path / "b" / "ckpt.pt")
    assert isinstance(model, Bigram) and kind_of(model) is bigram and saved.model == "bigram"
    windows = load_data("shakespeare").eval_windows(32, 4)
    est = estimate(model, windows, "l2r")
    assert est.draws == 1 and est.se == 0 and abs(est.nats - bigram_nll(model, windows).item()) < 1e-6
    assert list(evaluate(model, windows)) == ["l2r"]
    with pytest.raises(ValueError, match="protocol 'nelbo' does not apply to a bigram model"):
        estimate(model, windows, "nelbo")
    text = generate_text(model, tok, prompt="ROMEO:", max_new_tokens=8, n=2)
    assert [s.text[:6] for s in text.samples] == ["ROMEO:"] * 2 and all(len(s.token_ids) == 8 for s in text.samples)
    with pytest.raises(ValueError, match="streams is ARMD's setting; the bigram draws left to right"):
        fill(model, torch.full((1, 8), FREE), streams=2)
    V = tok.vocab_size
    assert tp.param_count(saved, vocab_size=V) == model.num_params()
    assert tp.flops_per_token(saved, vocab_size=V) == 3 * 2 * 16 * V
    assert tp.forward_flops(BigramConfig(vocab_size=V, max_len=32))["head"] == 2 * 16 * V * 32


def test_registry_refuses_what_it_cannot_honour(bigram):
    with pytest.raises(ValueError, match="registered already"):
        register_kind(bigram)
    with pytest.raises(ValueError, match="kind must be a ModelKind"):
        register_kind("bigram")
    clash = Protocol("l2r", "something else", lambda *a: 0.0)
    with pytest.raises(ValueError, match="protocol 'l2r' means"):
        register_kind(ModelKind(**{**vars(bigram), "name": "other", "protocols": (clash,)}))
    with pytest.raises(ValueError, match="model must be one of"):
        get_kind("bigramm")
    with pytest.raises(ValueError, match="model must be one of"):
        TrainConfig(model="bigramm")
    with pytest.raises(ValueError, match="model must be an ARMD, GPT, MDM or Bigram"):
        kind_of(nn.Linear(2, 2))


def test_the_three_kinds_and_their_recipes():
    assert list(KINDS)[:3] == ["armd", "ar", "mdm"]
    assert DEFAULT_PROTOCOLS["armd"] == ("l2r", "random", "mask") and DEFAULT_PROTOCOLS["mdm"] == ("nelbo",)
    shape = dict(vocab_size=11, max_len=8, n_layer=2, n_head=2, n_embd=16)
    for model, name in ((ARMD(ARMDConfig(**shape)), "armd"), (GPT(TransformerConfig(**shape)), "ar"),
                        (MDM(TransformerConfig(**shape)), "mdm")):
        assert kind_of(model).name == name
        assert get_kind(name).param_count(model.cfg) == model.num_params()
    armd = get_kind("armd")
    assert armd.validation_protocol(TrainConfig(order="mask")) == "mask"
    assert armd.validation_protocol(TrainConfig(order="sbp")) == "l2r"
    assert armd.step_info(TrainConfig(), 0) == {"k": 0} and armd.step_info(TrainConfig(order="sbp"), 0) == {}


# where the old code wrote the switch: "== 'armd'", a {"armd": ...} table, isinstance over the networks
KIND_SWITCH = re.compile(r'[!=]=\s*"(armd|ar|mdm)"|"(armd|ar|mdm)"\s*[!=]=|in \("(armd|ar|mdm)"'
                         r'|isinstance\([^)]*\b(ARMD|GPT|MDM)\b|\{"armd":|^MODELS = ', re.M)


def test_only_kinds_py_switches_on_the_model_kind():
    found = {p.relative_to(ROOT).as_posix(): KIND_SWITCH.findall(p.read_text())
             for p in (ROOT / "minarmd").rglob("*.py") if p.name != "kinds.py"}
    assert {p: f for p, f in found.items() if f} == {}


def test_the_switch_detector_finds_a_switch():
    # the check above must fail on code written the old way
    old = 'if cfg.model == "armd":\n    pass\nkind = {"armd": "generate", "ar": "sample_ar"}\nMODELS = ("armd",)\n'
    assert len(KIND_SWITCH.findall(old)) == 3
    assert KIND_SWITCH.findall("if isinstance(model, (ARMD, GPT)):")
