r"""One training loop for every model kind (ARMD, AR, MDM, yours), from a CPU notebook to a GPU.

    from minarmd import TrainConfig, train_model
    summary = train_model(TrainConfig.from_preset("tiny", model="armd", max_steps=600, out="runs/armd"))
    python -m minarmd.train --model armd --preset tiny --max-steps 600 --out runs/armd   # the same

Each step draws ``grad_accum`` batches of ``seq_len``-token windows and minimises the kind's loss
(``kinds.py``): for ARMD the single-pass loss under orders from ``cfg.order`` — ``"progressive"``
(the paper's curriculum: left to right for ``i_ar`` steps, then k shuffled tokens growing to
``rho`` at ``i_perm``), ``"sbp"`` (strided block-parallel orders, SBP fine-tuning:
``finetune_sbp``), ``"mask"`` (T-step masking trajectories), ``"random"``, ``"l2r"``; for AR the
next-token NLL; for MDM the one-sample NELBO with antithetic t.

AdamW, warm-up then constant or cosine learning rate, gradient clipping and EMA (``optim.py``);
gradient accumulation, bf16 autocast and ``torch.compile`` on CUDA; DDP under ``torchrun``
(``distributed.py``). Every ``ckpt_every`` steps, at the end, and on Ctrl-C the full state (weights,
optimiser, EMA, step, every random generator) is written atomically to ``out/ckpt.pt``, so
``resume=True`` continues exactly: on the CPU, with the same thread count, process count and
PyTorch, the losses and weights after resuming equal those of an uninterrupted run bit for bit.
With another thread count they agree to float rounding only (a sum over 2 threads adds in another
order than over 1: the 20-step tiny run ends 1.2e-7 apart), so each checkpoint records these
numerics and a resume that changes them says so. Metrics go to ``out/metrics.jsonl`` and
``out/loss.png`` (``metrics.py``).

What can go wrong stops early and says so: every setting is checked before anything is written
(``TrainConfig``, then ``_preflight``); a second run on the same ``out`` stops naming the first
(``runlock.py``); a NaN or Inf loss or gradient norm stops the run *before* that step's update
(``NonFiniteError``: the step, the last finite loss and what to try), so the weights are never
non-finite and the last checkpoint stays the latest good one. We stop rather than skip the step:
a skipped step would silently break the equality of resumed and uninterrupted runs, and a run whose
loss blew up once usually does so again.
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch

from . import distributed
from .adapt import freeze_pretrained, init_pretrained
from .checkpoint import load_checkpoint, save_checkpoint
from .data import load_data
from .evaluate import estimate
from .kinds import get_kind, training_loss
from .metrics import read_metrics, save_loss_plot
from .optim import EMA, learning_rate, make_optimizer
from .runlock import RunLock
from .throughput import flops_per_token, peak_flops
from .train_config import RESUMABLE, SHAPE_FIELDS, TrainConfig

__all__ = ["train_model", "finetune_sbp", "NonFiniteError"]


def _check_resumable(cfg: TrainConfig, ckpt: dict, out: Path) -> None:
    now, saved = asdict(cfg), asdict(TrainConfig.from_saved(ckpt["config"]))  # older runs read as they were made
    diffs = {k: (saved.get(k), v) for k, v in now.items() if k not in RESUMABLE and saved.get(k) != v}
    if diffs:
        raise ValueError("the run in " + str(out) + " was made with other settings: " +
                         ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diffs.items()) +
                         "; pass the same flags to resume, or start a new --out")


def _load_init(cfg: TrainConfig, model) -> None:
    """Start from ``cfg.init_from``'s weights (EMA ones if it has them), or say which settings differ."""
    init = load_checkpoint(cfg.init_from)
    try:
        model.load_state_dict(init["ema"] or init["model"])
    except RuntimeError as err:  # another model kind or shape: say which settings differ
        saved = init.get("config", {})
        diffs = [f"{k}={saved.get(k)!r} (now {getattr(cfg, k)!r})" for k in SHAPE_FIELDS
                 if k in saved and saved[k] != getattr(cfg, k)]
        raise ValueError(f"init_from={cfg.init_from} holds a model this config cannot load"
                         f"{': ' + ', '.join(diffs) if diffs else ''}; use the same model settings "
                         f"(finetune_sbp copies them for you)") from err


