"""The paper's Table 2 at small scale: sample quality of AR, MDM and ARMD at S = 1, 2, 4 streams, over seeds.

Everything is trained on the embedded character-level Shakespeare (tiny shape: L 4, width 128,
N = 128; the same data, batch, optimiser and 1500 steps as ``python -m minarmd.compare``), for every
seed in ``--seeds`` (default 0 1 2; a seed is never picked for its result):

  * ``ar``: the GPT baseline;
  * ``mdm``: the MDLM-style baseline, sampled with T = N, N/2, N/4 ancestral steps;
  * ``armd``: ARMD with the progressive permutation schedule (rho = 4, the tiny preset's fractions);
  * ``armd_sbp``: that ARMD after SBP fine-tuning (``finetune_sbp``: 400 more steps on strided orders
    with S drawn from {1, 2, 4}, constant lr 3e-4), as in the paper;
  * ``armd_more``: the **control**: the same 400 steps at the same learning rate, on the base run's own
    orders (progressive at its final k = rho) instead of strided ones. ``armd_sbp`` minus ``armd_more`` is
    what the strided orders buy; ``armd_more`` minus ``armd`` is what 400 more steps buy anyway;
  * ``judge``: a larger AR model (L 6, width 192, seed 11, 2000 steps) that is *not* compared. It
    scores every sample (``quality.ARJudge``) under the "bos" protocol: every character given the
    judge's BOS and the prefix. (``quality``'s "mdlm" protocol is MDLM's, for 1024-token GPT-2-BPE
    samples with an end-of-text token; character-level Shakespeare has none.)

The base runs are ``compare``'s (``--compare-runs``, default ``benchmarks/compare/runs``: its
``shakespeare-{ar,mdm,armd-rho4}-s{seed}``) when their checkpoints are there, else they are trained into
``--runs``. Samples are drawn at temperature 1, with no top-k/top-p, in float64. For each method the table
gives the network calls, the generative perplexity under the judge (mean ± std over seeds [standard error
over samples, mean over seeds]), the entropy of each sample's characters, rep-4, and the wall time. The
"data" row scores held-out windows of real text. A second table gives the exact left-to-right NLL of
the three ARMDs on 1024 held-out windows: what SBP costs or buys in likelihood.

Run:  python benchmarks/table2.py                  (trains what is missing: ~2 h on 2 CPU cores from nothing)
      python benchmarks/table2.py --seeds 0        (one seed: a quick look, not a result)
      python benchmarks/table2.py --from-record benchmarks/table2.json   (reprint the committed tables, seconds)
Checkpoints found are reused; delete them to retrain.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from minarmd.checkpoint import load_checkpoint, load_model
from minarmd.compare import default_armd, finished, train_or_reuse, variants
from minarmd.data import load_data
from minarmd.evaluate import estimate
from minarmd.quality import ARJudge, measure
from minarmd.sampler import generate, sample_ar, sample_mdm
from minarmd.train_config import TrainConfig
from minarmd.training import finetune_sbp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import machine_info  # noqa: E402

STEPS = 1500  # compare's run length, so its Shakespeare runs are these runs
ARMD = default_armd(4)  # progressive ARMD at the paper's rho/N: compare's run of that name
BASE = {name: overrides for name, overrides in variants("table1", TrainConfig.from_preset("tiny")).items()
        if name in ("ar", "mdm", ARMD)}  # compare's variants, so its Shakespeare runs are these runs
JUDGE = dict(model="ar", n_layer=6, n_head=6, n_embd=192, max_steps=2000, seed=11)
EXTRA = dict(max_steps=400, streams=(1, 2, 4), lr=3e-4)  # SBP fine-tuning, and the control's length and lr
CONTROL = dict(order="progressive", i_ar=0, i_perm=0)  # the base run's final orders (k = rho) from step 0


def base_run(name: str, seed: int, compare_runs: Path, runs: Path) -> Path:
    """The checkpoint of base run ``name`` (a compare variant) for ``seed``: compare's if it is there and
    finished, else trained (or reused) in ``runs``."""
    overrides = dict(preset="tiny", data="shakespeare", max_steps=STEPS, eval_every=0, seed=seed, **BASE[name])
    cfg = TrainConfig.from_preset(out=str(compare_runs / f"shakespeare-{name}-s{seed}"), **overrides)
    if (Path(cfg.out) / "ckpt.pt").exists() and finished(cfg):
        return Path(cfg.out) / "ckpt.pt"
    cfg = TrainConfig.from_preset(out=str(runs / f"s{seed}" / name), **overrides)
    print(f"training {cfg.out} ...", flush=True)
    train_or_reuse(cfg)
    return Path(cfg.out) / "ckpt.pt"


def ensure_trained(seed: int, compare_runs: Path, runs: Path) -> dict[str, Path]:
    """{model name: checkpoint} of one seed: the three base runs, SBP fine-tuning and its control."""
    ckpts = {name: base_run(name, seed, compare_runs, runs) for name in BASE}
    for name, extra in (("armd_sbp", {}), ("armd_more", CONTROL)):
        out = runs / f"s{seed}" / name
        if not _complete(out / "ckpt.pt"):  # missing, or cut short (then fine-tuned again from the start)
            print(f"fine-tuning {out} ...", flush=True)
            finetune_sbp(ckpts[ARMD], out, eval_every=0, overwrite=True, **EXTRA, **extra)
        ckpts[name] = out / "ckpt.pt"
    return ckpts


def _complete(ckpt: Path) -> bool:
    """Whether ``ckpt`` is a run that reached its max_steps (not one saved mid-run and interrupted)."""
    if not ckpt.exists():
        return False
    saved = load_checkpoint(ckpt)
    return saved["step"] == saved["config"]["max_steps"]


def sample_all(fn, samples: int, batch: int, seed: int):
    """Run fn(batch, generator) until ``samples`` rows; returns (tokens, calls per batch, seconds)."""
    gen, parts, seconds, calls = torch.Generator().manual_seed(seed), [], 0.0, 0
    for start in range(0, samples, batch):
        t0 = time.perf_counter()
        out = fn(min(batch, samples - start), gen)
        seconds += time.perf_counter() - t0
        parts.append(out.tokens.cpu())
        calls = max(calls, out.calls)
    return torch.cat(parts), calls, seconds


def methods_of(models: dict, n: int) -> dict:
    methods = {"AR": lambda b, g: sample_ar(models["ar"], n, b, generator=g)}
    for T in (n, n // 2, n // 4):
        methods[f"MDM, T={T}"] = lambda b, g, T=T: sample_mdm(models["mdm"], n, b, steps=T, generator=g)
    for name, label in ((ARMD, "ARMD (progressive)"), ("armd_more", "ARMD + 400 progressive steps (control)"),
                        ("armd_sbp", "ARMD + SBP fine-tuning")):
        for S in (1, 2, 4):
            methods[f"{label}, S={S}"] = lambda b, g, m=models[name], S=S: generate(m, n, b, streams=S, generator=g)
    return methods


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else \
        f"{values[0]:.3f} (1 seed)"


def print_tables(record: dict) -> None:
    """The two tables of a record (what ``main`` measured, or ``--from-record``'s committed file)."""
    real, rows, likelihood = record["data"], record["rows"], record["likelihood"]
    print(f"\nN = {record['n']} characters, {record['samples']} samples per method and seed, seeds "
          f"{record['seeds']}; judge: {record['judge']}, gen. ppl protocol {real['protocol']!r}; cells: mean ± std "
          f"over seeds [s.e. over samples, mean over seeds]\n")
    print(f"| method | network calls | gen. ppl (judge, {real['protocol']}) | entropy (nats) | rep-4 | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| data (held-out windows) |  | {real['gen_ppl']:.3f} [{real['gen_ppl_se']:.3f}] | {real['entropy']:.3f} | "
          f"{real['rep']['4']:.3f} |  |")
    for name, per_seed in rows.items():
        se = statistics.mean(r["gen_ppl_se"] for r in per_seed)
        print(f"| {name} | {per_seed[0]['calls']} | {spread([r['gen_ppl'] for r in per_seed])} [{se:.3f}] | "
              f"{spread([r['entropy'] for r in per_seed])} | {statistics.mean(r['rep']['4'] for r in per_seed):.3f} | "
              f"{statistics.mean(r['seconds'] for r in per_seed):.1f} |")
    print(f"\nExact left-to-right NLL on the first {record['windows']} held-out windows (nats/char), mean ± std "
          f"over seeds:\n")
    for name, nats in likelihood.items():
        print(f"- {name}: {spread(nats)} (per seed {', '.join(f'{x:.4f}' for x in nats)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/table2", help="runs that compare does not hold (reused)")
    parser.add_argument("--compare-runs", default="benchmarks/compare/runs", help="compare's runs, reused")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (>= 3 for a spread)")
    parser.add_argument("--samples", type=int, default=128, help="samples per method and seed")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sample-seed", type=int, default=0, help="the samplers' generator")
    parser.add_argument("--record", default=None, help="where to write the measured numbers (default RUNS/table2.json)")
    parser.add_argument("--from-record", default=None, metavar="JSON",
                        help="print the tables of a saved record (e.g. benchmarks/table2.json) and train nothing")
    args = parser.parse_args()
    if args.from_record:
        path = Path(args.from_record)
        try:
            record = json.loads(path.read_text())
            missing = {"measured", "seeds", "n", "samples", "judge", "windows", "data", "rows", "likelihood"} - set(record)
        except (OSError, ValueError, TypeError) as err:
            missing = f"{type(err).__name__}: {err}"
        if missing:
            sys.exit(f"--from-record {path}: not a record written by table2.py (missing: {missing}); run "
                     f"`python benchmarks/table2.py` to measure one")
        print(f"{path}: measured {record['measured']}")
        print_tables(record)
        return
    runs, compare_runs = Path(args.runs), Path(args.compare_runs)
    print(machine_info())
    print("the judge (trained, or resumed, if it is not finished) ...", flush=True)
    train_or_reuse(TrainConfig.from_preset(out=str(runs / "judge"), eval_every=0, **JUDGE))
    judge_model = load_model(runs / "judge" / "ckpt.pt")[0]
    judge = ARJudge(judge_model)
    data = load_data("shakespeare")
    n = TrainConfig.from_preset("tiny").seq_len
    real = measure(data.eval_windows(n, args.samples), judge)
    windows = data.eval_windows(n, 1024)

    rows, likelihood = {}, {}  # method -> [per-seed dict], model -> [per-seed nats]
    for seed in args.seeds:
        models = {name: load_model(path)[0] for name, path in ensure_trained(seed, compare_runs, runs).items()}
        for name, fn in methods_of(models, n).items():
            tokens, calls, seconds = sample_all(fn, args.samples, args.batch, args.sample_seed)
            q = measure(tokens, judge)
            rows.setdefault(name, []).append({"seed": seed, "calls": calls, "seconds": seconds, **vars(q)})
            print(f"seed {seed}, {name}: {calls} calls, {seconds:.1f} s, {q.describe()}", flush=True)
        for name in (ARMD, "armd_more", "armd_sbp"):
            likelihood.setdefault(name, []).append(estimate(models[name], windows, "l2r").nats)

    jc = judge_model.cfg
    record = {"measured": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine_info(), "seeds": args.seeds,
              "n": n, "samples": args.samples, "sample_seed": args.sample_seed, "windows": len(windows),
              "judge": f"AR L{jc.n_layer} width {jc.n_embd} ({judge_model.num_params() / 1e6:.2f}M parameters)",
              "data": vars(real), "rows": rows, "likelihood": likelihood}
    record = json.loads(json.dumps(record))  # the form it is saved in (rep's keys become strings)
    path = Path(args.record) if args.record else runs / "table2.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print_tables(record)
    print(f"\nrecord: {path} (reprint: python benchmarks/table2.py --from-record {path})")


if __name__ == "__main__":
    main()
