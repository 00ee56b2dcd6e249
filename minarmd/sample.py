"""``python -m minarmd.sample``: text from a checkpoint, printed with its network calls and seconds.

    python -m minarmd.sample --ckpt runs/quickstart/ckpt.pt --prompt "ROMEO:" --streams 2 --n 3
    python -m minarmd.sample --ckpt runs/armd/ckpt.pt --prompt "KING:" --suffix "my lord." --max-new-tokens 40
    python -m minarmd.sample --ckpt runs/mdm/ckpt.pt --steps 64 --n 2

Any checkpoint of ``python -m minarmd.train`` (ARMD, AR or MDM) with a tokenizer. ``--streams``
and ``--order`` are ARMD's, ``--steps`` is MDM's. Every user error is one ``error: ...`` line and
exit status 2 (``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse

import torch

from .checkpoint import load_model
from .cli import run_cli
from .kinds import kind_of
from .textgen import generate_text

# the CLI's flags for the kind-specific sampler settings (kinds.ModelKind.settings)
FLAGS = {"streams": "--streams", "order": "--order", "steps": "--steps"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minarmd.sample", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="checkpoint file (e.g. runs/quickstart/ckpt.pt)")
    p.add_argument("--prompt", default=None, help="text the samples start with (default: none)")
    p.add_argument("--suffix", default=None, help="text the samples end with (ARMD, MDM: infilling)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="new tokens per sample (default: fill max_len)")
    p.add_argument("--n", type=int, default=1, help="number of samples")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--streams", type=int, default=1, help="S: strided block-parallel streams (ARMD)")
    p.add_argument("--order", choices=("l2r", "random"), default="l2r", help="generation order (ARMD)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (MDM; default: one per new token)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-stop", action="store_true", help="do not cut at the end-of-text token")
    p.add_argument("--no-cache", action="store_true", help="re-run the network on the whole prefix per call")
    p.add_argument("--no-ema", action="store_true", help="the raw weights, not the EMA ones")
    p.add_argument("--device", default="cpu")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def main(argv: list[str] | None = None):
    return run_cli(build_parser(), argv, run)  # user errors: one ``error:`` line, exit status 2


def run(args):
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA GPU is available here; use --device cpu")
    model, cfg, tok = load_model(args.ckpt, use_ema=not args.no_ema, device=args.device)
    if tok is None:
        raise ValueError(f"{args.ckpt} has no tokenizer (trained on synthetic token ids): it has no text to "
                         f"print; sample ids with minarmd.sampler.generate / sample_ar / sample_mdm instead")
    kind = kind_of(model)
    _, owner = kind.foreign({name: getattr(args, name) for name in FLAGS})  # another kind's flag, set
    if owner is not None:
        flags = " and ".join(FLAGS.get(name, "--" + name) for name in owner.settings)
        raise ValueError(f"{flags} {'are' if len(owner.settings) > 1 else 'is'} {owner.possessive}; "
                         f"{args.ckpt} is an {kind.label}")
    out = generate_text(model, tok, prompt=args.prompt, suffix=args.suffix, max_new_tokens=args.max_new_tokens,
                        n=args.n, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                        streams=args.streams, order=args.order, steps=args.steps, seed=args.seed,
                        stop=not args.no_stop, cache=not args.no_cache)
    print(f"{args.ckpt}: {kind.label}, {model.num_params() / 1e6:.2f}M parameters, "
          f"{tok.name} tokenizer ({tok.vocab_size} ids), max_len {model.cfg.max_len}")
    for i, s in enumerate(out.samples):
        mean = sum(s.logprobs) / len(s.logprobs) if s.logprobs else float("nan")
        print(f"--- sample {i + 1} of {len(out.samples)}: {len(s.token_ids)} new tokens, "
              f"mean log-prob {mean:.3f} nats/token ---")
        print(s.text)
    how = kind.describe({name: getattr(args, name, unused) for name, unused in kind.settings.items()})
    print(f"--- {len(out.samples)} samples: {out.calls} network calls, {out.seconds:.2f} s "
          f"({how}, temperature {args.temperature}, seed {args.seed}) ---")
    return out


if __name__ == "__main__":
    main()
