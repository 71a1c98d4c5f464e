"""The decoder-only transformer: lmforge's one model definition.

A GPT (Radford et al. 2018, 2019) is token embeddings, a stack of blocks, a final norm and a
head. Each block is pre-norm: x + Attention(Norm(x)), then x + MLP(Norm(x)) (Vaswani et al.
2017, with the norm moved before each sublayer as in GPT-2). Attention is causal multi-head
self-attention through `F.scaled_dot_product_attention`. Three flavours, chosen by config:

  gpt2   learned absolute positions, LayerNorm, GELU MLP, biases, tied input/output embeddings
  llama  rotary positions (Su et al. 2021), RMSNorm, SwiGLU MLP (Shazeer 2020), grouped-query
         attention (Ainslie et al. 2023), no biases, untied embeddings
  bert   BERT's encoder (Devlin et al. 2019), to read imported BERT-family models: learned
         positions, a LayerNorm on the embeddings, post-norm blocks (Norm(x + Attention(x)),
         then Norm(x + MLP(x)), as in Vaswani et al. 2017), exact GELU, biases, no final norm;
         bidirectional (`causal=False`). Its one segment's token-type embedding is folded into
         the position embeddings at import.

Heads: `lm` gives next-token logits; `scalar` gives one number per position (a reward or a
value, read where the caller chooses: the reward model reads the last token of the answer);
`classes` gives n_classes logits per position (a classifier pools them, lmforge.classify).
A reward model may also carry an `AnswerPrior` (off unless asked for): a learned linear term
in a frozen language model's log-likelihood of the answer.

The forward pass takes explicit `positions` and a `pad_mask` so that left-padded batches
(batched generation, PPO rollouts) see the same positions as unpadded sequences, and an
optional `KVCache` so that generation computes each token once. Initialisation follows GPT-2:
N(0, 0.02), with the residual output projections scaled by 1/sqrt(2 * n_layer).

What this file does not do: tokenization, sampling (see `lmforge/engine.py`), losses (see
`lmforge/train/`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError


@dataclass
class ModelConfig:
    """Architecture of a transformer; saved as the model's config.json."""

    flavour: Literal["gpt2", "llama", "bert"] = "gpt2"
    vocab_size: int = 4096
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None  # grouped-query attention (llama); None: one KV head per query head
    d_model: int = 128
    d_ff: int | None = None  # None: 4*d_model (gpt2), or 8/3*d_model rounded up to 32 (llama, SwiGLU)
    max_seq_len: int = 256
    dropout: float = 0.0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool | None = None  # None: tied for gpt2, untied for llama
    causal: bool = True  # False: bidirectional attention (an encoder)
    qkv_bias: bool = False  # biases on q, k, v in a llama-flavour model (Qwen2 has them); gpt2 always has biases

    def validate(self) -> None:
        if self.d_model % self.n_head:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})", field="d_model")
        if (self.d_model // self.n_head) % 2 and self.flavour == "llama":
            raise ConfigError("rotary embeddings need an even head size (d_model / n_head)", field="n_head")
        if self.kv_heads < 1 or self.n_head % self.kv_heads:
            raise ConfigError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.kv_heads})", field="n_kv_head")
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be positive, got {getattr(self, name)}", field=name)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.dropout}", field="dropout")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def ff_dim(self) -> int:
        if self.d_ff:
            return self.d_ff
        if self.flavour in ("gpt2", "bert"):
            return 4 * self.d_model
        return 32 * math.ceil(8 * self.d_model / 3 / 32)

    @property
    def tied(self) -> bool:
        return self.flavour != "llama" if self.tie_embeddings is None else self.tie_embeddings


# --------------------------------------------------------------------------- pieces