def _peak(device: torch.device, world: int) -> float | None:
    """The GPUs' summed bf16 peak for MFU, or None (CPU, or a GPU without a known peak)."""
    if device.type != "cuda":
        return None
    try:
        return peak_flops(torch.cuda.get_device_name(device)) * world
    except ValueError:
        return None


def _generator_states(*gens) -> list[torch.Tensor]:
    return [g.get_state() for g in gens]


def _numerics(ctx) -> dict:
    """What decides a run's float rounding besides its config: recorded in every checkpoint.

    On the CPU a matrix product or a sum over 2 threads adds in another order than over 1 (the
    20-step tiny run ends 1.2e-7 apart), so a resume is bit-identical only with the same values."""
    return {"device": ctx.device.type, "threads": torch.get_num_threads(), "processes": ctx.world,
            "torch": str(torch.__version__)}  # a str: TorchVersion is not weights_only-safe


def _resume_notes(cfg: TrainConfig, ckpt: dict, ctx) -> list[str]:
    """What a resume changes that the user may not expect (it goes on, and says so)."""
    notes = []
    saved, now = ckpt.get("numerics"), _numerics(ctx)  # None: a checkpoint from before it was recorded
    if saved is not None and saved != now:
        changed = ", ".join(f"{k} {saved.get(k)} -> {v}" for k, v in now.items() if saved.get(k) != v)
        notes.append(f"note: this run was checkpointed with other numerics ({changed}): it continues, equal "
                     f"to an uninterrupted run up to float rounding, not bit for bit. Bit-identical resume "
                     f"needs the same thread count (OMP_NUM_THREADS={saved.get('threads')}), processes and PyTorch")
    before = ckpt["config"].get("max_steps", cfg.max_steps)
    if before != cfg.max_steps and cfg.lr_decay == "cosine" and ckpt["step"] >= cfg.warmup:
        old_cfg = replace(cfg, max_steps=before)
        notes.append(f"note: --max-steps {cfg.max_steps} (the run planned {before}): the cosine schedule is "
                     f"redrawn for {cfg.max_steps} steps, so the learning rate of step {ckpt['step'] + 1} is "
                     f"{learning_rate(cfg, ckpt['step']):.3g} (it would have been "
                     f"{learning_rate(old_cfg, ckpt['step']):.3g})")
    if before != cfg.max_steps and cfg.order == "progressive" and "progressive" in get_kind(cfg.model).orders:
        old = replace(cfg, max_steps=before)
        if (old.i_ar_steps, old.i_perm_steps) != (cfg.i_ar_steps, cfg.i_perm_steps):
            notes.append(f"note: --max-steps {cfg.max_steps} (the run planned {before}): the curriculum is a fraction "
                         f"of max_steps (i_ar={cfg.i_ar:.3g}, i_perm={cfg.i_perm:.3g}), so it moves from steps "
                         f"{old.i_ar_steps}/{old.i_perm_steps} to {cfg.i_ar_steps}/{cfg.i_perm_steps} (a run that "
                         f"should keep its steps states them as integers)")
    return notes


def _restore(cfg: TrainConfig, ckpt_path: Path, ctx, model, optimizer, *gens) -> tuple[int, dict | None]:
    """Load a run's state to continue it: weights, optimiser, generators, the global RNG.
    Returns (the step it stopped after, the EMA's raw float32 state or None)."""
    ckpt = load_checkpoint(ckpt_path)
    _check_resumable(cfg, ckpt, ckpt_path.parent)
    if cfg.max_steps < ckpt["step"]:
        raise ValueError(f"--resume --max-steps {cfg.max_steps}: the run in {ckpt_path.parent} has already done "
                         f"{ckpt['step']} steps; pass --max-steps above {ckpt['step']} to continue it")
    for note in _resume_notes(cfg, ckpt, ctx) if ctx.main else []:
        print(note)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    for gen, state in zip(gens, ckpt["generators"]):
        gen.set_state(state)
    torch.set_rng_state(ckpt["torch_rng"])
    return ckpt["step"], ckpt.get("ema_raw")


