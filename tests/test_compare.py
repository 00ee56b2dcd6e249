"""compare.py: seeds, shared windows, reuse of finished runs, the tables' cells and the rho figure."""
import json

import pytest

from minarmd import compare, train_config
from minarmd.evaluate import paired_difference

# a seconds-long preset: 2 layers at width 32, 4 steps
FAST = dict(n_layer=2, n_head=2, n_embd=32, seq_len=32, batch_size=4, max_steps=4, warmup=1,
            eval_windows=2, ckpt_every=0)


@pytest.fixture
def fast_preset(monkeypatch):
    monkeypatch.setitem(train_config.PRESETS, "fast-test", FAST)


def test_rho_experiment_seeds_windows_reuse_and_figure(fast_preset, tmp_path, capsys):
    argv = ["--experiment", "rho", "--preset", "fast-test", "--max-steps", "4", "--seeds", "0", "1",
            "--eval-windows", "6", "--draws", "2", "--out", str(tmp_path), "--variants", "ar", "mdm", "armd-rho0",
            "armd-rho32"]
    rows = compare.main(argv)
    assert {(r["model"], r["rho"], r["seed"]) for r in rows} == {
        ("ar", None, 0), ("ar", None, 1), ("mdm", None, 0), ("mdm", None, 1),
        ("armd", 0, 0), ("armd", 0, 1), ("armd", 32, 0), ("armd", 32, 1)}
    out = tmp_path / "rho"
    text = (out / "table.md").read_text()
    assert "note: 2 seed(s): a comparison needs at least 3" in capsys.readouterr().out
    assert "mean ± std over seeds" in text and "6 held-out windows" in text and "armd-rho32" in text
    assert "exact NLL l2r vs AR" in text and "NELBO random orders vs MDM NELBO" in text
    assert (out / "rho_tradeoff.png").stat().st_size > 10_000
    # every variant and seed is scored on the same 6 windows: the paired difference is defined
    ar0 = next(r for r in rows if r["model"] == "ar" and r["seed"] == 0)["estimates"]["l2r"]
    armd0 = next(r for r in rows if r["rho"] == 0 and r["seed"] == 0)["estimates"]["l2r"]
    assert ar0.windows == armd0.windows == 6 and paired_difference(armd0, ar0)[1] > 0
    # seeds differ: different weights, different numbers
    ar1 = next(r for r in rows if r["model"] == "ar" and r["seed"] == 1)["estimates"]["l2r"]
    assert ar0.nats != ar1.nats
    saved = json.loads((out / "results.json").read_text())
    assert len(saved) == 8 and "per_window" not in saved[0]["estimates"]["l2r"]
    # a second call reuses the finished runs and their cached evaluations: nothing is retrained
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/ckpt.pt")}
    assert len(stamps) == 8  # runs live in OUT/runs, shared by the experiments
    again = compare.main(argv)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/ckpt.pt")} == stamps
    nats = lambda rs: [{p: e.nats for p, e in r["estimates"].items()} for r in rs]  # noqa: E731
    assert nats(again) == nats(rows)
    # another experiment with the same variants reuses the same runs
    table1 = compare.main([a if a != "rho" else "table1" for a in argv[:-5]] + ["--variants", "ar", "mdm", "--data", "shakespeare"])
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*/ckpt.pt")} == stamps
    assert nats(table1) == nats(again)[:4] and (tmp_path / "table1" / "table.md").exists()
    # a run kept only as record.json (no checkpoint, as committed under benchmarks/compare) rebuilds its row
    for run in (tmp_path / "runs").iterdir():
        for name in ("ckpt.pt", "estimates.json", "summary.json"):
            (run / name).unlink()
    recorded = compare.main(argv)
    assert not list((tmp_path / "runs").glob("*/ckpt.pt"))  # nothing retrained
    for old, new in zip(nats(rows), nats(recorded)):
        assert old.keys() == new.keys() and all(abs(old[p] - new[p]) < 1e-6 for p in old)  # 7 digits kept
    with pytest.raises(SystemExit):  # other evaluation settings need the model: one clear error
        compare.main([a if a != "2" else "3" for a in argv])
    assert "holds a record of its run but no ckpt.pt" in capsys.readouterr().err
    # --finished-only trains nothing: seed 2 is missing, so every row keeps its 2 seeds, and a variant without
    # any finished run is left out
    partial = compare.main([a for a in argv if a not in ("armd-rho32",)] + ["--finished-only", "--seeds", "0", "1", "2"]
                           + ["--variants", "ar", "armd-rho4"])
    assert {(r["model"], r["seed"]) for r in partial} == {("ar", 0), ("ar", 1)}
    assert "shakespeare-ar: finished seeds [0, 1] of [0, 1, 2]" in capsys.readouterr().out
    assert not (tmp_path / "runs" / "shakespeare-ar-s2").exists() and not list((tmp_path / "runs").glob("*/ckpt.pt"))
    # a changed setting that changes what a run learns retrains it
    assert compare._same_run(train_config.TrainConfig.from_preset("fast-test", model="armd", rho=4, out="x"),
                             json.loads(json.dumps(vars(train_config.TrainConfig.from_preset(
                                 "fast-test", model="armd", rho=32, out="y"))))) == ["rho"]
    # ... but an ARMD-only field does not make an AR run differ
    assert compare._same_run(train_config.TrainConfig.from_preset("fast-test", model="ar", rho=4, out="x"),
                             vars(train_config.TrainConfig.from_preset("fast-test", model="ar", rho=32))) == []


