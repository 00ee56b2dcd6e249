"""Checkers for exercises/08_from_gpt_to_armd.ipynb: the GPT's view of the content stream, where each
GPT layer goes, a whole state-dict conversion, a neighbour PE table and steps to a target loss.

The ground truth is the library's conversion (``adapt.armd_from_gpt``) and what it computes: an
answer is right when the GPT's hidden states, the converted weights or the Gram matrix say so.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from . import CheckFailed, attempt, exercise, expect_raises, expect_tensor, hinted, same, short
from ..adapt import NEW_PARAMETERS, armd_from_gpt
from ..ar import GPT
from ..config import ARCHS, TransformerConfig
from ..metrics import read_metrics

_V = 11  # vocabulary of the small GPTs below (BOS is id 11)


def _gpt(n_layer: int = 3, seed: int = 0, max_len: int = 9, **fields) -> GPT:
    """A small float64 GPT with seeded random weights (biases drawn too, so that none is zero)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gpt = GPT(TransformerConfig(vocab_size=_V, max_len=max_len, n_layer=n_layer, n_head=2, n_embd=8,
                                    **fields)).double().eval()
        with torch.no_grad():
            for name, p in gpt.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0.0, 0.1)
    return gpt


def _pair(got, case: str, what: str) -> tuple:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise CheckFailed(f"returned {short(got)}; expected a pair ({what}) ({case})")
    return tuple(got)


# ---- 08.1 -------------------------------------------------------------------------------------

def _orders(N: int) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    random = torch.stack([torch.randperm(N, generator=g) for _ in range(3)])
    return [("left to right", torch.arange(N).expand(3, N).clone()),
            ("reversed", torch.arange(N - 1, -1, -1).expand(3, N).clone()),
            ("a random order per row", random),
            ("one row, [2, 0, 1]", torch.tensor([[2, 0, 1]]))]


def _bos_hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
    if same(got[:, 1:], expected[:, 1:]):
        return "only the first column differs: it must hold the GPT's own BOS id (bos_id), not 0"
    return None


def _unshifted_hint(order: torch.Tensor):
    def hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
        if same(got[:, 1:], order):
            return "BOS takes position 0, so each listed token sits one position later than in order"
        return None
    return hint


@exercise("08.1", "the GPT's view of ARMD's content stream", difficulty=2, importance=4, minutes=15)
def check_gpt_view(fn):
    gpt = _gpt(n_layer=2)
    armd = armd_from_gpt(gpt, n_two_stream=2).eval()
    N = gpt.cfg.max_len
    x = torch.randint(_V, (3, N), generator=torch.Generator().manual_seed(1))
    cases = _orders(N) + [("one token", torch.zeros(2, 1, dtype=torch.long))]
    for name, order in cases:
        n = order.shape[1]
        listed = x[:order.shape[0], :n].gather(1, order)  # (B, n) tokens in generation order
        case = f"{name}, order {short(order[0], 40)}"
        got = attempt(fn, listed.clone(), order.clone(), gpt.bos_id, case=case)
        tokens, pos = _pair(got, case, "tokens, positions")
        B = order.shape[0]
        expect_tensor("tokens", tokens, torch.cat([torch.full((B, 1), gpt.bos_id), listed], 1), case=case,
                      hints=[_bos_hint])
        expect_tensor("positions", pos, torch.cat([torch.zeros(B, 1, dtype=torch.long), order + 1], 1), case=case,
                      hints=[_unshifted_hint(order)])
        # what the view is for: the GPT's hidden states of it are ARMD's content stream, layer by layer
        with torch.no_grad():
            content = armd.content_states(listed, order)
            hidden = gpt.net.hidden_states(tokens[:, :N], pos=pos[:, :N])
        worst = max((a[:, :N] - b).abs().max().item() for a, b in zip(content, hidden))
        if not worst <= 1e-10:
            raise CheckFailed(f"the GPT's hidden states of your view differ from ARMD's content stream by "
                              f"{worst:.3g} ({case})")
    return (f"{len(cases)} orders: the GPT's hidden states of your view equal ARMD.content_states "
            f"(every layer, <= 1e-10)")


# ---- 08.2 -------------------------------------------------------------------------------------

def _module_of_layer(armd, block) -> str:
    """The name of the ARMD module holding ``block``'s weights after the library's conversion."""
    wanted = [p for _, p in block.named_parameters()]
    for group in ("two_stream", "causal"):
        for j, module in enumerate(getattr(armd, group)):
            mine = [p for _, p in module.named_parameters()]
            if len(mine) == len(wanted) and all(torch.equal(a, b) for a, b in zip(mine, wanted)):
                return f"{group}.{j}"
    raise RuntimeError("the conversion lost a layer")  # a library bug, not the learner's


