"""The training loop: it learns, it resumes exactly, it refuses bad requests clearly."""
import json

import pytest
import torch

from minarmd.checkpoint import CheckpointError
from minarmd.checkpoint import load_model
from minarmd.kinds import build_model
from minarmd.optim import learning_rate
from minarmd.permutation import ProgressiveSchedule
from minarmd.train import _arg_parser, main
from minarmd.train_config import TrainConfig, parse_step
from minarmd.training import finetune_sbp, train_model

SMALL = dict(n_layer=2, n_head=2, n_embd=32, seq_len=32, batch_size=4, max_steps=12,
             warmup=3, eval_every=6, eval_windows=4, ckpt_every=5, i_ar=2, i_perm=8, rho=4)


def losses(out):
    return [r["loss"] for r in map(json.loads, open(out / "metrics.jsonl")) if "loss" in r]


class Interrupt:
    """on_step hook that presses Ctrl-C after a given step."""

    def __init__(self, at):
        self.at = at

    def __call__(self, step, record):
        if step == self.at:
            raise KeyboardInterrupt


@pytest.mark.parametrize("model, extra", [("armd", {}), ("mdm", {"ema": 0.9}), ("ar", {"dropout": 0.1}),
                                          ("armd", {"order": "sbp", "grad_accum": 2})])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, model, extra):
    """Ctrl-C after step 7 (checkpoint at 5 is older) then --resume: identical losses, bit for bit."""
    cfg = TrainConfig.from_preset(model=model, out=str(tmp_path / "full"), **SMALL, **extra)
    train_model(cfg)
    cut = TrainConfig.from_preset(model=model, out=str(tmp_path / "cut"), **SMALL, **extra)
    with pytest.raises(KeyboardInterrupt):
        train_model(cut, on_step=Interrupt(7))
    assert torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=False)["step"] == 7
    assert len(losses(tmp_path / "cut")) == 7
    train_model(cut, resume=True)
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")
    assert len(losses(tmp_path / "full")) == 12
    full, _, _ = load_model(tmp_path / "full" / "ckpt.pt")
    resumed, _, _ = load_model(tmp_path / "cut" / "ckpt.pt")
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


class Crash:
    """on_step hook that kills the run after a step without any chance to save (like kill -9)."""

    def __call__(self, step, record):
        if step == 7:
            raise RuntimeError("simulated crash")


def test_resume_after_a_crash_redoes_the_steps_past_the_checkpoint(tmp_path):
    """Crash after step 7 with the last checkpoint at 5: resuming re-runs 6 and 7, logged once."""
    train_model(TrainConfig.from_preset(out=str(tmp_path / "full"), **SMALL))
    cfg = TrainConfig.from_preset(out=str(tmp_path / "cut"), **SMALL)
    with pytest.raises(RuntimeError, match="simulated"):
        train_model(cfg, on_step=Crash())
    assert torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=False)["step"] == 5
    train_model(cfg, resume=True)
    steps = [r["step"] for r in map(json.loads, open(tmp_path / "cut" / "metrics.jsonl")) if "loss" in r]
    assert steps == list(range(1, 13))
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")


def test_it_learns_and_writes_its_outputs(tmp_path):
    cfg = TrainConfig.from_preset(out=str(tmp_path), **{**SMALL, "max_steps": 60, "lr": 3e-3, "eval_every": 30})
    summary = train_model(cfg)
    curve = losses(tmp_path)
    assert sum(curve[-10:]) / 10 < sum(curve[:10]) / 10 - 0.5  # 60 steps on characters: a clear drop
    assert (tmp_path / "loss.png").stat().st_size > 1000
    assert summary["final_val"] is not None and summary["tokens_per_s"] > 0


def test_sbp_fine_tuning_starts_from_a_checkpoint(tmp_path):
    train_model(TrainConfig.from_preset(out=str(tmp_path / "base"), **SMALL))
    base, _, _ = load_model(tmp_path / "base" / "ckpt.pt")
    cfg = TrainConfig.from_preset(out=str(tmp_path / "sbp"), order="sbp", init_from=str(tmp_path / "base" / "ckpt.pt"),
                                  **{**SMALL, "max_steps": 1, "lr": 1e-12, "warmup": 0})
    train_model(cfg)
    tuned, _, _ = load_model(tmp_path / "sbp" / "ckpt.pt")
    for a, b in zip(base.parameters(), tuned.parameters()):
        assert torch.allclose(a, b, atol=1e-6)  # lr ~ 0: the weights came from the base run


