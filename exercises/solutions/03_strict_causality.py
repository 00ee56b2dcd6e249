"""Solutions to exercises/03_strict_causality.ipynb (try the exercises first!).

Each function is checked with ``check("03.k", ...)``:
03.1 ``minarmd.two_stream.PrefixAggregation.forward`` (Eq. 6, parallel form),
03.2 ``PrefixAggregation.update`` and ``.read`` (Eq. 6, recurrent form),
03.3 a dependency (gradient-reach) matrix, against ``torch.autograd.functional.jacobian``,
03.4 a strict-causality test, on simple functions, a causal GPT, a leaking ARMD and ARMD.
"""
import torch

TOL = 1e-12  # a dependency entry above this counts as "output n depends on token i"


# Exercise 03.1: prefix aggregation, parallel form (Eq. 6)
def prefix_aggregation(x, pe, pos_x, blocks_x, pos_q, blocks_q):
    # g0_n = sum over keys i with B(i) < B(n) of <PE_pos(n), PE_pos(i)> x_i
    visible = blocks_x[:, None, :] < blocks_q[:, :, None]  # (B, Mq, Mk): M^sc, earlier blocks only
    weights = pe[pos_q] @ pe[pos_x].transpose(1, 2)  # (B, Mq, Mk): <PE_pos(n), PE_pos(i)>
    return (weights * visible) @ x  # (B, Mq, D)


# Exercise 03.2: prefix aggregation, recurrent form (Eq. 6): commit tokens, read queries
def prefix_update(state, x, pe, pos):
    # S <- S + sum_i PE_pos(i) x_i^T   (one outer product per committed token)
    return state + pe[pos].transpose(1, 2) @ x  # (B, d_pe, K) @ (B, K, D) -> (B, d_pe, D)


def prefix_read(state, pe, pos):
    # g0 = S^T PE_pos for every query position: one row per query
    return pe[pos] @ state  # (B, K, d_pe) @ (B, d_pe, D) -> (B, K, D)


# Exercise 03.3: the dependency (gradient-reach) matrix of f: (N, D_in) -> (N, D_out)
def dependency_matrix(f, x):
    # R[n, i] = || d f(x)[n] / d x[i] ||_F, the Frobenius norm of one (D_out, D_in) Jacobian block
    jac = torch.autograd.functional.jacobian(f, x)  # (N, D_out, N, D_in); zeros for unused inputs
    return jac.pow(2).sum(dim=(1, 3)).sqrt()  # (N, N)


# Exercise 03.4: is f strictly causal for these blocks?
def is_strictly_causal(f, x, blocks):
    reach = dependency_matrix(f, x)  # (N, N)
    forbidden = blocks[None, :] >= blocks[:, None]  # (N, N): token i in the same or a later block than n
    return bool((reach[forbidden] <= TOL).all())
