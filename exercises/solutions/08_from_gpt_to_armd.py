"""Solutions to exercises/08_from_gpt_to_armd.ipynb (try the exercises first!).

Each function is checked by ``minarmd.check.check("08.k", function)`` against ``minarmd.adapt``'s
conversion: the GPT's hidden states, the converted weights, the Gram matrix of the PE table.
"""
from __future__ import annotations

import torch


def gpt_view(tokens_listed: torch.Tensor, order: torch.Tensor, bos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """08.1: the GPT input whose hidden states are ARMD's content stream: [BOS, listed] at [0, order + 1]."""
    B = tokens_listed.shape[0]
    bos = torch.full((B, 1), bos_id, dtype=torch.long, device=tokens_listed.device)
    zero = torch.zeros((B, 1), dtype=torch.long, device=order.device)
    return torch.cat([bos, tokens_listed], dim=1), torch.cat([zero, order + 1], dim=1)  # BOS at position 0


def layer_name(i: int, n_two_stream: int) -> str:
    """08.2: GPT layer i goes to two-stream layer i, or, past the first n_two_stream, to the causal stack."""
    return f"two_stream.{i}" if i < n_two_stream else f"causal.{i - n_two_stream}"


def convert_state_dict(gpt_state: dict, n_layer: int, n_two_stream: int) -> dict:
    """08.3: ARMD parameter name -> tensor for everything a GPT gives (all but the new PE table)."""
    V = gpt_state["net.wte.weight"].shape[0] - 1  # the GPT's last embedding row is BOS
    out = {}
    for name, tensor in gpt_state.items():
        name = name.removeprefix("net.")
        if name.startswith("blocks."):
            _, i, rest = name.split(".", 2)
            out[f"{layer_name(int(i), n_two_stream)}.{rest}"] = tensor
        elif name in ("wte.weight", "lm_head.weight"):
            out[name] = tensor[:V]  # drop the BOS row (the head never predicts BOS)
        else:  # ln_f, learned positions
            out[name] = tensor
    out["bos"] = gpt_state["net.wte.weight"][V]
    return out


def neighbour_table(n_positions: int, d_pe: int) -> torch.Tensor:
    """08.4: a table with <PE_p, PE_q> = 1 for |p - q| = 1 and 0 for other p != q.

    Not the library's Cholesky factor: the unsigned incidence matrix of the path 0 - 1 - ... - (P-1).
    Column e (the edge between positions e and e + 1) has a 1 in rows e and e + 1, so two rows share a
    column exactly when they are neighbours, and then only one: <PE_p, PE_q> = [|p - q| = 1] for p != q.
    It needs P - 1 columns (one fewer than the library's table); with fewer no table exists.
    """
    if d_pe < n_positions - 1:
        raise ValueError(f"a neighbour table of {n_positions} positions needs d_pe >= {n_positions - 1}, "
                         f"got {d_pe}")
    table = torch.zeros(n_positions, d_pe, dtype=torch.float64)
    edges = torch.arange(n_positions - 1)
    table[edges, edges] = 1.0
    table[edges + 1, edges] = 1.0
    return table


def steps_to_within(records: list[dict], target: float, rel: float = 0.01):
    """08.5: the first step whose validation loss is at most (1 + rel) x target; None if none is."""
    for rec in records:
        if "val" in rec and rec["val"] <= (1 + rel) * target:
            return rec["step"]
    return None
