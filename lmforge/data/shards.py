"""Token shards: a corpus encoded once into flat arrays on disk, and the loader that reads them.

Writing. Documents are streamed from any reader, encoded in batches (in this process, where
`tokenizers` already uses every core, or over `num_proc` worker processes), and appended to
fixed-size shards of uint16 ids (uint32 when the vocabulary needs it), an end-of-text token
after every document. Batches are written in reading order whatever the number of workers,
and `index.json` holds no time or path, so the same corpus and tokenizer give
byte-identical shards. A `val_fraction` of the documents, chosen by a hash of their text
(not by position), goes to a `val` split; a corpus with too few documents for that (one text
file) gives its last `val_fraction` of the tokens instead, as nanoGPT does (`by_position` in the
index). The folder is built aside and renamed into place.

    out/index.json           dtype, vocabulary size, tokenizer fingerprint, per split: shards,
                             token and document counts, and each shard's sha256
    out/tokenizer.json       the tokenizer that made them
    out/train-00000.bin ...  raw ids, np.memmap-able
    out/val-00000.bin ...

Reading. `TokenShards` memory-maps a split. `BatchLoader` cuts it into windows of
`seq_len + 1` tokens (inputs and next-token targets), visits them in a seeded random order
that changes each epoch, and splits every global batch across data-parallel ranks. Its
position is two integers (epoch, batch); `state_dict()` / `load_state_dict()` save and
restore it, so a resumed run sees exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import ConfigError, InputError
from ..io import atomic_output_dir, atomic_write_json, sha256_file
from ..tokenizer import Tokenizer

FORMAT = "lmforge-shards"
VERSION = 1


@dataclass
class ShardConfig:
    """How to turn a corpus into token shards."""

    shard_tokens: int = 1 << 26  # tokens per shard file (64M: 128 MB at uint16)
    val_fraction: float = 0.0  # share of documents held out for validation
    num_proc: int = 1  # worker processes for encoding; 1 = this process, where tokenizers already uses
    # every core (on 2 cores, more processes only add start-up cost: benchmarks/tokenize.py)
    batch_docs: int = 512  # documents (or pieces of long ones) per encoding batch

    def validate(self) -> None:
        if self.shard_tokens < 1:
            raise ConfigError(f"must be positive, got {self.shard_tokens}", field="shard_tokens")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.val_fraction}", field="val_fraction")
        if self.num_proc < 1:
            raise ConfigError(f"must be at least 1, got {self.num_proc}", field="num_proc")
        if self.batch_docs < 1:
            raise ConfigError(f"must be at least 1, got {self.batch_docs}", field="batch_docs")


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


# --------------------------------------------------------------------------- writing


def _is_val(text: str, fraction: float) -> bool:
    if fraction <= 0.0:
        return False
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    return h / 2**64 < fraction


class _SplitWriter:
    """Appends ids to `<split>-NNNNN.bin` files of at most `shard_tokens` tokens each."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int):
        self.folder, self.split, self.dtype, self.cap = folder, split, dtype, shard_tokens
        self.shards: list[dict] = []
        self.fh = None
        self.in_shard = 0
        self.tokens = 0
        self.documents = 0
        self.bytes = 0  # UTF-8 bytes of the text these tokens encode (for bits per byte)
        self.groups: dict[str, collections.Counter] = {}  # per source of a grouped corpus

    def _open(self) -> None:
        name = f"{self.split}-{len(self.shards):05d}.bin"
        self.fh = open(self.folder / name, "wb")
        self.shards.append({"file": name, "tokens": 0})
        self.in_shard = 0

    def write(self, ids: np.ndarray) -> None:
        while len(ids):
            if self.fh is None or self.in_shard == self.cap:
                self.close_shard()
                self._open()
            take = min(len(ids), self.cap - self.in_shard)
            self.fh.write(ids[:take].tobytes())
            self.in_shard += take
            self.shards[-1]["tokens"] += take
            self.tokens += take
            ids = ids[take:]

    def close_shard(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def finish(self) -> dict:
        self.close_shard()
        for s in self.shards:
            s["sha256"] = sha256_file(self.folder / s["file"])
        out = {"tokens": self.tokens, "documents": self.documents, "bytes": self.bytes, "shards": self.shards}
        if self.groups:
            out["groups"] = {g: dict(c) for g, c in self.groups.items()}
        return out


def _split_by_position(writers: dict, tokenizer: Tokenizer, fraction: float) -> None:
    """Move the last `fraction` of the train split's tokens into the val split (which has none):
    how nanoGPT holds out part of one text file. The train shards are cut where the val tokens
    began; bytes are counted from the tokens (exact for byte-level BPE)."""
    train, val = writers["train"], writers["val"]
    n = min(max(2, round(fraction * train.tokens)), train.tokens - 2)  # each split at least two tokens (one target)
    tail, left = [], n
    while left:
        shard = train.shards[-1]
        path = train.folder / shard["file"]
        ids = np.fromfile(path, dtype=train.dtype)
        take = min(left, len(ids))
        tail.insert(0, ids[len(ids) - take :].copy())
        with open(path, "r+b") as fh:
            fh.truncate((len(ids) - take) * train.dtype.itemsize)
        shard["tokens"] -= take
        left -= take
        if not shard["tokens"]:
            path.unlink()
            train.shards.pop()
    ids = np.concatenate(tail)
    per_token = np.asarray(tokenizer.token_bytes(), dtype=np.int64)
    moved = int(per_token[ids.astype(np.int64)].sum())
    val.write(ids)
    val.close_shard()
    train.tokens -= n
    train.bytes -= moved
    val.bytes += moved
    train.in_shard = train.shards[-1]["tokens"] if train.shards else 0


def _renamed(writers: dict) -> dict:
    """The writers with their splits swapped, val's files renamed to train's: everything was written
    to val, and the position split cuts the train split."""
    full, empty = writers["val"], writers["train"]
    for shard in full.shards:
        new = shard["file"].replace("val-", "train-", 1)
        (full.folder / shard["file"]).rename(full.folder / new)
        shard["file"] = new
    full.split, empty.split = "train", "val"
    return {"train": full, "val": empty}


# Worker processes hold their own copy of the tokenizer, built once by the pool initializer.
_WORKER_TOKENIZER: Tokenizer | None = None


def _worker_init(tokenizer_json: str) -> None:
    global _WORKER_TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the processes are the parallelism
    from tokenizers import Tokenizer as HFTokenizer

    _WORKER_TOKENIZER = Tokenizer(HFTokenizer.from_str(tokenizer_json))


def _encode_flat(tok: Tokenizer, texts: list[str], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Encode a batch into one flat id array and the length of each text's ids."""
    ids = tok.encode_batch(texts)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    return flat, lengths


def _worker_encode(job: tuple[list[str], str]) -> tuple[np.ndarray, np.ndarray]:
    texts, dtype = job
    return _encode_flat(_WORKER_TOKENIZER, texts, np.dtype(dtype))


def _batches(pieces: Iterable[tuple], n: int) -> Iterator[tuple[list[str], list[tuple]]]:
    """Pieces in batches of `n`: their texts, and for each its end flag and (when the pieces are
    (text, end, group) triples) its group."""
    texts, tags = [], []
    for text, *tag in pieces:
        texts.append(text)
        tags.append(tuple(tag))
        if len(texts) == n:
            yield texts, tags
            texts, tags = [], []
    if texts:
        yield texts, tags


def _encode_in_pool(pool, batches, dtype: np.dtype, depth: int):
    """Encode batches on worker processes, yielding results in input order.

    At most `depth` batches are in flight, so memory stays bounded however large the corpus
    (Pool.imap would read the whole input ahead of the workers).
    """
    pending: collections.deque = collections.deque()
    for texts, tags in batches:
        pending.append(((texts, tags), pool.apply_async(_worker_encode, ((texts, dtype.str),))))
        if len(pending) >= depth:
            batch, result = pending.popleft()
            yield batch, result.get()
    while pending:
        batch, result = pending.popleft()
        yield batch, result.get()


def write_shards(
    pieces: Iterable[tuple],
    tokenizer: Tokenizer,
    out: str | os.PathLike,
    cfg: ShardConfig | None = None,
    *,
    overwrite: bool = False,
    progress=None,
) -> dict:
    """Encode (text, end_of_document) pieces into shards under `out`; returns the index. Pieces
    may be (text, end_of_document, group) triples (a corpus of several sources, such as
    languages): the index then counts each group's tokens, bytes and documents per split.

    `progress`, if given, is called with the number of bytes of text handled in each batch.
    """
    cfg = cfg or ShardConfig()
    cfg.validate()
    dtype = dtype_for(tokenizer.vocab_size)
    eos = np.array([tokenizer.eos_id], dtype=dtype)
    with atomic_output_dir(out, overwrite) as tmp:
        writers = {s: _SplitWriter(tmp, s, dtype, cfg.shard_tokens) for s in ("train", "val")}
        pool = None
        batches = _batches(pieces, cfg.batch_docs)
        try:
            if cfg.num_proc > 1:
                pool = mp.get_context("spawn").Pool(cfg.num_proc, _worker_init, (tokenizer.hf.to_str(),))
                stream = _encode_in_pool(pool, batches, dtype, depth=2 * cfg.num_proc)
            else:
                stream = (((texts, tags), _encode_flat(tokenizer, texts, dtype)) for texts, tags in batches)

            split_of_open_doc = None  # a long document's pieces all go where its first piece went
            for (texts, tags), (flat, lengths) in stream:
                start = 0
                n_bytes = 0
                for text, tag, n in zip(texts, tags, lengths):
                    end = tag[0]
                    if split_of_open_doc is None:
                        split_of_open_doc = "val" if _is_val(text, cfg.val_fraction) else "train"
                    w = writers[split_of_open_doc]
                    w.write(flat[start : start + n])
                    start += n
                    b = len(text.encode("utf-8"))
                    w.bytes += b
                    n_bytes += b
                    if len(tag) > 1:  # a grouped corpus: tokens and bytes of each source (language)
                        w.groups.setdefault(tag[1], collections.Counter()).update(tokens=int(n) + bool(end), bytes=b, documents=int(bool(end)))
                    if end:
                        w.write(eos)
                        w.documents += 1
                        split_of_open_doc = None
                if progress is not None:
                    progress(n_bytes)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
            for w in writers.values():
                w.close_shard()
        by_position = cfg.val_fraction > 0 and (writers["train"].tokens + writers["val"].tokens) > 3 and not (writers["val"].tokens and writers["train"].tokens)
        if by_position:  # too few documents for the hash to split (a single-file corpus): nanoGPT's split
            if not writers["train"].tokens:  # the one document went to val: it is the train split's to cut
                writers = _renamed(writers)
            _split_by_position(writers, tokenizer, cfg.val_fraction)
        splits = {name: w.finish() for name, w in writers.items() if w.tokens}
        if by_position:
            splits["val"]["by_position"] = True  # the last val_fraction of the tokens, not whole documents
        if not splits:
            raise InputError("the corpus has no text to encode")
        index = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": dtype.name,
            "vocab_size": tokenizer.vocab_size,
            "eos_id": tokenizer.eos_id,
            "tokenizer_sha256": tokenizer.sha256,
            "splits": splits,
        }
        tokenizer.save(tmp)
        atomic_write_json(tmp / "index.json", index)
    return index


# --------------------------------------------------------------------------- reading


def read_index(folder: str | os.PathLike) -> dict:
    path = Path(folder) / "index.json"
    if not path.exists():
        raise InputError("not a shard folder (no index.json); make one with `lmforge data shards`", path=folder)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"corrupt shard index: {e}", path=path) from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise InputError(f"not an lmforge shard index (format should be {FORMAT!r})", path=path, field="format")
    return index


