r"""KV caching: incremental forward passes for ARMD (any order, any blocks) and the AR baseline.

Every ARMD mask is causal in generation order (the paper's Remark 1): appending the tokens of a later
block never changes a row that is already computed. So a generator can keep the following, instead
of re-running the network on the whole prefix for every block:

* for each two-stream layer l, the keys and values of the content stream X^l for BOS and for every
  committed token. These are also the query stream's keys and values (Eq. 7):

  .. math::  G^{l+1}_n = \mathrm{Attn}\big(W_q G^l_n,\; W_k X^l_{B(i) < B(n)},\; W_v X^l_{B(i) < B(n)}\big);

* for each layer of the causal stack, the keys and values of the query-stream rows already
  predicted. M^c inside the stack lets block b see the G rows of blocks <= b;
* the prefix-aggregation state :math:`S = \sum_i PE_{pos(i)} x_i^\top` (Eq. 6 in recurrent form).
  Then :math:`g^0_n = S^\top PE_{pos(n)}` costs O(d_pe D), however long the prefix is.

One ``ARMDCache.step`` does two jobs in one pass through the layers:

* **commit**: run the content stream for tokens just fixed (sampled or given), append their K/V and
  update S;
* **predict**: run the query stream and the causal stack for the positions of the next block(s), and
  return their logits.

Both streams share every weight of a two-stream layer. So the new content rows and the query rows go
through it as one concatenated sequence, in one projection and one MLP call. Only the content rows'
keys and values are appended. New rows attend to the whole cache, which holds earlier blocks only,
and to each other under the block masks. In plain decoding (commit block b-1, predict block b) every
key is visible and no mask is built. Work per new token is O(L (D^2 + M D)); an uncached step costs
O(L M (D^2 + M D)).

``GPTCache`` is the AR baseline's ordinary cache: per layer, the K/V of BOS and every token fed.
These classes are for inference: dropout is not applied.
"""
from __future__ import annotations

import torch

from .attention import AttentionMask
from .layers import Block
from .masks import block_mask