@exercise("08.2", "the ARMD module that takes GPT layer i", difficulty=1, importance=3, minutes=5)
def check_layer_name(fn):
    shapes = [(4, 2), (4, 0), (4, 4), (3, 1), (1, 1), (1, 0), (6, 3)]
    for n_layer, n_two_stream in shapes:
        gpt = _gpt(n_layer=n_layer, seed=n_layer)
        armd = armd_from_gpt(gpt, n_two_stream=n_two_stream)
        for i, block in enumerate(gpt.net.blocks):
            case = f"layer i={i}, n_layer={n_layer}, n_two_stream={n_two_stream}"
            got = attempt(fn, i, n_two_stream, case=case)
            expected = _module_of_layer(armd, block)
            if not isinstance(got, str):
                raise CheckFailed(f"returned a {type(got).__name__} ({short(got)}), expected a module name "
                                  f"like {expected!r} ({case})")
            if got != expected:
                hint = None
                if got == f"causal.{i}" and expected.startswith("causal."):
                    hint = "the causal stack counts its layers from 0: subtract the layers the two-stream stack took"
                elif got == f"two_stream.{i}" and i == n_two_stream:
                    hint = "layer n_two_stream is already the first causal one (< vs <=?)"
                raise CheckFailed(hinted(f"got {got!r}, but armd_from_gpt puts GPT layer {i} into {expected!r} "
                                         f"({case})", hint))
    return f"every layer of {len(shapes)} shapes names the module armd_from_gpt copies it into"


# ---- 08.3 -------------------------------------------------------------------------------------

def _bos_row_hint(wte: torch.Tensor):
    def hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
        if same(got, wte[0]):
            return "that is row 0 of the GPT's embedding: BOS is its last row"
        return None
    return hint


@exercise("08.3", "a GPT state dict converted into ARMD's", difficulty=3, importance=4, minutes=25)
def check_convert_state_dict(fn):
    cases = [("RoPE, 3 layers, n_two_stream=1", 3, 1, {}),
             ("RoPE, 2 layers, n_two_stream=2", 2, 2, {}),
             ("RoPE, 2 layers, n_two_stream=0", 2, 0, {}),
             ("untied head (tie_weights=False)", 2, 1, {"tie_weights": False}),
             ("GPT-2 architecture (learned positions, biases)", 3, 2, ARCHS["gpt2"])]
    for name, n_layer, n_two_stream, fields in cases:
        gpt = _gpt(n_layer=n_layer, seed=len(name), **fields)
        state = {k: v.clone() for k, v in gpt.state_dict().items()}
        case = f"{name}"
        got = attempt(fn, state, n_layer, n_two_stream, case=case)
        armd = armd_from_gpt(gpt, n_two_stream=n_two_stream)
        expected = {k: v for k, v in armd.state_dict().items() if k not in NEW_PARAMETERS}
        if not isinstance(got, dict):
            raise CheckFailed(f"returned a {type(got).__name__}, expected a dict of ARMD parameter name -> "
                              f"tensor ({case})")
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        if set(NEW_PARAMETERS) & set(extra):
            raise CheckFailed(f"your dict holds {sorted(set(NEW_PARAMETERS) & set(extra))}: that table is new, "
                              f"the GPT has nothing to give it; leave it out ({case})")
        if missing:
            raise CheckFailed(f"missing ARMD names {missing[:4]}{' ...' if len(missing) > 4 else ''} ({case})")
        if extra:
            raise CheckFailed(f"names ARMD does not have: {extra[:4]}{' ...' if len(extra) > 4 else ''} ({case})")
        for key, value in expected.items():
            mine = got[key]
            if key in ("wte.weight", "lm_head.weight") and isinstance(mine, torch.Tensor) \
                    and tuple(mine.shape) == (value.shape[0] + 1, *value.shape[1:]):
                raise CheckFailed(hinted(f"{key} shape: got {tuple(mine.shape)}, expected {tuple(value.shape)} "
                                         f"(case: {case})", "the GPT's vocabulary has one row more, BOS's (the "
                                         "last): ARMD keeps it apart, as 'bos'"))
            hints = [_bos_row_hint(state["net.wte.weight"])] if key == "bos" else []
            expect_tensor(key, mine, value, case=case, hints=hints)
    return f"{len(cases)} GPTs: every name and tensor equals armd_from_gpt's state dict (PE left out)"


# ---- 08.4 -------------------------------------------------------------------------------------

