"""Checkers for exercises/03_strict_causality.ipynb: prefix aggregation (Eq. 6, parallel and
recurrent) and strict causality measured with autograd (a dependency matrix, a yes/no test)."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch.autograd.functional import jacobian

from . import CheckFailed, attempt, exercise, expect_tensor, same
from ..config import ARMDConfig, TransformerConfig
from ..masks import block_mask, strictly_causal_mask
from ..model import ARMD
from ..permutation import left_to_right, order_from_mask_times, strided_order
from ..transformer import Transformer
from ..two_stream import PrefixAggregation

TOL = 1e-12  # 03.4: a dependency entry above this counts as "output n depends on token i"
F64 = torch.float64


# ---- helpers ------------------------------------------------------------------------------------

def as_function_of_embeddings(model, pos: torch.Tensor | None = None, blocks: torch.Tensor | None = None):
    """f(e) for one sequence: (N, D) input token embeddings -> (N, D_out) outputs of ``model``.

    With ``pos`` and ``blocks`` ((1, N) in generation order: an ``ARMD``) the outputs are the final
    query-stream states (N, D); without them (a plain ``Transformer``) the logits (N, V). Built on the
    models' ``embeddings=`` argument, which replaces the lookup of the (here all-zero) token ids.
    """
    def f(e: torch.Tensor) -> torch.Tensor:
        ids = torch.zeros(1, e.shape[0], dtype=torch.long)  # only their shape counts
        if pos is not None:  # ARMD's call: positions and blocks in generation order
            return model(ids, pos, blocks, embeddings=e[None], return_hidden=True)[1][0]  # (N, D)
        return model(ids, embeddings=e[None])[0]  # (N, V)
    return f


def reference_dependency_matrix(f, x: torch.Tensor) -> torch.Tensor:
    """R[n, i] = ||d f(x)[n] / d x[i]||_F from autograd's full Jacobian: (N, N)."""
    return jacobian(f, x).pow(2).sum(dim=(1, 3)).sqrt()


def reference_is_strictly_causal(f, x: torch.Tensor, blocks: torch.Tensor) -> bool:
    """True iff no output depends (above TOL) on a token of its own or a later block."""
    forbidden = ~strictly_causal_mask(blocks[None])[0]  # (N, N): B(i) >= B(n)
    return bool((reference_dependency_matrix(f, x)[forbidden] <= TOL).all())


@lru_cache(maxsize=None)
def _armd(query_stream_init: str = "prefix") -> ARMD:
    """A tiny untrained float64 ARMD with a causal stack; built without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        cfg = ARMDConfig(vocab_size=11, max_len=8, n_layer=3, n_two_stream=2, n_head=2, n_embd=8, d_pe=4,
                         pe_init="random", query_stream_init=query_stream_init)
        return ARMD(cfg).double().eval()


@lru_cache(maxsize=None)
def _gpt() -> Transformer:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        return Transformer(TransformerConfig(vocab_size=11, max_len=8, n_layer=2, n_head=2, n_embd=8)).double().eval()


def _reference_aggregation(pe: torch.Tensor) -> PrefixAggregation:
    with torch.random.fork_rng(devices=[]):
        agg = PrefixAggregation(pe.shape[0], pe.shape[1]).double()
    with torch.no_grad():
        agg.pe.weight.copy_(pe)
    return agg


def _with_bos(order: torch.Tensor, blocks: torch.Tensor):
    """Internal positions and blocks of ARMD's layout: BOS (position 0, block 0), then token p at p + 1."""
    zeros = torch.zeros(order.shape[0], 1, dtype=torch.long)
    pos_q = order + 1
    return torch.cat([zeros, pos_q], 1), torch.cat([zeros, blocks], 1), pos_q, blocks


# ---- 03.1 ---------------------------------------------------------------------------------------

