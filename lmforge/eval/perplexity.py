"""Perplexity and bits per byte of a language model on text.

Documents are encoded with the model's tokenizer, each followed by the end-of-text token, and
joined into one stream that starts with an end-of-text token, so that every token of every
document is predicted, the first one from the same "start of a document" context it had in
training. Perplexity is exp(mean negative log-likelihood per token); bits per byte is the
summed negative log-likelihood in bits over the UTF-8 bytes the predicted tokens stand for,
which does not depend on the tokenizer (the end-of-text tokens are scored but stand for no
bytes), so models with different tokenizers, and n-gram models, compare on it.

How a stream is scored depends on the model's memory (`score_stream`):
  - a transformer reads windows of the length it was trained on: non-overlapping ones (each
    starting afresh, as in training), or with a `stride` shorter than the window, sliding
    ones, so that every token but the first few has at least window - stride tokens of
    context;
  - a recurrent model reads the stream in chunks, carrying its state from one chunk to the
    next, so every token is predicted from everything before it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.readers import iter_documents, iter_grouped_texts
from ..errors import InputError


def unwrap(model):
    """The model itself, out of a DDP wrapper or a torch.compile module."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def is_recurrent(model) -> bool:
    from ..models.rnn import RNNLM

    return isinstance(unwrap(model), RNNLM)


def default_window(model) -> int:
    """A transformer's evaluation window: the length it was trained on, else its whole context."""
    model = unwrap(model)
    return min(getattr(model, "trained_seq_len", None) or model.cfg.max_seq_len, model.cfg.max_seq_len)


@torch.no_grad()
def score_stream(
    model,
    stream: torch.Tensor,
    token_bytes: torch.Tensor | None = None,
    *,
    n_bytes: int | None = None,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
) -> dict:
    """Loss, perplexity and bits per byte of predicting stream[1:] from what precedes each token.

    stream: 1-D token ids. The divisor of bits per byte is `n_bytes` if given (the text's own
    bytes), else the sum of `token_bytes` (vocab,) over the predicted tokens.
    window: tokens per forward pass. Default: for a transformer the context it was trained on
    (`trained_seq_len`, from its config.json) or else its maximum; for a recurrent model 512, its
    state carrying across passes.
    stride: transformers only. Each pass scores the `stride` tokens after the previous pass's,
    with up to window - stride tokens before them as context only (the sliding window of
    Hugging Face's "perplexity of fixed-length models"); the default, stride = window, reads
    non-overlapping windows, each starting afresh (the last one reaches back a whole window).
    """
    if stream.numel() < 2:
        raise InputError("not enough text to score (fewer than two tokens)")
    for name, value in (("window", window), ("stride", stride), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be >= 1, got {value}", field=name)
    model = unwrap(model)
    if stride is not None and is_recurrent(model):
        raise InputError("stride applies to transformers; a recurrent model carries its state through the whole stream", field="stride")
    device = next(model.parameters()).device
    stream = stream.to(device=device, dtype=torch.long)
    nll = torch.zeros((), dtype=torch.float64, device=device)
    n = stream.numel() - 1  # targets: stream[1..n]
    if is_recurrent(model):
        window = window or 512
        cache = model.new_cache(1, stream.numel(), device, next(model.parameters()).dtype)
        for i in range(0, n, window):
            chunk = stream[i : i + window + 1]
            logits = model(chunk[None, :-1], cache=cache)[0].float()
            nll += F.cross_entropy(logits, chunk[1:], reduction="sum").double()
    else:
        window = min(window or default_window(model), model.cfg.max_seq_len)
        stride = min(stride or window, window)
        # pass j scores targets (done, end] from inputs stream[begin:end], begin = max(0, end - window)
        passes = []
        done = 0
        while done < n:
            end = min(done + stride, n)
            passes.append((max(0, end - window), end, end - done))
            done = end
        full = [p for p in passes if p[1] - p[0] == window]
        short = [p for p in passes if p[1] - p[0] != window]  # the first few, before a window fits
        groups = [full[i : i + batch_size] for i in range(0, len(full), batch_size)] + [[p] for p in short]
        for group in groups:
            x = torch.stack([stream[b:e] for b, e, _ in group])
            y = torch.stack([stream[b + 1 : e + 1] for b, e, _ in group])
            logits = model(x).float()
            losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none").view(len(group), -1)
            keep = torch.zeros_like(losses, dtype=torch.bool)
            for row, (_, _, new) in enumerate(group):
                keep[row, -new:] = True
            nll += losses[keep].double().sum()
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


def perplexity(
    model, tokenizer, data, *, text_field="text", sample_by="document", split=None, batch_size: int = 8, window: int | None = None, stride: int | None = None, by: str | None = None
) -> dict:
    """`lmforge eval ppl`: score every document of `data` (see the module docstring). With `by`
    (a record field such as language, or "file"), each group's documents are scored as a stream
    of their own as well (`by` in the result): bits per byte per language, as MEGA and mT5
    compare them; the totals are over all documents."""
    if by:
        groups: dict[str, list[str]] = {}
        for text, group in iter_grouped_texts(data, by, text_field=text_field, sample_by=sample_by, split=split):
            groups.setdefault(group, []).append(text)
        if not groups:
            raise InputError("no documents to score", path=data)
        per = {g: _score_texts(model, tokenizer, texts, batch_size, window, stride) for g, texts in groups.items()}
        total = _score_texts(model, tokenizer, [t for texts in groups.values() for t in texts], batch_size, window, stride)
        return {**total, "by": per}
    texts = list(iter_documents(data, text_field=text_field, sample_by=sample_by, split=split))
    if not texts:
        raise InputError("no documents to score", path=data)
    return _score_texts(model, tokenizer, texts, batch_size, window, stride)


def _score_texts(model, tokenizer, texts: list[str], batch_size: int, window: int | None, stride: int | None) -> dict:
    stream: list[int] = [tokenizer.eos_id]
    n_bytes = 0
    for text in texts:
        stream.extend(tokenizer.encode(text))
        stream.append(tokenizer.eos_id)
        n_bytes += len(text.encode("utf-8"))
    result = score_stream(model, torch.tensor(stream, dtype=torch.long), n_bytes=n_bytes, window=window, stride=stride, batch_size=batch_size)
    result["documents"] = len(texts)
    return result