@exercise("08.4", "a PE table whose Gram matrix links neighbours only", difficulty=4, importance=2, minutes=30)
def check_neighbour_table(fn):
    cases = [(2, 2), (3, 3), (5, 5), (5, 8), (9, 12), (65, 65), (1, 1), (1, 4)]
    for n, d in cases:
        case = f"n_positions={n}, d_pe={d}"
        table = attempt(fn, n, d, case=case)
        if not isinstance(table, torch.Tensor):
            raise CheckFailed(f"returned a {type(table).__name__}, expected a ({n}, {d}) float64 tensor ({case})")
        if table.shape != (n, d):
            raise CheckFailed(f"shape: got {tuple(table.shape)}, expected ({n}, {d}): one row per position, "
                              f"d_pe columns ({case})")
        if table.dtype != torch.float64:
            raise CheckFailed(f"dtype: got {table.dtype}, expected torch.float64 ({case})")
        if not torch.isfinite(table).all():
            raise CheckFailed(f"the table contains NaN or inf ({case})")
        gram = table @ table.T
        p, q = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        target = ((p - q).abs() == 1).double()
        off = p != q
        error = ((gram - target).abs() * off).max().item() if n > 1 else 0.0
        if error > 1e-9:
            bad = ((gram - target).abs() * off).argmax().item()
            i, j = divmod(bad, n)
            want = "1 (neighbours)" if abs(i - j) == 1 else "0 (not neighbours)"
            raise CheckFailed(f"<PE_{i}, PE_{j}> = {gram[i, j].item():.6g}, expected {want}; largest error "
                              f"{error:.3g} over the pairs p != q ({case})")
    for n, d in [(5, 1), (8, 2), (6, 3)]:  # at most n - 2 columns: no table can do it
        expect_raises(fn, (n, d), ValueError, f"n_positions={n}, d_pe={d} (too few columns for any such table)")
    return (f"{len(cases)} sizes: <PE_p, PE_q> = [|p - q| = 1] for every p != q (<= 1e-9), and impossible "
            f"sizes raise ValueError")


# ---- 08.5 -------------------------------------------------------------------------------------

def _first_within(records, target: float, rel: float):
    for rec in records:
        if "val" in rec and rec["val"] <= (1 + rel) * target:
            return rec["step"]
    return None


def _curve(vals, every: int = 10, loss: float = 9.0) -> list[dict]:
    """Records like metrics.jsonl: a training record per step, a validation record every ``every``."""
    records = []
    for k, v in enumerate(vals, start=1):
        for s in range((k - 1) * every + 1, k * every + 1):
            records.append({"step": s, "loss": loss if s % 3 else 0.5, "lr": 1e-3})
        records.append({"step": k * every, "val": v, "protocol": "l2r"})
    return records


@exercise("08.5", "the first step whose validation loss is within rel of a target", difficulty=1, importance=2,
          minutes=10)
def check_steps_to_within(fn):
    falling = _curve([3.0, 2.6, 2.2, 2.05, 2.03, 1.99])
    cases = [("a falling curve, rel=0.01", falling, 2.0, 0.01),
             ("the same, rel=0.05", falling, 2.0, 0.05),
             ("the same, rel=0 (must reach the target itself)", falling, 2.0, 0.0),
             ("never reached", falling, 1.5, 0.01),
             ("reached at the first validation", falling, 3.0, 0.0),
             ("exactly on the boundary counts", _curve([2.75, 2.5, 1.0]), 2.0, 0.25),
             ("a curve that dips, rises, dips", _curve([2.5, 1.9, 2.4, 1.8]), 2.0, 0.0),
             ("training records only", [{"step": 1, "loss": 0.1}, {"step": 2, "loss": 0.1}], 2.0, 0.01),
             ("no records", [], 2.0, 0.01)]
    for name, records, target, rel in cases:
        case = f"{name}: target={target}, rel={rel}"
        got = attempt(fn, [dict(r) for r in records], target, rel, case=case)
        expected = _first_within(records, target, rel)
        if expected is None and got is not None:
            raise CheckFailed(f"got {short(got)}, expected None: no validation record is within rel ({case})")
        if expected is not None:
            if isinstance(got, bool) or not isinstance(got, int):
                raise CheckFailed(f"returned {short(got)}, expected the step {expected} (an int) ({case})")
            if got != expected:
                hint = None
                steps = {r["step"] for r in records if "val" in r and r["val"] <= (1 + rel) * target}
                if got not in {r["step"] for r in records if "val" in r}:
                    hint = "that step has no validation record: training losses do not count"
                elif any(r.get("step") == expected and r.get("val") == (1 + rel) * target for r in records):
                    hint = "a validation loss exactly at (1 + rel) x target counts (<=, not <)"
                elif got in steps:
                    hint = "that is a later step within rel: the answer is the first one"
                raise CheckFailed(hinted(f"got step {got}, expected step {expected} ({case}; only records with a "
                                         f"'val' key count, and the first one with val <= (1 + rel) x target)", hint))
    with tempfile.TemporaryDirectory() as tmp:  # a real metrics file, read with the library's reader
        path = Path(tmp) / "metrics.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in falling))
        records = read_metrics(path)
    got = attempt(fn, records, 2.0, 0.02, case="records from metrics.read_metrics")
    if got != _first_within(records, 2.0, 0.02):
        raise CheckFailed(f"got {short(got)} on the records of a metrics.jsonl file (read_metrics), expected "
                          f"{_first_within(records, 2.0, 0.02)}")
    return f"{len(cases) + 1} record lists (one read from a metrics.jsonl file) give the expected step"
