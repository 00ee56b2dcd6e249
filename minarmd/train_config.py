"""What a training run depends on: ``TrainConfig``, its presets, and which fields may change on resume.

    cfg = TrainConfig.from_preset("tiny", model="armd", max_steps=600, out="runs/armd")
    cfg.network_config(vocab_size=65)       # the ARMDConfig that run builds

Every field is validated when the config is made, so a bad setting fails before any data is loaded
(``python -m minarmd.train`` turns the ValueError into one ``error:`` line). The model kinds and
ARMD's training orders are defined in ``kinds.py``; the loop that uses this config is ``training.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from .config import ARCHS, ATTN_BACKENDS, PE_INITS
from .data import DATASETS
from .kinds import KINDS, ORDERS, get_kind
from .masking import alpha_schedule
from .permutation import ProgressiveSchedule

__all__ = ["TrainConfig", "PRESETS", "SHAPE_FIELDS", "RESUMABLE", "ORDER_FIELDS", "parse_step"]


@dataclass(kw_only=True)
class TrainConfig:
    """Everything a run depends on; presets (``PRESETS``) fill it, command-line flags override."""

    model: str = "armd"  # a kind from kinds.KINDS: "armd", "ar" (GPT baseline), "mdm" (MDLM-style baseline)
    preset: str = "tiny"  # the preset these values came from (recorded in the checkpoint)
    data: str = "shakespeare"  # a name from data.DATASETS
    tokenizer: str = "char"  # "char" or "gpt2" (ignored for synthetic data)
    data_dir: str | None = None  # where prepared .bin files live (openwebtext)
    out: str = "runs/tiny"  # run directory: ckpt.pt, metrics.jsonl, loss.png
    seed: int = 0  # seeds the weights, the data stream and the orders
    # model shape (same width/depth for all three models)
    n_layer: int = 4  # transformer layers L
    n_head: int = 4  # attention heads
    n_embd: int = 128  # width d
    n_two_stream: int | None = None  # ARMD's L2s; None -> n_layer // 2
    pe_init: str = "neighbours"  # ARMD's PE init (config.PE_INITS): "neighbours" (g^0_n = n's visible neighbours), "random"
    d_pe: int | None = None  # ARMD's prefix-aggregation width; None: seq_len + 1 ("neighbours"), 64 ("random")
    pe_init_std: float = 0.02  # "random" PE's init std (0.125 = 1/sqrt(64) trains ~2x slower here)
    dropout: float = 0.0  # dropout everywhere (0: runs resume bit-exactly even on GPU)
    arch: str = "rope"  # config.ARCHS: "rope" (minarmd's: RoPE, no biases) or "gpt2" (learned positions, biases, tanh-GELU)
    attn_backend: str = "auto"  # ARMD attention: "auto", "dense", "causal", "flex"
    # optimisation
    max_steps: int = 600  # optimiser steps in total (a resumed run continues up to this)
    batch_size: int = 32  # windows per micro-batch
    grad_accum: int = 1  # micro-batches per optimiser step
    seq_len: int = 128  # tokens per window N
    lr: float = 1e-3  # peak learning rate
    lr_decay: str = "cosine"  # "cosine" (to min_lr_frac * lr at max_steps) or "constant" (MDLM)
    min_lr_frac: float = 0.1  # final learning rate as a fraction of lr (cosine)
    warmup: int = 50  # linear warm-up steps
    weight_decay: float = 0.1  # AdamW decay on weight matrices (not on norms, biases, BOS)
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.99  # AdamW beta2 (0.99 for small batches, 0.999 at GPT-2 scale)
    grad_clip: float = 1.0  # max global grad norm (0: off)
    ema: float = 0.0  # EMA decay of the weights used for evaluation (0: off; MDLM 0.9999)
    # ARMD orders
    order: str = "progressive"  # kinds.ORDERS: "progressive", "sbp", "mask" (T-step trajectories), "random", "l2r"
    # i_ar and i_perm: an int is a step, a float in [0, 1] a fraction of max_steps (scikit-learn's convention),
    # so a longer run keeps the curriculum's shape; tiny: 1/3 and 3/4 (steps 200 and 450 of 600)
    i_ar: int | float = 1 / 3  # progressive: left-to-right steps first (paper, OWT: 9_000 of 400K, 2 %)
    i_perm: int | float = 0.75  # progressive: step at which k reaches rho (paper, OWT: 48_000 of 400K, 12 %)
    rho: int = 4  # progressive: final displaced tokens, 0 or >= 2 (permutation.py); 4/128 = 3 % like the paper's 32/1024
    window: bool = False  # progressive: shuffle k consecutive slots instead of k random ones
    sbp_streams: tuple[int, ...] = (1, 2, 4)  # sbp: S drawn uniformly from these each step
    mask_T: int = 8  # mask: masking steps T of the trajectories (blocks of tied tokens)
    mask_schedule: str = "linear"  # mask: alpha_t schedule (masking.SCHEDULES)
    init_from: str | None = None  # start from this checkpoint's weights (SBP fine-tuning)
    # adapting a pretrained GPT into an ARMD (adapt.py): the content stream takes its weights, PE is new
    init_from_ar: str | None = None  # start an ARMD from this GPT-baseline checkpoint (--model ar run)
    init_from_hf: str | None = None  # start an ARMD from Hugging Face GPT-2: "gpt2" or a local folder
    freeze_pretrained: int = 0  # first steps in which only the new parameters (PE) train; copied ones wait
    # bookkeeping
    eval_every: int = 100  # steps between validation estimates (0: only at the end)
    eval_windows: int = 64  # validation windows per estimate
    ckpt_every: int = 200  # steps between checkpoints (0: only at the end and on Ctrl-C, which always save)
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda"
    bf16: bool = False  # bf16 autocast (CUDA only)
    compile: bool = False  # torch.compile the model (CUDA; slow first step on CPU)

    def __post_init__(self):
        self._check_types()
        choices = {"model": tuple(KINDS), "order": ORDERS, "lr_decay": ("cosine", "constant"),
                   "device": ("auto", "cpu", "cuda"), "data": DATASETS, "tokenizer": ("char", "gpt2"),
                   "arch": tuple(ARCHS), "attn_backend": ATTN_BACKENDS, "pe_init": PE_INITS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name, low, high, brackets in _RANGES:
            value = getattr(self, name)
            if value is None:  # an optional field left to its default (d_pe)
                continue
            above = value >= low if brackets[0] == "[" else value > low
            below = high is None or (value <= high if brackets[1] == "]" else value < high)
            if not (above and below):
                wanted = f"{'>=' if brackets[0] == '[' else '>'} {low}" if high is None else f"in {brackets[0]}{low}, {high}{brackets[1]}"
                raise ValueError(f"{name} must be {wanted}{_HINTS.get(name, '')}, got {value!r}")
        for name in ("out", "preset", "data_dir", "init_from", "init_from_ar", "init_from_hf"):
            if getattr(self, name) is not None and not getattr(self, name).strip():
                raise ValueError(f"{name} must not be empty{' (the run directory)' if name == 'out' else ''}, "
                                 f"got {getattr(self, name)!r}")
        for name in ("i_ar", "i_perm"):
            if isinstance(getattr(self, name), float) and getattr(self, name) > 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: a float is a fraction of max_steps and must lie in "
                                 f"[0, 1]; pass an integer for a step count (e.g. {name}={round(getattr(self, name))})")
        if self.i_perm_steps < self.i_ar_steps:
            raise ValueError(f"i_perm={self.i_perm} must be >= i_ar={self.i_ar} (steps {self.i_perm_steps} < "
                             f"{self.i_ar_steps}): shuffling starts at i_ar and reaches rho at i_perm")
        if self.rho == 1:
            raise ValueError("rho=1 displaces no token (one token cannot leave its slot alone): pass --rho 0 for "
                             "left to right throughout, or --rho 2 or more")
        bad = [s for s in self.sbp_streams if s < 1 or self.seq_len % s]
        if self.order == "sbp" and (bad or not self.sbp_streams):
            raise ValueError(f"sbp_streams must divide seq_len={self.seq_len}, got {self.sbp_streams}")
        self._check_adaptation()
        if get_kind(self.model).orders and self.pe_init == "neighbours" and self.d_pe is not None \
                and self.d_pe < self.seq_len + 1:
            raise ValueError(f"pe_init='neighbours' needs d_pe >= seq_len + 1 = {self.seq_len + 1} (one column per "
                             f"position, BOS included), got d_pe={self.d_pe}: leave --d-pe out (or pass "
                             f"--d-pe {self.seq_len + 1}), or pass --pe-init random")
        self.schedule  # builds (and so validates) the progressive schedule
        alpha_schedule(self.mask_schedule, self.mask_T)  # validates them
        if self.order == "progressive" and self.rho > self.seq_len:
            raise ValueError(f"rho={self.rho} exceeds seq_len={self.seq_len}; scale rho with seq_len")
        get_kind(self.model).network_config(self, 2)  # the shape checks (any vocabulary will do)

    def _check_types(self) -> None:
        """Every field has its annotated type (an int where an int is due, never a bool; floats finite)."""
        for f in fields(self):
            value, allowed = getattr(self, f.name), _TYPES[f.type]
            if f.type.startswith("tuple") and isinstance(value, list):
                value = tuple(value)
                setattr(self, f.name, value)
            ok = (value is None and "None" in f.type) or (
                isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed))
            if ok and isinstance(value, float):
                ok = math.isfinite(value)
            if ok and isinstance(value, tuple):
                ok = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            if not ok:
                raise ValueError(f"{f.name} must be {_TYPE_WORDS[f.type]}, got {value!r}")
            if isinstance(value, int) and not isinstance(value, bool) and f.type == "float":
                setattr(self, f.name, float(value))  # lr=1 from Python means 1.0 (but i_ar=1 is one step)

    def _check_adaptation(self) -> None:
        sources = [f for f in ("init_from", "init_from_ar", "init_from_hf") if getattr(self, f)]
        if len(sources) > 1:
            raise ValueError(f"{' and '.join(sources)} are exclusive: a run starts from one set of weights")
        if (self.init_from_ar or self.init_from_hf) and "ar" not in get_kind(self.model).adapts_from:
            raise ValueError(f"init_from_ar / init_from_hf convert a GPT into an ARMD: use model='armd', "
                             f"got {self.model!r} (a GPT run continues from a checkpoint with init_from)")
        if self.init_from_hf and (self.arch != "gpt2" or self.tokenizer != "gpt2"):
            raise ValueError(f"init_from_hf={self.init_from_hf!r} needs GPT-2's architecture and tokenizer: pass "
                             f"--arch gpt2 --tokenizer gpt2 (got arch={self.arch!r}, tokenizer={self.tokenizer!r})")
        if self.freeze_pretrained and not (self.init_from_ar or self.init_from_hf):
            raise ValueError("freeze_pretrained needs init_from_ar or init_from_hf: without a pretrained "
                             "model there is nothing to freeze")

    def steps_of(self, value: int | float) -> int:
        """A schedule point in steps: an int is a step already, a float a fraction of max_steps."""
        return value if isinstance(value, int) else round(value * self.max_steps)

    @property
    def i_ar_steps(self) -> int:
        return self.steps_of(self.i_ar)

    @property
    def i_perm_steps(self) -> int:
        return self.steps_of(self.i_perm)

    @property
    def schedule(self) -> ProgressiveSchedule:
        """The progressive permutation schedule these fields describe (fractions resolved to steps)."""
        return ProgressiveSchedule(self.i_ar_steps, self.i_perm_steps, self.rho, self.window)

    @classmethod
    def from_saved(cls, values: dict) -> "TrainConfig":
        """The config a checkpoint or record saved (``asdict``), read by this version: fields that runs made
        before they existed get the value those runs used (runs before ``pe_init`` drew PE at random)."""
        values = dict(values)
        former_adapt = values.pop("adapt_pe_init", None)  # the conversions' PE init, before pe_init served all
        if "pe_init" not in values:  # fresh ARMDs drew PE at random (d_pe 64); conversions used adapt_pe_init
            converted = values.get("init_from_ar") or values.get("init_from_hf")
            values["pe_init"] = (former_adapt or "neighbours") if converted else "random"
        return cls(**values)

    @classmethod
    def from_preset(cls, preset: str = "tiny", **overrides) -> "TrainConfig":
        """A preset's values (``PRESETS``) with keyword overrides; None values are ignored."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {tuple(PRESETS)}")
        values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        return cls(preset=preset, **values)

    def network_config(self, vocab_size: int):
        """The network config this run builds (its kind's recipe, ``kinds.py``), without weights."""
        return get_kind(self.model).network_config(self, vocab_size)