def _accumulate(cfg: TrainConfig, kind, model, data, step: int, mine, ctx, device, autocast, data_gen, order_gen):
    """The gradients of one optimiser step, summed over ``grad_accum`` micro-batches; returns the mean loss.

    Every rank draws every micro-batch (windows, orders) so the generators stay in step, and computes
    only its own ones (``mine``); DDP all-reduces once, after the last of them."""
    total = 0.0
    for k in range(cfg.grad_accum):
        x = data.batch("train", cfg.batch_size, cfg.seq_len, data_gen)  # (B, N)
        noise = kind.draw_noise(cfg, cfg.batch_size, cfg.seq_len, step, order_gen)
        if k not in mine:
            continue
        with distributed.sync_unless_last(model, k == mine[-1]):  # all-reduce once per step
            with autocast:
                loss = training_loss(model, cfg, x.to(device), step, order_gen, noise) / len(mine)
            loss.backward()
        total += float(loss.detach()) / ctx.world
    return distributed.sum_over_ranks(total, ctx)  # the mean loss over the global batch


class NonFiniteError(ValueError):
    """Training met a NaN or Inf loss or gradient norm and stopped before the update (the message says why)."""


def _non_finite(cfg: TrainConfig, step: int, loss: float, norm: float, records: list, saved, ckpt_path) -> NonFiniteError:
    """The error that stops a run whose loss or gradient norm is NaN or Inf, with what to do."""
    what = f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {norm} (loss {loss:.4f})"
    finite = [r for r in records if "loss" in r and math.isfinite(r["loss"])]
    before = f"the last finite loss was {finite[-1]['loss']:.4f} at step {finite[-1]['step']}" if finite \
        else "no step had finished before"
    kept = f"{ckpt_path} still holds step {saved}" if saved is not None else "No checkpoint was written"
    hints = [f"lower --lr (now {cfg.lr:g})"] + ([] if cfg.grad_clip else ["enable clipping with --grad-clip 1.0"])
    return NonFiniteError(f"training stopped at step {step + 1} before its update: {what}; {before}. {kept}. "
                          f"Try: {' or '.join(hints)}, and start again"
                          f"{' (or --resume from that checkpoint)' if saved is not None else ''}")


def _preflight(cfg: TrainConfig, resume: bool) -> None:
    """The checks a run needs beyond its config's own (``TrainConfig`` checks every field): the
    machine, the files it names, and how its settings fit together. Nothing has been written yet."""
    if cfg.warmup > cfg.max_steps:
        raise ValueError(f"warmup={cfg.warmup} exceeds max_steps={cfg.max_steps}: the learning rate would never "
                         f"reach lr; pass --warmup {cfg.max_steps} or fewer (or more --max-steps)")
    if cfg.attn_backend == "flex" and distributed.resolve_device(cfg.device).type != "cuda":
        raise ValueError("attn_backend='flex' needs a CUDA GPU for training (FlexAttention has no CPU backward "
                         "in PyTorch); pass --attn-backend auto on this machine")
    out = Path(cfg.out)  # (an --out that is a file or unwritable: RunLock says so, before any write)
    if resume and not (out / "ckpt.pt").is_file():
        raise ValueError(f"--resume: there is no checkpoint {out / 'ckpt.pt'} to continue; start the run "
                         f"without --resume (or check --out)")
    hints = {"init_from": "give a training run's OUT/ckpt.pt",
             "init_from_ar": "train the GPT first (python -m minarmd.train --model ar ...) and give its ckpt.pt"}
    for name, hint in hints.items():
        path = getattr(cfg, name)
        if path and not Path(path).is_file():
            raise ValueError(f"--{name.replace('_', '-')} {path}: no such file; {hint}")