def _prefix_cases():
    """(label, x, pe, pos_x, blocks_x, pos_q, blocks_q): ARMD's layout and edge cases."""
    g = torch.Generator().manual_seed(31)
    pe = torch.randn(10, 4, generator=g, dtype=F64)  # 10 internal positions, d_pe = 4

    def x_for(batch, keys, d=3):
        return torch.randn(batch, keys, d, generator=g, dtype=F64)

    cases = []
    pos_x, blocks_x, pos_q, blocks_q = _with_bos(*strided_order(8, 2))
    cases.append(("BOS + the paper's N=8, S=2 order", x_for(1, 9), pe, pos_x, blocks_x, pos_q, blocks_q))
    pos_x, blocks_x, pos_q, blocks_q = _with_bos(*left_to_right(2, 6))
    cases.append(("BOS + left to right, singleton blocks, batch 2", x_for(2, 7), pe, pos_x, blocks_x,
                  pos_q, blocks_q))
    pos_x, blocks_x, pos_q, blocks_q = _with_bos(torch.tensor([[4]]), torch.tensor([[1]]))
    cases.append(("N = 1: BOS + one token", x_for(1, 2), pe, pos_x, blocks_x, pos_q, blocks_q))
    pos_x, blocks_x, pos_q, blocks_q = _with_bos(torch.tensor([[2, 0, 5, 1]]), torch.tensor([[1, 1, 1, 1]]))
    cases.append(("every token in block 1: each query sees the BOS only", x_for(1, 5), pe, pos_x, blocks_x,
                  pos_q, blocks_q))
    tau = torch.tensor([[3, 1, 2, 3, 1, 2, 2], [1, 2, 3, 3, 3, 1, 2]])
    pos_x, blocks_x, pos_q, blocks_q = _with_bos(*order_from_mask_times(tau, 3))
    cases.append(("batch 2, different T=3 masking trajectories", x_for(2, 8, d=5), pe, pos_x, blocks_x,
                  pos_q, blocks_q))
    cases.append(("a decoding step: keys = BOS + 3 committed tokens, queries = the next block of 2",
                  x_for(1, 4), pe, torch.tensor([[0, 3, 7, 1]]), torch.tensor([[0, 1, 2, 2]]),
                  torch.tensor([[5, 2]]), torch.tensor([[3, 3]])))
    cases.append(("no BOS: the block-1 queries see nothing (zero rows)", x_for(1, 4), pe,
                  torch.tensor([[6, 2, 9, 4]]), torch.tensor([[1, 1, 2, 3]]),
                  torch.tensor([[6, 2, 9, 4]]), torch.tensor([[1, 1, 2, 3]])))
    return cases


def _aggregation_hint(x, pe, pos_x, blocks_x, pos_q, blocks_q):
    """Names the usual wrong aggregations: a non-strict mask, no mask, PE rows looked up by slot."""
    agg = _reference_aggregation(pe)
    slots_x = torch.arange(pos_x.shape[1]).expand_as(pos_x)
    slots_q = torch.arange(1, pos_q.shape[1] + 1).expand_as(pos_q)
    strict = block_mask(blocks_q, blocks_x, strict=True)
    wrong = {
        "each query also sees the keys of its own block: the mask must be strict, B(i) < B(n)":
            agg(x, pos_x, pos_q, block_mask(blocks_q, blocks_x, strict=False)),
        "every query sees every key: the sum must be masked to earlier blocks":
            agg(x, pos_x, pos_q, torch.ones_like(strict)),
        "the PE rows were looked up by list index (slot), not by the tokens' positions pos_x, pos_q":
            agg(x, slots_x, slots_q, strict),
    }

    def hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
        return next((why for why, value in wrong.items() if same(got, value.detach())), None)
    return hint


@exercise("03.1", "prefix aggregation, parallel form (Eq. 6)", difficulty=3, importance=5, minutes=25)
def check_prefix_aggregation(fn):
    cases = _prefix_cases()
    for case, x, pe, pos_x, blocks_x, pos_q, blocks_q in cases:
        expected = _reference_aggregation(pe)(x, pos_x, pos_q, block_mask(blocks_q, blocks_x, strict=True))
        got = attempt(fn, x.clone(), pe.clone(), pos_x.clone(), blocks_x.clone(), pos_q.clone(),
                      blocks_q.clone(), case=case)
        expect_tensor("g0", got, expected.detach(), case=case, atol=1e-12, rtol=1e-12,
                      hints=[_aggregation_hint(x, pe, pos_x, blocks_x, pos_q, blocks_q)])
    return f"{len(cases)} cases match minarmd.two_stream.PrefixAggregation (float64, 1e-12)"


# ---- 03.2 ---------------------------------------------------------------------------------------