PRESETS = {
    # CPU, minutes: char-level Shakespeare, 0.8M parameters; curriculum i_ar = 1/3, i_perm = 3/4 of max_steps
    "tiny": {},
    # CPU, 2-4 minutes: `python -m minarmd`'s run, the tiny shape tuned for the lowest held-out NLL in the time
    # the job took with 600 tiny steps: 8 windows a step, lr 3e-3, 2200 steps (benchmarks/RESULTS.md §0.1,
    # 3 seeds); the curriculum keeps the tiny preset's fractions
    "quickstart": dict(batch_size=8, lr=3e-3, max_steps=2200),
    # CPU, 2-3 minutes: adapt a tiny GPT into an ARMD (--init-from-ar runs/gpt/ckpt.pt): the recipe measured in
    # benchmarks/RESULTS.md §12 -- 300 steps, the tiny curriculum's fractions (left to right for the first third,
    # rho reached at 3/4: steps 100 and 225), warm-up 10 %, the "neighbours" PE init (d_pe = N + 1), no frozen
    # phase (it hurt)
    "tiny-adapt": dict(max_steps=300, i_ar=1 / 3, i_perm=0.75, warmup=30),
    # CPU, tens of minutes: 4.8M parameters, N = 256; curriculum 1/3 and 11/15 of max_steps (steps 1000, 2200)
    "small-cpu": dict(n_layer=6, n_head=8, n_embd=256, seq_len=256, batch_size=16, lr=6e-4,
                      max_steps=3000, warmup=100, i_ar=1 / 3, i_perm=11 / 15, rho=8, eval_every=250,
                      ckpt_every=500),
    # GPU: the paper's small model on OpenWebText (batch 32 x 16 x 1024 = 0.5M tokens per step); the paper's
    # curriculum in steps (9K and 48K of 400K: 2 % and 12 %)
    "gpt2-small": dict(data="openwebtext", tokenizer="gpt2", n_layer=12, n_head=12, n_embd=768,
                       seq_len=1024, batch_size=32, grad_accum=16, lr=3e-4, lr_decay="constant",
                       warmup=2500, beta2=0.999, weight_decay=0.0, ema=0.9999, max_steps=400_000,
                       i_ar=9000, i_perm=48_000, rho=32, eval_every=5000, eval_windows=256,
                       ckpt_every=2000, bf16=True, compile=True),
    # GPU: GPT-2 small (Hugging Face's 124M weights) adapted into an ARMD on OpenWebText (adapt.py). N = 1020:
    # BOS takes GPT-2's position 0 (at most 1023 tokens) and 1020 splits into S = 1, 2, 4 SBP streams; PE is the
    # "neighbours" table (d_pe = N + 1); lr 1e-4 with a short warm-up for pretrained weights; the curriculum
    # of the small-scale recipe (left to right for the first 10 %, rho reached at 50 %) over 20K steps
    # (~10B tokens, a third of DiffuGPT's adaptation). Needs transformers and the hub once.
    "gpt2-small-adapt": dict(data="openwebtext", tokenizer="gpt2", arch="gpt2", init_from_hf="gpt2",
                             n_layer=12, n_head=12, n_embd=768, seq_len=1020, batch_size=32,
                             grad_accum=16, lr=1e-4, lr_decay="cosine", warmup=500, beta2=0.999,
                             weight_decay=0.0, max_steps=20_000, i_ar=2000, i_perm=10_000, rho=32,
                             eval_every=1000, eval_windows=256, ckpt_every=1000, bf16=True, compile=True),
    # GPU: the paper's medium model (24 layers, 1024 wide, 16 heads, L2s = 12, 355M parameters), same
    # recipe and global batch; micro-batch 16 x 32 accumulated (not yet run on a GPU: lower batch_size
    # and raise grad_accum if it runs out of memory)
    "gpt2-medium": dict(data="openwebtext", tokenizer="gpt2", n_layer=24, n_head=16, n_embd=1024,
                        seq_len=1024, batch_size=16, grad_accum=32, lr=3e-4, lr_decay="constant",
                        warmup=2500, beta2=0.999, weight_decay=0.0, ema=0.9999, max_steps=400_000,
                        i_ar=9000, i_perm=48_000, rho=32, eval_every=5000, eval_windows=256,
                        ckpt_every=2000, bf16=True, compile=True),
}

