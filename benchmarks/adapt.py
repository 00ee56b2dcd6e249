"""From GPT to ARMD, measured: does a warm start from a trained GPT buy an ARMD anything?

Char-level Shakespeare, the tiny shape (L 4, width 128, N = 128, batch 32), for each seed s:

  (a) ``gpt``      the GPT baseline, N_AR steps;
  (b) ``scratch``  ARMD from scratch, N_AR + K steps (the tiny curriculum as fractions of its length:
                   left to right for the first 1/3, rho = 4 shuffled tokens reached at 3/4), with the PE
                   init a fresh ARMD had when this study ran (``pe_init="random"``, d_pe 64; the default is
                   now "neighbours", which gives a run from scratch much of the warm start: RESULTS.md §12);
  (c) ``adapt``    ARMD converted from (a) (``adapt.armd_from_gpt``) + K steps, the same curriculum
                   fractions over its K steps, warm-up K/10, the new PE table alone for the first
                   ``--freeze`` steps; PE initialised as "neighbours" (d_pe = N + 1 = 129);
  (c') ``adaptrandom``  the same with the PE table drawn N(0, 0.02) (d_pe 64, as (b));
  (c'') ``adaptN``  (c) for the largest K with rho = N = 128: every order uniformly random after the ramp;
  (a') ``gptN``    the GPT trained for N_AR + max(K) steps instead (what the same steps buy a GPT);
  (m) ``mdm``      the MDM baseline, N_AR + max(K) steps;

then, for the largest K, a short SBP fine-tune of (b) and (c) (``finetune_sbp``, ``--sbp-steps``) and
samples at S = 1, 2, 4 scored by a judge: the GPT of another seed ((s + 1) mod seeds), never the one
(c) started from. Every model is evaluated on the same ``--windows`` held-out windows: exact left-to-right
NLL, the NELBO under uniformly random orders and under T = 8 masking trajectories (4 draws each). Each
number is given as mean +- std over seeds; "se" is the standard error over held-out windows
(chunks of 8 windows), averaged over seeds. Seconds are training seconds on one thread (two runs share
the machine's two cores): steps x the median step time, the GPT's included for (c).

Run:  python benchmarks/adapt.py                       (~50 min on 2 CPU cores; results to runs/adapt)
      python benchmarks/adapt.py --report              (print the table and redraw the figure only)
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path

import torch

RUN_DIR = Path("runs/adapt")


def _curriculum(steps: int) -> dict:
    """The tiny preset's progressive schedule (200 / 450 of 600) as fractions of ``steps``."""
    return dict(max_steps=steps, i_ar=round(steps / 3), i_perm=round(steps * 3 / 4), rho=4)