class KVCache:
    """The keys and values of one attention layer. Room for ``capacity`` rows, filled in order."""

    def __init__(self, batch: int, n_head: int, head_dim: int, capacity: int, dtype, device):
        self.k = torch.zeros(batch, n_head, capacity, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.length = 0  # rows filled so far

    def append(self, k: torch.Tensor, v: torch.Tensor):
        """Add rows k, v (B, H, K, hd); return every key and value so far, two (B, H, length, hd)."""
        end = self.length + k.shape[2]
        if end > self.k.shape[2]:
            raise ValueError(f"KV cache full: {end} rows needed, room for {self.k.shape[2]}; "
                             f"build the cache with a larger capacity")
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


def cached_block(block: Block, h: torch.Tensor, pos: torch.Tensor, cache: KVCache,
                 mask: AttentionMask, n_append: int | None = None, n_skip: int = 0) -> torch.Tensor:
    """One pre-LN block for new rows h (B, K, D) at positions pos (B, K), against a cache.

    The first ``n_append`` rows (default: all) are appended to the cache as keys/values. The rows
    from ``n_skip`` on are queries: they attend to the whole cache under ``mask`` (one mask row
    per query) and are returned, (B, K - n_skip, D). Skipping rows whose output is never used
    saves their attention and MLP: the content rows of the last two-stream layer.
    """
    q, k, v = block.attn.qkv(block.ln_1(h), pos)  # three (B, H, K, hd)
    n = h.shape[1] if n_append is None else n_append
    k_all, v_all = cache.append(k[:, :, :n], v[:, :, :n])  # (B, H, C + n, hd)
    return block.finish(h[:, n_skip:], block.attn.attend(q[:, :, n_skip:], k_all, v_all, mask))


def _with_cache(visible_new: torch.Tensor, n_cached: int) -> AttentionMask:
    """A dense mask over [cached keys, new keys]: every cached key is visible (earlier blocks);
    ``visible_new`` (Mq, Kn) says which new keys each query row sees."""
    cached = torch.ones(visible_new.shape[0], n_cached, dtype=torch.bool, device=visible_new.device)
    return AttentionMask("dense", dense=torch.cat([cached, visible_new], dim=1)[None, None])  # (1, 1, Mq, Mk)


def _ids(values, name: str) -> list[int]:
    values = [int(b) for b in (values.tolist() if isinstance(values, torch.Tensor) else values)]
    if any(later < earlier for earlier, later in zip(values, values[1:])):
        raise ValueError(f"{name} must be non-decreasing (tokens listed in generation order), got {values}")
    return values


class ARMDCache:
    """Everything an ARMD model has computed about one batch of sequences during generation.

    Block structure is shared by the batch (the same block ids for every row); orders, and
    therefore positions, may differ per row.
    """

    def __init__(self, model, batch: int, capacity: int | None = None):
        cfg = model.cfg
        self.model, self.batch = model, batch
        self.capacity = cfg.max_len if capacity is None else capacity
        p = model.wte.weight
        shape = (batch, cfg.n_head, cfg.head_dim)
        self.content = [KVCache(*shape, self.capacity + 1, p.dtype, p.device)  # +1: BOS
                        for _ in model.two_stream]
        self.stack = [KVCache(*shape, self.capacity, p.dtype, p.device) for _ in model.causal]
        self.state = model.prefix.init_state(p.new_zeros(batch, 1, cfg.n_embd))  # S: (B, d_pe, D)
        self.committed_block = -1  # highest block committed so far (BOS will be block 0)
        self.predicted_block = 0  # highest block predicted so far
        self.n_committed = self.n_predicted = 0  # real tokens committed / positions predicted

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor | None, pos: torch.Tensor | None, blocks,
             query_pos: torch.Tensor, query_blocks) -> torch.Tensor:
        """Commit ``tokens`` (B, Kx) at original positions ``pos`` (B, Kx) in ``blocks`` (Kx ids),
        then predict original positions ``query_pos`` (B, Kq) in ``query_blocks`` (Kq ids).

        Returns logits (B, Kq, V) for the query positions: the model's p(x_n | x_i : B(i) < B(n)).
        Each query block must come after every block committed before this call, and after
        every block already predicted. Tokens of the call's own earlier blocks are seen
        through the masks. The first call also commits BOS (block 0).
        """
        model = self.model
        blocks_x = _ids([] if blocks is None else blocks, "blocks")
        blocks_q = _ids(query_blocks, "query_blocks")
        B, dev = self.batch, self.state.device
        if tokens is None:
            tokens = pos = torch.zeros(B, 0, dtype=torch.long, device=dev)
        if tokens.shape != pos.shape or tokens.shape != (B, len(blocks_x)):
            raise ValueError(f"tokens and pos must both be (batch={B}, {len(blocks_x)}) to match blocks, "
                             f"got {tuple(tokens.shape)} and {tuple(pos.shape)}")
        if query_pos.shape != (B, len(blocks_q)) or not blocks_q:
            raise ValueError(f"query_pos must be (batch={B}, {len(blocks_q)}) with at least one "
                             f"position, to match query_blocks; got {tuple(query_pos.shape)}")
        if blocks_x and blocks_x[0] <= max(self.committed_block, 0):
            raise ValueError(f"blocks must be >= 1 and come after the last committed block "
                             f"{self.committed_block} (BOS is block 0)")
        if blocks_q[0] <= max(self.committed_block, self.predicted_block):
            raise ValueError(f"query_blocks must come after block {max(self.committed_block, self.predicted_block)}: "
                             "predicting a block after its tokens (or part of it) is cached would leak them")
        if self.n_predicted + len(blocks_q) > self.capacity or self.n_committed + len(blocks_x) > self.capacity:
            raise ValueError(f"more than capacity={self.capacity} positions; build a larger ARMDCache")

        x = model.wte(tokens)  # (B, Kx, D)
        pos_x = pos + 1  # internal positions (BOS is 0)
        if self.committed_block < 0:  # first call: BOS joins the committed rows as block 0
            x = torch.cat([model.bos.expand(B, 1, -1), x], dim=1)
            pos_x = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=dev), pos_x], dim=1)
            blocks_x = [0] + blocks_x
        pos_g = query_pos + 1
        n_x, n_cached = len(blocks_x), self.content[0].length if self.content else 0
        # block ids are sorted lists, so "every new content row is in an earlier block than every
        # query row" is one comparison; then (plain decoding) no mask is needed anywhere
        x_before_q = not blocks_x or blocks_x[-1] < blocks_q[0]
        bx = torch.tensor([blocks_x], device=dev)  # (1, Kx); tiny, but a host-to-device copy on CUDA
        bq = torch.tensor([blocks_q], device=dev)  # (1, Kq)

        # query-stream start g^0 (Eq. 6): the state covers the cache; add new rows of earlier blocks
        if x_before_q:  # commit first, then read
            self.state = model.prefix.update(self.state, x, pos_x)
            g = model.prefix.read(self.state, pos_g)  # (B, Kq, D)
        else:  # some new rows are in the query rows' own or later blocks: mask them (parallel form)
            weights = model.prefix.pe(pos_g) @ model.prefix.pe(pos_x).transpose(1, 2)  # (B, Kq, Kx)
            g = model.prefix.read(self.state, pos_g) + (weights * block_mask(bq, bx, strict=True)) @ x
            self.state = model.prefix.update(self.state, x, pos_x)

        # two-stream layers: [content rows; query rows] as one sequence, K/V appended from content
        # rows. Content rows see new content rows of blocks <= theirs (M^c), query rows those of
        # blocks < theirs (M^sc)
        mask = AttentionMask.full()
        if n_x and not (x_before_q and blocks_x[0] == blocks_x[-1]):
            visible = torch.cat([block_mask(bx, bx, strict=False), block_mask(bq, bx, strict=True)], dim=1)
            mask = _with_cache(visible[0], n_cached)  # (Kx + Kq, Kx) -> with the cached keys
        h, pos_h = torch.cat([x, g], dim=1), torch.cat([pos_x, pos_g], dim=1)  # (B, Kx + Kq, D)
        for i, (layer, cache) in enumerate(zip(model.two_stream, self.content)):
            if i < len(self.content) - 1:
                h = cached_block(layer, h, pos_h, cache, mask, n_append=n_x)
            else:  # last one: the content rows' output is never used (as update_content=False)
                if mask.kind == "dense":
                    mask = AttentionMask("dense", dense=mask.dense[:, :, n_x:])
                h = cached_block(layer, h, pos_h, cache, mask, n_append=n_x, n_skip=n_x)
        g = h[:, -len(blocks_q):]  # (B, Kq, D)

        # causal stack (M^c): query rows see cached query rows and new ones of blocks <= theirs
        mask = AttentionMask.full()
        if blocks_q[0] != blocks_q[-1]:
            mask = _with_cache(block_mask(bq, bq, strict=False)[0], self.n_predicted)
        for block, cache in zip(model.causal, self.stack):
            g = cached_block(block, g, pos_g, cache, mask)

        self.committed_block = max(self.committed_block, blocks_x[-1]) if blocks_x else self.committed_block
        self.predicted_block = blocks_q[-1]
        self.n_committed += tokens.shape[1]
        self.n_predicted += len(blocks_q)
        return model.lm_head(model.ln_f(g))  # (B, Kq, V)