class TokenShards:
    """One split of a shard folder, memory-mapped read-only."""

    def __init__(self, folder: str | os.PathLike, split: str = "train"):
        self.folder = Path(folder)
        self.index = read_index(folder)
        if split not in self.index["splits"]:
            raise InputError(f"shard folder has no '{split}' split (it has: {', '.join(self.index['splits'])})", path=folder, field="split")
        self.split = split
        self.dtype = np.dtype(self.index["dtype"])
        self.arrays: list[np.ndarray] = []
        for s in self.index["splits"][split]["shards"]:
            f = self.folder / s["file"]
            if not f.exists():
                raise InputError("shard file is missing", path=f)
            expected = s["tokens"] * self.dtype.itemsize
            if f.stat().st_size != expected:
                raise InputError(f"shard is truncated or corrupt: {f.stat().st_size} bytes, expected {expected}", path=f)
            self.arrays.append(np.memmap(f, dtype=self.dtype, mode="r"))

    @property
    def tokens(self) -> int:
        return sum(len(a) for a in self.arrays)

    def read_all(self) -> np.ndarray:
        """The whole split as one int64 array (in memory: for held-out splits and small corpora)."""
        return np.concatenate([np.asarray(a) for a in self.arrays]).astype(np.int64)

    def verify(self) -> None:
        """Check every shard against the sha256 in the index (reads everything)."""
        for s in self.index["splits"][self.split]["shards"]:
            if sha256_file(self.folder / s["file"]) != s["sha256"]:
                raise InputError("shard checksum does not match index.json", path=self.folder / s["file"])


