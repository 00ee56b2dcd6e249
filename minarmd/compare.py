r"""Our small Table 1 and Table 5: AR vs MDM vs ARMD at equal width, depth, steps and tokens, over
seeds, with the uncertainty over held-out data. Every number is measured by this run and names its
protocol (``evaluate.py``).

    python -m minarmd.compare --experiment table1      # verse, prose, code: AR, MDM, ARMD rho=4 and rho=N
    python -m minarmd.compare --experiment rho         # Table 5's shape: rho in {0, 4, 32, 128} on verse
    python -m minarmd.compare --experiment table       # shakespeare + markov (a known true NLL)
    python -m minarmd.compare --experiment copy        # sanity run: copy task, L=4, L2s=2, T=8
    python -m minarmd.compare --experiment l2s         # L2s in {L/4, L/2, L} at equal steps
    python -m minarmd.compare --experiment pe_init     # ARMD's PE init: random (std 1/sqrt(64), 0.02) vs neighbours

Every variant is trained once per ``--seeds`` (default 0 1 2; a seed is never picked for its
result) and scored on the first 1024 held-out windows (``--eval-windows``; all when fewer). A cell reads
``mean ± std over seeds [s.e. over windows]``; the gap rows compare two variants seed by seed on
the same windows (``evaluate.paired_difference``). Runs live in ``--out/runs/DATA-VARIANT-sSEED``,
shared by the experiments (``armd-rho4`` of ``table1`` is ``armd-rho4`` of ``rho``): a finished run
is reused (and its evaluation cached), an interrupted one resumed, so re-running a command only
computes what is missing. The claims under test (paper, Tables 1 and 5): with a small
ρ, ARMD's exact left-to-right NLL is close to AR's; with ρ = N its random-order NELBO is below the
MDM bound. Each run writes ``table.md`` (the command first) and ``results.json`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
from dataclasses import asdict, fields
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, load_model
from .cli import run_cli
from .data import load_data
from .evaluate import DEFAULT_PROTOCOLS, PROTOCOL_NAMES, Estimate, evaluate, paired_difference
from .kinds import get_kind
from .loss import armd_loss, t_pass_loss
from .masking import alpha_schedule, masking_probs, sample_mask_times
from .permutation import order_from_mask_times
from .train_config import ORDER_FIELDS, RESUMABLE, TrainConfig
from .training import train_model

COLUMNS = ("l2r", "random", "mask", "nelbo")
TEXTS = ("shakespeare", "bible", "python")  # verse, prose, code


def default_armd(rho: int) -> str:
    """The name of the default ARMD at ``rho`` (neighbours PE, L2s = L/2): the run an ablation is compared with."""
    return f"armd-rho{rho}"


def variants(experiment: str, shape: TrainConfig) -> dict[str, dict]:
    """{variant name: TrainConfig overrides} of an experiment on the preset ``shape`` (data sets are chosen
    apart). A variant equal to another experiment's has its name, so the two share their runs."""
    armd = lambda rho: {default_armd(rho): dict(model="armd", rho=rho)}  # noqa: E731
    N, L = shape.seq_len, shape.n_layer
    if experiment in ("table1", "table"):
        return {"ar": dict(model="ar"), "mdm": dict(model="mdm"), **armd(4), **armd(N)}
    if experiment == "rho":  # 0, the paper's ~3 %, 25 %, 100 % of N = 128
        return {"ar": dict(model="ar"), "mdm": dict(model="mdm"),
                **{k: v for rho in (0, 4, N // 4, N) for k, v in armd(rho).items()}}
    if experiment == "l2s":  # L2s in {L/4, L/2 (the default: table1's armd-rho4), L}
        return {f"armd-l2s{max(1, L // 4)}": dict(model="armd", rho=4, n_two_stream=max(1, L // 4)), **armd(4),
                f"armd-l2s{L}": dict(model="armd", rho=4, n_two_stream=L)}
    if experiment == "pe_init":  # PE's start: unit-scale random (1/sqrt(64)), near-zero random, the neighbours;
        # at rho = 4 and, for any-order use, at rho = N (each compared with the neighbours run of its rho)
        return {"armd-pe-random-0.125": dict(model="armd", rho=4, pe_init="random", pe_init_std=0.125),
                "armd-pe-random-0.02": dict(model="armd", rho=4, pe_init="random", pe_init_std=0.02), **armd(4),
                f"{default_armd(N)}-pe-random-0.02": dict(model="armd", rho=N, pe_init="random", pe_init_std=0.02),
                **armd(N)}
    raise ValueError(f"unknown experiment {experiment!r}")


def _same_run(cfg: TrainConfig, saved: dict) -> list[str]:
    """The fields in which a saved run's config differs from ``cfg`` (those that change what it learns)."""
    skip = set(RESUMABLE) | {"preset"} | (set() if get_kind(cfg.model).orders else set(ORDER_FIELDS))
    plain = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731 (a tuple read back from JSON is a list)
    return [f.name for f in fields(cfg) if f.name not in skip and plain(saved.get(f.name)) != getattr(cfg, f.name)]


RECORD = "record.json"  # per run: config, summary and estimates (what a table needs, without the checkpoint)


def _record(out: Path) -> dict | None:
    return json.loads((out / RECORD).read_text()) if (out / RECORD).exists() else None


def finished(cfg: TrainConfig) -> bool:
    """Whether ``cfg.out`` holds this run finished: a checkpoint at max_steps with its summary, or a record."""
    out, record = Path(cfg.out), _record(Path(cfg.out))
    if (out / "ckpt.pt").exists():
        saved = load_checkpoint(out / "ckpt.pt")
        return (not _same_run(cfg, saved["config"]) and saved["step"] == cfg.max_steps
                and ((out / "summary.json").exists() or record is not None))
    return record is not None and not _same_run(cfg, record["config"]) and record["summary"]["steps"] == cfg.max_steps


def _forget(out: Path) -> None:
    """Drop what a folder says about a finished run (summary, cached estimates, record) before it is trained
    again: numbers of a run with another config (say, before a default changed) must not outlive it."""
    for name in ("summary.json", "estimates.json", RECORD):
        (out / name).unlink(missing_ok=True)


def train_or_reuse(cfg: TrainConfig) -> dict:
    """Train ``cfg`` (its summary), reusing a finished run in ``cfg.out`` and resuming an interrupted one.

    A folder holding only ``record.json`` (a run whose checkpoint was not kept, e.g. the records committed
    under ``benchmarks/compare``) counts as finished when its config matches."""
    out = Path(cfg.out)
    summary_path, ckpt_path, record = out / "summary.json", out / "ckpt.pt", _record(out)
    if ckpt_path.exists():
        saved = load_checkpoint(ckpt_path)
        differ = _same_run(cfg, saved["config"])
        if not differ and saved["step"] == cfg.max_steps and (summary_path.exists() or record):
            return json.loads(summary_path.read_text()) if summary_path.exists() else record["summary"]
        if not differ and saved["step"] < cfg.max_steps:
            print(f"resuming {out} from step {saved['step']}")
            _forget(out)
            summary = train_model(cfg, resume=True)
        else:
            print(f"retraining {out}: " + (f"its config differs in {differ}" if differ else "no summary.json"))
            _forget(out)
            summary = train_model(cfg, overwrite=True)
    elif record and not _same_run(cfg, record["config"]) and record["summary"]["steps"] == cfg.max_steps:
        return record["summary"]
    else:
        if record:
            print(f"retraining {out}: its {RECORD} holds another config ({_same_run(cfg, record['config'])})")
        _forget(out)
        summary = train_model(cfg, overwrite=True)
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def _estimate_key(cfg: TrainConfig, windows: torch.Tensor, draws: int, T: int) -> str:
    return f"windows={tuple(windows.shape)} sum={int(windows.sum())} draws={draws} T={T} {cfg.mask_schedule}"


def evaluate_run(model, cfg: TrainConfig, windows: torch.Tensor, draws: int, T: int) -> dict[str, Estimate]:
    """Every protocol of ``model`` (trained by ``cfg``), cached in ``cfg.out/estimates.json`` per setting
    (read from ``record.json`` too, when it records this config; ``model`` may be None when the cache holds
    the setting)."""
    key = _estimate_key(cfg, windows, draws, T)
    cache_path, record = Path(cfg.out) / "estimates.json", _record(Path(cfg.out))
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    if record is not None and not _same_run(cfg, record["config"]):
        cache = {**record.get("estimates", {}), **cache}
    if key not in cache:
        if model is None:
            raise ValueError(f"{cfg.out} holds a record of its run but no ckpt.pt, and no estimates for {key}: "
                             f"evaluate with the recorded settings, or delete {RECORD} there to retrain")
        results = evaluate(model, windows, DEFAULT_PROTOCOLS[cfg.model], draws=draws, T=T,
                           schedule=cfg.mask_schedule)
        cache[key] = {p: asdict(e) for p, e in results.items()}
        cache_path.write_text(json.dumps(cache))
    return {p: Estimate(**{**e, "per_window": tuple(e["per_window"])}) for p, e in cache[key].items()}


def run_one(out: Path, windows: torch.Tensor | None, draws: int, T: int, seed: int, eval_windows: int | None = None,
            **overrides) -> dict:
    """Train (or reuse) one seed of one variant, then evaluate it under every protocol; one table row.
    Writes ``record.json``: the config, summary and this evaluation, enough to rebuild the row."""
    cfg = TrainConfig.from_preset(out=str(out), eval_every=0, seed=seed, **overrides)
    summary = train_or_reuse(cfg)
    data = load_data(cfg.data, tokenizer=cfg.tokenizer, data_dir=cfg.data_dir)
    if windows is None:
        windows = data.eval_windows(cfg.seq_len, eval_windows)
    model = load_model(out / "ckpt.pt")[0] if (out / "ckpt.pt").exists() else None
    estimates = evaluate_run(model, cfg, windows, draws, T)
    n_two_stream = getattr(model.cfg, "n_two_stream", None) if model is not None else _record(out)["n_two_stream"]
    config = {k: v for k, v in asdict(cfg).items() if k != "out"}
    (out / RECORD).write_text(json.dumps({"config": config, "n_two_stream": n_two_stream, "summary": summary,
                                          "estimates": {_estimate_key(cfg, windows, draws, T): {
                                              p: {**asdict(e), "per_window": [float(f"{v:.7g}") for v in e.per_window]}
                                              for p, e in estimates.items()}}}))
    return {"data": cfg.data, "model": cfg.model, "seed": seed, "params": summary["num_params"],
            "n_two_stream": n_two_stream,  # ARMD's alone
            "rho": cfg.rho if get_kind(cfg.model).orders else None,
            "train_s": summary["train_time_s"], "tokens_per_s": summary["tokens_per_s"],
            "steps": cfg.max_steps, "tokens": cfg.max_steps * cfg.batch_size * cfg.grad_accum * cfg.seq_len,
            "chars_per_token": data.chars_per_token, "kind": data.kind,
            "true_nll": data.true_nll(cfg.seq_len) if data.true_nll else None, "estimates": estimates, "T": T}


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def format_rows(groups: dict[tuple[str, str], list[dict]]) -> str:
    """A markdown table, one row per (data, variant): mean ± std over seeds [mean s.e. over windows]."""
    first = next(iter(groups.values()))[0]
    head = ["data", "model", "seeds", "params", "train s", "tokens/s"] + [
        PROTOCOL_NAMES[p] + (f" (T={first['T']})" if p == "mask" else "") for p in COLUMNS]
    extra = any(r["true_nll"] is not None for rows in groups.values() for r in rows)
    head += ["true NLL", "gap (best)"] if extra else ["bits/char (best)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (data, variant), rows in groups.items():
        r = rows[0]
        cells = [data, variant + (f" L2s={r['n_two_stream']}" if r["n_two_stream"] is not None else ""),
                 str(len(rows)), f"{r['params'] / 1e6:.2f}M", f"{statistics.mean(x['train_s'] for x in rows):.0f}",
                 f"{statistics.mean(x['tokens_per_s'] for x in rows):.0f}"]
        for p in COLUMNS:
            ests = [x["estimates"][p] for x in rows if p in x["estimates"]]
            spread = f" ± {_spread([e.nats for e in ests]):.4f}" if len(ests) > 1 else " (1 seed)"
            cells.append("" if not ests else f"{statistics.mean(e.nats for e in ests):.4f}{spread} "
                         f"[{statistics.mean(e.se_windows for e in ests):.4f}]")
        best = statistics.mean(min(e.nats for e in x["estimates"].values()) for x in rows)
        if extra:
            cells += [f"{r['true_nll']:.4f}" if r["true_nll"] is not None else "",
                      f"{best - r['true_nll']:+.4f}" if r["true_nll"] is not None else ""]
        else:
            cpt = r["chars_per_token"]
            cells.append(f"{best / math.log(2) / cpt:.3f}" if cpt else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _role(rows: list[dict]) -> str:
    """What a variant's protocols make it in a table: "any-order" (exact and random-order, ARMD), "exact"
    (left to right only, AR), "bound" (the MDM NELBO) or "other"."""
    protocols = set(rows[0]["estimates"])
    return ("any-order" if "random" in protocols else "exact" if protocols == {"l2r"}
            else "bound" if "nelbo" in protocols else "other")


def _reference(groups: dict, data: str, role: str) -> list[dict] | None:
    """The first variant of ``data`` playing ``role`` (the AR or MDM baseline), or None."""
    return next((rows for (d, _), rows in groups.items() if d == data and _role(rows) == role), None)


def gap(rows: list[dict], protocol: str, ref_rows: list[dict], ref_protocol: str) -> dict:
    """Relative gap (a - ref) / ref in % per seed on shared windows: mean, std over seeds, paired s.e."""
    ref = {r["seed"]: r for r in ref_rows}
    pairs = [(r["estimates"][protocol], ref[r["seed"]]["estimates"][ref_protocol]) for r in rows
             if r["seed"] in ref and protocol in r["estimates"]]  # the seeds both variants have
    rel = [100 * (a.nats - b.nats) / b.nats for a, b in pairs]
    se = [100 * paired_difference(a, b)[1] / b.nats for a, b in pairs]
    return {"mean": statistics.mean(rel), "std": _spread(rel), "se": statistics.mean(se), "seeds": len(rel)}


def format_gaps(groups: dict[tuple[str, str], list[dict]]) -> str:
    """ARMD against AR (left to right) and against MDM (random orders vs the MDM NELBO), per data set; where a
    data set has neither (the ablations), each ARMD variant against the default ARMD of its rho
    (``default_armd``) under both protocols. "" when there is nothing to compare."""
    lines = ["| data | comparison | gap, % (mean ± std over seeds [paired s.e. over windows]) |", "|---|---|---|"]
    for (data, variant), rows in groups.items():
        if _role(rows) != "any-order":
            continue
        against = [(_reference(groups, data, role), proto, ref_proto, what) for role, proto, ref_proto, what in (
            ("exact", "l2r", "l2r", "exact NLL l2r vs AR"),
            ("bound", "random", "nelbo", "NELBO random orders vs MDM NELBO"))]
        baseline = default_armd(rows[0]["rho"])
        if all(ref is None for ref, *_ in against) and variant != baseline and (data, baseline) in groups:
            against = [(groups[(data, baseline)], proto, proto, f"{name} vs {baseline}")
                       for proto, name in (("l2r", "exact NLL l2r"), ("random", "NELBO random orders"))]
        for ref, proto, ref_proto, what in against:
            if ref is not None:
                g = gap(rows, proto, ref, ref_proto)
                spread = f" ± {g['std']:.2f}" if g["seeds"] > 1 else ""
                lines.append(f"| {data} | {variant}: {what} | {g['mean']:+.2f}{spread} [{g['se']:.2f}] "
                             f"({g['seeds']} seed{'s' if g['seeds'] > 1 else ''}) |")
    return "\n".join(lines) if len(lines) > 2 else ""


def rho_figure(groups: dict[tuple[str, str], list[dict]], path: Path) -> None:
    """Table 5's trade-off: ARMD's exact l2r NLL against its random-order (and T-step) NELBO per rho,
    mean ± std over seeds; the AR NLL and the MDM bound as lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = lambda rows, p: (statistics.mean(r["estimates"][p].nats for r in rows),  # noqa: E731
                            _spread([r["estimates"][p].nats for r in rows]))
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for rows in groups.values():
        if _role(rows) != "any-order":
            continue
        (y, dy), (x, dx), (xm, dxm) = mean(rows, "l2r"), mean(rows, "random"), mean(rows, "mask")
        ax.errorbar(x, y, xerr=dx, yerr=dy, fmt="o", color="C0", capsize=3)
        ax.errorbar(xm, y, xerr=dxm, yerr=dy, fmt="s", color="C2", capsize=3, mfc="none")
        ax.annotate(f"ρ = {rows[0]['rho']}", (x, y), textcoords="offset points", xytext=(6, 4))
    for rows in groups.values():
        if _role(rows) == "exact":
            ax.axhline(mean(rows, "l2r")[0], color="C3", ls="--", label="AR: exact NLL")
        if _role(rows) == "bound":
            ax.axvline(mean(rows, "nelbo")[0], color="C1", ls=":", label="MDM: NELBO")
    ax.plot([], [], "o", color="C0", label="ARMD, x = NELBO random orders")
    ax.plot([], [], "s", color="C2", mfc="none", label=f"ARMD, x = NELBO T={rows[0]['T']} masking")
    ax.set(xlabel="NELBO, nats/token (lower: better at any order)",
           ylabel="exact NLL left to right, nats/token", title="The ρ trade-off (mean ± std over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def copy_sanity(runs: Path, steps: int, draws: int, seed: int) -> dict:
    """Copy task, L = 4, L2s = 2, trained on T = 8 masking trajectories; floor and single == T-pass."""
    T = 8
    row = run_one(runs / f"copy-armd-s{seed}", None, draws, T, seed, model="armd", data="copy", order="mask",
                  mask_T=T, n_layer=4, n_two_stream=2, seq_len=32, max_steps=steps, i_ar=0, i_perm=0, rho=0)
    # floor under T-step masking: each copy pair costs log V once, twice when both land in one block
    data = load_data("copy")
    p = masking_probs(alpha_schedule("linear", T))
    n = 32
    floor_mask = (n / 2) * math.log(data.vocab_size) * (1 + float((p ** 2).sum())) / n
    model, _, _ = load_model(runs / f"copy-armd-s{seed}" / "ckpt.pt")
    model = model.double()
    x = data.eval_windows(n, 4)
    tau = sample_mask_times(alpha_schedule("linear", T), tuple(x.shape), torch.Generator().manual_seed(0))
    order, blocks = order_from_mask_times(tau, T)
    with torch.no_grad():
        single = armd_loss(model, x, order, blocks, per_token=True)
        multi = t_pass_loss(model, x, order, blocks, per_token=True)
    row.update(floor_l2r=data.true_nll(n), floor_mask=floor_mask,
               single_vs_tpass_max_abs_diff=float((single - multi).abs().max()))
    print(f"copy, seed {seed}: NELBO (T={T}) {row['estimates']['mask'].nats:.4f}, floor {floor_mask:.4f}; "
          f"exact l2r {row['estimates']['l2r'].nats:.4f}, floor {data.true_nll(n):.4f}; "
          f"single vs T-pass max |diff| {row['single_vs_tpass_max_abs_diff']:.1e} (float64)")
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m minarmd.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="table1", choices=("table1", "rho", "table", "copy", "l2s", "pe_init"))
    parser.add_argument("--data", nargs="+", default=None, help="datasets (default per experiment)")
    parser.add_argument("--variants", nargs="+", default=None, help="the experiment's variants to run (default all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (>= 3 for a spread)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--max-steps", type=int, default=1500, help="steps per model (the curriculum scales)")
    parser.add_argument("--eval-windows", type=int, default=1024,
                        help="the first W held-out windows (all of them when fewer)")
    parser.add_argument("--draws", type=int, default=4, help="Monte Carlo draws of the NELBO protocols")
    parser.add_argument("--T", type=int, default=8, help="masking steps of the 'mask' protocol")
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--finished-only", action="store_true",
                        help="train nothing: tabulate the seeds whose runs are finished (checkpoint or record.json)")
    argv = sys.argv[1:] if argv is None else list(argv)
    command = "python -m minarmd.compare " + " ".join(shlex.quote(a) for a in argv)  # printed above the table
    return run_cli(parser, argv, lambda args: _run(args, command))


def _run(args: argparse.Namespace, command: str) -> list[dict]:
    out, runs = Path(args.out) / args.experiment, Path(args.out) / "runs"  # tables; runs shared by experiments
    if len(args.seeds) < 3:
        print(f"note: {len(args.seeds)} seed(s): a comparison needs at least 3 (--seeds 0 1 2)")
    if args.experiment == "copy":
        rows = [copy_sanity(runs, args.max_steps, args.draws, seed) for seed in args.seeds]
        groups = {("copy", "armd"): rows}
    else:
        default = {"table1": list(TEXTS), "table": ["shakespeare", "markov"]}.get(args.experiment, ["shakespeare"])
        shape = TrainConfig.from_preset(args.preset)
        table = variants(args.experiment, shape)
        unknown = set(args.variants or ()) - set(table)
        if unknown:
            raise ValueError(f"--variants {sorted(unknown)} are not in experiment {args.experiment!r}: choose from "
                             f"{sorted(table)}")
        groups = {}
        for data in args.data or default:
            windows = load_data(data, tokenizer=shape.tokenizer, data_dir=shape.data_dir).eval_windows(
                shape.seq_len, args.eval_windows)  # (W, N): every variant and seed on the same windows
            for name, overrides in table.items():
                if args.variants and name not in args.variants:
                    continue
                kw = dict(preset=args.preset, data=data, max_steps=args.max_steps, **overrides)
                seeds = args.seeds
                if args.finished_only:  # a table of what exists: the seeds column says how many each row has
                    seeds = [seed for seed in seeds if finished(TrainConfig.from_preset(
                        out=str(runs / f"{data}-{name}-s{seed}"), eval_every=0, seed=seed, **kw))]
                    print(f"{data}-{name}: finished seeds {seeds} of {args.seeds}")
                if seeds:
                    groups[(data, name)] = [run_one(runs / f"{data}-{name}-s{seed}", windows, args.draws, args.T,
                                                    seed, **kw) for seed in seeds]
    if not groups:
        raise ValueError(f"no finished runs in {runs} for these variants and seeds (drop --finished-only to train "
                         f"them)")
    rows = [r for group in groups.values() for r in group]
    windows = rows[0]["estimates"][next(iter(rows[0]["estimates"]))].windows
    text = (f"`{command}`\n\n{args.max_steps} steps per run, preset {args.preset}, seeds {args.seeds}; cells: mean ± "
            f"std over seeds [standard error over the {windows} held-out windows, mean over seeds], nats/token\n\n"
            + format_rows(groups))
    gaps = format_gaps(groups) if args.experiment != "copy" else ""
    if gaps:
        text += "\n\n" + gaps
    out.mkdir(parents=True, exist_ok=True)
    if args.experiment == "rho":
        rho_figure(groups, out / "rho_tradeoff.png")
        text += f"\n\n![the rho trade-off]({out / 'rho_tradeoff.png'})"
    (out / "table.md").write_text(text + "\n")
    serial = [{**r, "estimates": {p: {k: v for k, v in asdict(e).items() if k != "per_window"}
                                  for p, e in r["estimates"].items()}} for r in rows]
    (out / "results.json").write_text(json.dumps(serial, indent=1))
    print("\n" + text)
    return rows


if __name__ == "__main__":
    main()
