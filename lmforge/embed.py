"""Document embeddings: one vector per document from a trained model's hidden states, for clustering
(`lmforge cluster`), classifiers on frozen features and retrieval.

A document is tokenized as the model reads a new document (`Tokenizer.document_ids`: lmforge's own
tokenizers open it with the end-of-text separator, BERT's with [CLS] and close it with [SEP]), cut
into windows of the model's context, and each window's token states are pooled:

- `mean`: the average of the window's token states (sentence-BERT's default, Reimers & Gurevych
  2019, section 3, better than [CLS] for similarity);
- `cls`: the first token's state (BERT's [CLS], Devlin et al. 2019; in lmforge's documents the
  separator that opens them);
- `last`: the last token's state, the only one that has read the whole window in a causal model.

`layers=K` averages the last K blocks' states first, each through the model's final norm (a
pre-norm model reads its residual stream out through it; BERT's feature-based experiments, table 7,
combine the last four layers). A document longer than one window gets the average of its windows'
vectors, weighted by their tokens under mean pooling, so a long text's embedding stays the mean of
its tokens as far as the context lets each see the others. Windows are batched by length with right
padding, which no token attends to: a padded batch gives what one window at a time gives (tested).

Files: `.parquet` (columns id, text_sha256, vector) or `.npy` (the matrix, documents in order).
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .errors import ConfigError, InputError
from .io import atomic_write_bytes

Pooling = Literal["mean", "cls", "last"]
FORMATS = (".parquet", ".npy")


@dataclass
class EmbedConfig:
    pooling: Pooling = "mean"
    layers: int = 1  # average the last K blocks' states
    window: int = 0  # tokens per window (0: the length the model was trained on)
    batch_size: int = 16
    text_field: str = "text"
    id_field: str = "id"  # a record's id; without one, its position in the data (0, 1, ...)

    def validate(self, n_layer: int, causal: bool = False) -> None:
        if self.pooling not in ("mean", "cls", "last"):
            raise ConfigError(f"must be mean, cls or last, got {self.pooling!r}", field="pooling")
        if self.pooling == "cls" and causal:
            raise ConfigError("a causal model's first token sees only itself: every document would get the same vector; use mean or last", field="pooling")
        if not 1 <= self.layers <= n_layer:
            raise ConfigError(f"must be between 1 and the model's {n_layer} layers, got {self.layers}", field="layers")
        if self.batch_size < 1 or self.window < 0:
            raise ConfigError("batch_size must be positive and window not negative", field="batch_size")


def layer_states(model, ids: torch.Tensor, pad_mask: torch.Tensor, layers: int = 1) -> torch.Tensor:
    """(B, T, d): the mean of the last `layers` blocks' states, each through the final norm."""
    collected: list[torch.Tensor] = []
    last = model.hidden(ids, pad_mask=pad_mask, layers=collected)
    if layers == 1:
        return last
    return torch.stack([model.norm(h) for h in collected[-layers:-1]] + [last]).mean(0)


def pool(states: torch.Tensor, pad_mask: torch.Tensor, how: Pooling) -> torch.Tensor:
    """(B, d) from (B, T, d) states of right-padded rows (pad_mask True at real tokens)."""
    if how == "mean":
        w = pad_mask.unsqueeze(-1).to(states.dtype)
        return (states * w).sum(1) / w.sum(1).clamp(min=1)
    if how == "cls":
        return states[:, 0]
    return states[torch.arange(len(states)), pad_mask.long().sum(1) - 1]


def pad_batch(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, pad_mask) of token-id rows, right-padded."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return ids, mask


def load_transformer(path: str, field: str = "model"):
    """(model, folder, tokenizer) of a transformer (an encoder, a GPT or an imported BERT) at `path`;
    another kind of model is refused, naming `field`."""
    from .models import load_model
    from .models.transformer import Transformer
    from .tokenizer import Tokenizer

    model, folder = load_model(path)
    if not isinstance(model, Transformer):
        raise InputError("needs a transformer (an encoder or a GPT), not this model", path=folder, field=field)
    return model, folder, Tokenizer.load(folder)


def model_window(model) -> int:
    trained = getattr(model, "trained_seq_len", None)
    return int(trained or model.cfg.max_seq_len)


