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
  Then :math:`g^0_n = S^\top PE_{pos(n)}` costs O(d_pe D), however long the prefix is. S is float32
  when the model runs in bf16/fp16 (it sums one term per token).

One ``ARMDCache.step`` does two jobs in one pass through the layers:

* **commit**: run the content stream for tokens just fixed (sampled or given), append their K/V and
  update S;
* **predict**: run the query stream and the causal stack for the positions of the next block(s), and
  return their logits.

**What makes it exact** (the cached logits equal one forward pass over the same tokens): when block
q is predicted, the content of every block < q must be committed and, with a causal stack, the
query row of every block <= q must be in the stack's cache, because under M^c the stack's rows of
block q attend to them. So a token that is committed without ever being predicted -- a given
prompt token -- must be predicted too (in the same call is fine: the first call of ``generate``
predicts the given tokens' rows beside the first block to draw). ``step`` refuses calls that
break this (``check=True``).

Both streams share every weight of a two-stream layer. So the new content rows and the query rows go
through it as one concatenated sequence, in one projection and one MLP call. Only the content rows'
keys and values are appended. New rows attend to the whole cache, which holds earlier blocks only,
and to each other under the block masks. In plain decoding (commit block b-1, predict block b) every
key is visible and no mask is built. Work per new token is O(L (D^2 + M D)); an uncached step costs
O(L M (D^2 + M D)).

**Ragged batches.** Block ids may be one list shared by the batch or a (B, K) tensor per row; in a
tensor, the entry ``PAD`` (-2) marks an empty slot (a row that commits or predicts fewer tokens in
this call than others). Empty slots still travel through the layers (the batch stays rectangular)
but are masked out of every attention and of S, now and in later calls.

``GPTCache`` is the AR baseline's ordinary cache: per layer, the K/V of BOS and every token fed.
These classes are for inference: dropout is not applied.
"""
from __future__ import annotations

import torch

from .attention import AttentionMask
from .layers import Block
from .masks import block_mask, visible
from .template import PAD

__all__ = ["KVCache", "cached_block", "ARMDCache", "GPTCache"]

_LAST = torch.iinfo(torch.long).max  # block id given to PAD entries inside masks: after every real block


class KVCache:
    """The keys and values of one attention layer, filled in order; room grows as needed."""

    def __init__(self, batch: int, n_head: int, head_dim: int, capacity: int, dtype, device):
        self.k = torch.zeros(batch, n_head, capacity, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.length = 0  # rows filled so far

    def append(self, k: torch.Tensor, v: torch.Tensor):
        """Add rows k, v (B, H, K, hd); return every key and value so far, two (B, H, length, hd)."""
        end = self.length + k.shape[2]
        if end > self.k.shape[2]:  # ragged batches also store their PAD entries: grow geometrically
            extra = self.k.new_zeros(*self.k.shape[:2], max(end, 2 * self.k.shape[2]) - self.k.shape[2],
                                     self.k.shape[3])
            self.k, self.v = torch.cat([self.k, extra], dim=2), torch.cat([self.v, extra], dim=2)
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


def _with_cache(visible_new: torch.Tensor, cached_valid: torch.Tensor | None, n_cached: int) -> AttentionMask:
    """A dense mask over [cached keys, new keys]. ``visible_new`` (B, Mq, Kn) says which new keys each
    query row sees; a cached key is visible unless ``cached_valid`` (B, C) marks it as a PAD entry."""
    B, m_q = visible_new.shape[:2]
    if cached_valid is None:
        cached = torch.ones(B, m_q, n_cached, dtype=torch.bool, device=visible_new.device)
    else:
        cached = cached_valid[:, None, :].expand(B, m_q, n_cached)
    return AttentionMask("dense", dense=torch.cat([cached, visible_new], dim=2)[:, None])  # (B, 1, Mq, Mk)


def _append_valid(current: torch.Tensor | None, valid: torch.Tensor | None, n_before: int, n_new: int,
                  batch: int, device) -> torch.Tensor | None:
    """Which cached rows are real, kept only once a PAD entry has been cached (None: all of them)."""
    if current is None and valid is None:
        return None
    if current is None:
        current = torch.ones(batch, n_before, dtype=torch.bool, device=device)
    if valid is None:
        valid = torch.ones(batch, n_new, dtype=torch.bool, device=device)
    return torch.cat([current, valid], dim=1)


class _Ids:
    """Block ids of one argument: a list shared by the batch (no PAD) or a (B, K) tensor per row.

    A shared list stays a Python list (plain decoding needs no tensor of it); ``ids`` and
    ``effective`` are built only when a mask needs them.
    """

    def __init__(self, values, batch: int, name: str, device):
        self.batch, self.device = batch, device
        if isinstance(values, torch.Tensor) and values.ndim == 2:
            if values.shape[0] != batch:
                raise ValueError(f"{name} must be a list of block ids or a ({batch}, K) tensor, "
                                 f"got shape {tuple(values.shape)}")
            self._ids = values.to(device=device, dtype=torch.long)  # (B, K)
            self.valid = self._ids != PAD  # (B, K)
            self.padded = not bool(self.valid.all())
            self.list = None
        else:
            values = [] if values is None else values
            self.list = [int(b) for b in (values.tolist() if isinstance(values, torch.Tensor) else values)]
            self._ids, self.valid, self.padded = None, None, False
            if any(later < earlier for earlier, later in zip(self.list, self.list[1:])):
                raise ValueError(f"{name} must be non-decreasing (tokens listed in generation order), "
                                 f"got {self.list}")

    def __len__(self) -> int:
        return len(self.list) if self.list is not None else self._ids.shape[1]

    @property
    def ids(self) -> torch.Tensor:  # (B, K)
        if self._ids is None:
            self._ids = torch.tensor(self.list, dtype=torch.long, device=self.device).expand(self.batch, -1)
        return self._ids

    @property
    def effective(self) -> torch.Tensor:  # (B, K) ids for masks: PAD entries sort after every real block
        return torch.where(self.valid, self.ids, _LAST) if self.padded else self.ids

    def lowest(self):  # lowest real id of each row: (B,) tensor, or an int for a shared list (_LAST if none)
        if self.list is not None:
            return self.list[0] if self.list else _LAST
        if not len(self):
            return torch.full((self.batch,), _LAST, dtype=torch.long, device=self.device)
        return self.effective.min(dim=1).values

    def highest(self):  # highest real id of each row: (B,) tensor, or an int for a shared list (-1 if none)
        if self.list is not None:
            return self.list[-1] if self.list else -1
        if not len(self):
            return torch.full((self.batch,), -1, dtype=torch.long, device=self.device)
        return (torch.where(self.valid, self._ids, -1) if self.padded else self._ids).max(dim=1).values

    def one_block(self) -> bool:  # every real entry of a row in the same block
        if self.list is not None:
            return not self.list or self.list[0] == self.list[-1]
        return bool((self.effective == self.effective[:, :1]).all())


def _raise_to(current: torch.Tensor, value) -> torch.Tensor:
    """Per-row running maximum; ``value`` is an int (shared by the batch) or a (B,) tensor."""
    return current.clamp(min=value) if isinstance(value, int) else torch.maximum(current, value)


class ARMDCache:
    """Everything an ARMD model has computed about one batch of sequences during generation.

    Block ids are a list shared by the batch or a (B, K) tensor per row (``PAD`` = empty slot);
    orders, and therefore positions, may differ per row. ``check=False`` skips the validation of
    each call (``generate`` builds valid calls itself); the checks never change a result.
    """

    def __init__(self, model, batch: int, capacity: int | None = None, check: bool = True):
        cfg = model.cfg
        if cfg.query_stream_init != "prefix":
            raise ValueError(f"the KV cache implements the prefix-aggregation query stream (Eq. 6); this model "
                             f"has query_stream_init={cfg.query_stream_init!r}: sample with cache=False")
        self.model, self.batch, self.check = model, batch, check
        self.capacity = cfg.max_len if capacity is None else capacity  # initial room; grows if needed
        p = model.wte.weight
        shape = (batch, cfg.n_head, cfg.head_dim)
        self.content = [KVCache(*shape, self.capacity + 1, p.dtype, p.device)  # +1: BOS
                        for _ in model.two_stream]
        self.stack = [KVCache(*shape, self.capacity, p.dtype, p.device) for _ in model.causal]
        self.state = model.prefix.init_state(p.new_zeros(batch, 1, cfg.n_embd))  # S: (B, d_pe, D)
        self.n_content = self.n_stack = 0  # rows cached in the content stream (BOS included) / the stack
        self.content_valid = self.stack_valid = None  # (B, rows) once a PAD entry is cached, else None
        self.calls = 0
        # per row: highest block committed (BOS will be block 0) and predicted so far
        self.committed_block = torch.full((batch,), -1, dtype=torch.long, device=p.device)
        self.predicted_block = torch.zeros(batch, dtype=torch.long, device=p.device)
        # with check=True: which positions are committed, and the block each position was predicted in
        self.is_committed = torch.zeros(batch, cfg.max_len + 1, dtype=torch.bool, device=p.device)
        self.predicted_in = torch.full((batch, cfg.max_len + 1), -1, dtype=torch.long, device=p.device)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor | None, pos: torch.Tensor | None, blocks,
             query_pos: torch.Tensor, query_blocks) -> torch.Tensor:
        """Commit ``tokens`` (B, Kx) at original positions ``pos`` (B, Kx) in ``blocks`` (Kx ids, or
        (B, Kx)), then predict original positions ``query_pos`` (B, Kq) in ``query_blocks``.

        Returns logits (B, Kq, V) for the query positions: the model's p(x_n | x_i : B(i) < B(n)),
        equal to one forward pass over every token committed or predicted so far (garbage at PAD
        entries). Per row, committed blocks come after every block committed before and are not
        below the last one predicted; query blocks come after every block committed or predicted
        before. Tokens of the call's own earlier blocks are seen through the masks. The first call
        also commits BOS (block 0).
        """
        model = self.model
        B, dev = self.batch, self.state.device
        if tokens is None:
            tokens = pos = torch.zeros(B, 0, dtype=torch.long, device=dev)
        bx = _Ids(blocks, B, "blocks", dev)
        bq = _Ids(query_blocks, B, "query_blocks", dev)
        if self.check:
            self._validate(tokens, pos, bx, query_pos, bq)
        if bx.padded:  # PAD entries: any in-range id and position; masked out below
            tokens, pos = torch.where(bx.valid, tokens, 0), torch.where(bx.valid, pos, 0)
        if bq.padded:
            query_pos = torch.where(bq.valid, query_pos, 0)

        x = model.wte(tokens)  # (B, Kx, D)
        if bx.padded:
            x = x * bx.valid[..., None]  # PAD rows add nothing to S
        pos_x, valid_x = pos + 1, bx.valid  # internal positions (BOS is 0)
        ids_x = ids_q = None  # block ids as tensors, built only where a mask needs them
        if self.calls == 0:  # first call: BOS joins the committed rows as block 0
            zeros = torch.zeros(B, 1, dtype=torch.long, device=dev)
            x = torch.cat([model.bos.expand(B, 1, -1), x], dim=1)
            pos_x, ids_x = torch.cat([zeros, pos_x], dim=1), torch.cat([zeros, bx.effective], dim=1)
            if valid_x is not None:
                valid_x = torch.cat([torch.ones(B, 1, dtype=valid_x.dtype, device=dev), valid_x], dim=1)  # BOS
        pos_g = query_pos + 1
        if model.wpe is not None:  # learned positions (GPT-2): each content row at its own position
            x = x + model.wpe(pos_x)
            if valid_x is not None:
                x = x * valid_x[..., None]  # PAD rows still add nothing to S
        n_x = x.shape[1]
        # "every query row sees every new content row" (M^sc between the highest content block and the
        # lowest query block): then S is updated before it is read, and (with one content block) no
        # mask is needed
        highest_x, lowest_q = bx.highest(), bq.lowest()
        if isinstance(highest_x, int) and isinstance(lowest_q, int):
            x_before_q = visible(highest_x, lowest_q, strict=True)
        else:
            x_before_q = bool(visible(torch.as_tensor(highest_x), torch.as_tensor(lowest_q), strict=True).all())

        # query-stream start g^0 (Eq. 6): the state covers the cache; add new rows of earlier blocks
        prefix = model.prefix
        if x_before_q:  # commit first, then read
            self.state = prefix.update(self.state, x, pos_x)
            g = prefix.read(self.state, pos_g)  # (B, Kq, D)
        else:  # some new rows are in the query rows' own or later blocks: mask them (parallel form)
            ids_x, ids_q = bx.effective if ids_x is None else ids_x, bq.effective
            pe_q, pe_x = prefix.pe(pos_g).to(self.state.dtype), prefix.pe(pos_x).to(self.state.dtype)
            weights = (pe_q @ pe_x.transpose(1, 2)) * block_mask(ids_q, ids_x, strict=True)  # (B, Kq, Kx)
            g = (pe_q @ self.state + weights @ x.to(self.state.dtype)).to(x.dtype)
            self.state = prefix.update(self.state, x, pos_x)

        if model.wpe is not None:  # ... and each query row at its target's position
            g = g + model.wpe(pos_g)

        # two-stream layers: [content rows; query rows] as one sequence, K/V appended from content
        # rows. Content rows see new content rows of blocks <= theirs (M^c), query rows those of
        # blocks < theirs (M^sc); PAD entries (block _LAST) are seen by no real row
        one_block = bx.one_block() and not (self.calls == 0 and len(bx))  # BOS is a block of its own
        mask = AttentionMask.full()
        if self.content_valid is not None or bx.padded or not (x_before_q and one_block):
            ids_x, ids_q = bx.effective if ids_x is None else ids_x, bq.effective
            sees = torch.cat([block_mask(ids_x, ids_x, strict=False), block_mask(ids_q, ids_x, strict=True)], dim=1)
            mask = _with_cache(sees, self.content_valid, self.n_content)  # (B, 1, Kx + Kq, C + Kx)
        h, pos_h = torch.cat([x, g], dim=1), torch.cat([pos_x, pos_g], dim=1)  # (B, Kx + Kq, D)
        for i, (layer, cache) in enumerate(zip(model.two_stream, self.content)):
            if i < len(self.content) - 1:
                h = cached_block(layer, h, pos_h, cache, mask, n_append=n_x)
            else:  # last one: the content rows' output is never used (as update_content=False)
                if mask.kind == "dense":
                    mask = AttentionMask("dense", dense=mask.dense[:, :, n_x:])
                h = cached_block(layer, h, pos_h, cache, mask, n_append=n_x, n_skip=n_x)
        g = h[:, -len(bq):]  # (B, Kq, D)

        # causal stack (M^c): query rows see cached query rows and new ones of blocks <= theirs
        mask = AttentionMask.full()
        if self.stack_valid is not None or bq.padded or not bq.one_block():
            ids_q = bq.effective
            mask = _with_cache(block_mask(ids_q, ids_q, strict=False), self.stack_valid, self.n_stack)
        for block, cache in zip(model.causal, self.stack):
            g = cached_block(block, g, pos_g, cache, mask)

        self.content_valid = _append_valid(self.content_valid, valid_x if bx.padded else None,
                                           self.n_content, n_x, B, dev)
        self.stack_valid = _append_valid(self.stack_valid, bq.valid if bq.padded else None,
                                         self.n_stack, len(bq), B, dev)
        self.n_content, self.n_stack = self.n_content + n_x, self.n_stack + len(bq)
        if len(bx):
            self.committed_block = _raise_to(self.committed_block, highest_x)
        self.predicted_block = _raise_to(self.predicted_block, bq.highest())
        self.calls += 1
        return model.lm_head(model.ln_f(g))  # (B, Kq, V)

    def _validate(self, tokens, pos, bx: _Ids, query_pos, bq: _Ids) -> None:
        """Raise ValueError for a call whose logits would not equal the full forward pass."""
        cfg, B = self.model.cfg, self.batch
        for name, t in (("tokens", tokens), ("pos", pos), ("query_pos", query_pos)):
            if not isinstance(t, torch.Tensor) or t.dtype != torch.long or t.ndim != 2:
                raise ValueError(f"{name} must be a (batch, K) int64 tensor, got "
                                 f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        if tokens.shape != pos.shape or tokens.shape != (B, len(bx)):
            raise ValueError(f"tokens and pos must both be (batch={B}, {len(bx)}) to match blocks, "
                             f"got {tuple(tokens.shape)} and {tuple(pos.shape)}")
        if query_pos.shape != (B, len(bq)) or not len(bq):
            raise ValueError(f"query_pos must be (batch={B}, {len(bq)}) with at least one "
                             f"position, to match query_blocks; got {tuple(query_pos.shape)}")
        for name, ids in (("blocks", bx), ("query_blocks", bq)):
            real = ids.ids if ids.valid is None else ids.ids[ids.valid]
            if real.numel() and real.min() < 1:
                raise ValueError(f"{name} must be block ids >= 1 (0 is BOS), or PAD = {PAD} for an empty slot")
            if ids.padded:
                running = torch.cummax(torch.where(ids.valid, ids.ids, -1), dim=1).values
                if (ids.valid[:, 1:] & (ids.ids[:, 1:] < running[:, :-1])).any():
                    raise ValueError(f"{name} must be non-decreasing along each row (PAD entries aside)")
            elif (ids.ids[:, 1:] < ids.ids[:, :-1]).any():
                raise ValueError(f"{name} must be non-decreasing (tokens listed in generation order), "
                                 f"got {ids.ids[0].tolist()}")
        for name, t, ids, high in (("tokens", tokens, bx, cfg.vocab_size), ("pos", pos, bx, cfg.max_len),
                                   ("query_pos", query_pos, bq, cfg.max_len)):
            real = t if ids.valid is None else t[ids.valid]
            if real.numel() and (real.min() < 0 or real.max() >= high):
                raise ValueError(f"{name} must lie in 0..{high - 1}, got values in "
                                 f"{int(real.min())}..{int(real.max())}")
        committed = torch.clamp(self.committed_block, min=0)
        low_x = torch.as_tensor(bx.lowest(), device=committed.device)  # (B,) or a scalar
        low_q = torch.as_tensor(bq.lowest(), device=committed.device)
        if (low_x <= committed).any() or (low_x < self.predicted_block).any():
            raise ValueError(f"blocks must be >= 1 and come after the last committed block "
                             f"{self.committed_block.tolist()} (BOS is block 0), and not before the last "
                             f"predicted block {self.predicted_block.tolist()}: those rows were computed without them")
        if (low_q <= torch.maximum(self.committed_block, self.predicted_block)).any():
            raise ValueError(f"query_blocks must come after block(s) "
                             f"{torch.maximum(self.committed_block, self.predicted_block).tolist()}: "
                             "predicting a block after its tokens (or part of it) is cached would leak them")
        # position bookkeeping: nothing committed or predicted twice; with a causal stack every committed
        # token is also predicted; every token predicted in a block before a query block is committed
        is_committed, predicted_in = self.is_committed.clone(), self.predicted_in.clone()
        dump = cfg.max_len  # column that absorbs PAD entries
        for name, p, ids, table in (("pos", pos, bx, is_committed), ("query_pos", query_pos, bq, predicted_in)):
            cols = p if ids.valid is None else torch.where(ids.valid, p, dump)
            seen = table.gather(1, cols) if table.dtype == torch.bool else table.gather(1, cols) >= 0
            if ids.valid is not None:
                seen = seen & ids.valid
            if seen.any() or _has_repeats(cols, ids.valid):
                what = "committed" if table is is_committed else "predicted"
                raise ValueError(f"{name}: a position is {what} twice in a row of the batch; "
                                 f"each position is committed once and predicted once")
            table.scatter_(1, cols, True if table.dtype == torch.bool else ids.ids)
        is_committed[:, dump], predicted_in[:, dump] = False, -1
        if len(self.model.causal) and (is_committed & (predicted_in < 0)).any():
            raise ValueError("with a causal stack (n_two_stream < n_layer) every committed token must also be "
                             "predicted, in this call or an earlier one: its query row is a key of the stack "
                             "(M^c). Add the given tokens' positions to query_pos (generate does so)")
        q_high = torch.as_tensor(bq.highest(), device=committed.device).reshape(-1, 1)  # (B, 1) or (1, 1)
        if ((predicted_in >= 1) & (predicted_in < q_high) & ~is_committed).any():
            raise ValueError("tokens predicted in an earlier block must be committed before a later block is "
                             "predicted: the later block's rows see their content")
        self.is_committed, self.predicted_in = is_committed, predicted_in


def _has_repeats(cols: torch.Tensor, valid: torch.Tensor | None) -> bool:
    """Whether a row lists the same (real) position twice."""
    ranked = torch.sort(cols if valid is None else torch.where(valid, cols, -1 - torch.arange(
        cols.shape[1], device=cols.device)), dim=1).values
    return bool((ranked[:, 1:] == ranked[:, :-1]).any())


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
        if K > 1:  # AR = one token per block: M^c over the new rows is the lower triangle
            ids = torch.arange(K, device=dev)[None]  # (1, K)
            mask = _with_cache(block_mask(ids, ids, strict=False), None, self.length)
        h = net.embed(tokens, pos)  # (B, K, D)
        for block, cache in zip(net.blocks, self.caches):
            h = cached_block(block, h, pos, cache, mask)
        self.length += K
        return net.lm_head(net.ln_f(h))[..., :model.cfg.vocab_size]  # (B, K, V)