def test_finetune_sbp_copies_the_model_settings_and_trains_on_strided_orders(tmp_path):
    train_model(TrainConfig.from_preset(out=str(tmp_path / "base"), **SMALL))
    summary = finetune_sbp(tmp_path / "base" / "ckpt.pt", tmp_path / "sbp", max_steps=3, streams=(2, 4))
    tuned, cfg, _ = load_model(tmp_path / "sbp" / "ckpt.pt")
    assert (cfg.order, cfg.sbp_streams, cfg.n_embd, cfg.seq_len) == ("sbp", (2, 4), 32, 32)
    assert summary["steps"] == 3 and cfg.init_from == str(tmp_path / "base" / "ckpt.pt")
    with pytest.raises(ValueError, match="needs an ARMD checkpoint"):
        train_model(TrainConfig.from_preset(out=str(tmp_path / "ar"), model="ar",
                                            **{**SMALL, "max_steps": 1, "warmup": 1}))
        finetune_sbp(tmp_path / "ar" / "ckpt.pt", tmp_path / "x")
    with pytest.raises(ValueError, match="n_embd=32"):  # a config that cannot load those weights
        train_model(TrainConfig.from_preset(out=str(tmp_path / "wide"), order="sbp", init_from=str(tmp_path / "base" / "ckpt.pt"),
                          **{**SMALL, "n_embd": 64}))


def test_runs_saved_before_pe_init_load_as_they_were_made(tmp_path):
    """Checkpoints from before ``pe_init`` (a random PE of width d_pe, the conversions' ``adapt_pe_init``)
    load, fine-tune and explain a resume; the default now is the neighbours table (d_pe = seq_len + 1)."""
    from minarmd.checkpoint import load_checkpoint, save_checkpoint

    train_model(TrainConfig.from_preset(out=str(tmp_path / "old"), pe_init="random", d_pe=8, **SMALL))
    path = tmp_path / "old" / "ckpt.pt"
    state = load_checkpoint(path)
    del state["config"]["pe_init"]  # what such a checkpoint held: d_pe 8, no pe_init, the former name
    state["config"]["adapt_pe_init"] = "neighbours"
    save_checkpoint(path, state)
    model, cfg, _ = load_model(path)
    assert (cfg.pe_init, cfg.d_pe, tuple(model.prefix.pe.weight.shape)) == ("random", 8, (33, 8))
    assert torch.equal(model.prefix.pe.weight, state["model"]["prefix.pe.weight"])
    finetune_sbp(path, tmp_path / "sbp", max_steps=1)
    assert load_model(tmp_path / "sbp" / "ckpt.pt")[1].d_pe == 8
    with pytest.raises(ValueError, match="pe_init was 'random', now 'neighbours', d_pe was 8, now None"):
        train_model(TrainConfig.from_preset(out=str(tmp_path / "old"), **{**SMALL, "max_steps": 20}), resume=True)
    fresh = TrainConfig.from_preset(**SMALL)
    assert (fresh.pe_init, fresh.d_pe, fresh.network_config(65).d_pe) == ("neighbours", None, 33)
    with pytest.raises(ValueError, match=r"leave --d-pe out \(or pass --d-pe 33\), or pass --pe-init random"):
        TrainConfig.from_preset(**{**SMALL, "d_pe": 8})
    assert TrainConfig.from_preset(model="ar", **{**SMALL, "d_pe": 8}).d_pe == 8  # not ARMD's: not read


def test_learning_rate_schedule():
    cfg = TrainConfig.from_preset(lr=1.0, warmup=10, max_steps=110, min_lr_frac=0.1)
    assert learning_rate(cfg, 0) == pytest.approx(0.1) and learning_rate(cfg, 9) == pytest.approx(1.0)
    assert learning_rate(cfg, 110) == pytest.approx(0.1) and learning_rate(cfg, 60) == pytest.approx(0.55)
    assert learning_rate(TrainConfig.from_preset(lr=1.0, lr_decay="constant", warmup=0), 500) == 1.0


def test_presets_build_models_of_the_stated_size():
    cfg = TrainConfig.from_preset("gpt2-small")
    model = build_model(cfg, 50257)
    assert 120e6 < model.num_params() < 130e6  # GPT-2 small: 124M with tied embeddings
    assert cfg.batch_size * cfg.grad_accum * cfg.seq_len == 524_288  # the paper's 0.5M tokens/step
    medium = TrainConfig.from_preset("gpt2-medium")
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        big = build_model(medium, 50257)
    assert 350e6 < big.num_params() < 360e6  # GPT-2 medium: 355M
    assert (medium.n_layer, medium.n_embd, medium.n_head, medium.seq_len) == (24, 1024, 16, 1024)
    assert medium.batch_size * medium.grad_accum * medium.seq_len == 524_288  # same global batch
    assert (medium.i_ar, medium.i_perm, medium.rho, medium.lr) == (cfg.i_ar, cfg.i_perm, cfg.rho, cfg.lr)


