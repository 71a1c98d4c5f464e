"""Perplexity and bits per byte of a language model on text.

Documents are encoded with the model's tokenizer, each followed by the end-of-text token, and
joined into one stream that starts with an end-of-text token, so that every token of every
document is predicted, the first one from the same "start of a document" context it had in
training. Perplexity is exp(mean negative log-likelihood per token); bits per byte is the
summed negative log-likelihood in bits over the UTF-8 bytes the predicted tokens stand for,
which does not depend on the tokenizer (the end-of-text tokens are scored but stand for no
bytes), so models with different tokenizers, and n-gram models, compare on it.

How a stream is scored depends on the model's memory (`score_stream`):
  - a transformer reads consecutive, non-overlapping windows of its context length (each
    window starts afresh, as in training);
  - a recurrent model reads the stream in chunks, carrying its state from one chunk to the
    next, so every token is predicted from everything before it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.readers import iter_documents
from ..errors import InputError


def is_recurrent(model) -> bool:
    from ..models.rnn import RNNLM

    return isinstance(model, RNNLM)


@torch.no_grad()
def score_stream(model, stream: torch.Tensor, token_bytes: torch.Tensor | None = None, *, n_bytes: int | None = None, window: int | None = None, batch_size: int = 8) -> dict:
    """Loss, perplexity and bits per byte of predicting stream[1:] from what precedes each token.

    stream: 1-D token ids. The divisor of bits per byte is `n_bytes` if given (the text's own
    bytes), else the sum of `token_bytes` (vocab,) over the predicted tokens.
    window: tokens per forward pass (default: the model's context for a transformer, 512 for a
    recurrent model, whose state carries across passes).
    """
    if stream.numel() < 2:
        raise InputError("not enough text to score (fewer than two tokens)")
    model = getattr(model, "module", model)  # a DDP wrapper: score with the module itself
    device = next(model.parameters()).device
    stream = stream.to(device=device, dtype=torch.long)
    nll = torch.zeros((), dtype=torch.float64, device=device)
    if is_recurrent(model):
        window = window or 512
        cache = model.new_cache(1, stream.numel(), device, next(model.parameters()).dtype)
        for i in range(0, stream.numel() - 1, window):
            chunk = stream[i : i + window + 1]
            logits = model(chunk[None, :-1], cache=cache)[0].float()
            nll += F.cross_entropy(logits, chunk[1:], reduction="sum").double()
    else:
        window = min(window or model.cfg.max_seq_len, model.cfg.max_seq_len)
        windows = [stream[i : i + window + 1] for i in range(0, stream.numel() - 1, window)]
        for i in range(0, len(windows), batch_size):
            chunk = windows[i : i + batch_size]
            # only the stream's last window can be shorter: it gets a forward pass of its own
            groups = [chunk] if len(chunk[-1]) == len(chunk[0]) else [chunk[:-1], chunk[-1:]]
            for group in groups:
                if not group:
                    continue
                batch = torch.stack(group)
                logits = model(batch[:, :-1]).float()
                nll += F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction="sum").double()
    targets = stream[1:]
    count = targets.numel()
    if n_bytes is None:
        n_bytes = int(token_bytes.to(device)[targets].double().sum())
    loss = float(nll) / count
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "bpb": float(nll) / (math.log(2) * n_bytes) if n_bytes else float("nan"),
        "tokens": count,
        "bytes": n_bytes,
    }


def perplexity(model, tokenizer, data, *, text_field="text", sample_by="document", split=None, batch_size: int = 8) -> dict:
    """`lmforge eval ppl`: score every document of `data` (see the module docstring)."""
    stream: list[int] = [tokenizer.eos_id]
    docs = n_bytes = 0
    for text in iter_documents(data, text_field=text_field, sample_by=sample_by, split=split):
        stream.extend(tokenizer.encode(text))
        stream.append(tokenizer.eos_id)
        n_bytes += len(text.encode("utf-8"))
        docs += 1
    if docs == 0:
        raise InputError("no documents to score", path=data)
    result = score_stream(model, torch.tensor(stream, dtype=torch.long), n_bytes=n_bytes, batch_size=batch_size)
    result["documents"] = docs
    return result
