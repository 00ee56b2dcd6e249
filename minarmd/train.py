r"""One training loop for ARMD and its two baselines (AR and MDM), from a CPU notebook to a GPU.

    python -m minarmd.train --model armd --preset tiny --data shakespeare --max-steps 600 --out runs/armd
    python -m minarmd.train ... --resume                # continue from runs/armd/ckpt.pt

Each step draws ``grad_accum`` batches of ``seq_len``-token windows and minimises the model's loss:

* ARMD: the single-pass loss (``loss.armd_loss``) under orders from ``order``:
  ``"progressive"`` — the paper's curriculum (``permutation.ProgressiveSchedule``): left to right
  for ``i_ar`` steps, then k shuffled tokens growing from 1 to ``rho`` at ``i_perm``;
  ``"sbp"`` — strided block-parallel orders with S drawn from ``sbp_streams`` each step (SBP
  fine-tuning; start from a trained model with ``init_from``); ``"mask"`` — blocks from T-step
  masking trajectories (the discrete-time MDM loss); ``"random"``; ``"l2r"``.
* AR: next-token NLL (``ar.ar_loss``); MDM: one-sample NELBO with antithetic t (``mdm.mdm_loss``).

AdamW (weight decay on matrices only), linear warm-up then constant or cosine learning rate,
gradient clipping, optional EMA of the weights, gradient accumulation, bf16 autocast and
``torch.compile`` on CUDA. Every ``ckpt_every`` steps, at the end, and on Ctrl-C the full state
(weights, optimiser, EMA, step, every random generator) is written atomically to ``out/ckpt.pt``, so
``--resume`` continues exactly: on the CPU the losses after resuming equal those of an uninterrupted
run. Metrics go to ``out/metrics.jsonl`` (one JSON object per line) and ``out/loss.png``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from . import distributed
from .ar import GPT, ar_loss
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ARMDConfig, TransformerConfig
from .data import load_data
from .evaluate import DEFAULT_PROTOCOLS, estimate
from .loss import armd_loss
from .mdm import MDM, mdm_loss, sample_t
from .masking import alpha_schedule, sample_mask_times
from .model import ARMD
from .permutation import ProgressiveSchedule, left_to_right, order_from_mask_times, random_order, strided_order
from .throughput import flops_per_token, peak_flops
from .tokenizer import tokenizer_from_state

MODELS = ("armd", "ar", "mdm")
ORDERS = ("progressive", "sbp", "mask", "random", "l2r")


@dataclass(kw_only=True)
class TrainConfig:
    """Everything a run depends on; presets (``PRESETS``) fill it, command-line flags override."""

    model: str = "armd"  # "armd", "ar" (GPT baseline) or "mdm" (MDLM-style baseline)
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
    d_pe: int = 64  # ARMD's prefix-aggregation width
    pe_init_std: float = 0.02  # ARMD's PE init std (0.125 = 1/sqrt(64) trains ~2x slower here)
    dropout: float = 0.0  # dropout everywhere (0: runs resume bit-exactly even on GPU)
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
    order: str = "progressive"  # "progressive", "sbp", "mask" (T-step trajectories), "random", "l2r"
    i_ar: int = 200  # progressive: left-to-right steps first (paper, OWT: 9_000)
    i_perm: int = 450  # progressive: step at which k reaches rho (paper, OWT: 48_000)
    rho: int = 4  # progressive: final shuffled tokens; 4/128 = 3 % like the paper's 32/1024
    window: bool = False  # progressive: shuffle k consecutive slots instead of k random ones
    sbp_streams: tuple[int, ...] = (1, 2, 4)  # sbp: S drawn uniformly from these each step
    mask_T: int = 8  # mask: masking steps T of the trajectories (blocks of tied tokens)
    mask_schedule: str = "linear"  # mask: alpha_t schedule (masking.SCHEDULES)
    init_from: str | None = None  # start from this checkpoint's weights (SBP fine-tuning)
    # bookkeeping
    eval_every: int = 100  # steps between validation estimates (0: only at the end)
    eval_windows: int = 64  # validation windows per estimate
    ckpt_every: int = 200  # steps between checkpoints (also written at the end and on Ctrl-C)
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda"
    bf16: bool = False  # bf16 autocast (CUDA only)
    compile: bool = False  # torch.compile the model (CUDA; slow first step on CPU)

    def __post_init__(self):
        choices = {"model": MODELS, "order": ORDERS, "lr_decay": ("cosine", "constant"),
                   "device": ("auto", "cpu", "cuda")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("max_steps", "batch_size", "grad_accum", "seq_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0 or not 0 <= self.ema < 1 or self.warmup < 0:
            raise ValueError(f"need lr > 0, 0 <= ema < 1 and warmup >= 0; got lr={self.lr}, "
                             f"ema={self.ema}, warmup={self.warmup}")
        self.sbp_streams = tuple(self.sbp_streams)
        bad = [s for s in self.sbp_streams if s < 1 or self.seq_len % s]
        if self.order == "sbp" and (bad or not self.sbp_streams):
            raise ValueError(f"sbp_streams must divide seq_len={self.seq_len}, got {self.sbp_streams}")
        self.schedule  # builds (and so validates) the progressive schedule
        alpha_schedule(self.mask_schedule, self.mask_T)  # validates them
        if self.order == "progressive" and self.rho > self.seq_len:
            raise ValueError(f"rho={self.rho} exceeds seq_len={self.seq_len}; scale rho with seq_len")

    @property
    def schedule(self) -> ProgressiveSchedule:
        """The progressive permutation schedule these fields describe."""
        return ProgressiveSchedule(self.i_ar, self.i_perm, self.rho, self.window)


PRESETS = {
    # CPU, minutes: char-level Shakespeare, 0.8M parameters
    "tiny": {},
    # CPU, tens of minutes: 4.8M parameters, N = 256
    "small-cpu": dict(n_layer=6, n_head=8, n_embd=256, seq_len=256, batch_size=16, lr=6e-4,
                      max_steps=3000, warmup=100, i_ar=1000, i_perm=2200, rho=8, eval_every=250,
                      ckpt_every=500),
    # GPU: the paper's small model on OpenWebText (batch 32 x 16 x 1024 = 0.5M tokens per step)
    "gpt2-small": dict(data="openwebtext", tokenizer="gpt2", n_layer=12, n_head=12, n_embd=768,
                       seq_len=1024, batch_size=32, grad_accum=16, lr=3e-4, lr_decay="constant",
                       warmup=2500, beta2=0.999, weight_decay=0.0, ema=0.9999, max_steps=400_000,
                       i_ar=9000, i_perm=48_000, rho=32, eval_every=5000, eval_windows=256,
                       ckpt_every=2000, bf16=True, compile=True),
    # GPU: the paper's medium model (24 layers, 1024 wide, 16 heads, L2s = 12, 355M parameters), same
    # recipe and global batch; micro-batch 16 x 32 accumulated (not yet run on a GPU: lower batch_size
    # and raise grad_accum if it runs out of memory)
    "gpt2-medium": dict(data="openwebtext", tokenizer="gpt2", n_layer=24, n_head=16, n_embd=1024,
                        seq_len=1024, batch_size=16, grad_accum=32, lr=3e-4, lr_decay="constant",
                        warmup=2500, beta2=0.999, weight_decay=0.0, ema=0.9999, max_steps=400_000,
                        i_ar=9000, i_perm=48_000, rho=32, eval_every=5000, eval_windows=256,
                        ckpt_every=2000, bf16=True, compile=True),
}

# fields that fix the network's parameters (a checkpoint loads only into the same values)
SHAPE_FIELDS = ("model", "data", "tokenizer", "seq_len", "n_layer", "n_head", "n_embd", "n_two_stream", "d_pe")

# fields that may change when resuming; everything else must match the checkpoint
RESUMABLE = {"max_steps", "out", "eval_every", "ckpt_every", "device", "compile", "data_dir", "eval_windows"}


def make_config(preset: str = "tiny", **overrides) -> TrainConfig:
    """A TrainConfig from a preset and keyword overrides (None values are ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {tuple(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
    return TrainConfig(preset=preset, **values)


def build_model(cfg: TrainConfig, vocab_size: int):
    """The model ``cfg.model`` names, with the shared shape; ARMD adds its own fields."""
    shape = dict(vocab_size=vocab_size, max_len=cfg.seq_len, n_layer=cfg.n_layer, n_head=cfg.n_head,
                 n_embd=cfg.n_embd, dropout=cfg.dropout)
    if cfg.model == "armd":
        return ARMD(ARMDConfig(**shape, n_two_stream=cfg.n_two_stream, d_pe=cfg.d_pe,
                               pe_init_std=cfg.pe_init_std, attn_backend=cfg.attn_backend))
    return (GPT if cfg.model == "ar" else MDM)(TransformerConfig(**shape))


def draw_noise(cfg: TrainConfig, B: int, N: int, step: int, gen: torch.Generator) -> dict:
    """The random inputs of one micro-batch's loss, drawn from ``gen`` on the CPU: ARMD's orders and
    blocks, MDM's masking times and masks, nothing for AR. Drawing them apart from the loss lets
    every DDP rank keep the generator in step while computing only its own micro-batches."""
    if cfg.model == "ar":
        return {}
    if cfg.model == "mdm":
        t = sample_t(B, gen)  # (B,)
        return {"t": t, "masked": torch.rand(B, N, generator=gen, dtype=torch.float64) < t[:, None]}
    if cfg.order == "progressive":
        order, blocks = cfg.schedule.sample(step, B, N, gen)
    elif cfg.order == "sbp":
        S = cfg.sbp_streams[int(torch.randint(len(cfg.sbp_streams), (1,), generator=gen))]
        order, blocks = strided_order(N, S, B)
    elif cfg.order == "mask":
        tau = sample_mask_times(alpha_schedule(cfg.mask_schedule, cfg.mask_T), (B, N), gen)
        order, blocks = order_from_mask_times(tau, cfg.mask_T)
    elif cfg.order == "random":
        order, blocks = random_order(B, N, gen)
    else:
        order, blocks = left_to_right(B, N)
    return {"order": order, "blocks": blocks}  # (B, N) each


def training_loss(model, cfg: TrainConfig, x: torch.Tensor, step: int, gen: torch.Generator,
                  noise: dict | None = None):
    """The objective for one micro-batch x (B, N); its random inputs come from ``noise``
    (``draw_noise``), or are drawn from ``gen`` (CPU) when it is None."""
    if noise is None:
        noise = draw_noise(cfg, *x.shape, step, gen)
    if cfg.model == "ar":
        return ar_loss(model, x)
    if cfg.model == "mdm":
        return mdm_loss(model, x, t=noise["t"], masked=noise["masked"])
    return armd_loss(model, x, noise["order"].to(x.device), noise["blocks"].to(x.device))


def learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.lr_decay == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "prefix" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "prefix" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    fused = next(model.parameters()).is_cuda  # one fused kernel for all parameters on the GPU
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)


def load_model(path: str | os.PathLike, use_ema: bool = True, device: str = "cpu"):
    """(model, TrainConfig, tokenizer or None) from a checkpoint; EMA weights when it has them."""
    ckpt = load_checkpoint(path)
    cfg = TrainConfig(**ckpt["config"])
    model = build_model(cfg, ckpt["vocab_size"])
    state = ckpt["ema"] if use_ema and ckpt.get("ema") else ckpt["model"]
    model.load_state_dict(state)
    tok = tokenizer_from_state(ckpt["tokenizer"]) if ckpt.get("tokenizer") else None
    return model.to(device).eval(), cfg, tok


class EMA:
    """Exponential moving average of every floating-point entry of a state dict, kept in float32."""

    def __init__(self, model, decay: float):
        self.decay = decay
        self.state = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model) -> None:
        for k, v in model.state_dict().items():
            if k in self.state:
                self.state[k].lerp_(v.detach().float(), 1.0 - self.decay)

    def state_dict_for(self, model) -> dict:
        """A full state dict for ``model`` with the averaged weights (other entries as they are)."""
        return {k: self.state[k].to(v.dtype) if k in self.state else v for k, v in model.state_dict().items()}


def _generator_states(*gens) -> list[torch.Tensor]:
    return [g.get_state() for g in gens]


def _read_metrics(path: Path, up_to_step: int) -> list[dict]:
    """Metric records of steps <= up_to_step (a crash may have logged steps after the checkpoint)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
        if rec.get("step", 0) <= up_to_step:
            records.append(rec)
    return records


def plot_losses(metrics_path: str | os.PathLike, png_path: str | os.PathLike) -> None:
    """Training loss per step and validation estimates, from a metrics.jsonl file."""
    from matplotlib.figure import Figure  # no pyplot: never switches the backend of a notebook that trains

    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val"]) for r in records if "val" in r]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    if train:
        ax.plot(*zip(*train), lw=0.8, label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("nats / token")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, on_step=None) -> dict:
    """Run (or resume) training; returns a summary dict. ``on_step(step, record)`` is called after
    every optimiser step (notebooks use it for live plots; tests use it to interrupt)."""
    from tqdm.auto import tqdm

    out = Path(cfg.out)
    ckpt_path, metrics_path = out / "ckpt.pt", out / "metrics.jsonl"
    if not resume and ckpt_path.exists() and not overwrite:
        raise ValueError(f"{ckpt_path} already exists: pass --resume to continue that run, "
                         f"or choose another --out (or overwrite=True)")
    ctx = distributed.setup(cfg.device, cfg.grad_accum, cfg.bf16)  # torchrun's process group (if any), device
    device, mine = ctx.device, distributed.micro_batches(cfg.grad_accum, ctx)

    data = load_data(cfg.data, tokenizer=cfg.tokenizer, data_dir=cfg.data_dir)
    torch.manual_seed(cfg.seed)
    raw_model = build_model(cfg, data.vocab_size).to(device)
    optimizer = make_optimizer(raw_model, cfg)
    data_gen = torch.Generator().manual_seed(cfg.seed + 1)  # which windows
    order_gen = torch.Generator().manual_seed(cfg.seed + 2)  # which orders / masks / S
    start, records = 0, []
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        now, saved = asdict(cfg), ckpt["config"]
        diffs = {k: (saved.get(k), v) for k, v in now.items() if k not in RESUMABLE and saved.get(k) != v}
        if diffs:
            raise ValueError("the run in " + str(out) + " was made with other settings: " +
                             ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diffs.items()) +
                             "; pass the same flags to resume, or start a new --out")
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = ckpt["step"]
        data_gen.set_state(ckpt["generators"][0])
        order_gen.set_state(ckpt["generators"][1])
        torch.set_rng_state(ckpt["torch_rng"])
        records = _read_metrics(metrics_path, start)
    elif cfg.init_from:
        init = load_checkpoint(cfg.init_from)
        try:
            raw_model.load_state_dict(init["ema"] or init["model"])
        except RuntimeError as err:  # another model kind or shape: say which settings differ
            saved = init.get("config", {})
            diffs = [f"{k}={saved.get(k)!r} (now {getattr(cfg, k)!r})" for k in SHAPE_FIELDS
                     if k in saved and saved[k] != getattr(cfg, k)]
            raise ValueError(f"init_from={cfg.init_from} holds a model this config cannot load"
                             f"{': ' + ', '.join(diffs) if diffs else ''}; use the same model settings "
                             f"(finetune_sbp copies them for you)") from err
    ema = EMA(raw_model, cfg.ema) if cfg.ema > 0 else None
    if resume and ema is not None:
        ema.state = {k: v.to(device) for k, v in ckpt["ema_raw"].items()}
    model = distributed.wrap(torch.compile(raw_model) if cfg.compile else raw_model, ctx)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    val_windows = data.eval_windows(cfg.seq_len, cfg.eval_windows)
    protocol = DEFAULT_PROTOCOLS[cfg.model][0]  # ARMD: exact left to right, unless trained otherwise
    if cfg.model == "armd" and cfg.order in ("mask", "random"):
        protocol = cfg.order
    tokenizer_state = data.tokenizer.state_dict() if data.tokenizer is not None else None

    if ctx.main:  # rank 0 alone logs, evaluates and checkpoints
        out.mkdir(parents=True, exist_ok=True)
        with open(metrics_path, "w") as f:  # rewritten: drops records past the checkpoint
            f.writelines(json.dumps(r) + "\n" for r in records)
    log = open(metrics_path, "a") if ctx.main else None

    def checkpoint(step: int, gen_states, rng_state) -> None:
        save_checkpoint(ckpt_path, {
            "config": asdict(cfg), "step": step, "vocab_size": data.vocab_size,
            "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict_for(raw_model) if ema else None,
            "ema_raw": ema.state if ema else None,
            "generators": gen_states, "torch_rng": rng_state, "tokenizer": tokenizer_state})

    def validate(step: int) -> float:
        eval_model = raw_model
        if ema is not None:  # evaluate the averaged weights on a copy
            with torch.random.fork_rng(devices=[]):  # building a model draws from the global RNG
                eval_model = build_model(cfg, data.vocab_size).to(device)
            eval_model.load_state_dict(ema.state_dict_for(raw_model))
        with autocast:
            est = estimate(eval_model, val_windows, protocol, draws=4, T=cfg.mask_T,
                           schedule=cfg.mask_schedule, seed=cfg.seed)
        return est.nats

    tokens_per_step = cfg.batch_size * cfg.grad_accum * cfg.seq_len  # the global batch, on any number of GPUs
    # MFU = tokens/s x FLOPs/token / (peak x GPUs), counting ARMD's query stream (throughput.py)
    model_flops = flops_per_token(cfg, vocab_size=data.vocab_size)
    peak = None
    if device.type == "cuda":
        try:
            peak = peak_flops(torch.cuda.get_device_name(device)) * ctx.world
        except ValueError:  # a GPU without a known peak: no MFU in the log
            peak = None
    train_time = sum(r.get("dt", 0.0) for r in records)
    # At most one redraw a second: in Jupyter the bar is a widget, and a message per step floods the
    # front end (and nbval's message queue). TQDM_DISABLE=1 switches it off there too.
    bar = tqdm(total=cfg.max_steps, initial=start, desc=f"{cfg.model} {cfg.data}", unit="step", mininterval=1.0,
               disable=not ctx.main or os.environ.get("TQDM_DISABLE", "") not in ("", "0"))
    in_update, completed = False, start
    completed_states = (_generator_states(data_gen, order_gen), torch.get_rng_state())

    def write(rec: dict) -> None:
        records.append(rec)
        if log is not None:
            log.write(json.dumps(rec) + "\n")
            log.flush()

    try:
        for step in range(start, cfg.max_steps):
            lr = learning_rate(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            total = 0.0
            for k in range(cfg.grad_accum):
                # every rank draws every micro-batch (windows, orders) and computes only its own ones
                x = data.batch("train", cfg.batch_size, cfg.seq_len, data_gen)  # (B, N)
                noise = draw_noise(cfg, cfg.batch_size, cfg.seq_len, step, order_gen)
                if k not in mine:
                    continue
                with distributed.sync_unless_last(model, k == mine[-1]):  # all-reduce once per step
                    with autocast:
                        loss = training_loss(model, cfg, x.to(device), step, order_gen, noise) / len(mine)
                    loss.backward()
                total += float(loss.detach()) / ctx.world
            total = distributed.sum_over_ranks(total, ctx)  # the mean loss over the global batch
            in_update = True  # an interrupt from here on would leave a half-updated model
            norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip or float("inf"))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(raw_model)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            in_update, completed = False, step + 1
            completed_states = (_generator_states(data_gen, order_gen), torch.get_rng_state())
            train_time += dt
            rec = {"step": completed, "loss": total, "lr": lr, "grad_norm": float(norm),
                   "tokens_per_s": tokens_per_step / dt, "dt": dt}
            if peak:
                rec["mfu"] = tokens_per_step / dt * model_flops / peak
            if cfg.model == "armd" and cfg.order == "progressive":
                rec["k"] = cfg.schedule.k(step)
            write(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{total:.3f}", tok_s=f"{rec['tokens_per_s']:.0f}",
                            **({"mfu": f"{rec['mfu']:.1%}"} if peak else {}), refresh=False)
            last = completed == cfg.max_steps
            if ctx.main and ((cfg.eval_every and completed % cfg.eval_every == 0) or last):
                write({"step": completed, "val": validate(completed), "protocol": protocol})
            if ctx.main and (completed % cfg.ckpt_every == 0 or last):
                checkpoint(completed, *completed_states)
            if on_step is not None:
                on_step(completed, rec)
    except KeyboardInterrupt:
        if ctx.main and not in_update and (completed > start or not ckpt_path.exists()):
            checkpoint(completed, *completed_states)  # the state right after the last completed step
            print(f"\ninterrupted: state after step {completed} saved in {ckpt_path}; continue with --resume")
        raise
    finally:
        bar.close()
        if log is not None:
            log.close()
        distributed.teardown(ctx)
    if ctx.main:
        plot_losses(metrics_path, out / "loss.png")
    final_val = [r["val"] for r in records if "val" in r]
    losses = [r["loss"] for r in records if "loss" in r]
    return {"steps": cfg.max_steps, "train_time_s": train_time,
            "tokens_per_s": tokens_per_step * len(losses) / max(train_time, 1e-9),
            "final_train_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
            "final_val": final_val[-1] if final_val else None, "protocol": protocol,
            "out": str(out), "num_params": raw_model.num_params()}


def finetune_sbp(init_from: str | Path, out: str | Path, max_steps: int = 400, streams=(1, 2, 4),
                 lr: float = 3e-4, overwrite: bool = False, on_step=None, **overrides) -> dict:
    """SBP fine-tuning (paper, §3.1): continue a trained ARMD on strided block-parallel orders.

    The model, data, batch and EMA settings are copied from the checkpoint. Each step draws S uniformly
    from ``streams`` (``training_loss``: the S run heads as singleton blocks, then one block per
    relative position, as in generation). The learning rate is a constant ``lr`` after 20 warm-up
    steps. ``overrides`` change any other TrainConfig field. Returns ``train``'s summary; the
    fine-tuned model is ``out/ckpt.pt``.
    """
    saved = load_checkpoint(init_from)["config"]
    if saved.get("model") != "armd":
        raise ValueError(f"init_from={init_from} holds a {saved.get('model')!r} model; SBP fine-tuning "
                         f"needs an ARMD checkpoint (trained with model='armd')")
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in saved.items() if k in names}
    values.update(order="sbp", init_from=str(init_from), out=str(out), max_steps=max_steps,
                  sbp_streams=tuple(streams), lr=lr, lr_decay="constant", warmup=min(20, max_steps))
    values.update(overrides)
    return train(TrainConfig(**values), overwrite=overwrite, on_step=on_step)


def _arg_parser() -> argparse.ArgumentParser:
    """Flags for every TrainConfig field (``--max-steps`` for max_steps); unset flags keep the preset."""
    parser = argparse.ArgumentParser(prog="python -m minarmd.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its ckpt.pt")
    parser.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=int, nargs="+", default=None)
        else:
            kind = {int: int, float: float}.get(type(default), str)
            if f.name in ("n_two_stream",):
                kind = int
            parser.add_argument(flag, type=kind, default=None,
                                help=f"(tiny preset: {default})")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = vars(_arg_parser().parse_args(argv))
    resume, overwrite = args.pop("resume"), args.pop("overwrite")
    try:
        cfg = make_config(args.pop("preset") or "tiny", **args)
        summary = train(cfg, resume=resume, overwrite=overwrite)
    except ValueError as err:  # bad flags, data or checkpoints: the message says what to do
        raise SystemExit(f"error: {err}")
    except KeyboardInterrupt:
        raise SystemExit(130)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
