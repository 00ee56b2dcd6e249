"""Solutions to exercises/06_generation.ipynb (try the exercises first!).

Each function is written from the definitions, not by calling the library function it is checked
against; run ``check("06.k", fn)`` in the notebook, or the tests, to compare them.
"""
import torch

FREE = -1  # template value of a position to generate (minarmd.sampler.FREE)


# Exercise 06.1: the strided block-parallel order of n positions with S streams
def sbp_order(n, streams):
    if n % streams:
        raise ValueError(f"streams={streams} must divide n={n}")
    length = n // streams  # positions per stream (run)
    order, blocks = [], []
    for j in range(length):  # relative position inside a run
        for s in range(streams):  # stream
            order.append(s * length + j)
            blocks.append(s + 1 if j == 0 else streams + j)  # heads one at a time, then S per block
    return torch.tensor(order), torch.tensor(blocks)


# Exercise 06.2: network calls to generate n tokens, `given` of them given, with S streams
def num_calls(n, given, streams):
    m = n - given  # positions to generate
    return streams + m // streams - 1


# Exercise 06.3: draw one token per row of logits, with temperature and top-k
def sample_logits(logits, temperature, top_k, generator):
    scaled = logits.double() / temperature  # (..., V) in float64
    if top_k is not None and top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[..., -1:]  # (..., 1) the k-th largest
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    V = probs.shape[-1]
    return torch.multinomial(probs.reshape(-1, V), 1, generator=generator).view(probs.shape[:-1])


# Exercise 06.4: a (batch, n) template: prompt at the start, suffix at the end, FREE between
def infill_template(n, batch, prompt, suffix):
    def rows(ids):
        ids = torch.zeros(0, dtype=torch.long) if ids is None else torch.as_tensor(ids).long()
        return ids.expand(batch, -1) if ids.ndim == 1 else ids
    prompt, suffix = rows(prompt), rows(suffix)
    P, Q = prompt.shape[1], suffix.shape[1]
    if P + Q >= n:
        raise ValueError(f"prompt ({P}) and suffix ({Q}) leave nothing to generate in n={n}")
    template = torch.full((batch, n), FREE, dtype=torch.long)
    template[:, :P] = prompt
    template[:, n - Q:] = suffix  # n - 0 = n: an empty slice when there is no suffix
    return template


# Exercise 06.5: (start, end) slots of each block along a (B, N) blocks tensor
def spans(blocks):
    ids = blocks[0].tolist()  # every row has the same blocks
    out, start = [], 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or ids[k] != ids[k - 1]:
            out.append((start, k))
            start = k
    return out