class BatchLoader:
    """Seeded, resumable batches of (inputs, targets), each (batch_size, seq_len) int64.

    Windows do not cross shard boundaries (a shard loses at most seq_len tokens). With
    `world_size` ranks, each global batch of batch_size * world_size windows is split so
    that rank r takes the r-th slice: together the ranks see what one process with the
    global batch would see.
    """

    def __init__(
        self,
        shards: TokenShards,
        batch_size: int,
        seq_len: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1 or seq_len < 1:
            raise ConfigError("batch_size and seq_len must be positive")
        self.shards, self.batch_size, self.seq_len = shards, batch_size, seq_len
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        per_shard = np.array([max(0, (len(a) - 1) // seq_len) for a in shards.arrays], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(per_shard)])
        self.n_windows = int(self._starts[-1])
        self.batches_per_epoch = self.n_windows // (batch_size * world_size)
        if self.batches_per_epoch == 0:
            raise InputError(
                f"split '{shards.split}' has {shards.tokens} tokens: too few for one batch of "
                f"{batch_size * world_size} x {seq_len + 1} tokens; lower batch_size or seq_len",
                path=shards.folder,
            )
        self.epoch = 0
        self.batch = 0
        self._order_epoch = -1
        self._order = None

    def _epoch_order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            if self.shuffle:
                rng = np.random.default_rng([self.seed, self.epoch])
                self._order = rng.permutation(self.n_windows)
            else:
                self._order = np.arange(self.n_windows)
            self._order_epoch = self.epoch
        return self._order

    def _window(self, w: int) -> np.ndarray:
        s = int(np.searchsorted(self._starts, w, side="right") - 1)
        off = (w - int(self._starts[s])) * self.seq_len
        return np.asarray(self.shards.arrays[s][off : off + self.seq_len + 1], dtype=np.int64)

    def __iter__(self) -> "BatchLoader":
        return self

    def __next__(self):  # -> (inputs, targets), torch int64 tensors
        import torch  # here, not at the top: encoding workers import this module and need no torch

        order = self._epoch_order()
        g = self.batch_size * self.world_size
        lo = self.batch * g + self.rank * self.batch_size
        rows = np.stack([self._window(int(w)) for w in order[lo : lo + self.batch_size]])
        self.batch += 1
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        t = torch.from_numpy(rows)
        return t[:, :-1], t[:, 1:]

    @property
    def progress(self) -> float:
        """Epochs done, as a fraction."""
        return self.epoch + self.batch / self.batches_per_epoch

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "batch_size", "seq_len", "world_size"):
            if state.get(key) != getattr(self, key):
                raise InputError(
                    f"saved data position was made with {key}={state.get(key)}, this run has {getattr(self, key)}; "
                    "resume with the same data settings",
                    field=f"data.{key}",
                )
        if not 0 <= state["batch"] < self.batches_per_epoch:
            raise InputError(f"saved batch {state['batch']} is outside the epoch ({self.batches_per_epoch} batches)", field="data.batch")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


class StreamLoader:
    """Consecutive batches of B parallel token streams, for truncated backpropagation through time.

    The split (its shards joined) is cut into batch_size * world_size equal stretches, one per
    row; batch k holds tokens [k*T, (k+1)*T] of every stretch, so row r of batch k+1 continues
    row r of batch k and a recurrent state can be carried across (the "batchify" of RNN LM
    training, Zaremba et al. 2014). `fresh` says whether the batch just returned starts a pass
    over the data (the state should restart from zero). The trainer may keep that state in
    `carry` (a tensor or a tuple of tensors, batch in dim 1): it is saved with the data position
    in a single-process run, so a resumed run continues exactly.
    """

    def __init__(self, shards: TokenShards, batch_size: int, seq_len: int, *, rank: int = 0, world_size: int = 1):
        if batch_size < 1 or seq_len < 1:
            raise ConfigError("batch_size and seq_len must be positive")
        self.shards, self.batch_size, self.seq_len, self.rank, self.world_size = shards, batch_size, seq_len, rank, world_size
        self._offsets = np.concatenate([[0], np.cumsum([len(a) for a in shards.arrays])]).astype(np.int64)
        streams = batch_size * world_size
        self.stretch = (int(self._offsets[-1]) - 1) // streams
        self.batches_per_epoch = (self.stretch - 1) // seq_len if self.stretch > 1 else 0
        if self.batches_per_epoch < 1:
            raise InputError(
                f"split '{shards.split}' has {shards.tokens} tokens: too few for {streams} streams of {seq_len + 1} tokens; lower batch_size or seq_len",
                path=shards.folder,
            )
        self.epoch = 0
        self.batch = 0
        self.fresh = True
        self.carry = None

    def _slice(self, start: int, n: int) -> np.ndarray:
        """Tokens [start, start + n) of the split, across shard boundaries."""
        parts = []
        while n > 0:
            s = int(np.searchsorted(self._offsets, start, side="right") - 1)
            off = start - int(self._offsets[s])
            take = min(n, len(self.shards.arrays[s]) - off)
            parts.append(np.asarray(self.shards.arrays[s][off : off + take], dtype=np.int64))
            start, n = start + take, n - take
        return np.concatenate(parts)

    def __iter__(self) -> "StreamLoader":
        return self

    def __next__(self):  # -> (inputs, targets), torch int64 tensors (B, T)
        import torch

        T = self.seq_len
        first = self.rank * self.batch_size
        rows = [self._slice((first + r) * self.stretch + self.batch * T, T + 1) for r in range(self.batch_size)]
        self.fresh = self.batch == 0
        self.batch += 1
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        t = torch.from_numpy(np.stack(rows))
        return t[:, :-1], t[:, 1:]

    @property
    def progress(self) -> float:
        return self.epoch + self.batch / self.batches_per_epoch

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "batch": self.batch, "batch_size": self.batch_size, "seq_len": self.seq_len, "world_size": self.world_size, "streams": True}
        if self.carry is not None and self.world_size == 1:  # float32 values survive JSON exactly
            parts = self.carry if isinstance(self.carry, tuple) else (self.carry,)
            state["carry"] = {"tuple": isinstance(self.carry, tuple), "values": [p.detach().float().cpu().tolist() for p in parts]}
        return state

    def load_state_dict(self, state: dict) -> None:
        import torch

        if not state.get("streams"):
            raise InputError("saved data position is not a stream position (was this run trained with another arch?)", field="data")
        for key in ("batch_size", "seq_len", "world_size"):
            if state.get(key) != getattr(self, key):
                raise InputError(
                    f"saved data position was made with {key}={state.get(key)}, this run has {getattr(self, key)}; resume with the same data settings",
                    field=f"data.{key}",
                )
        if not 0 <= state["batch"] < self.batches_per_epoch:
            raise InputError(f"saved batch {state['batch']} is outside the epoch ({self.batches_per_epoch} batches)", field="data.batch")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self.fresh = False
        self.carry = None
        if "carry" in state:
            parts = tuple(torch.tensor(v, dtype=torch.float32) for v in state["carry"]["values"])
            self.carry = parts if state["carry"]["tuple"] else parts[0]