@torch.no_grad()
def embed_documents(model, tokenizer, texts: list[str], cfg: EmbedConfig, bar=None) -> tuple[np.ndarray, int]:
    """(len(texts), d) float32 vectors and the number of windows embedded."""
    window = min(cfg.window or model_window(model), model.cfg.max_seq_len)
    pieces: list[tuple[int, list[int]]] = []
    for i, text in enumerate(texts):
        ids = tokenizer.document_ids(text) or [tokenizer.pad_id]
        pieces += [(i, ids[lo : lo + window]) for lo in range(0, len(ids), window)]
    order = sorted(range(len(pieces)), key=lambda j: len(pieces[j][1]))  # little padding
    device = next(model.parameters()).device
    sums = np.zeros((len(texts), model.cfg.d_model), dtype=np.float64)
    weights = np.zeros(len(texts), dtype=np.float64)
    for lo in range(0, len(order), cfg.batch_size):
        batch = [pieces[j] for j in order[lo : lo + cfg.batch_size]]
        ids, mask = pad_batch([row for _, row in batch], tokenizer.pad_id)
        ids, mask = ids.to(device), mask.to(device)
        vectors = pool(layer_states(model, ids, mask, cfg.layers), mask, cfg.pooling).float().cpu().numpy()
        for (doc, row), v in zip(batch, vectors):
            w = len(row) if cfg.pooling == "mean" else 1.0
            sums[doc] += w * v
            weights[doc] += w
        if bar is not None:
            bar.update(len(batch))
    return (sums / weights[:, None]).astype(np.float32), len(pieces)


def read_documents(data: str, text_field: str, id_field: str) -> tuple[list[str], list[str]]:
    """(ids, texts) of every record of a data PATH (JSONL, Parquet, a dataset, text files)."""
    from .data.readers import _text_of, iter_records

    ids, texts = [], []
    for record, loc in iter_records(data):
        texts.append(_text_of(record, loc, text_field))
        ids.append(str(record[id_field]) if id_field in record else str(len(ids)))
    if not texts:
        raise InputError("no documents to embed", path=data)
    return ids, texts


def write_embeddings(out: Path, ids: list[str], texts: list[str], vectors: np.ndarray) -> None:
    """`.parquet` (id, text_sha256, vector) or `.npy` (the matrix), written atomically."""
    if out.suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, vectors)
        atomic_write_bytes(out, buf.getvalue())
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "text_sha256": pa.array([hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1]),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(out, buf.getvalue())


def read_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """(ids, (N, d) float32 matrix) from a file `write_embeddings` made (or any such .npy / Parquet)."""
    path = Path(path)
    if not path.exists():
        raise InputError("embeddings file not found", path=path)
    if path.suffix == ".npy":
        try:
            matrix = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 (numpy raises ValueError, OSError or EOFError on a bad file)
            raise InputError(f"not a readable .npy file: {e}", path=path) from None
        ids = [str(i) for i in range(len(matrix))]
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # noqa: BLE001 (pyarrow's ArrowInvalid and OSError on a bad file)
            raise InputError(f"not a readable Parquet file: {e}", path=path) from None
        if "vector" not in table.column_names:
            raise InputError(f"missing (columns: {', '.join(table.column_names)})", path=path, field="vector")
        rows = table.column("vector").to_pylist()
        if len({len(r) if isinstance(r, list) else -1 for r in rows}) > 1 or any(not isinstance(r, list) for r in rows):
            raise InputError("vectors of different lengths (or missing)", path=path, field="vector")
        matrix = np.asarray(rows, dtype=np.float32)
        ids = [str(i) for i in table.column("id").to_pylist()] if "id" in table.column_names else [str(i) for i in range(len(rows))]
    else:
        raise InputError(f"must end in {' or '.join(FORMATS)}", path=path)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0 or not np.issubdtype(matrix.dtype, np.floating):
        raise InputError(f"must hold an (N, d) matrix of floats, N and d above 0; got shape {matrix.shape}, {matrix.dtype}", path=path, field="vector")
    if not np.isfinite(matrix).all():
        raise InputError("holds NaN or infinite values", path=path, field="vector")
    return ids, matrix.astype(np.float32)


def run_embed(model_path: str, data: str, out: str | Path, cfg: EmbedConfig) -> dict:
    """Embed every document of `data` with the model at `model_path`; write `out`."""
    from .tracking import progress

    out = Path(out)
    if out.suffix not in FORMATS:
        raise InputError(f"must end in {' or '.join(FORMATS)}", path=out, field="out")
    model, folder, tokenizer = load_transformer(model_path)
    cfg.validate(model.cfg.n_layer, model.cfg.causal)
    model.eval()
    ids, texts = read_documents(data, cfg.text_field, cfg.id_field)
    t0 = time.perf_counter()
    bar = progress(desc="embed", unit="window")
    try:
        vectors, windows = embed_documents(model, tokenizer, texts, cfg, bar)
    finally:
        bar.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_embeddings(out, ids, texts, vectors)
    return {
        "documents": len(texts), "windows": windows, "dim": int(vectors.shape[1]), "pooling": cfg.pooling, "layers": cfg.layers,
        "model": str(folder), "causal": bool(model.cfg.causal), "seconds": round(time.perf_counter() - t0, 2), "out": str(out),
    }