def train_model(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, on_step=None) -> dict:
    """Run (or resume) training; returns a summary dict. ``on_step(step, record)`` is called after
    every optimiser step (notebooks use it for live plots; tests use it to interrupt).

    Bad settings fail before anything is written (``TrainConfig``'s checks, then ``_preflight``).
    One run at a time may use a directory (``runlock.RunLock``: a second one stops at once, naming
    the first). A NaN or Inf loss or gradient norm stops the run before the update with
    ``NonFiniteError``; the last checkpoint (from a finite step) stays the latest.
    """
    _preflight(cfg, resume)
    ctx = distributed.setup(cfg.device, cfg.grad_accum, cfg.bf16)  # torchrun's process group (if any), device
    lock = RunLock(cfg.out).acquire() if ctx.main else None  # rank 0 alone writes the run directory
    try:
        if lock is not None and lock.stale_note():
            print(lock.stale_note())
        return _train(cfg, ctx, resume, overwrite, on_step)
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: TrainConfig, ctx, resume: bool, overwrite: bool, on_step) -> dict:
    from tqdm.auto import tqdm

    out = Path(cfg.out)
    ckpt_path, metrics_path = out / "ckpt.pt", out / "metrics.jsonl"
    if not resume and ckpt_path.exists() and not overwrite:
        raise ValueError(f"{ckpt_path} already exists: pass --resume to continue that run, "
                         f"or choose another --out (or overwrite=True)")
    device, mine = ctx.device, distributed.micro_batches(cfg.grad_accum, ctx)

    kind = get_kind(cfg.model)
    data = load_data(cfg.data, tokenizer=cfg.tokenizer, data_dir=cfg.data_dir)
    torch.manual_seed(cfg.seed)
    raw_model = kind.build(cfg, data.vocab_size).to(device)
    optimizer = make_optimizer(raw_model, cfg)
    data_gen = torch.Generator().manual_seed(cfg.seed + 1)  # which windows
    order_gen = torch.Generator().manual_seed(cfg.seed + 2)  # which orders / masks / S
    start, records, ema_raw = 0, [], None
    if resume:
        start, ema_raw = _restore(cfg, ckpt_path, ctx, raw_model, optimizer, data_gen, order_gen)
        records = read_metrics(metrics_path, start)
    elif cfg.init_from:
        _load_init(cfg, raw_model)
    elif cfg.init_from_ar or cfg.init_from_hf:  # a GPT's weights in the content stream (adapt.py)
        init_pretrained(cfg, raw_model)
    ema = EMA(raw_model, cfg.ema) if cfg.ema > 0 else None
    if ema is not None and ema_raw is not None:
        ema.state = {k: v.to(device) for k, v in ema_raw.items()}
    model = distributed.wrap(torch.compile(raw_model) if cfg.compile else raw_model, ctx)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    val_windows = data.eval_windows(cfg.seq_len, cfg.eval_windows)
    protocol = kind.validation_protocol(cfg)
    tokenizer_state = data.tokenizer.state_dict() if data.tokenizer is not None else None

    if ctx.main:  # rank 0 alone logs, evaluates and checkpoints
        out.mkdir(parents=True, exist_ok=True)
        with open(metrics_path, "w") as f:  # rewritten: drops records past the checkpoint
            f.writelines(json.dumps(r) + "\n" for r in records)
    log = open(metrics_path, "a") if ctx.main else None

    saved = [start if resume else None]  # the step ckpt.pt holds

    def checkpoint(step: int, gen_states, rng_state) -> None:
        state = {"config": asdict(cfg), "step": step, "vocab_size": data.vocab_size,
                 "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                 "ema": ema.state_dict_for(raw_model) if ema else None, "ema_raw": ema.state if ema else None,
                 "generators": gen_states, "torch_rng": rng_state, "tokenizer": tokenizer_state,
                 "numerics": _numerics(ctx)}
        try:
            save_checkpoint(ckpt_path, state, finite_keys=("model", "ema"))
        except KeyboardInterrupt:  # a Ctrl-C that save_checkpoint held until the file was complete
            saved[0] = step
            raise
        saved[0] = step

    def validate() -> float:
        eval_model = raw_model
        if ema is not None:  # evaluate the averaged weights on a copy
            with torch.random.fork_rng(devices=[]):  # building a model draws from the global RNG
                eval_model = kind.build(cfg, data.vocab_size).to(device)
            eval_model.load_state_dict(ema.state_dict_for(raw_model))
        with autocast:
            return estimate(eval_model, val_windows, protocol, draws=4, T=cfg.mask_T,
                            schedule=cfg.mask_schedule, seed=cfg.seed).nats

    def write(rec: dict) -> None:
        records.append(rec)
        if log is not None:
            log.write(json.dumps(rec) + "\n")
            log.flush()

    tokens_per_step = cfg.batch_size * cfg.grad_accum * cfg.seq_len  # the global batch, on any number of GPUs
    # MFU = tokens/s x FLOPs/token / (peak x GPUs), counting ARMD's query stream (throughput.py)
    model_flops, peak = flops_per_token(cfg, vocab_size=data.vocab_size), _peak(device, ctx.world)
    train_time = sum(r.get("dt", 0.0) for r in records)
    # At most one redraw a second: in Jupyter the bar is a widget, and a message per step floods the
    # front end (and nbval's message queue). TQDM_DISABLE=1 switches it off there too.
    bar = tqdm(total=cfg.max_steps, initial=start, desc=f"{cfg.model} {cfg.data}", unit="step", mininterval=1.0,
               disable=not ctx.main or os.environ.get("TQDM_DISABLE", "") not in ("", "0"))
    in_update, completed = False, start
    completed_states = (_generator_states(data_gen, order_gen), torch.get_rng_state())
    try:
        for step in range(start, cfg.max_steps):
            lr = learning_rate(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            total = _accumulate(cfg, kind, model, data, step, mine, ctx, device, autocast, data_gen, order_gen)
            in_update = True  # an interrupt from here on would leave a half-updated model
            if step < cfg.freeze_pretrained:  # adaptation warm-up: only the new parameters move
                freeze_pretrained(raw_model)
            norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip or float("inf"))
            if not (math.isfinite(total) and math.isfinite(float(norm))):  # every rank sees the same numbers
                raise _non_finite(cfg, step, total, float(norm), records, saved[0], ckpt_path)
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
            rec.update(kind.step_info(cfg, step))
            write(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{total:.3f}", tok_s=f"{rec['tokens_per_s']:.0f}",
                            **({"mfu": f"{rec['mfu']:.1%}"} if peak else {}), refresh=False)
            last = completed == cfg.max_steps
            if ctx.main and ((cfg.eval_every and completed % cfg.eval_every == 0) or last):
                write({"step": completed, "val": validate(), "protocol": protocol})
            if ctx.main and ((cfg.ckpt_every and completed % cfg.ckpt_every == 0) or last):
                checkpoint(completed, *completed_states)
            if on_step is not None:
                on_step(completed, rec)
    except KeyboardInterrupt:
        if ctx.main and not in_update and saved[0] != completed:
            checkpoint(completed, *completed_states)  # the state right after the last completed step
        if ctx.main and saved[0] == completed:
            print(f"\ninterrupted: state after step {completed} saved in {ckpt_path}; continue with --resume")
        raise
    finally:
        bar.close()
        if log is not None:
            log.close()
        distributed.teardown(ctx)
    if ctx.main:
        save_loss_plot(metrics_path, out / "loss.png")
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
    from ``streams`` (the S run heads as singleton blocks, then one block per relative position, as
    in generation). The learning rate is a constant ``lr`` after 20 warm-up steps. ``overrides``
    change any other TrainConfig field. Returns ``train_model``'s summary; the fine-tuned model is
    ``out/ckpt.pt``.
    """
    saved = load_checkpoint(init_from)["config"]
    if "sbp" not in get_kind(saved.get("model")).orders:
        raise ValueError(f"init_from={init_from} holds a {saved.get('model')!r} model; SBP fine-tuning "
                         f"needs an ARMD checkpoint (trained with model='armd')")
    names = {f.name for f in fields(TrainConfig)} | {"adapt_pe_init"}  # (from_saved reads the former name)
    values = asdict(TrainConfig.from_saved({k: v for k, v in saved.items() if k in names}))
    # the weights come from init_from alone (an adapted ARMD's GPT source is history, kept in its checkpoint)
    values.update(init_from_ar=None, init_from_hf=None, freeze_pretrained=0)
    values.update(order="sbp", init_from=str(init_from), out=str(out), max_steps=max_steps,
                  sbp_streams=tuple(streams), lr=lr, lr_decay="constant", warmup=min(20, max_steps))
    values.update(overrides)
    return train_model(TrainConfig(**values), overwrite=overwrite, on_step=on_step)