def test_unknown_variant_is_one_clear_error(fast_preset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare.main(["--experiment", "table1", "--preset", "fast-test", "--variants", "gpt", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--variants ['gpt'] are not in experiment 'table1'" in capsys.readouterr().err


def test_experiments_share_the_runs_they_have_in_common():
    """A variant that two experiments both hold has one name, so its runs are trained once: L2s = L/2 and
    the neighbours PE are table1's armd-rho4 (the default ARMD), not a second copy of it."""
    shape = train_config.TrainConfig.from_preset("tiny")
    table1 = compare.variants("table1", shape)
    for experiment in ("rho", "l2s", "pe_init"):
        assert compare.variants(experiment, shape)["armd-rho4"] == table1["armd-rho4"]
    assert set(compare.variants("l2s", shape)) == {"armd-l2s1", "armd-rho4", "armd-l2s4"}  # L = 4
    assert set(compare.variants("rho", shape)) >= {"armd-rho0", "armd-rho32", "armd-rho128"}  # N = 128
    assert compare.variants("pe_init", shape)["armd-rho128"] == table1["armd-rho128"]  # rho = N, any-order
    random_pe = compare.variants("pe_init", shape)["armd-pe-random-0.02"]
    assert train_config.TrainConfig.from_preset("tiny", **random_pe).network_config(65).d_pe == 64


@pytest.mark.parametrize("kept", ["record only", "record and checkpoint"])
def test_a_retrained_run_is_evaluated_again(fast_preset, tmp_path, monkeypatch, kept):
    """A run retrained because its config changed (a default changed, say) must not report the numbers of
    the run it replaced: the old record's (or estimates.json's) cached estimates are dropped with it."""
    argv = ["--experiment", "table1", "--preset", "fast-test", "--max-steps", "4", "--seeds", "0",
            "--eval-windows", "6", "--draws", "2", "--out", str(tmp_path), "--variants", "armd-rho4",
            "--data", "shakespeare"]
    before = compare.main(argv)[0]["estimates"]["l2r"].nats
    run = tmp_path / "runs" / "shakespeare-armd-rho4-s0"
    if kept == "record only":
        for name in ("ckpt.pt", "estimates.json", "summary.json"):
            (run / name).unlink()
    monkeypatch.setitem(train_config.PRESETS, "fast-test", {**FAST, "pe_init": "random"})  # another run now
    after = compare.main(argv)[0]["estimates"]["l2r"].nats
    record = json.loads((run / "record.json").read_text())
    assert record["config"]["pe_init"] == "random" and after != before
    fresh = compare.evaluate_run(None, train_config.TrainConfig.from_preset(
        "fast-test", model="armd", rho=4, out=str(run), eval_every=0, seed=0, max_steps=4), *(
        compare.load_data("shakespeare").eval_windows(32, 6), 2, 8))["l2r"].nats
    assert fresh == after  # the record now holds this run's numbers


def test_ablation_gaps_are_paired_against_the_default_armd():
    """Without AR/MDM rows (l2s, pe_init) each ARMD variant is compared with the default ARMD of its rho, per
    protocol, paired by seed on shared windows; with AR and MDM present they stay the references; alone, no
    table."""
    from minarmd.evaluate import Estimate

    def row(seed, l2r, random_order, rho=4):
        est = lambda p, v: Estimate(p, v, 0.0, 1, per_window=(v - 0.1, v + 0.1))  # noqa: E731
        return {"seed": seed, "rho": rho, "estimates": {"l2r": est("l2r", l2r), "random": est("random", random_order)}}

    base = [row(s, 2.0, 3.0) for s in range(3)]
    wider = [row(s, 2.0 * f, 3.0 * f) for s, f in zip(range(3), (1.01, 1.02, 1.03))]  # +1, +2, +3 %
    any_order = [row(s, 2.5, 2.0, rho=128) for s in range(3)]
    any_order_wide = [row(s, 2.5, 2.0 * 0.99, rho=128) for s in range(3)]  # -1 % under random orders
    text = compare.format_gaps({("verse", "armd-wide"): wider, ("verse", "armd-rho4"): base,
                                ("verse", "armd-rho128-wide"): any_order_wide, ("verse", "armd-rho128"): any_order})
    assert "| verse | armd-wide: exact NLL l2r vs armd-rho4 | +2.00 ± 1.00 [0.00] (3 seeds) |" in text
    assert "| verse | armd-wide: NELBO random orders vs armd-rho4 | +2.00 ± 1.00 [0.00] (3 seeds) |" in text
    assert "| verse | armd-rho128-wide: NELBO random orders vs armd-rho128 | -1.00 ± 0.00 [0.00] (3 seeds) |" in text
    assert "armd-rho4: exact NLL l2r vs armd-rho4" not in text  # the baseline is not compared with itself
    assert "armd-rho128-wide: exact NLL l2r vs armd-rho4" not in text  # nor a rho = N run with rho = 4
    assert compare.format_gaps({("verse", "armd-rho4"): base}) == ""
    ar = [{"seed": s, "rho": None, "estimates": {"l2r": Estimate("l2r", 1.0, 0.0, 1, per_window=(0.9, 1.1))}}
          for s in range(3)]
    with_ar = compare.format_gaps({("verse", "ar"): ar, ("verse", "armd-wide"): wider, ("verse", "armd-rho4"): base})
    assert "armd-wide: exact NLL l2r vs AR" in with_ar and "vs armd-rho4" not in with_ar
