"""Training throughput of ARMD, AR and MDM at GPT-2-small shape on one GPU, on synthetic tokens.

    python benchmarks/gpu_throughput.py                                 # CUDA: about a minute per run
    python benchmarks/gpu_throughput.py --seconds 45 --find-batch --json out.json
    python benchmarks/gpu_throughput.py --runs armd,ar --batch 16        # a subset, another micro-batch
    python benchmarks/gpu_throughput.py --smoke --json /tmp/smoke.json   # CPU, tiny shapes, a few steps

Each run times the training step made of ``minarmd.train``'s own pieces (``build_model``,
``make_optimizer``, ``training_loss``, ``learning_rate``) with bf16 autocast and ``torch.compile`` on
CUDA, gradient clipping and the optimiser step, on uniform random tokens (no dataset: the model
cannot tell the difference in speed). ARMD runs at step ``i_perm`` of the progressive curriculum
(k = rho shuffled tokens, singleton blocks: the fused causal kernel), the regime of most of a run;
``armd-sbp`` uses strided orders with S in {2, 4} (multi-token blocks: FlexAttention). After a
warm-up (compilation; timed and reported apart) each run steps for about ``--seconds``.

Printed: per run the micro-batch, tokens/s, MFU counting ARMD's two-stream stack
(``throughput.flops_per_token``) and nanoGPT's GPT-equivalent MFU (``nanogpt_flops_per_token``),
peak memory and warm-up time; the ARMD/AR time per token and its FLOP bound; the projected wall
time of the preset's run (400K steps x 512 x 1024 tokens) and of 10B tokens on 1 GPU and on 8 GPUs
(ideal scaling). ``--find-batch``: the largest micro-batch whose step fits (an eager bf16 step, so
that no size recompiles; the compiled step usually needs less, see ``est_max_micro_batch``).
``--budget S`` shortens the timed part of the runs (never below 5 s) so that all of them end
within about S seconds. ``--json`` writes it all, rewritten after every run; on SIGTERM (``timeout``)
the report covers the runs that finished.
"""
from __future__ import annotations

import argparse
import gc
import json
import signal
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minarmd import throughput  # noqa: E402
from minarmd.kinds import build_model, training_loss  # noqa: E402
from minarmd.optim import learning_rate, make_optimizer  # noqa: E402
from minarmd.train_config import TrainConfig  # noqa: E402

RUNS = {"armd": dict(model="armd"), "ar": dict(model="ar"), "mdm": dict(model="mdm"),
        "armd-sbp": dict(model="armd", order="sbp", sbp_streams=(2, 4))}
SMOKE_SHAPE = dict(n_layer=2, n_head=2, n_embd=32, seq_len=64)
GIB = 2 ** 30


class Stopped(BaseException):
    """SIGTERM, e.g. from ``timeout`` in gpu_check.sh."""


def build(args, name: str, batch: int, device, compile_: bool):
    """(cfg, raw model, model to call, optimiser, one_step) for a run at a micro-batch."""
    cfg = TrainConfig.from_preset(args.preset, **RUNS[name], batch_size=batch, grad_accum=1, bf16=args.bf16,
                                  compile=compile_, **(SMOKE_SHAPE if args.smoke else {}))
    torch.manual_seed(0)
    raw = build_model(cfg, args.vocab).to(device)
    if args.no_input_checks and cfg.model == "armd":
        raw.cfg.validate_inputs = False  # ARMD's id/position/block checks sync with the GPU
    opt = make_optimizer(raw, cfg)
    model = torch.compile(raw) if cfg.compile else raw
    step = cfg.i_perm_steps  # progressive: k = rho shuffled tokens from here on
    for group in opt.param_groups:
        group["lr"] = learning_rate(cfg, step)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.bf16 else nullcontext()
    data_gen, order_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)

    def one_step(run_cfg=cfg, batch=batch) -> float:
        """One optimiser step (grad_accum = 1); the loss read back is the loop's host sync."""
        x = torch.randint(args.vocab, (batch, cfg.seq_len), generator=data_gen).to(device)
        with autocast:
            loss = training_loss(model, run_cfg, x, step, order_gen)
        loss.backward()
        value = float(loss.detach())
        torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip or float("inf"))
        opt.step()
        opt.zero_grad(set_to_none=True)
        return value
    return cfg, raw, model, opt, one_step


