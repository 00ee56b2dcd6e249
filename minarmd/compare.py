r"""Our small Table 1: AR vs MDM vs ARMD at equal width, depth, steps and tokens — and the paper's
first experiments. Every number is measured by this run and names its protocol.

    python -m minarmd.compare                          # table: shakespeare + markov, ~15 min on 2 CPU cores
    python -m minarmd.compare --experiment copy        # sanity run: copy task, L=4, L2s=2, T=8
    python -m minarmd.compare --experiment l2s         # L2s in {L/4, L/2, L} at equal steps
    python -m minarmd.compare --experiment structured  # verse, prose and code: AR vs MDM vs ARMD
    python -m minarmd.compare --experiment pe_init     # ARMD's PE init: 1/sqrt(d_pe) vs 0.02

The claim under test (paper, Table 1): ARMD's exact left-to-right NLL is close to AR's (within
~5 %), and ARMD is clearly below the MDM bound at equal steps. Each run writes ``table.md`` and
``results.json`` under ``--out``; ``benchmarks/RESULTS.md`` records our runs with this command.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from .data import load_data
from .evaluate import DEFAULT_PROTOCOLS, PROTOCOL_NAMES, evaluate
from .loss import armd_loss, t_pass_loss
from .masking import alpha_schedule, masking_probs, sample_mask_times
from .permutation import order_from_mask_times
from .checkpoint import load_model
from .cli import run_cli
from .train_config import TrainConfig
from .training import train_model

COLUMNS = ("l2r", "random", "mask", "nelbo")


def run_one(out: Path, eval_windows: int, draws: int, T: int, **overrides) -> dict:
    """Train one model with ``TrainConfig.from_preset(**overrides)``, then evaluate it under every protocol."""
    cfg = TrainConfig.from_preset(out=str(out), eval_every=0, **overrides)
    summary = train_model(cfg, overwrite=True)
    model, _, _ = load_model(out / "ckpt.pt")
    data = load_data(cfg.data, tokenizer=cfg.tokenizer, data_dir=cfg.data_dir)
    windows = data.eval_windows(cfg.seq_len, eval_windows)
    results = evaluate(model, windows, DEFAULT_PROTOCOLS[cfg.model], draws=draws, T=T,
                       schedule=cfg.mask_schedule)
    row = {"data": cfg.data, "model": cfg.model, "params": summary["num_params"],
           "n_two_stream": getattr(model.cfg, "n_two_stream", None),  # ARMD's alone
           "train_s": summary["train_time_s"], "tokens_per_s": summary["tokens_per_s"],
           "steps": cfg.max_steps, "tokens": cfg.max_steps * cfg.batch_size * cfg.grad_accum * cfg.seq_len,
           "chars_per_token": data.chars_per_token, "kind": data.kind,
           "true_nll": data.true_nll(cfg.seq_len) if data.true_nll else None,
           "estimates": {p: vars(e) for p, e in results.items()}, "T": T}
    print(format_rows([row]))
    return row


def format_rows(rows: list[dict]) -> str:
    """A markdown table: one row per model, nats/token under each protocol (+- standard error)."""
    head = ["data", "model", "params", "train s", "tokens/s"] + [
        PROTOCOL_NAMES[p] + (f" (T={rows[0]['T']})" if p == "mask" else "") for p in COLUMNS]
    extra = any(r["true_nll"] is not None for r in rows)
    head += ["true NLL", "gap (best)"] if extra else ["bits/char (best)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["data"], r["model"] + (f" L2s={r['n_two_stream']}" if r["n_two_stream"] is not None else ""),
                 f"{r['params'] / 1e6:.2f}M", f"{r['train_s']:.0f}", f"{r['tokens_per_s']:.0f}"]
        est = r["estimates"]
        for p in COLUMNS:
            e = est.get(p)
            cells.append("" if e is None else f"{e['nats']:.4f}" + (f" ± {e['se']:.4f}" if e["draws"] > 1 else ""))
        best = min(e["nats"] for e in est.values())
        if extra:
            cells += [f"{r['true_nll']:.4f}" if r["true_nll"] is not None else "",
                      f"{best - r['true_nll']:+.4f}" if r["true_nll"] is not None else ""]
        else:
            cpt = r["chars_per_token"]
            cells.append(f"{best / math.log(2) / cpt:.3f}" if cpt else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def copy_sanity(out: Path, steps: int, draws: int) -> dict:
    """Copy task, L = 4, L2s = 2, trained on T = 8 masking trajectories; floor and single == T-pass."""
    T = 8
    row = run_one(out / "copy-armd", 64, draws, T, model="armd", data="copy", order="mask", mask_T=T,
                  n_layer=4, n_two_stream=2, seq_len=32, max_steps=steps, i_ar=0, i_perm=0, rho=0)
    # floor under T-step masking: each copy pair costs log V once, twice when both land in one block
    data = load_data("copy")
    p = masking_probs(alpha_schedule("linear", T))
    n = 32
    floor_mask = (n / 2) * math.log(data.vocab_size) * (1 + float((p ** 2).sum())) / n
    model, _, _ = load_model(out / "copy-armd" / "ckpt.pt")
    model = model.double()
    x = data.eval_windows(n, 4)
    tau = sample_mask_times(alpha_schedule("linear", T), tuple(x.shape), torch.Generator().manual_seed(0))
    order, blocks = order_from_mask_times(tau, T)
    with torch.no_grad():
        single = armd_loss(model, x, order, blocks, per_token=True)
        multi = t_pass_loss(model, x, order, blocks, per_token=True)
    row.update(floor_l2r=data.true_nll(n), floor_mask=floor_mask,
               single_vs_tpass_max_abs_diff=float((single - multi).abs().max()))
    print(f"copy: NELBO (T={T}) {row['estimates']['mask']['nats']:.4f}, floor {floor_mask:.4f}; "
          f"exact l2r {row['estimates']['l2r']['nats']:.4f}, floor {data.true_nll(n):.4f}; "
          f"single vs T-pass max |diff| {row['single_vs_tpass_max_abs_diff']:.1e} (float64)")
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m minarmd.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="table", choices=("table", "copy", "l2s", "structured", "pe_init"))
    parser.add_argument("--data", nargs="+", default=None, help="datasets (default per experiment)")
    parser.add_argument("--models", nargs="+", default=["ar", "mdm", "armd"], choices=("ar", "mdm", "armd"))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--max-steps", type=int, default=None, help="steps per model (default per experiment)")
    parser.add_argument("--eval-windows", type=int, default=128, help="validation windows per estimate")
    parser.add_argument("--draws", type=int, default=8, help="Monte Carlo draws for the NELBO protocols")
    parser.add_argument("--T", type=int, default=8, help="masking steps of the 'mask' protocol")
    parser.add_argument("--out", default="runs/compare")
    return run_cli(parser, argv, _run)


def _run(args: argparse.Namespace) -> list[dict]:
    out = Path(args.out) / args.experiment
    common = dict(eval_windows=args.eval_windows, draws=args.draws, T=args.T)
    rows = []
    if args.experiment == "copy":
        rows.append(copy_sanity(out, args.max_steps or 400, args.draws))
    elif args.experiment == "l2s":
        for l2s in (1, 2, 4):  # L/4, L/2, L at L = 4
            rows.append(run_one(out / f"armd-l2s{l2s}", **common, model="armd", preset=args.preset,
                                data=(args.data or ["shakespeare"])[0], n_layer=4, n_two_stream=l2s,
                                max_steps=args.max_steps))
    elif args.experiment == "pe_init":
        for std in (0.125, 0.02):  # 0.125 = 1/sqrt(64), the unit-scale start
            rows.append(run_one(out / f"armd-pe{std}", **common, model="armd", preset=args.preset,
                                data=(args.data or ["shakespeare"])[0], pe_init_std=std,
                                max_steps=args.max_steps))
    else:
        default = ["shakespeare", "markov"] if args.experiment == "table" else ["shakespeare", "bible", "python"]
        for data in args.data or default:
            for model in args.models:
                rows.append(run_one(out / f"{data}-{model}", **common, model=model, preset=args.preset,
                                    data=data, max_steps=args.max_steps))
    table = format_rows(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print("\n" + table)
    return rows


if __name__ == "__main__":
    main()