class RMSNorm(nn.Module):
    """x / rms(x) * g (Zhang & Sennrich 2019), computed in float32 for stability."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


def _norm(cfg: ModelConfig) -> nn.Module:
    return RMSNorm(cfg.d_model, cfg.norm_eps) if cfg.flavour == "llama" else nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)


def rope_tables(cfg: ModelConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, (max_seq_len, head_dim / 2)."""
    half = cfg.head_dim // 2
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, half, device=device, dtype=torch.float32) / half))
    angles = torch.outer(torch.arange(cfg.max_seq_len, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x_i, x_{i+d/2}) by the position's angle (the "rotate half" layout Llama uses).

    x: (B, H, T, hd); cos, sin: (B, 1, T, hd/2).
    """
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return out.type_as(x)


class KVCache:
    """Keys and values of every layer for a batch being generated, preallocated to `max_len`.

    `pad_mask` (B, max_len) marks real tokens (True) against left padding; `length` is how
    many positions are filled. `reorder` follows beams as beam search shuffles them.
    """

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device, dtype):
        shape = (batch, cfg.kv_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.pad_mask = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.length = 0
        self.max_len = max_len

    def reorder(self, index: torch.Tensor) -> None:
        for i in range(len(self.k)):
            self.k[i] = self.k[i].index_select(0, index)
            self.v[i] = self.v[i].index_select(0, index)
        self.pad_mask = self.pad_mask.index_select(0, index)


class SlotCache:
    """Keys and values for continuous batching (lmforge.engine.ContinuousBatch): `slots` rows,
    each a sequence of its own length, so that a sequence can join the batch or leave it between
    two decode steps (the idea of Orca, Yu et al. 2022, and vLLM's scheduler, with one contiguous
    buffer a row instead of paged blocks).

    Rows in use are 0..n-1 (kept compact: `move` fills a freed row with the last one), and a
    forward pass covers the rows `select(start, stop)` names: each row's tokens go at its own
    positions, lengths[row] onwards (no left padding: a row computes what it would alone), and
    attend to its own earlier tokens only. A prefill may be right padded (`pad_mask`); only its
    real tokens count towards the row's length, and what the padding wrote is overwritten later.
    """

    def __init__(self, cfg: ModelConfig, slots: int, max_len: int, device, dtype, static: bool = False):
        shape = (slots, cfg.kv_heads, max_len, cfg.head_dim)
        self.static = static  # attend over the whole buffer, masked: the same shapes every step (for torch.compile)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.lengths = torch.zeros(slots, dtype=torch.long, device=device)
        self.max_len = max_len
        self.rows = (0, 0)  # the rows the next forward pass covers
        self.static_keys = max_len
        self._pos: torch.Tensor | None = None
        self._keys = 0

    def select(self, start: int, stop: int, keys: int | None = None) -> SlotCache:
        """The rows the next forward pass covers; with a static cache, `keys`: how many positions
        of each row it attends to (masked beyond each row's length; default all)."""
        self.rows = (start, stop)
        self.static_keys = min(keys or self.max_len, self.max_len)
        return self

    def begin(self, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (B, T) and the attention mask (B, 1, T, S) of T new tokens a row."""
        a, b = self.rows
        start = self.lengths[a:b]
        self._pos = start[:, None] + torch.arange(T, device=start.device)
        if self.static:
            self._keys = self.static_keys  # (the caller keeps every row within it)
        else:
            self._keys = int(start.max()) + T
            if self._keys > self.max_len:
                raise ValueError(f"sequence of {self._keys} tokens is longer than the cache ({self.max_len})")
        keys = torch.arange(self._keys, device=start.device)
        return self._pos, (keys[None, None, :] <= self._pos[:, :, None])[:, None]  # causal within the row

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.rows
        rows = torch.arange(a, b, device=k.device)[:, None]
        self.k[layer][rows, :, self._pos] = k.transpose(1, 2)  # (B, T, heads, hd) at each row's own positions
        self.v[layer][rows, :, self._pos] = v.transpose(1, 2)
        return self.k[layer][a:b, :, : self._keys], self.v[layer][a:b, :, : self._keys]

    def end(self, pad_mask: torch.Tensor | None, T: int) -> None:
        a, b = self.rows
        self.lengths[a:b] += pad_mask.sum(1) if pad_mask is not None else T

    def move(self, src: int, dst: int) -> None:
        """Row `src`'s sequence into row `dst` (whose sequence has left), and `src` emptied."""
        if src != dst:
            n = int(self.lengths[src])
            for i in range(len(self.k)):
                self.k[i][dst, :, :n] = self.k[i][src, :, :n]
                self.v[i][dst, :, :n] = self.v[i][src, :, :n]
            self.lengths[dst] = self.lengths[src]
        self.lengths[src] = 0


def _decode_attention(q, k, v, mask):
    """Attention of one new token a row over its row's keys, written out (softmax(q k^T / sqrt(d)) v,
    Vaswani et al. 2017): for the compiled decode step, where it becomes two batched matrix
    products and one fused softmax, cheaper at one query than the CPU's fused kernel with a mask.
    q (B, H, 1, hd); k, v (B, Hkv, S, hd); mask (B, 1, 1, S)."""
    B, H, _, hd = q.shape
    g = H // k.size(1)  # query heads a key head serves (grouped-query attention)
    qg = q.view(B, k.size(1), g, hd)
    scores = (qg @ k.transpose(-1, -2)) / math.sqrt(hd)  # (B, Hkv, g, S)
    scores = scores.masked_fill(~mask.view(B, 1, 1, -1), float("-inf"))
    return (scores.softmax(-1) @ v).view(B, H, 1, hd)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        bias = cfg.flavour != "llama"
        qkv_bias = bias or cfg.qkv_bias
        self.q = nn.Linear(cfg.d_model, cfg.n_head * cfg.head_dim, bias=qkv_bias)
        self.k = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=qkv_bias)
        self.v = nn.Linear(cfg.d_model, cfg.kv_heads * cfg.head_dim, bias=qkv_bias)
        self.out = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=bias)
        self.out.residual = True  # scaled init (GPT-2)

    def forward(self, x, rope, mask, cache: KVCache | None):
        B, T, _ = x.shape
        cfg = self.cfg
        q = self.q(x).view(B, T, cfg.n_head, cfg.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k(x).view(B, T, cfg.kv_heads, cfg.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v(x).view(B, T, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if isinstance(cache, SlotCache):
            k, v = cache.update(self.layer, k, v)
        elif cache is not None:
            s = cache.length
            cache.k[self.layer][:, :, s : s + T] = k
            cache.v[self.layer][:, :, s : s + T] = v
            k, v = cache.k[self.layer][:, :, : s + T], cache.v[self.layer][:, :, : s + T]
        p = self.cfg.dropout if self.training else 0.0
        gqa = cfg.kv_heads != cfg.n_head
        if mask is None:  # the fast path: plain causal (or full) attention over T tokens
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=cfg.causal, enable_gqa=gqa)
        elif isinstance(cache, SlotCache) and cache.static and T == 1:
            y = _decode_attention(q, k, v, mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, enable_gqa=gqa)
        return self.out(y.transpose(1, 2).reshape(B, T, cfg.n_head * cfg.head_dim))


class MLP(nn.Module):
    """GELU MLP (gpt2: tanh approximation; bert: exact) or SwiGLU: down(silu(gate(x)) * up(x)) (llama)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.swiglu = cfg.flavour == "llama"
        self.gelu = "none" if cfg.flavour == "bert" else "tanh"
        bias = not self.swiglu
        self.up = nn.Linear(cfg.d_model, cfg.ff_dim, bias=bias)
        self.gate = nn.Linear(cfg.d_model, cfg.ff_dim, bias=False) if self.swiglu else None
        self.down = nn.Linear(cfg.ff_dim, cfg.d_model, bias=bias)
        self.down.residual = True
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        h = F.silu(self.gate(x)) * self.up(x) if self.swiglu else F.gelu(self.up(x), approximate=self.gelu)
        return self.drop(self.down(h))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.norm1, self.attn = _norm(cfg), Attention(cfg, layer)
        self.norm2, self.mlp = _norm(cfg), MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.post_norm = cfg.flavour == "bert"

    def forward(self, x, rope, mask, cache):
        if self.post_norm:  # BERT: the norm after each residual sum
            x = self.norm1(x + self.drop(self.attn(x, rope, mask, cache)))
            return self.norm2(x + self.mlp(x))
        x = x + self.drop(self.attn(self.norm1(x), rope, mask, cache))
        return x + self.mlp(self.norm2(x))


# --------------------------------------------------------------------------- the model


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, head: Literal["lm", "scalar", "classes"] = "lm", prior: ModelConfig | None = None, n_classes: int = 0):
        super().__init__()
        cfg.validate()
        self.cfg, self.head_kind = cfg, head
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_seq_len, cfg.d_model) if cfg.flavour != "llama" else None
        self.emb_norm = _norm(cfg) if cfg.flavour == "bert" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = nn.Identity() if cfg.flavour == "bert" else _norm(cfg)  # post-norm blocks end normalised
        if head == "lm":
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
            if cfg.tied:
                self.lm_head.weight = self.tok_emb.weight  # weight tying (Press & Wolf 2017), as GPT-2
        elif head == "classes":
            if n_classes < 2:
                raise ConfigError(f"a classifier needs at least 2 classes, got {n_classes}", field="labels")
            self.class_head = nn.Linear(cfg.d_model, n_classes, bias=True)
        else:
            self.score_head = nn.Linear(cfg.d_model, 1, bias=True)
        if cfg.flavour == "llama":
            cos, sin = rope_tables(cfg)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        if prior is not None and head != "scalar":
            raise ConfigError("an answer prior is a term of a reward model's score (a scalar head)", field="prior")
        self.prior = AnswerPrior(prior) if prior is not None else None  # built after _init: the prior LM is loaded, never initialised

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.cfg.n_layer) if getattr(m, "residual", False) else 0.02
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    # -- bookkeeping --------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, each shared tensor counted once (a reward prior's frozen LM not among them).

        non_embedding: leave out the lookup tables that no matmul uses: position embeddings, and
        the token embedding unless it is tied to the output head (then it is the head's matrix).
        """
        n = sum(p.numel() for name, p in self.named_parameters() if not name.startswith("prior.lm."))  # not a reward prior's frozen LM
        if non_embedding:
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
            if not (self.head_kind == "lm" and self.cfg.tied):
                n -= self.tok_emb.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token: 6N for the matmuls plus 12*L*d*T for attention scores
        (Kaplan et al. 2020; PaLM appendix B), T the context length."""
        T = seq_len or self.cfg.max_seq_len
        return 6 * self.num_params(non_embedding=True) + 12 * self.cfg.n_layer * self.cfg.d_model * T

    def new_cache(self, batch: int, max_len: int, device, dtype) -> KVCache:
        """An empty KV cache for generating `batch` sequences of up to `max_len` tokens."""
        return KVCache(self.cfg, batch, max_len, device, dtype)

    def new_slots(self, slots: int, max_len: int, device, dtype, static: bool = False) -> SlotCache:
        """Empty KV cache slots for `slots` sequences of up to `max_len` tokens each, joining and
        leaving independently (continuous batching)."""
        return SlotCache(self.cfg, slots, max_len, device, dtype, static)

    # -- forward --------------------------------------------------------------------------------
    def hidden(self, idx: torch.Tensor, *, positions=None, pad_mask=None, cache: KVCache | None = None, segments=None, layers: list | None = None) -> torch.Tensor:
        """Final hidden states (B, T, d) for token ids `idx` (B, T).

        positions: (B, T) position of each token (default: 0..T-1 after what the cache holds).
        pad_mask:  (B, T) True for real tokens; False for (left) padding, which no token attends to.
        cache:     a KVCache to read earlier tokens from and append these to.
        segments:  (B, T) integer ids of the examples packed into each row: a token attends only
                   to tokens of its own segment (give positions that restart with each segment).
        layers:    a list to append each block's output to (the residual stream, before the final norm).
        """
        B, T = idx.shape
        cfg = self.cfg
        if isinstance(cache, SlotCache):  # continuous batching: each row at its own positions
            positions, mask = cache.begin(T)
            x, rope = self._embed(idx, positions), self._rope(positions)
            for block in self.blocks:
                x = block(x, rope, mask, cache)
            cache.end(pad_mask, T)
            return self.norm(x)
        start = cache.length if cache is not None else 0
        limit = min(cfg.max_seq_len, cache.max_len) if cache is not None else cfg.max_seq_len
        if start + T > limit:
            raise ValueError(f"sequence of {start + T} tokens is longer than the context ({cfg.max_seq_len})")
        if positions is None:
            positions = torch.arange(start, start + T, device=idx.device).expand(B, T)
        x = self._embed(idx, positions)
        rope = self._rope(positions)
        mask = self._mask(idx, pad_mask, cache, segments)
        for block in self.blocks:
            x = block(x, rope, mask, cache)
            if layers is not None:
                layers.append(x)
        if cache is not None:
            cache.length += T
        return self.norm(x)

    def _embed(self, idx, positions):
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        if self.emb_norm is not None:
            x = self.emb_norm(x)
        return self.drop(x)

    def _rope(self, positions):
        if self.cfg.flavour != "llama":
            return None
        return self.rope_cos[positions].unsqueeze(1), self.rope_sin[positions].unsqueeze(1)  # (B, 1, T, hd/2)

    def _mask(self, idx, pad_mask, cache, segments=None):
        """A boolean attention mask (B, 1, T, S), or None for the plain causal fast path."""
        B, T = idx.shape
        if cache is None and pad_mask is None and segments is None:
            return None
        if segments is not None and cache is not None:
            raise ValueError("packed segments are for training and scoring, not for a KV cache")
        start = cache.length if cache is not None else 0
        S = start + T
        keys = torch.ones(B, S, dtype=torch.bool, device=idx.device)
        if cache is not None:
            if pad_mask is not None:
                cache.pad_mask[:, start:S] = pad_mask
            else:
                cache.pad_mask[:, start:S] = True
            keys = cache.pad_mask[:, :S]
        elif pad_mask is not None:
            keys = pad_mask.bool()
        allowed = keys[:, None, None, :].expand(B, 1, T, S)
        if segments is not None:  # block-diagonal: packed examples do not see each other
            allowed = allowed & (segments[:, None, :, None] == segments[:, None, None, :])
        if self.cfg.causal:
            q_pos = torch.arange(start, S, device=idx.device)[:, None]
            causal = torch.arange(S, device=idx.device)[None, :] <= q_pos  # (T, S)
            allowed = allowed & causal
        # A padding query would attend to nothing (softmax of all -inf = NaN): let it see itself.
        diag = torch.zeros(T, S, dtype=torch.bool, device=idx.device)
        diag[torch.arange(T), torch.arange(start, S)] = True
        return allowed | diag

    @torch.no_grad()
    def add_tokens(self, ids: list[int], like: dict[int, int] | None = None) -> None:
        """Rows for new tokens `ids` in the token embedding and the output head (appended when an
        id is past the vocabulary, else the padding row it takes over): each starts at the mean of
        the rows before the first new id (Hewitt 2021, "Initializing new word embeddings"), or as
        a copy of the row `like[id]` names."""
        like, first = like or {}, min(ids)
        size = max(self.cfg.vocab_size, max(ids) + 1)
        tied = self.head_kind == "lm" and self.lm_head.weight is self.tok_emb.weight
        mats = [self.tok_emb.weight] + ([self.lm_head.weight] if self.head_kind == "lm" and not tied else [])
        grown = []
        for w in mats:
            g = torch.cat([w, w.new_zeros(size - len(w), w.shape[1])]) if size > len(w) else w.clone()
            g[ids] = w[:first].mean(0)
            for i, src in like.items():
                g[i] = w[src]
            grown.append(g)
        self.tok_emb = nn.Embedding(size, self.cfg.d_model).to(grown[0])
        self.tok_emb.weight.copy_(grown[0])
        if self.head_kind == "lm":
            if tied:
                self.lm_head.weight = self.tok_emb.weight
            else:
                self.lm_head = nn.Linear(self.cfg.d_model, size, bias=False).to(grown[1])
                self.lm_head.weight.copy_(grown[1])
        self.cfg.vocab_size = size

    def forward(self, idx, *, positions=None, pad_mask=None, cache=None, segments=None) -> torch.Tensor:
        """Logits (B, T, vocab) for the lm head, (B, T, n_classes) for the classes head, or scores
        (B, T) for the scalar head."""
        h = self.hidden(idx, positions=positions, pad_mask=pad_mask, cache=cache, segments=segments)
        if self.head_kind == "lm":
            return self.lm_head(h)
        if self.head_kind == "classes":
            return self.class_head(h)
        return self.score_head(h).squeeze(-1)


class AnswerPrior(nn.Module):
    """A reward model's optional second term: w . z(x, y), z the standardised sum, mean and
    minimum of a frozen language model's log-probabilities of the answer's tokens, and their
    number. The reward is then r(x, y) = score_head(h_last) + w . z.

    Why: a scalar head on the last token, trained on a few thousand noisy comparisons, does not
    reach what its language model knows. On the built-in world, the SFT model's own likelihood
    of an answer orders answers to fact and arithmetic prompts by correctness far better
    (0.79-0.91 of oracle-ordered pairs) than the trained reward model does (0.61), and a linear
    head on these four numbers alone beats it overall (docs/experiments/2026-11-30-stage-measurements.md). The language model (the reward
    model's init) stays frozen, so the term is a learned prior, not something the body can
    reshape; w is trained with the rest, from the fit of the four numbers alone
    (`lmforge.train.reward.init_prior`)."""

    FEATURES = ("logp_sum", "logp_mean", "logp_min", "tokens")

    def __init__(self, lm_cfg: ModelConfig):
        super().__init__()
        self.lm = Transformer(lm_cfg, head="lm").requires_grad_(False)
        self.weight = nn.Parameter(torch.zeros(len(self.FEATURES)))
        self.register_buffer("mean", torch.zeros(len(self.FEATURES)))
        self.register_buffer("std", torch.ones(len(self.FEATURES)))

    def train(self, mode: bool = True) -> "AnswerPrior":
        super().train(mode)
        self.lm.eval()  # frozen: no dropout, whatever the reward model does
        return self

    @torch.no_grad()
    def features(self, ids: torch.Tensor, starts: torch.Tensor, last: torch.Tensor, positions=None, segments=None) -> torch.Tensor:
        """(N, 4) raw features of the answers whose tokens run from flat index `starts` to `last`
        (inclusive) of the (rows, width) `ids`; an answer with no token gets zeros. A token's
        log-probability is read from the position before it, so `starts` must not be the first
        position of its sequence (the prompt precedes the answer)."""
        logits = self.lm(ids, positions=positions, segments=segments).float()
        logp = torch.zeros(ids.shape, dtype=torch.float32, device=ids.device)
        logp[:, 1:] = logits[:, :-1].gather(2, ids[:, 1:, None]).squeeze(-1) - logits[:, :-1].logsumexp(-1)
        flat = logp.reshape(-1)
        n = (last - starts + 1).clamp(min=0)
        owner = torch.repeat_interleave(torch.arange(len(n), device=ids.device), n)
        offset = torch.arange(int(n.sum()), device=ids.device) - torch.repeat_interleave(n.cumsum(0) - n, n)
        vals = flat[torch.repeat_interleave(starts, n) + offset]
        total = torch.zeros(len(n), device=ids.device).index_add_(0, owner, vals)
        low = torch.zeros(len(n), device=ids.device).scatter_reduce_(0, owner, vals, "amin", include_self=False)
        return torch.stack([total, total / n.clamp(min=1), low, n.float()], 1)

    def forward(self, ids, starts, last, positions=None, segments=None) -> torch.Tensor:
        """w . z for each answer: (N,)."""
        z = (self.features(ids, starts, last, positions, segments) - self.mean) / self.std
        return z @ self.weight.float()


def positions_from_mask(pad_mask: torch.Tensor) -> torch.Tensor:
    """Positions for a left-padded batch: the first real token is position 0 (Huang et al.'s PPO notes)."""
    return (pad_mask.long().cumsum(-1) - 1).clamp(min=0)