class GPTCache:
    """The AR baseline's KV cache: feed tokens, get the logits of the next one."""

    def __init__(self, model, batch: int, capacity: int | None = None):
        net, cfg = model.net, model.cfg
        self.model, self.batch = model, batch
        self.capacity = cfg.max_len if capacity is None else capacity  # rows: BOS + up to max_len - 1 tokens
        p = net.wte.weight
        self.caches = [KVCache(batch, cfg.n_head, cfg.head_dim, self.capacity, p.dtype, p.device)
                       for _ in net.blocks]
        self.length = 0  # rows fed so far, BOS included

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Feed tokens (B, K) (the first call feeds BOS before them) -> logits (B, K', V).

        Row k of the result is the distribution of the token after the k-th row fed in this call,
        so ``step(x)[:, -1]`` is the next token's logits. (K' = K, plus 1 on the first call.)
        """
        model, net = self.model, self.model.net
        dev = net.wte.weight.device
        if tokens is None:
            tokens = torch.zeros(self.batch, 0, dtype=torch.long, device=dev)
        if self.length == 0:
            bos = torch.full((self.batch, 1), model.bos_id, dtype=torch.long, device=dev)
            tokens = torch.cat([bos, tokens], dim=1)
        K = tokens.shape[1]
        if K == 0:
            raise ValueError("step() needs at least one token after the first call")
        if self.length + K > self.capacity:
            raise ValueError(f"more than capacity={self.capacity} rows (BOS + {self.capacity - 1} tokens); "
                             f"the model's max_len bounds the context")
        pos = torch.arange(self.length, self.length + K, device=dev).expand(self.batch, K)  # (B, K)
        mask = AttentionMask.full()  # one new row sees the whole cache; a prefill is causal
        if K > 1:
            mask = _with_cache(torch.ones(K, K, dtype=torch.bool, device=dev).tril(), self.length)
        h = net.wte(tokens)  # (B, K, D)
        for block, cache in zip(net.blocks, self.caches):
            h = cached_block(block, h, pos, cache, mask)
        self.length += K
        return net.lm_head(net.ln_f(h))[..., :model.cfg.vocab_size]  # (B, K, V)