_TYPES = {"str": (str,), "str | None": (str,), "int": (int,), "int | None": (int,), "float": (float, int),
          "int | float": (int, float), "bool": (bool,), "tuple[int, ...]": (tuple,)}
_TYPE_WORDS = {"str": "a string", "str | None": "a string or None", "int": "an integer", "int | None":
               "an integer or None", "float": "a finite number", "bool": "True or False",
               "int | float": "an integer (a step) or a float in [0, 1] (a fraction of max_steps)",
               "tuple[int, ...]": "a tuple of integers"}
# (field, low, high or None for no bound, "[)"-style brackets): every number's range, checked in one place
_RANGES = [(name, 1, None, "[") for name in (
    "n_layer", "n_head", "n_embd", "d_pe", "max_steps", "batch_size", "grad_accum", "seq_len", "mask_T",
    "eval_windows")] + [(name, 0, None, "[") for name in (
    "seed", "warmup", "i_ar", "i_perm", "rho", "eval_every", "ckpt_every", "freeze_pretrained", "weight_decay",
    "grad_clip")] + [
    ("lr", 0, None, "("), ("pe_init_std", 0, None, "("), ("dropout", 0, 1, "[)"), ("min_lr_frac", 0, 1, "[]"),
    ("beta1", 0, 1, "[)"), ("beta2", 0, 1, "[)"), ("ema", 0, 1, "[)")]
