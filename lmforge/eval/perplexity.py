"""Perplexity and bits per byte of a language model on text.

Documents are encoded with the model's tokenizer, each followed by the end-of-text token,
joined, and cut into consecutive windows of the model's context; every token after the first
of the stream is predicted once. Perplexity is exp(mean negative log-likelihood per token);
bits per byte is the summed negative log-likelihood in bits over the UTF-8 bytes of the text,
which does not depend on the tokenizer (the end-of-text tokens are scored but stand for no
bytes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.readers import iter_documents
from ..errors import InputError


@torch.no_grad()
def perplexity(model, tokenizer, data, *, text_field="text", sample_by="document", split=None, batch_size: int = 8) -> dict:
    stream: list[int] = []
    n_bytes = 0
    docs = 0
    for text in iter_documents(data, text_field=text_field, sample_by=sample_by, split=split):
        stream.extend(tokenizer.encode(text))
        stream.append(tokenizer.eos_id)
        n_bytes += len(text.encode("utf-8"))
        docs += 1
    if len(stream) < 2:
        raise InputError("not enough text to score", path=data)
    ctx = model.cfg.max_seq_len
    ids = torch.tensor(stream, dtype=torch.long)
    device = next(model.parameters()).device
    windows = [ids[i : i + ctx + 1] for i in range(0, len(ids) - 1, ctx)]
    nll, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        # only the stream's last window can be shorter: it gets a forward pass of its own
        groups = [chunk] if len(chunk[-1]) == len(chunk[0]) else [chunk[:-1], chunk[-1:]]
        for group in groups:
            batch = torch.stack(group).to(device)
            logits = model(batch[:, :-1]).float()
            nll += F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction="sum").item()
            count += batch[:, 1:].numel()
    loss = nll / count
    return {"loss": loss, "perplexity": math.exp(loss), "bpb": nll / (math.log(2) * n_bytes), "tokens": count, "bytes": n_bytes, "documents": docs}