@exercise("03.2", "prefix aggregation, recurrent form: update and read", difficulty=3, importance=4, minutes=25)
def check_recurrent(update, read):
    g = torch.Generator().manual_seed(32)
    pe = torch.randn(10, 4, generator=g, dtype=F64)
    agg = _reference_aggregation(pe)
    n_cases = 0
    for case, state, x, pos in (
            ("empty state, commit the BOS", torch.zeros(1, 4, 3, dtype=F64), torch.randn(1, 1, 3, generator=g,
                                                                                     dtype=F64), torch.tensor([[0]])),
            ("a non-empty state, commit 3 tokens, batch 2", torch.randn(2, 4, 5, generator=g, dtype=F64),
             torch.randn(2, 3, 5, generator=g, dtype=F64), torch.tensor([[1, 7, 3], [9, 2, 4]])),
            ("commit nothing (K = 0): the state is unchanged", torch.randn(1, 4, 3, generator=g, dtype=F64),
             torch.zeros(1, 0, 3, dtype=F64), torch.zeros(1, 0, dtype=torch.long))):
        got = attempt(update, state.clone(), x.clone(), pe.clone(), pos.clone(), case=case)
        fresh = agg.update(torch.zeros_like(state), x, pos).detach()  # what forgetting the old state gives

        def overwrites(got, expected, fresh=fresh, state=state):
            if state.abs().max() > 0 and same(got, fresh):
                return "the new state replaced the old one: the committed tokens must be added to the state"
            return None
        expect_tensor("update: new state", got, agg.update(state, x, pos).detach(), case=case, atol=1e-12,
                      rtol=1e-12, hints=[overwrites])
        n_cases += 1
    for case, state, pos in (
            ("one query", torch.randn(1, 4, 3, generator=g, dtype=F64), torch.tensor([[6]])),
            ("3 queries, batch 2", torch.randn(2, 4, 5, generator=g, dtype=F64), torch.tensor([[1, 7, 3], [9, 2, 4]])),
            ("an empty state reads zeros", torch.zeros(1, 4, 3, dtype=F64), torch.tensor([[2, 5]]))):
        got = attempt(read, state.clone(), pe.clone(), pos.clone(), case=case)
        expect_tensor("read: g0", got, agg.read(state, pos).detach(), case=case, atol=1e-12, rtol=1e-12)
        n_cases += 1
    # a whole sequence, block by block: commit the BOS; then for each block read its queries BEFORE
    # committing its own tokens. The reads must equal the parallel form (Eq. 6), the last state the library's.
    tau = torch.tensor([[2, 4, 1, 3, 4, 2, 1, 3], [3, 4, 3, 1, 2, 1, 4, 2]])  # same block sizes
    pos_x, blocks_x, pos_q, blocks_q = _with_bos(*order_from_mask_times(tau, 4))
    x = torch.randn(2, 9, 3, generator=g, dtype=F64)
    parallel = agg(x, pos_x, pos_q, block_mask(blocks_q, blocks_x, strict=True)).detach()
    case = "a T=4 trajectory of 8 tokens, batch 2, block by block"
    state = attempt(update, torch.zeros(2, 4, 3, dtype=F64), x[:, :1].clone(), pe.clone(), pos_x[:, :1].clone(),
                    case=case)
    ref_state = agg.update(torch.zeros(2, 4, 3, dtype=F64), x[:, :1], pos_x[:, :1])
    reads = []
    for b in range(1, 5):
        idx = (blocks_q[0] == b).nonzero().flatten()  # both rows have the same block sizes here
        reads.append(attempt(read, state, pe.clone(), pos_q[:, idx].clone(), case=f"{case}, block {b}"))
        expect_tensor(f"read of block {b}", reads[-1], parallel[:, idx], case=case, atol=1e-12, rtol=1e-12)
        state = attempt(update, state, x[:, idx + 1].clone(), pe.clone(), pos_q[:, idx].clone(), case=case)
        ref_state = agg.update(ref_state, x[:, idx + 1], pos_q[:, idx])
    expect_tensor("final state", state, ref_state.detach(), case=case, atol=1e-12, rtol=1e-12)
    return (f"{n_cases} update/read cases match PrefixAggregation.update/.read; reading each block before "
            f"committing it gives the parallel form")


# ---- 03.3 ---------------------------------------------------------------------------------------

def _functions():
    """(label, f, x): fixed small functions (N, D_in) -> (N, D_out) and one ARMD."""
    g = torch.Generator().manual_seed(33)
    x = torch.randn(5, 3, generator=g, dtype=F64)
    w = torch.randn(3, 2, generator=g, dtype=F64)
    mix = torch.tril(torch.randn(5, 5, generator=g, dtype=F64))
    order, blocks = strided_order(6, 2)
    armd = _armd()
    return [
        ("identity", lambda v: v, x),
        ("shift by one: out_n = x_(n-1), out_0 = 0", lambda v: torch.cat([torch.zeros_like(v[:1]), v[:-1]]), x),
        ("exclusive running sum", lambda v: v.cumsum(0) - v, x),
        ("x @ W with W of shape (3, 2): D_out != D_in", lambda v: v @ w, x),
        ("tanh of a lower-triangular token mix", lambda v: torch.tanh(mix @ v @ w), x),
        ("softmax attention over all tokens", lambda v: torch.softmax(v @ v.T, dim=-1) @ v, x),
        ("zero function 0 * x", lambda v: 0 * v, x),
        ("a constant function: it ignores x, so R is all zeros", lambda v: torch.ones(len(v), 2, dtype=F64), x),
        ("N = 1", lambda v: torch.sin(v) * v.sum(), torch.randn(1, 4, generator=g, dtype=F64)),
        ("an ARMD's final query stream, N=6, S=2 strided order", as_function_of_embeddings(armd, order, blocks),
         torch.randn(6, 8, generator=g, dtype=F64)),
        ("an ARMD, every token in block 1 (no output depends on any token)",
         as_function_of_embeddings(armd, torch.tensor([[3, 0, 2]]), torch.tensor([[1, 1, 1]])),
         torch.randn(3, 8, generator=g, dtype=F64)),
    ]