_HINTS = {"grad_clip": " (0 switches clipping off)", "eval_every": " (0: evaluate only at the end)",
          "ckpt_every": " (0: save only at the end and on Ctrl-C)", "min_lr_frac": " (a fraction of lr)",
          "ema": " (0 switches the EMA off)"}

# fields that fix the network's parameters (a checkpoint loads only into the same values)
SHAPE_FIELDS = ("model", "data", "tokenizer", "seq_len", "n_layer", "n_head", "n_embd", "n_two_stream", "d_pe",
                "arch")

# fields that only a kind with training orders reads (ARMD's): they cannot change what an AR or MDM run learns
ORDER_FIELDS = ("order", "i_ar", "i_perm", "rho", "window", "sbp_streams", "mask_T", "mask_schedule", "n_two_stream",
                "pe_init", "d_pe", "pe_init_std", "attn_backend")

# fields that may change when resuming; everything else must match the checkpoint
def parse_step(text: str) -> int | float:
    """A command-line schedule point: "300" is step 300, "0.25" (or "25%") a quarter of max_steps."""
    text = text.strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a step (an integer, e.g. 300) or a fraction of max_steps (e.g. 0.25 or "
                             f"25%), got {text!r}") from None


RESUMABLE = {"max_steps", "out", "eval_every", "ckpt_every", "device", "compile", "data_dir", "eval_windows"}
