"""Text in, text out (`textgen.generate_text`) and its CLI (`python -m minarmd.sample`)."""
import pytest
import torch

from minarmd.sample import main
from minarmd.textgen import generate_text
from minarmd.tokenizer import GPT2Tokenizer
from minarmd.checkpoint import load_model
from minarmd.train_config import TrainConfig
from minarmd.training import train_model

TINY = dict(n_layer=2, n_head=2, n_embd=32, seq_len=32, batch_size=4, max_steps=2, warmup=1,
            eval_every=0, eval_windows=2, ckpt_every=10, i_ar=1, i_perm=2, rho=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Checkpoints of all three kinds, trained for 2 steps on the embedded Shakespeare (characters)."""
    root = tmp_path_factory.mktemp("runs")
    for kind in ("armd", "ar", "mdm"):
        train_model(TrainConfig.from_preset(model=kind, out=str(root / kind), **TINY), overwrite=True)
    return root


def test_text_in_text_out_for_every_model_kind(runs):
    for kind, kwargs in (("armd", dict(streams=2)), ("ar", {}), ("mdm", dict(steps=5))):
        model, _, tok = load_model(runs / kind / "ckpt.pt")
        out = generate_text(model, tok, prompt="ROMEO:", max_new_tokens=12, n=3, seed=1, **kwargs)
        assert len(out.samples) == 3 and out.calls >= 1 and out.seconds > 0
        for s in out.samples:
            assert s.text.startswith("ROMEO:") and s.text == s.prompt + s.new_text and len(s.new_text) == 12
            assert len(s.logprobs) == 12 and all(lp <= 0 for lp in s.logprobs)
        again = generate_text(model, tok, prompt="ROMEO:", max_new_tokens=12, n=3, seed=1, **kwargs)
        assert again.texts == out.texts  # the seed fixes the samples


def test_prompts_of_different_lengths_and_a_suffix(runs):
    model, _, tok = load_model(runs / "armd" / "ckpt.pt")
    out = generate_text(model, tok, prompt=["A", "KING HENRY:"], suffix=" lord.", max_new_tokens=8, n=2,
                        streams=2, seed=0)
    assert [s.prompt for s in out.samples] == ["A", "A", "KING HENRY:", "KING HENRY:"]
    assert all(s.text.endswith(" lord.") and len(s.new_text) == 8 for s in out.samples)
    assert out.calls == 2 + 8 // 2 - 1  # every row has 8 free positions (rows alone: tests/test_cache.py)
    assert out.generation.tokens.shape == (4, 11 + 8 + 6) and (out.generation.tokens[:2, 15:] == -2).all()


def test_the_callback_sees_every_call(runs):
    model, _, tok = load_model(runs / "armd" / "ckpt.pt")
    steps = []
    out = generate_text(model, tok, prompt="To be", max_new_tokens=8, streams=4, callback=steps.append)
    assert len(steps) == out.calls == 4 + 2 - 1 and steps[-1].sequence.shape == (1, 13)


def test_stop_at_end_of_text_with_gpt2_ids():
    # a random GPT-2-vocabulary ARMD whose end-of-text logit is raised: every sample stops early
    from minarmd import ARMD, ARMDConfig
    torch.manual_seed(0)
    model = ARMD(ARMDConfig(vocab_size=50257, max_len=24, n_layer=2, n_head=2, n_embd=16, d_pe=8, pe_init="random")).eval()
    bonus = torch.zeros(50257)
    bonus[50256] = 15.0  # p(<|endoftext|>) ~ e^15 / (e^15 + 50256) = 0.94 at every position
    model.lm_head.register_forward_hook(lambda module, inputs, logits: logits + bonus)
    tok = GPT2Tokenizer()
    out = generate_text(model, tok, prompt="Hello", max_new_tokens=16, n=2, seed=0)
    assert out.calls < 16 and all("<|endoftext|>" not in s.text for s in out.samples)
    assert all(len(s.token_ids) < 16 for s in out.samples)
    full = generate_text(model, tok, prompt="Hello", max_new_tokens=16, n=2, seed=0, stop=False)
    assert full.calls == 16 and all(len(s.token_ids) == 16 for s in full.samples)


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompt="x" * 40), "no room for new tokens in the model's max_len=32"),
    (dict(prompt="ROMEO", max_new_tokens=20, suffix="y" * 10), "exceeds the model's max_len"),
    (dict(prompt=""), "prompt is an empty string"),
    (dict(suffix=""), "suffix is an empty string"),
    (dict(prompt="ROMEO \u00e9\u4e2d"), "prompt: text contains 2 character"),
    (dict(prompt=["ok", "\u00e9"]), r"prompt\[1\]: text contains"),
    (dict(prompt="ROMEO", streams=40), "streams"),
    (dict(prompt="ROMEO", max_new_tokens=0), "max_new_tokens"),
    (dict(prompt="ROMEO", n=0), "n \\(samples per prompt\\)"),
    (dict(prompt="ROMEO", steps=4), "steps is the MDM"),
])
def test_bad_input_gets_one_clear_error(runs, kwargs, match):
    model, _, tok = load_model(runs / "armd" / "ckpt.pt")
    with pytest.raises(ValueError, match=match):
        generate_text(model, tok, **kwargs)


def test_baselines_refuse_what_they_cannot_do(runs):
    ar, _, tok = load_model(runs / "ar" / "ckpt.pt")
    with pytest.raises(ValueError, match="given tokens must form a prompt"):
        generate_text(ar, tok, prompt="A", suffix="B", max_new_tokens=4)
    with pytest.raises(ValueError, match="generates left to right"):
        generate_text(ar, tok, prompt="A", streams=2)


def test_cli_prints_samples_calls_and_seconds(runs, capsys):
    main(["--ckpt", str(runs / "armd" / "ckpt.pt"), "--prompt", "ROMEO:", "--streams", "2", "--n", "3",
          "--max-new-tokens", "10"])
    out = capsys.readouterr().out
    assert out.count("--- sample ") == 3 and out.count("ROMEO:") == 3
    assert "3 samples: 6 network calls" in out and " s (S = 2, order l2r" in out  # 2 + 10/2 - 1 calls
    main(["--ckpt", str(runs / "mdm" / "ckpt.pt"), "--steps", "4", "--max-new-tokens", "8"])
    assert "MDM baseline" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["--ckpt", "missing.pt"], "no checkpoint at missing.pt"),
    (["--ckpt", "{ar}", "--streams", "2"], "--streams and --order are ARMD's; .* is an AR baseline"),
    (["--ckpt", "{armd}", "--steps", "8"], "--steps is the MDM baseline's"),
    (["--ckpt", "{armd}", "--prompt", "\u00e9"], "prompt: text contains 1 character"),
    (["--ckpt", "{armd}", "--prompt", "x" * 33], "no room for new tokens in the model's max_len=32"),
    (["--ckpt", "{armd}", "--prompt", "x" * 20, "--max-new-tokens", "20"], "exceeds the model's max_len=32"),
    (["--ckpt", "{armd}", "--streams", "99"], "streams=99 exceeds"),
    (["--ckpt", "{armd}", "--device", "cuda"], "no CUDA GPU" if not torch.cuda.is_available() else "zzz"),
    (["--ckpt", "{notckpt}"], "corrupt or incomplete"),
])
def test_cli_errors_are_one_line_and_exit_2(runs, capsys, argv, match, tmp_path):
    if "zzz" in match:
        pytest.skip("a GPU is present")
    (tmp_path / "notckpt.pt").write_text("not a checkpoint")
    argv = [a.format(ar=runs / "ar" / "ckpt.pt", armd=runs / "armd" / "ckpt.pt", notckpt=tmp_path / "notckpt.pt")
            for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    import re
    assert re.search(match, err), err