def free_memory(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def time_run(args, name: str, device, peak, seconds) -> dict:
    """Warm up, then step for ``seconds()`` seconds (asked after the warm-up: see ``--budget``)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    cfg, raw, model, opt, one_step = build(args, name, args.batch, device, args.compile)
    # warm-up: compilation (for SBP every S, each its own block structure) and AdamW's state
    variants = [replace(cfg, sbp_streams=(s,)) for s in cfg.sbp_streams] if cfg.order == "sbp" else [cfg]
    t0 = time.perf_counter()
    one_step(variants[0])
    first_step = time.perf_counter() - t0
    for v in variants * (1 if args.smoke else 3):
        one_step(v)
    free_memory(device)
    warmup = time.perf_counter() - t0
    resident = torch.cuda.memory_allocated() if cuda else 0  # weights and AdamW state
    dts, losses, t0, duration = [], [], time.perf_counter(), seconds(warmup)
    while len(dts) < 3 or time.perf_counter() - t0 < duration:
        t = time.perf_counter()
        losses.append(one_step())
        dts.append(time.perf_counter() - t)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    tok_s = len(dts) * cfg.batch_size * cfg.seq_len / elapsed
    params = raw.num_params()
    fpt = throughput.flops_per_token(cfg, vocab_size=args.vocab)
    fpt_gpt = throughput.nanogpt_flops_per_token(params, cfg.n_layer, cfg.n_embd, cfg.seq_len)
    row = {"run": name, "model": cfg.model, "order": cfg.order if cfg.model == "armd" else None,
           "micro_batch": cfg.batch_size, "seq_len": cfg.seq_len, "params": params, "steps_timed": len(dts),
           "timed_s": elapsed, "tokens_per_s": tok_s, "median_step_s": statistics.median(dts),
           "flops_per_token": fpt, "flops_per_token_gpt": fpt_gpt,
           "mfu": throughput.mfu(tok_s, fpt, peak) if peak else None,
           "mfu_gpt_equivalent": throughput.mfu(tok_s, fpt_gpt, peak) if peak else None,
           "peak_mem_gib": None, "est_max_micro_batch": None, "first_step_s": first_step, "warmup_s": warmup,
           "final_loss": losses[-1], "optimizer_fused": bool(opt.defaults.get("fused")),
           "bf16": cfg.bf16, "compile": cfg.compile}
    if cuda:  # memory = resident + batch x per-sample activations: the largest batch within 95 %
        peak_mem = torch.cuda.max_memory_allocated()
        per_sample = max(peak_mem - resident, 1) / cfg.batch_size
        usable = 0.95 * (torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved())
        row.update(peak_mem_gib=peak_mem / GIB, est_max_micro_batch=int((usable - resident) / per_sample) // 8 * 8)
    del raw, model, opt, one_step
    free_memory(device)
    if cfg.compile:
        torch._dynamo.reset()  # drop this model's compiled graphs before the next run
    return row


def largest_batch(fits, start: int = 8, limit: int = 1024) -> tuple[int, list]:
    """The largest multiple of ``start`` up to ``limit`` with ``fits(b)``: doubling from ``start``,
    then bisection between the last fit and the first failure. Returns (b, or 0 if none; tries)."""
    tries, good, b = [], 0, start
    while b <= limit:
        tries.append((b, fits(b)))
        if not tries[-1][1]:
            break
        good, b = b, 2 * b
    else:
        return good, tries  # every size up to the limit fitted
    lo, hi = good, b
    while hi - lo > start:
        mid = (lo + hi) // 2 // start * start
        tries.append((mid, fits(mid)))
        lo, hi = (mid, hi) if tries[-1][1] else (lo, mid)
    return lo, tries


def find_batch(args, name: str, device) -> dict:
    """Largest micro-batch whose eager step (forward, backward, clipping, AdamW) fits in memory."""
    cfg, raw, model, opt, one_step = build(args, name, 8, device, compile_=False)

    def fits(b: int) -> bool:
        try:
            for _ in range(1 if opt.state else 2):  # the first step also allocates AdamW's state
                one_step(cfg, b)
            ok = True
        except RuntimeError as err:  # torch.cuda.OutOfMemoryError, or cuBLAS failing to allocate
            if not isinstance(err, torch.cuda.OutOfMemoryError) and "ALLOC_FAILED" not in str(err):
                raise
            ok = False
        opt.zero_grad(set_to_none=True)
        free_memory(device)  # the failed step's tensors went with the exception
        return ok

    best, tries = largest_batch(fits, 8, args.max_batch)
    return {"largest_micro_batch": best, "tries": tries, "every_try_fitted": all(ok for _, ok in tries)}


def summarise(runs: dict, preset: str) -> dict:
    out = {}
    if "armd" in runs and "ar" in runs:
        out["armd_ar_time_per_token"] = runs["ar"]["tokens_per_s"] / runs["armd"]["tokens_per_s"]
        out["armd_ar_flop_bound"] = runs["armd"]["flops_per_token"] / runs["ar"]["flops_per_token"]
    if "armd" in runs:
        base = TrainConfig.from_preset(preset, model="armd", bf16=False, compile=False)
        p = out["projection"] = {"armd_tokens_per_s": runs["armd"]["tokens_per_s"], "run_steps": base.max_steps,
                                 "run_tokens_per_step": throughput.tokens_per_step(base)}
        for label, tokens in (("run", base.max_steps * p["run_tokens_per_step"]), ("10B", 10 ** 10)):
            p[f"{label}_hours_1gpu"] = throughput.training_hours(tokens, p["armd_tokens_per_s"])
            p[f"{label}_hours_8gpu_ideal"] = p[f"{label}_hours_1gpu"] / 8
    return out


def report(result: dict) -> None:
    print(f"\ndevice: {result['device']}, torch {result['torch']}, preset {result['preset']}"
          f"{' (smoke shapes)' if result['smoke'] else ''}, bf16 {result['bf16']}, compile {result['compile']}, "
          f"peak {result['peak_flops'] or 'unknown'} FLOP/s")
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f} %"  # noqa: E731
    for r in result["runs"].values():
        mem = "n/a" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.1f} GiB"
        print(f"{r['run']:>9}: micro-batch {r['micro_batch']}  {r['tokens_per_s']:.0f} tokens/s  MFU {pct(r['mfu'])} "
              f"(GPT-equivalent {pct(r['mfu_gpt_equivalent'])})  peak mem {mem}  compile + warm-up "
              f"{r['warmup_s']:.1f} s  ({r['steps_timed']} steps in {r['timed_s']:.1f} s)")
    s = result["summary"]
    if "armd_ar_time_per_token" in s:
        print(f"ARMD/AR time per token: {s['armd_ar_time_per_token']:.2f}x (FLOP bound {s['armd_ar_flop_bound']:.2f}x)")
    if "projection" in s:
        p = s["projection"]
        for label, what in (("run", f"{p['run_steps']} steps x {p['run_tokens_per_step']} tokens"), ("10B", "10B tokens")):
            h1, h8 = p[f"{label}_hours_1gpu"], p[f"{label}_hours_8gpu_ideal"]
            print(f"projected ARMD wall time, {what}: {h1:.1f} h ({h1 / 24:.1f} days) on 1 GPU; "
                  f"{h8:.1f} h on 8 GPUs (ideal scaling)")
    for name, fb in result["find_batch"].items():
        tried = ", ".join(f"{b}" + ("" if ok else " OOM") for b, ok in fb["tries"])
        more = " (all tried sizes fitted: raise --max-batch)" if fb["every_try_fitted"] else ""
        est = result["runs"][name]["est_max_micro_batch"]
        est = "" if est is None else f"; the compiled step's, by a linear estimate from its peak memory: {est}"
        print(f"{name}: largest micro-batch that fits: {fb['largest_micro_batch']}{more}, eager step "
              f"(tried {tried}){est}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="armd,ar,mdm,armd-sbp", help=f"comma-separated, from {tuple(RUNS)}")
    ap.add_argument("--preset", default="gpt2-small")
    ap.add_argument("--seconds", type=float, default=60.0, help="timed seconds per run, after warm-up")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for everything: shortens the timed part of each run so that all runs fit")
    ap.add_argument("--batch", type=int, default=None, help="micro-batch (default: the preset's)")
    ap.add_argument("--find-batch", action="store_true", help="also find the largest micro-batch that fits")
    ap.add_argument("--max-batch", type=int, default=1024)
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="default: on CUDA")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on CUDA")
    ap.add_argument("--no-input-checks", action="store_true", help="ARMD: skip the model's input checks")
    ap.add_argument("--peak", type=float, default=None, help="peak FLOP/s (default: from the GPU's name)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cpu with --smoke, else cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, a few steps: checks the code path")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"error: CUDA was asked for but torch.cuda.is_available() is False (torch "
                         f"{torch.__version__}): run on a CUDA machine, or pass --smoke for a CPU check")
    args.bf16 = cuda if args.bf16 is None else args.bf16
    args.compile = cuda if args.compile is None else args.compile
    if args.bf16 and not (cuda and torch.cuda.is_bf16_supported()):
        raise SystemExit(f"error: --bf16 needs a CUDA GPU with bfloat16 support (device: {device}); pass --no-bf16")
    if args.smoke:
        args.seconds, args.max_batch = 0.0, min(args.max_batch, 16)
    args.vocab = 256 if args.smoke else 50257  # GPT-2 BPE
    args.batch = args.batch or (2 if args.smoke else TrainConfig.from_preset(args.preset, bf16=False).batch_size)
    names = args.runs.split(",")
    if set(names) - set(RUNS):
        raise SystemExit(f"error: unknown runs {sorted(set(names) - set(RUNS))}; choose from {tuple(RUNS)}")
    device_name, peak = torch.cuda.get_device_name(device) if cuda else "cpu", args.peak
    if peak is None and cuda:
        try:
            peak = throughput.peak_flops(device_name)
        except ValueError:
            print(f"warning: no known peak for {device_name!r}: no MFU (pass --peak FLOP/s)")
    result = {"device": device_name, "torch": torch.__version__, "preset": args.preset, "smoke": args.smoke,
              "peak_flops": peak, "vocab": args.vocab, "seconds": args.seconds, "budget": args.budget, "bf16": args.bf16,
              "compile": args.compile, "input_checks": not args.no_input_checks,
              "gpu_memory_gib": torch.cuda.get_device_properties(device).total_memory / GIB if cuda else None,
              "runs": {}, "find_batch": {}, "summary": {}}

    def save() -> None:
        result["summary"] = summarise(result["runs"], args.preset)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=1))

    def stop(signum, frame):
        raise Stopped()

    start, warmups = time.perf_counter(), []

    def seconds(warmup: float) -> float:
        """The timed seconds of the current run: --seconds, or less where --budget would not hold the
        runs left (each costing a warm-up like those seen so far, and the batch search)."""
        warmups.append(warmup)
        if args.budget is None:
            return args.seconds
        later = len(names) - len(warmups)
        search = 15.0 if args.find_batch else 0.0
        left = args.budget - (time.perf_counter() - start) - search - later * (statistics.mean(warmups) + search)
        return min(args.seconds, max(5.0, left / (later + 1)))

    signal.signal(signal.SIGTERM, stop)
    try:
        for name in names:
            print(f"{name}: compile, warm-up and up to {args.seconds:.0f} s of steps ...", flush=True)
            result["runs"][name] = time_run(args, name, device, peak, seconds)
            print(json.dumps(result["runs"][name]), flush=True)
            save()
            if args.find_batch and name != "armd-sbp":  # SBP needs ARMD's memory; its flex kernel would
                result["find_batch"][name] = find_batch(args, name, device)  # recompile for every size
                free_memory(device)
                print(f"{name}: {json.dumps(result['find_batch'][name])}", flush=True)
                save()
    except (Stopped, KeyboardInterrupt):
        print("\nstopped before the end; the report covers the runs that finished", flush=True)
        report(result)
        raise SystemExit(124)
    report(result)
    return result


if __name__ == "__main__":
    main()
