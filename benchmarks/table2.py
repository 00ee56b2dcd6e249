"""The paper's Table 2 at small scale: sample quality of AR, MDM and ARMD at S = 1, 2, 4 streams.

Everything is trained on the embedded character-level Shakespeare (tiny shape: L 4, width 128,
N = 128; 1200 steps each, the same data, batch and optimiser):

  * ``ar``: the GPT baseline;
  * ``mdm``: the MDLM-style baseline, sampled with T = N, N/2, N/4 ancestral steps;
  * ``armd``: ARMD with the progressive permutation schedule (i_ar 400, i_perm 900, rho 4);
  * ``armd_sbp``: that ARMD after SBP fine-tuning (``train.finetune_sbp``: 400 more steps on strided
    orders with S drawn from {1, 2, 4}, constant lr 3e-4), as in the paper;
  * ``judge``: a larger AR model (L 6, width 192, seed 11, 2000 steps) that is *not* compared. It
    scores every sample (``quality.ARJudge``) under the "bos" protocol: every character given the
    judge's BOS and the prefix. (``quality``'s "mdlm" protocol is MDLM's, for 1024-token GPT-2-BPE
    samples with an end-of-text token; character-level Shakespeare has none.)

Samples are drawn at temperature 1, with no top-k/top-p, in float64. For each method the table gives
the network calls, the generative perplexity under the judge (with its standard error), the
entropy of each sample's characters, rep-4, and the wall time. For reference, the "data" row
scores held-out windows of real text.

Run:  python benchmarks/table2.py                  (trains what runs/table2 lacks: ~45 min on 2 CPU cores)
      python benchmarks/table2.py --samples 256    (more samples: smaller standard errors)
Checkpoints found in ``--runs`` are reused; delete them to retrain.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from minarmd.data import load_data
from minarmd.evaluate import estimate
from minarmd.quality import ARJudge, measure
from minarmd.sampler import generate, sample_ar, sample_mdm
from minarmd.checkpoint import load_model
from minarmd.train_config import TrainConfig
from minarmd.training import finetune_sbp, train_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import machine_info  # noqa: E402

RUNS = {  # name -> TrainConfig.from_preset overrides (tiny preset, Shakespeare)
    "armd": dict(model="armd", max_steps=1200, i_ar=400, i_perm=900),
    "ar": dict(model="ar", max_steps=1200),
    "mdm": dict(model="mdm", max_steps=1200),
    "judge": dict(model="ar", n_layer=6, n_head=6, n_embd=192, max_steps=2000, seed=11),
}
SBP = dict(max_steps=400, streams=(1, 2, 4), lr=3e-4)


def ensure_trained(runs: Path) -> None:
    for name, overrides in RUNS.items():
        if not (runs / name / "ckpt.pt").exists():
            print(f"training {name} ...", flush=True)
            train_model(TrainConfig.from_preset(out=str(runs / name), eval_every=0, **overrides), overwrite=True)
    if not (runs / "armd_sbp" / "ckpt.pt").exists():
        print("SBP fine-tuning armd ...", flush=True)
        finetune_sbp(runs / "armd" / "ckpt.pt", runs / "armd_sbp", eval_every=0, overwrite=True, **SBP)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs/table2", help="run directory (checkpoints reused)")
    parser.add_argument("--samples", type=int, default=128, help="samples per method")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs = Path(args.runs)
    print(machine_info())
    ensure_trained(runs)
    models = {name: load_model(runs / name / "ckpt.pt")[0] for name in ("ar", "mdm", "armd", "armd_sbp", "judge")}
    n = models["ar"].cfg.max_len
    judge = ARJudge(models["judge"])
    data = load_data("shakespeare")
    real = data.eval_windows(n, args.samples)

    methods = {"AR": lambda b, g: sample_ar(models["ar"], n, b, generator=g)}
    for T in (n, n // 2, n // 4):
        methods[f"MDM, T={T}"] = lambda b, g, T=T: sample_mdm(models["mdm"], n, b, steps=T, generator=g)
    for name, label in (("armd", "ARMD (progressive)"), ("armd_sbp", "ARMD + SBP fine-tuning")):
        for S in (1, 2, 4):
            methods[f"{label}, S={S}"] = lambda b, g, m=models[name], S=S: generate(m, n, b, streams=S, generator=g)

    rows = [{"method": "data (held-out windows)", "calls": None, "seconds": None, **vars(measure(real, judge))}]
    for name, fn in methods.items():
        tokens, calls, seconds = sample_all(fn, args.samples, args.batch, args.seed)
        q = measure(tokens, judge)
        rows.append({"method": name, "calls": calls, "seconds": seconds, **vars(q)})
        print(f"{name}: {calls} calls, {seconds:.1f} s, {q.describe()}", flush=True)

    protocol = rows[0]["protocol"]  # measure's default, "bos": see quality.py
    print(f"\nN = {n} characters, {args.samples} samples per method, judge: AR L6 width 192 "
          f"({models['judge'].num_params() / 1e6:.2f}M parameters), gen. ppl protocol {protocol!r}\n")
    print(f"| method | network calls | gen. ppl (judge, {protocol}) | entropy (nats) | rep-4 | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        calls = "" if r["calls"] is None else str(r["calls"])
        secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        print(f"| {r['method']} | {calls} | {r['gen_ppl']:.3f} ± {r['gen_ppl_se']:.3f} | {r['entropy']:.3f} | "
              f"{r['rep'][4]:.3f} | {secs} |")

    # the likelihood side of the trade: does SBP fine-tuning cost exact left-to-right NLL?
    windows = data.eval_windows(n, 128)
    print("\nValidation likelihood on 128 held-out windows (nats/char):\n")
    likelihoods = {}
    for name, protocol in (("ar", "l2r"), ("armd", "l2r"), ("armd_sbp", "l2r"), ("judge", "l2r"), ("mdm", "nelbo")):
        est = estimate(models[name], windows, protocol, draws=4, seed=args.seed)
        likelihoods[name] = vars(est)
        print(f"- {name}: {est.describe()}")
    (runs / "table2.json").write_text(json.dumps({"rows": rows, "likelihoods": likelihoods}, indent=1))


if __name__ == "__main__":
    main()
