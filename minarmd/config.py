"""Model configurations: a plain transformer's, and ARMD's on top of it.

Every field has a default except the five that define a model's size. A config that cannot
describe a working model (a width not divisible by the heads, more two-stream layers than layers,
...) raises ``ValueError`` naming the field, at construction time rather than deep in a forward pass.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .validation import check_int

__all__ = ["ATTN_BACKENDS", "QUERY_STREAM_INITS", "PE_INITS", "POSITION_EMBEDDINGS", "ACTIVATIONS", "ARCHS",
           "TransformerConfig", "ARMDConfig"]

ATTN_BACKENDS = ("auto", "dense", "causal", "flex")
QUERY_STREAM_INITS = ("prefix", "token")
PE_INITS = ("neighbours", "random")  # how ARMD's prefix-aggregation table PE starts (two_stream.py)
POSITION_EMBEDDINGS = ("rope", "learned")
ACTIVATIONS = ("gelu", "gelu_tanh")
# the two architectures a run can ask for (TrainConfig.arch): minarmd's own, and GPT-2's, whose weights
# ``adapt.armd_from_hf_gpt2`` loads (learned absolute positions, biases, tanh-GELU, tied head)
ARCHS = {"rope": {}, "gpt2": dict(position_embedding="learned", activation="gelu_tanh", bias=True,
                                  tie_weights=True)}


@dataclass(kw_only=True)
class TransformerConfig:
    """Size and options of a pre-LayerNorm transformer with RoPE (shared by ARMD and the baselines)."""

    vocab_size: int  # number of token ids, e.g. 50257 for GPT-2 BPE (required)
    max_len: int  # longest sequence accepted; positions are 0..max_len-1 (required)
    n_layer: int  # number of transformer layers L (required)
    n_head: int  # attention heads per layer (required)
    n_embd: int  # model width d; must be divisible by n_head (required)
    dropout: float = 0.0  # dropout on embeddings, attention weights and residual branches
    bias: bool = False  # biases in Linear and LayerNorm layers (GPT-2 had them; they rarely help)
    tie_weights: bool = True  # the LM head reuses the token-embedding matrix, as in GPT-2
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * n_embd, as in GPT-2
    rope_base: float = 10000.0  # RoPE frequency base (RoFormer's value)
    # "rope" rotates queries and keys by original positions; "learned" adds a (max_len + 1, D) table to
    # the input instead (GPT-2; ARMD adds it to the content stream at each token's position and to the
    # query stream at its target's position). max_len + 1 rows: ARMD's BOS takes position 0
    position_embedding: str = "rope"
    activation: str = "gelu"  # MLP nonlinearity: "gelu" (exact, erf) or "gelu_tanh" (GPT-2's approximation)

    def __post_init__(self):
        for name in ("vocab_size", "max_len", "n_layer", "n_head", "n_embd", "mlp_ratio"):
            check_int(name, getattr(self, name))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head} "
                             f"(each head gets n_embd // n_head dimensions)")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"n_embd // n_head = {self.n_embd // self.n_head} must be even: RoPE rotates "
                             f"pairs of dimensions (change n_embd or n_head)")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.rope_base > 1.0:
            raise ValueError(f"rope_base must be > 1, got {self.rope_base!r}")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(f"position_embedding must be one of {POSITION_EMBEDDINGS}, "
                             f"got {self.position_embedding!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(kw_only=True)
class ARMDConfig(TransformerConfig):
    """An ARMD model: L2s two-stream layers, then L - L2s block-causal layers on the query stream."""

    n_two_stream: int | None = None  # L2s, two-stream layers at the bottom; None -> n_layer // 2 (paper)
    # PE's init (the paper is silent): "neighbours" makes <PE_p, PE_q> = 1 for |p - q| = 1 and 0 for other
    # pairs, so g^0_n starts as the sum of n's visible neighbours (left to right: x_{n-1}, a GPT's input row);
    # "random" draws N(0, pe_init_std^2). Tiny Shakespeare, 1500 steps: the random init left ARMD ~3 % behind
    # AR left to right, the neighbours init ~0.5 % (benchmarks/RESULTS.md §5)
    pe_init: str = "neighbours"
    d_pe: int | None = None  # PE's width; None -> max_len + 1 for "neighbours" (one column per position), else 64
    pe_init_std: float = 0.02  # "random" PE: 0.02 starts G^0 near 0 (1/sqrt(d_pe) trained ~2x slower, README)
    attn_backend: str = "auto"  # "auto", "dense" (SDPA + bool mask), "causal" (singleton blocks), "flex" (CUDA)
    query_stream_init: str = "prefix"  # "prefix" = Eq. 6; "token" = the naive query x_n that leaks (teaching only)
    validate_inputs: bool = True  # check ids, positions and blocks on every call (costs host syncs on GPU)

    def __post_init__(self):
        super().__post_init__()
        if self.n_two_stream is None:
            self.n_two_stream = self.n_layer // 2
        if not isinstance(self.n_two_stream, int) or isinstance(self.n_two_stream, bool) \
                or not 0 <= self.n_two_stream <= self.n_layer:
            raise ValueError(f"n_two_stream must be an integer in 0..n_layer={self.n_layer}, "
                             f"got {self.n_two_stream!r}")
        if self.pe_init not in PE_INITS:
            raise ValueError(f"pe_init must be one of {PE_INITS}, got {self.pe_init!r}")
        if self.d_pe is None:
            self.d_pe = self.max_len + 1 if self.pe_init == "neighbours" else 64
        check_int("d_pe", self.d_pe)
        if self.pe_init == "neighbours" and self.d_pe < self.max_len + 1:
            raise ValueError(f"pe_init='neighbours' needs d_pe >= max_len + 1 = {self.max_len + 1} (one column per "
                             f"position, BOS included), got d_pe={self.d_pe}: pass d_pe={self.max_len + 1} (or "
                             f"None), or pe_init='random'")
        if not self.pe_init_std > 0:
            raise ValueError(f"pe_init_std must be > 0, got {self.pe_init_std!r}")
        if self.attn_backend not in ATTN_BACKENDS:
            raise ValueError(f"attn_backend must be one of {ATTN_BACKENDS}, got {self.attn_backend!r}")
        if self.query_stream_init not in QUERY_STREAM_INITS:
            raise ValueError(f"query_stream_init must be one of {QUERY_STREAM_INITS}, "
                             f"got {self.query_stream_init!r}")
