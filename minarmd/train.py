"""``python -m minarmd.train``: the command line of the training loop (``training.train_model``).

    python -m minarmd.train --model armd --preset tiny --data shakespeare --max-steps 600 --out runs/armd
    python -m minarmd.train ... --resume                # continue from runs/armd/ckpt.pt
    torchrun --nproc_per_node 8 -m minarmd.train --preset gpt2-small --out runs/owt   # DDP

Every ``TrainConfig`` field is a flag (``--max-steps`` for ``max_steps``); flags left out keep the
preset's value. A bad flag, data set or checkpoint is one ``error: ...`` line and exit status 2
(``cli.py``; ``--debug`` shows the traceback). The summary is printed as JSON at the end.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import fields

from . import train_config, training
from .cli import run_cli
from .deprecated import moved


def _arg_parser() -> argparse.ArgumentParser:
    """Flags for every TrainConfig field (``--max-steps`` for max_steps); unset flags keep the preset."""
    parser = argparse.ArgumentParser(prog="python -m minarmd.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its ckpt.pt")
    parser.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    defaults = train_config.TrainConfig()
    for f in fields(train_config.TrainConfig):
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=int, nargs="+", default=None)
        else:
            parse = int if f.name == "n_two_stream" else train_config.parse_step if f.type == "int | float" \
                else {int: int, float: float}.get(type(default), str)
            parser.add_argument(flag, type=parse, default=None,
                                help=f"(tiny preset: {default})")
    return parser


def main(argv: list[str] | None = None) -> dict:
    return run_cli(_arg_parser(), argv, _run)


def _run(args: argparse.Namespace) -> dict:
    values = {k: v for k, v in vars(args).items() if k not in ("resume", "overwrite", "debug")}
    cfg = train_config.TrainConfig.from_preset(values.pop("preset") or "tiny", **values)
    summary = training.train_model(cfg, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return summary


# Old import paths (``from minarmd.train import train, make_config, ...``) for one release:
__getattr__ = moved(__name__, {
    "train": "minarmd.training:train_model", "finetune_sbp": "minarmd.training:finetune_sbp",
    "TrainConfig": "minarmd.train_config:TrainConfig", "make_config": "minarmd.train_config:TrainConfig.from_preset",
    "PRESETS": "minarmd.train_config:PRESETS", "SHAPE_FIELDS": "minarmd.train_config:SHAPE_FIELDS",
    "RESUMABLE": "minarmd.train_config:RESUMABLE", "MODELS": "minarmd.kinds:KINDS", "ORDERS": "minarmd.kinds:ORDERS",
    "build_model": "minarmd.kinds:build_model", "draw_noise": "minarmd.kinds:draw_noise",
    "training_loss": "minarmd.kinds:training_loss", "load_model": "minarmd.checkpoint:load_model",
    "learning_rate": "minarmd.optim:learning_rate", "make_optimizer": "minarmd.optim:make_optimizer",
    "EMA": "minarmd.optim:EMA", "plot_losses": "minarmd.metrics:save_loss_plot"})

if __name__ == "__main__":
    main()