def tasks(seeds, n_ar, ks, freeze, sbp_steps):
    """(phase, name, kwargs) for every run; a phase starts once the one before it has finished."""
    out = []
    for s in seeds:
        out.append((0, f"s{s}/gpt", dict(model="ar", seed=s, max_steps=n_ar)))
        out.append((0, f"s{s}/gpt{n_ar + max(ks)}", dict(model="ar", seed=s, max_steps=n_ar + max(ks))))
        out.append((0, f"s{s}/mdm", dict(model="mdm", seed=s, max_steps=n_ar + max(ks))))
        for k in ks:
            # from scratch with the PE init every fresh ARMD had when this study ran (random, d_pe 64)
            out.append((0, f"s{s}/scratch{k}", dict(model="armd", seed=s, pe_init="random", **_curriculum(n_ar + k))))
            warm = dict(model="armd", seed=s, **_curriculum(k), warmup=max(1, k // 10), freeze_pretrained=freeze,
                        init_from_ar=f"s{s}/gpt")
            out.append((1, f"s{s}/adapt{k}", dict(warm, pe_init="neighbours")))
            out.append((1, f"s{s}/adaptrandom{k}", dict(warm, pe_init="random")))
            if k == max(ks):  # the same adaptation towards uniformly random orders: rho = N
                out.append((1, f"s{s}/adaptN{k}", dict(warm, pe_init="neighbours", rho=128)))
        for base in (f"scratch{max(ks)}", f"adapt{max(ks)}"):
            out.append((2, f"s{s}/{base}_sbp", dict(sbp_from=f"s{s}/{base}", max_steps=sbp_steps)))
    return out


def _run(args):
    name, kw, runs = args
    torch.set_num_threads(1)
    from minarmd.training import finetune_sbp, train_model
    from minarmd.train_config import TrainConfig
    out = runs / name
    if (out / "summary.json").exists():
        return name
    kw = dict(kw)
    if "init_from_ar" in kw:
        kw["init_from_ar"] = str(runs / kw["init_from_ar"] / "ckpt.pt")
    t0 = time.time()
    if "sbp_from" in kw:
        summary = finetune_sbp(runs / kw.pop("sbp_from") / "ckpt.pt", out, eval_every=0, overwrite=True, **kw)
    else:
        summary = train_model(TrainConfig.from_preset("tiny", out=str(out), eval_every=kw["max_steps"] // 6,
                                                      eval_windows=64, **kw), overwrite=True)
    (out / "summary.json").write_text(json.dumps({**summary, "wall_s": time.time() - t0}))
    print(f"  {name}: {summary['train_time_s']:.0f} s", flush=True)
    return name


def _chunked(model, windows, protocol, draws, seed):
    """Mean over windows and the standard error over chunks of 8 windows."""
    from minarmd.evaluate import estimate
    means = [estimate(model, windows[i:i + 8], protocol, draws=draws, T=8, seed=seed).nats
             for i in range(0, len(windows), 8)]
    return statistics.fmean(means), statistics.stdev(means) / math.sqrt(len(means))


def _evaluate(args):
    seed, runs, windows_n, n_ar, ks, n_seeds, samples = args
    torch.set_num_threads(1)
    from minarmd.checkpoint import load_model
    from minarmd.data import load_data
    from minarmd.quality import ARJudge, measure
    from minarmd.sampler import generate, sample_ar
    path = runs / f"s{seed}" / "eval.json"
    res = json.loads(path.read_text()) if path.exists() else {}  # evaluate only what is missing
    data = load_data("shakespeare")
    windows = data.eval_windows(128, windows_n)
    names = ["gpt", f"gpt{n_ar + max(ks)}", "mdm", f"adaptN{max(ks)}"] + \
            [f"{b}{k}" for k in ks for b in ("scratch", "adapt", "adaptrandom")] + \
            [f"{b}{max(ks)}_sbp" for b in ("scratch", "adapt")]
    for name in names:
        if name in res:
            continue
        model = load_model(runs / f"s{seed}" / name / "ckpt.pt")[0].double()
        r = {}
        protocols = {"ar": ("l2r",), "mdm": ("nelbo",)}.get(
            "ar" if name.startswith("gpt") else "mdm" if name == "mdm" else "armd", ("l2r", "random", "mask"))
        for p in protocols:
            r[p] = _chunked(model, windows, p, 1 if p == "l2r" else 4, seed)
        res[name] = r
    from minarmd.adapt import armd_from_gpt
    gpt = load_model(runs / f"s{seed}" / "gpt" / "ckpt.pt")[0].double()
    for name, kw in (("step0_neighbours", dict(d_pe=129)),
                     ("step0_random", dict(pe_init="random", generator=torch.Generator().manual_seed(seed)))):
        if name not in res:  # the converted GPT before any adaptation step
            res[name] = {p: _chunked(armd_from_gpt(gpt, **kw).eval(), windows, p, 1 if p == "l2r" else 4, seed)
                         for p in ("l2r", "random")}
    if "samples" in res:
        path.write_text(json.dumps(res))
        return res
    judge = ARJudge(load_model(runs / f"s{(seed + 1) % n_seeds}" / "gpt" / "ckpt.pt")[0].double())
    res["judge"] = f"gpt of seed {(seed + 1) % n_seeds}"
    res["data"] = vars(measure(windows[:samples], judge))
    gen_q = {}
    for name in [f"{b}{max(ks)}_sbp" for b in ("scratch", "adapt")] + ["gpt"]:
        model = load_model(runs / f"s{seed}" / name / "ckpt.pt")[0].double()
        for S in ((1,) if name == "gpt" else (1, 2, 4)):
            g = torch.Generator().manual_seed(1000 + seed)
            out = (sample_ar(model, n=128, batch=samples, generator=g) if name == "gpt"
                   else generate(model, n=128, batch=samples, streams=S, generator=g))
            q = measure(out.tokens.cpu(), judge)
            gen_q[f"{name}/S{S}"] = {"gen_ppl": q.gen_ppl, "entropy": q.entropy, "calls": out.calls}
    res["samples"] = gen_q
    path.write_text(json.dumps(res))
    print(f"  evaluated seed {seed}", flush=True)
    return res


def _ms(values):
    m = statistics.fmean(values)
    return m, (statistics.stdev(values) if len(values) > 1 else 0.0)


def report(runs: Path, seeds, n_ar, ks, sbp_steps) -> str:
    evals = [json.loads((runs / f"s{s}" / "eval.json").read_text()) for s in seeds]
    secs = {}  # steps x the median step time: robust to other work on the machine (summed times are not)
    for s in seeds:
        for p in sorted((runs / f"s{s}").iterdir()):
            if (p / "summary.json").exists():
                dts = [r["dt"] for r in map(json.loads, open(p / "metrics.jsonl")) if "dt" in r]
                secs.setdefault(p.name, []).append(len(dts) * statistics.median(dts))
    rows = [("gpt", f"(a) GPT, {n_ar} steps", n_ar),
            ("step0_neighbours", "(a) converted, neighbours PE, before adaptation", n_ar),
            ("step0_random", "(a) converted, random PE, before adaptation", n_ar),
            (f"gpt{n_ar + max(ks)}", f"(a') GPT, {n_ar + max(ks)} steps", n_ar + max(ks)),
            ("mdm", f"MDM, {n_ar + max(ks)} steps", n_ar + max(ks))]
    for k in ks:
        rows += [(f"scratch{k}", f"(b) ARMD from scratch, {n_ar + k} steps", n_ar + k),
                 (f"adapt{k}", f"(c) ARMD from (a) + {k} steps", n_ar + k),
                 (f"adaptrandom{k}", "(c') as (c), random PE init", n_ar + k)]
    rows += [(f"adaptN{max(ks)}", "(c'') as (c), rho = N (random orders)", n_ar + max(ks))]
    rows += [(f"scratch{max(ks)}_sbp", f"(b) K = {max(ks)} + {sbp_steps} SBP steps", None),
             (f"adapt{max(ks)}_sbp", f"(c) K = {max(ks)} + {sbp_steps} SBP steps", None)]

    def cell(name, p):
        if p not in evals[0][name]:
            return "—"
        m, sd = _ms([e[name][p][0] for e in evals])
        se = statistics.fmean(e[name][p][1] for e in evals)
        return f"{m:.4f} ± {sd:.4f} (se {se:.4f})"

    lines = ["| model | total steps | train s | exact L2R NLL | random-order NELBO | T = 8 NELBO | MDM NELBO |",
             "|---|---|---|---|---|---|---|"]
    for name, label, steps in rows:
        t = [a + (b if name.startswith("adapt") and not name.endswith("_sbp") else 0.0)
             for a, b in zip(secs.get(name, [0.0] * len(seeds)), secs["gpt"])]
        if name.endswith("_sbp"):
            t = secs.get(name, [0.0])
        elif name.startswith("step0"):
            t = secs["gpt"]
        tm, tsd = _ms(t)
        lines.append(f"| {label} | {steps or '—'} | {tm:.0f} ± {tsd:.0f} | {cell(name, 'l2r')} | "
                     f"{cell(name, 'random')} | {cell(name, 'mask')} | {cell(name, 'nelbo')} |")
    gpt = _ms([e["gpt"]["l2r"][0] for e in evals])[0]
    lines.append("")
    for k in ks:
        parts = []
        for tag, name in (("(c)", f"adapt{k}"), ("(c')", f"adaptrandom{k}"), ("(b)", f"scratch{k}")):
            m, sd = _ms([e[name]["l2r"][0] / e["gpt"]["l2r"][0] - 1 for e in evals])
            within = sum(e[name]["l2r"][0] <= 1.01 * e["gpt"]["l2r"][0] for e in evals)
            below = sum(e[name]["random"][0] < e["mdm"]["nelbo"][0] for e in evals)
            parts.append(f"{tag} {m:+.2%} ± {sd:.2%} (within 1 %: {within}/{len(evals)}; random-order NELBO "
                         f"below MDM's: {below}/{len(evals)})")
        lines.append(f"* K = {k}, exact L2R NLL against (a)'s, mean ± std over seeds: " + "; ".join(parts))
    longer = f"gpt{n_ar + max(ks)}"
    m, sd = _ms([e[f"adapt{max(ks)}"]["l2r"][0] / e[longer]["l2r"][0] - 1 for e in evals])
    lines.append(f"* (c) at K = {max(ks)} against (a'), the GPT given the same {n_ar + max(ks)} steps: {m:+.2%} ± {sd:.2%}")
    lines.append(f"* GPT exact L2R NLL {gpt:.4f} nats/char")
    lines += ["", "| samples (128 chars, after SBP) | S | network calls | gen. ppl (judge) | entropy |", "|---|---|---|---|---|"]
    for key in evals[0]["samples"]:
        ppl = _ms([e["samples"][key]["gen_ppl"] for e in evals])
        ent = _ms([e["samples"][key]["entropy"] for e in evals])
        name, S = key.split("/")
        lines.append(f"| {name} | {S[1:]} | {evals[0]['samples'][key]['calls']} | {ppl[0]:.2f} ± {ppl[1]:.2f} | "
                     f"{ent[0]:.3f} ± {ent[1]:.3f} |")
    data_ppl = _ms([e["data"]["gen_ppl"] for e in evals])
    lines.append(f"| held-out text | — | — | {data_ppl[0]:.2f} ± {data_ppl[1]:.2f} | "
                 f"{_ms([e['data']['entropy'] for e in evals])[0]:.3f} |")
    return "\n".join(lines)


def figure(runs: Path, seeds, n_ar, k, path: Path) -> None:
    """Training loss of (b) and (c) (and the GPT) against total optimiser steps, mean over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def curve(name, offset=0):
        per_seed = []
        for s in seeds:
            recs = [json.loads(line) for line in open(runs / f"s{s}" / name / "metrics.jsonl")]
            per_seed.append([(r["step"] + offset, r["loss"]) for r in recs if "loss" in r])
        n = min(map(len, per_seed))
        xs = [per_seed[0][i][0] for i in range(n)]
        ys = [statistics.fmean(p[i][1] for p in per_seed) for i in range(n)]
        w = 10  # running mean over 10 steps: the per-step losses of one batch are noisy
        ys = [statistics.fmean(ys[max(0, i - w + 1):i + 1]) for i in range(n)]
        return xs, ys

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, off, label, style in ((f"gpt{n_ar + k}", 0, f"(a') GPT, {n_ar + k} steps: next-token loss", "k--"),
                                    (f"scratch{k}", 0, "(b) ARMD from scratch", "C0-"),
                                    (f"adaptrandom{k}", n_ar, "(c') ARMD from (a), random PE init", "C1:"),
                                    (f"adapt{k}", n_ar, "(c) ARMD from (a), neighbours PE init", "C3-")):
        xs, ys = curve(name, off)
        ax.plot(xs, ys, style, label=label, lw=1.5)
    ax.axvline(n_ar, color="grey", lw=0.8)
    ax.set(xlabel="total optimiser steps (GPT's included for (c))", ylabel="training loss (nats/char), 10-step mean",
           title=f"GPT to ARMD: learning curves, mean of {len(seeds)} seeds", ylim=(1.3, 3.5))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=RUN_DIR)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-ar", type=int, default=600, help="GPT steps N")
    ap.add_argument("--k", type=int, nargs="+", default=[100, 300], help="adaptation steps K")
    ap.add_argument("--freeze", type=int, default=0, help="adaptation steps in which only PE trains")
    ap.add_argument("--sbp-steps", type=int, default=100)
    ap.add_argument("--windows", type=int, default=256, help="held-out windows for every protocol")
    ap.add_argument("--samples", type=int, default=32, help="samples per model and S for gen. ppl")
    ap.add_argument("--workers", type=int, default=2, help="runs at once, one thread each")
    ap.add_argument("--report", action="store_true", help="only print the table and draw the figure")
    args = ap.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if not args.report:
        all_tasks = tasks(args.seeds, args.n_ar, args.k, args.freeze, args.sbp_steps)
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.workers, maxtasksperchild=1) as pool:
            for phase in (0, 1, 2):
                todo = sorted(((n, kw, args.runs) for p, n, kw in all_tasks if p == phase),
                              key=lambda t: -t[1].get("max_steps", 0))  # longest first: balanced workers
                print(f"phase {phase}: {len(todo)} runs", flush=True)
                pool.map(_run, todo, chunksize=1)
            pool.map(_evaluate, [(s, args.runs, args.windows, args.n_ar, args.k, len(args.seeds), args.samples)
                                 for s in args.seeds], chunksize=1)
    print(f"\nchar Shakespeare, tiny shape, seeds {args.seeds}, N = {args.n_ar}, K = {args.k}, "
          f"freeze {args.freeze}, SBP {args.sbp_steps} steps, {args.windows} held-out windows\n")
    print(report(args.runs, args.seeds, args.n_ar, args.k, args.sbp_steps))
    fig = Path(__file__).with_name("adapt_curves.png")
    figure(args.runs, args.seeds, args.n_ar, max(args.k), fig)
    print(f"\nfigure: {fig}")


if __name__ == "__main__":
    main()