def test_the_curriculum_scales_with_the_run():
    """i_ar / i_perm as floats are fractions of max_steps (the tiny preset: 1/3 and 3/4), as ints steps."""
    assert TrainConfig.from_preset("tiny").schedule == ProgressiveSchedule(200, 450, 4)  # 600 steps
    assert TrainConfig.from_preset("tiny", max_steps=1500).schedule == ProgressiveSchedule(500, 1125, 4)
    assert TrainConfig.from_preset("tiny", max_steps=1500, i_ar=300, i_perm=900).schedule == \
        ProgressiveSchedule(300, 900, 4)
    assert TrainConfig.from_preset("gpt2-small", max_steps=100_000).schedule == ProgressiveSchedule(9000, 48_000, 32)
    assert TrainConfig.from_preset("tiny", i_ar=1).i_ar_steps == 1  # an int is one step, not all of them
    assert TrainConfig.from_preset("tiny", i_ar=0.0, i_perm=1.0).schedule == ProgressiveSchedule(0, 600, 4)
    with pytest.raises(ValueError, match=r"i_ar=1.5: a float is a fraction of max_steps and must lie in \[0, 1\]"):
        TrainConfig.from_preset(i_ar=1.5)
    with pytest.raises(ValueError, match=r"i_perm=0.75 must be >= i_ar=0.8 \(steps 450 < 480\)"):
        TrainConfig.from_preset(i_ar=0.8)
    with pytest.raises(ValueError, match="rho=1 displaces no token"):
        TrainConfig.from_preset(rho=1)
    assert (parse_step("300"), parse_step("0.25"), parse_step("25%"), parse_step("1.0")) == (300, 0.25, 0.25, 1.0)
    assert isinstance(parse_step("300"), int) and isinstance(parse_step("1.0"), float)
    with pytest.raises(ValueError, match="expected a step"):
        parse_step("a third")
    args = _arg_parser().parse_args(["--i-ar", "0.2", "--i-perm", "900"])
    assert (args.i_ar, args.i_perm) == (0.2, 900)


def test_bad_requests_are_explained(tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.from_preset("huge")
    with pytest.raises(ValueError, match="model must be one of"):
        TrainConfig.from_preset(model="bert")
    with pytest.raises(ValueError, match="rho=200 exceeds seq_len"):
        TrainConfig.from_preset(rho=200, i_perm=500)
    with pytest.raises(ValueError, match="sbp_streams must divide"):
        TrainConfig.from_preset(order="sbp", sbp_streams=(3,))
    with pytest.raises(ValueError, match="DATASETS|unknown dataset|data must be one of"):
        train_model(TrainConfig.from_preset(data="wikipedia", out=str(tmp_path / "x"), **SMALL))
    with pytest.raises(ValueError, match="--resume: there is no checkpoint"):
        train_model(TrainConfig.from_preset(out=str(tmp_path / "none"), **SMALL), resume=True)
    train_model(TrainConfig.from_preset(out=str(tmp_path / "run"), **SMALL))
    with pytest.raises(ValueError, match="already exists"):
        train_model(TrainConfig.from_preset(out=str(tmp_path / "run"), **SMALL))
    with pytest.raises(ValueError, match="n_embd was 32, now 64"):
        train_model(TrainConfig.from_preset(out=str(tmp_path / "run"), **{**SMALL, "n_embd": 64}), resume=True)
    (tmp_path / "run" / "ckpt.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="corrupt|incomplete"):
        train_model(TrainConfig.from_preset(out=str(tmp_path / "run"), **SMALL), resume=True)


def test_cli(tmp_path, capsys):
    summary = main(["--model", "ar", "--data", "shakespeare", "--max-steps", "2", "--warmup", "1", "--n-layer",
                    "1", "--n-embd", "32", "--n-head", "2", "--seq-len", "16", "--batch-size", "2",
                    "--out", str(tmp_path)])
    assert summary["steps"] == 2 and '"steps": 2' in capsys.readouterr().out
    for argv, message in ((["--preset", "nope", "--out", str(tmp_path / "y")], "unknown preset"),
                          (["--model", "ar", "--max-steps", "2", "--warmup", "1", "--out", str(tmp_path)],
                           "already exists")):
        with pytest.raises(SystemExit) as exit_info:  # a user error: one line, status 2
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and message in err
        assert err.count("\n") == 1
