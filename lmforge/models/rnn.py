"""Recurrent language models: Elman RNN (tanh), LSTM and GRU, the baselines before attention.

Token embeddings, a stack of PyTorch's recurrent layers (Elman 1990; Hochreiter & Schmidhuber
1997; Cho et al. 2014), and a softmax output layer, tied to the embeddings (Press & Wolf 2017;
Inan et al. 2017) through a linear projection when the hidden size differs from the embedding
size. This is the "medium" word-level LM of Zaremba et al. (2014) in shape, at any size.

The hidden state is the model's only memory of the past, so:
  - training uses truncated backpropagation through time: batches are consecutive stretches
    of B parallel token streams (`lmforge.data.shards.StreamLoader`), the state is carried
    from one batch to the next and detached in between (`lmforge.train.pretrain.rnn_objective`);
  - evaluation carries the state across windows of a stream too (`lmforge.eval.perplexity`);
  - for generation the state plays the part of the transformer's KV cache: `new_cache` makes
    an `RNNState`, and the engine drives both models through the same calls
    `model(ids, positions=, pad_mask=, cache=)`.

Padding (False in `pad_mask`) is skipped, not read: each row's real tokens are packed
(`nn.utils.rnn.pack_padded_sequence`), so a left-padded row ends in the state it would reach
alone. `positions` is accepted for the engine's sake and ignored: an RNN has no positions.

What this file does not do: sampling (`lmforge/engine.py`), losses (`lmforge/train/`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from ..errors import ConfigError


@dataclass
class RNNConfig:
    """Architecture of a recurrent LM; saved as the model's config.json."""

    cell: Literal["rnn", "lstm", "gru"] = "lstm"  # rnn: Elman's, with tanh
    vocab_size: int = 4096
    d_embed: int = 128
    d_hidden: int = 256
    n_layer: int = 2
    dropout: float = 0.0  # between layers and on embeddings/outputs (Zaremba et al. 2014)
    tie_embeddings: bool = True
    max_seq_len: int = 4096  # no positional limit: this bounds one generation call (prompt and answer)

    def validate(self) -> None:
        for name in ("vocab_size", "d_embed", "d_hidden", "n_layer", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be positive, got {getattr(self, name)}", field=name)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.dropout}", field="dropout")


class RNNState:
    """The recurrent state of a batch (the RNN's "cache"): `h` is (layers, B, d_hidden), or a pair
    (h, c) for the LSTM; None until the first token is read (a zero state)."""

    def __init__(self, max_len: int):
        self.h: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None
        self.length = 0  # tokens read, padding included (the engine's budget counts them)
        self.max_len = max_len

    def map(self, fn) -> None:
        if isinstance(self.h, tuple):
            self.h = tuple(fn(x) for x in self.h)
        elif self.h is not None:
            self.h = fn(self.h)

    def reorder(self, index: torch.Tensor) -> None:
        """Follow beams as beam search shuffles them (batch is dim 1 of the state)."""
        self.map(lambda x: x.index_select(1, index))

    def detach(self) -> None:
        """Cut the graph here: truncated backpropagation through time."""
        self.map(lambda x: x.detach())


class RNNLM(nn.Module):
    head_kind = "lm"

    def __init__(self, cfg: RNNConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.d_embed)
        kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cfg.cell]
        extra = {"nonlinearity": "tanh"} if cfg.cell == "rnn" else {}
        self.rnn = kind(cfg.d_embed, cfg.d_hidden, num_layers=cfg.n_layer, batch_first=True, dropout=cfg.dropout if cfg.n_layer > 1 else 0.0, **extra)
        self.drop = nn.Dropout(cfg.dropout)
        d_out = cfg.d_embed if cfg.tie_embeddings else cfg.d_hidden
        # a tied output layer needs outputs of the embedding's size: project down (Inan et al. 2017)
        self.proj = nn.Linear(cfg.d_hidden, d_out, bias=False) if d_out != cfg.d_hidden else nn.Identity()
        self.lm_head = nn.Linear(d_out, cfg.vocab_size, bias=True)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.emb.weight
        # small uniform init of embeddings and output bias at zero (Zaremba et al. 2014 use U(-0.1, 0.1)
        # everywhere; PyTorch's recurrent layers keep their own U(-1/sqrt(d), 1/sqrt(d)))
        nn.init.uniform_(self.emb.weight, -0.1, 0.1)
        nn.init.zeros_(self.lm_head.bias)
        if not cfg.tie_embeddings:
            nn.init.uniform_(self.lm_head.weight, -0.1, 0.1)

    # -- bookkeeping --------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, each shared tensor counted once; non_embedding leaves out an untied input
        embedding (a lookup table, no matmul)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and not self.cfg.tie_embeddings:
            n -= self.emb.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token: 6 per weight that multiplies (forward 2, backward 4)."""
        return 6 * self.num_params(non_embedding=True)

    def new_cache(self, batch: int, max_len: int, device, dtype) -> RNNState:
        return RNNState(max_len)

    # -- forward --------------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor, *, positions=None, pad_mask=None, cache: RNNState | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids `idx` (B, T).

        cache:    an RNNState to start from (None: a zero state) and to leave the final state in.
        pad_mask: (B, T) True for real tokens; padding is skipped and its logits are those of the
                  state before it (finite, and meaningless, as the transformer's are).
        """
        T = idx.size(1)
        if cache is not None and cache.length + T > cache.max_len:
            raise ValueError(f"sequence of {cache.length + T} tokens is longer than the state's budget ({cache.max_len})")
        state = cache.h if cache is not None else None
        x = self.drop(self.emb(idx))
        if pad_mask is None or bool(pad_mask.all()):
            out, state = self.rnn(x, state)
        else:
            out, state = self._packed(x, pad_mask.bool(), state)
        if cache is not None:
            cache.h = state
            cache.length += T
        return self.lm_head(self.proj(self.drop(out)))

    def _packed(self, x: torch.Tensor, mask: torch.Tensor, state):
        """Run only the real tokens of each row (wherever the padding is), from `state`."""
        T = x.size(1)
        lengths = mask.sum(1)
        if bool((lengths == 0).any()):
            raise ValueError("a row of the batch has no real token")
        # gather each row's real tokens to the front, in order (a stable sort puts True first)
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # (B, T)
        front = x.gather(1, order[:, :, None].expand_as(x))
        packed = nn.utils.rnn.pack_padded_sequence(front, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed, state)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, d), padding zero
        # out[:, j] follows the row's j-th real token. Position t gets the output after the last real
        # token at or before it: its own for a real token, the one before for padding (zeros before any)
        rank = mask.long().cumsum(1) - 1
        keep = rank >= 0
        out_at = out.gather(1, rank.clamp(min=0)[:, :, None].expand_as(out))
        return torch.where(keep[:, :, None], out_at, torch.zeros_like(out_at)), state
