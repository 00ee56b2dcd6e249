"""Graph breaks of one training step's forward + loss under ``torch.compile`` (CPU, ``torch._dynamo.explain``).

A graph break splits the compiled step into several graphs with eager Python between them: on a GPU
each one is a place where the host may wait for the device (reading a tensor's value) and where the
compiler cannot fuse across. The target is one graph, no break, for every model the training presets
compile (``gpt2-small`` keeps ``validate_inputs=True`` and ``compile=True``).

The model is gpt2-small-shaped but narrow (default L=4, H=4, n_embd=64, N=64, vocab 50257, batch 2).
Cases (each its own fresh dynamo state):

* ``armd progressive``      -- ``loss.armd_loss(model, x, order, blocks)``, orders and (singleton) blocks
  from ``ProgressiveSchedule(...).sample`` past the ramp (k = rho shuffled tokens);
* ``armd progressive, None`` -- the same orders with ``blocks=None`` (the value-free singleton route);
* ``armd sbp S=2``           -- strided SBP orders ``strided_order(N, 2, B)`` (multi-token blocks);
* ``armd forward ...``       -- the model call alone: what training compiles (``torch.compile(model)``;
  ``armd_loss``'s own order check then runs eagerly), also with ``singleton=`` and ``attn_backend='dense'``;
* ``ar``  -- ``ar.ar_loss(model, x)``;  ``mdm`` -- ``mdm.mdm_loss(model, x, t=..., masked=...)``.

* ``... training step`` -- ``kinds.training_loss`` on ``kinds.draw_noise``'s inputs: what a step of
  ``training.train_model`` computes, for ARMD under every order family, AR and MDM.

What is left (torch 2.13): a bare ``armd_loss`` / model call with block ids and no ``singleton=``
reads the ids to choose the fused causal path (``attention.is_singleton``, rule 5: one ``.item()``,
counted once per frame it passes through). The training step never does: ``kinds.draw_noise`` says
whether its blocks are singletons (progressive, random, l2r: yes; sbp: S = 1; mask: no when N > T,
by pigeonhole), and ``armd_loss`` passes it on. Its permutation check steps aside while compiling.
``tests/test_compile.py`` asserts the zeros.

Run:  python benchmarks/graph_breaks.py            (about 15 s on 2 CPU cores)
      python benchmarks/graph_breaks.py --quick    (vocab 1000, the same table)
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from minarmd import ARMD, ARMDConfig, TransformerConfig  # noqa: E402
from minarmd import TrainConfig  # noqa: E402
from minarmd.ar import GPT, ar_loss  # noqa: E402
from minarmd.kinds import draw_noise, get_kind, training_loss  # noqa: E402
from minarmd.loss import armd_loss  # noqa: E402
from minarmd.mdm import MDM, mdm_loss  # noqa: E402
from minarmd.permutation import ProgressiveSchedule, strided_order  # noqa: E402

SHAPE = dict(n_layer=4, n_head=4, n_embd=64)


def cases(vocab_size: int = 50257, seq_len: int = 64, batch: int = 2):
    """(name, orders, function of no arguments) for every case of the table; weights seeded."""
    size = dict(vocab_size=vocab_size, max_len=seq_len, **SHAPE)
    torch.manual_seed(0)
    armd = ARMD(ARMDConfig(**size))  # validate_inputs=True, attn_backend="auto", as in gpt2-small
    torch.manual_seed(0)
    armd_dense = ARMD(ARMDConfig(**size, attn_backend="dense"))
    gpt, mdm = GPT(TransformerConfig(**size)), MDM(TransformerConfig(**size))
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, vocab_size, (batch, seq_len), generator=g)  # (B, N)
    order, blocks = ProgressiveSchedule(i_ar=0, i_perm=1, rho=8).sample(5, batch, seq_len, g)
    s_order, s_blocks = strided_order(seq_len, 2, batch)
    t = torch.full((batch,), 0.5, dtype=torch.float64)
    masked = torch.rand(batch, seq_len, generator=g) < 0.5  # (B, N)
    tokens, s_tokens = x.gather(1, order), x.gather(1, s_order)
    return [
        ("armd", "progressive", lambda: armd_loss(armd, x, order, blocks)),
        ("armd", "progressive, blocks=None", lambda: armd_loss(armd, x, order, None)),
        ("armd", "sbp S=2", lambda: armd_loss(armd, x, s_order, s_blocks)),
        ("armd forward", "progressive", lambda: armd(tokens, order, blocks)),
        ("armd forward", "progressive, blocks=None", lambda: armd(tokens, order, None)),
        ("armd forward", "progressive, singleton=True", lambda: armd(tokens, order, blocks, singleton=True)),
        ("armd forward", "sbp S=2", lambda: armd(s_tokens, s_order, s_blocks)),
        ("armd forward", "sbp S=2, singleton=False", lambda: armd(s_tokens, s_order, s_blocks, singleton=False)),
        ("armd forward, attn_backend='dense'", "sbp S=2", lambda: armd_dense(s_tokens, s_order, s_blocks)),
        ("ar", "left to right", lambda: ar_loss(gpt, x)),
        ("mdm", "t=0.5, masked given", lambda: mdm_loss(mdm, x, t=t, masked=masked)),
    ] + training_steps(vocab_size, seq_len, batch)


def training_steps(vocab_size: int, seq_len: int, batch: int):
    """One micro-batch's loss as the training loop computes it: ``kinds.training_loss`` with the noise of
    ``kinds.draw_noise``, the gpt2-small recipe at this narrow shape, for every kind and ARMD order."""
    runs = []
    for model, order in (("armd", "progressive"), ("armd", "sbp"), ("armd", "mask"), ("armd", "random"),
                         ("armd", "l2r"), ("ar", "-"), ("mdm", "-")):
        cfg = TrainConfig.from_preset("gpt2-small", model=model, order="progressive" if order == "-" else order,
                                      seq_len=seq_len, batch_size=batch, rho=8, i_ar=0, i_perm=1, sbp_streams=(2,),
                                      **SHAPE)
        torch.manual_seed(0)
        net = get_kind(model).build(cfg, vocab_size)
        g = torch.Generator().manual_seed(1)
        x = torch.randint(0, vocab_size, (batch, seq_len), generator=g)
        noise = draw_noise(cfg, batch, seq_len, 5, g)
        runs.append((f"{model} training step", order,
                     lambda net=net, cfg=cfg, x=x, g=g, noise=noise: training_loss(net, cfg, x, 5, g, noise)))
    return runs


def explain(fn):
    """(graph count, graph breaks, reasons) of one call of ``fn`` traced by dynamo, from a clean state."""
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)  # the reasons are in the table
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = torch._dynamo.explain(fn)()
    reasons = []
    for b in out.break_reasons:
        frame = b.user_stack[-1] if b.user_stack else None
        where = f" ({Path(frame.filename).name}:{frame.lineno})" if frame is not None else ""
        reasons.append(b.reason.strip().splitlines()[0][:110] + where)
    return out.graph_count, out.graph_break_count, reasons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="vocab 1000 instead of 50257")
    args = parser.parse_args()
    vocab = 1000 if args.quick else 50257
    print(f"torch {torch.__version__}; L={SHAPE['n_layer']}, H={SHAPE['n_head']}, n_embd={SHAPE['n_embd']}, "
          f"N=64, vocab {vocab}, batch 2, CPU\n")
    print("| model | orders | graphs | graph breaks | break reasons |")
    print("|---|---|---|---|---|")
    t0 = time.perf_counter()
    for name, orders, fn in cases(vocab):
        try:
            graphs, breaks, reasons = explain(fn)
        except TypeError as error:  # an older checkout without the argument
            print(f"| {name} | {orders} | n/a | n/a | {type(error).__name__}: {error} |")
            continue
        print(f"| {name} | {orders} | {graphs} | {breaks} | {'; '.join(dict.fromkeys(reasons)) or '-'} |")
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