@exercise("03.3", "dependency (gradient-reach) matrix", difficulty=2, importance=4, minutes=15)
def check_dependency_matrix(fn):
    cases = _functions()
    for case, f, x in cases:
        expected = reference_dependency_matrix(f, x)
        got = attempt(fn, f, x.clone(), case=case)
        absolute = jacobian(f, x).abs().sum(dim=(1, 3))

        def l1(got, expected, absolute=absolute):
            if same(got, absolute, 1e-10, 1e-10):
                return "you summed |entries|: R[n, i] is the Frobenius norm (square root of the sum of squares)"
            return None
        expect_tensor("R", got, expected, case=case, atol=1e-10, rtol=1e-10, hints=[l1])
    return f"{len(cases)} functions match torch.autograd.functional.jacobian's block norms"


# ---- 03.4 ---------------------------------------------------------------------------------------

def causality_cases():
    """(label, f, x, blocks (N,), strictly causal?) — the answers are the autograd reference's."""
    g = torch.Generator().manual_seed(34)
    x = torch.randn(6, 4, generator=g, dtype=F64)
    singletons = torch.arange(1, 7)
    grouped = torch.tensor([1, 1, 2, 2, 2, 3])
    earlier_blocks = strictly_causal_mask(grouped[None])[0].to(F64)  # (6, 6): B(i) < B(n)
    mates = (grouped[None, :] <= grouped[:, None]).to(F64) - torch.eye(6, dtype=F64)  # M^c without itself
    order, blocks = strided_order(8, 2)
    e8 = torch.randn(8, 8, generator=g, dtype=F64)
    armd, leaky = _armd(), _armd("token")
    return [
        ("exclusive running sum, singleton blocks", lambda v: v.cumsum(0) - v, x, singletons, True),
        ("inclusive running sum (sees itself), singleton blocks", lambda v: v.cumsum(0), x, singletons, False),
        ("exclusive running sum, blocks [1, 1, 2, 2, 2, 3] (sees earlier block mates)",
         lambda v: v.cumsum(0) - v, x, grouped, False),
        ("sum over earlier blocks, blocks [1, 1, 2, 2, 2, 3]", lambda v: earlier_blocks @ v, x, grouped, True),
        ("sum over its own and earlier blocks except itself, blocks [1, 1, 2, 2, 2, 3]", lambda v: mates @ v,
         x, grouped, False),
        ("the next token (anti-causal shift), singleton blocks",
         lambda v: torch.cat([v[1:], torch.zeros_like(v[:1])]), x, singletons, False),
        ("zero function 0 * x", lambda v: 0 * v, x, grouped, True),
        ("a causal GPT (minarmd.Transformer), singleton blocks", as_function_of_embeddings(_gpt()),
         torch.randn(6, 8, generator=g, dtype=F64), singletons, False),
        ("ARMD, the paper's N=8, S=2 order", as_function_of_embeddings(armd, order, blocks), e8, blocks[0], True),
        ("ARMD with query_stream_init='token' (the naive query), N=8, S=2",
         as_function_of_embeddings(leaky, order, blocks), e8, blocks[0], False),
        ("ARMD, left to right", as_function_of_embeddings(armd, *left_to_right(1, 8)), e8, torch.arange(1, 9), True),
        ("ARMD, N = 1", as_function_of_embeddings(armd, torch.tensor([[5]]), torch.tensor([[1]])),
         e8[:1], torch.tensor([1]), True),
    ]


@exercise("03.4", "is this function strictly causal for these blocks?", difficulty=2, importance=5, minutes=15)
def check_is_strictly_causal(fn):
    cases = causality_cases()
    for case, f, x, blocks, expected in cases:
        got = attempt(fn, f, x.clone(), blocks.clone(), case=case)
        if isinstance(got, torch.Tensor) or type(got) is not bool:
            raise CheckFailed(f"returned a {type(got).__name__}, expected a Python bool (True or False); "
                              f"convert with bool(...) (case: {case})")
        if got != expected:
            why = ("no output depends on a token of its own or a later block" if expected else
                   "some output depends on a token of its own or a later block")
            raise CheckFailed(f"got {got}, expected {expected}: {why} (case: {case})")
    n_true = sum(expected for *_, expected in cases)
    return f"{len(cases)} functions ({n_true} strictly causal, {len(cases) - n_true} not) classified correctly"
