"""Supervised fine-tuning data: demonstrations as token ids with a loss mask, mixtures of
datasets, and batches that pack several examples into a row or pad one per row.

Records are TRL's `messages` (a conversation, rendered with the chat template) or
`prompt`/`completion` (conversational lists of messages, rendered the same way, or plain
strings, rendered as prompt + completion + end of text; `lmforge.data.chat`), from any file or
dataset the readers take. A training conversation must end with an assistant turn and have no
empty message; a broken record stops with its file, line and field.

An example longer than the context is truncated (the count is reported), skipped, or refused
(`long`). Several datasets mix by temperature sampling: dataset i, of n_i examples, is drawn
with probability p_i proportional to n_i^(1/T) (T = 1: in proportion to size; larger T: closer
to uniform; the scheme mT5 uses for languages, Xue et al. 2021, section 2.2), for sum(n_i)
draws an epoch, each dataset's examples taken in a fresh random order.

Batches (`SFTLoader`) are dictionaries of (B, L) tensors: input ids, targets, the loss mask of
the targets (1 on answer tokens), which targets are real (not padding), positions and, when
packed, segment ids. Packing fills rows of `seq_len` positions with whole examples, in the
epoch's order, one after another; each example restarts its positions at 0 and attends only to
itself (the transformer's block-diagonal `segments` mask), so a packed row computes what its
examples would compute alone. Without packing a row holds one example, right-padded to the
longest of its batch: causal attention never looks right, so padding needs no mask.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import ConfigError, InputError
from .chat import Rendered, render, render_plain
from .readers import Location, field_value
from .schemas import detect_schema, iter_validated

LONG = ("truncate", "skip", "error")


@dataclass
class Example:
    ids: np.ndarray  # int32 token ids
    mask: np.ndarray  # int8, 1 where the model learns the token
    where: str  # "file:line", for messages about it
    group: str = ""  # the record's source (its language, ...) when the data is grouped for mixing

    def __len__(self) -> int:
        return len(self.ids)


# --------------------------------------------------------------------------- reading


def _conversation(record: dict, loc: Location, schema: str) -> list[dict] | tuple[str, str]:
    """The messages of a training record (checked), or (prompt, completion) for plain text."""
    if schema == "messages":
        messages = record["messages"]
        field = "messages"
    elif schema == "prompt_completion":
        prompt, completion = record["prompt"], record["completion"]
        if isinstance(prompt, str) and isinstance(completion, str):
            if not completion.strip():
                raise loc.error("is empty", field="completion")
            return prompt, completion
        if isinstance(prompt, str) or isinstance(completion, str):
            raise loc.error("prompt and completion must both be strings or both lists of messages", field="completion")
        if any(m["role"] != "assistant" for m in completion):
            raise loc.error("a completion's messages must be the assistant's", field="completion")
        messages = prompt + completion
        field = "prompt+completion"
    else:
        raise loc.error(f"SFT reads 'messages' or 'prompt'/'completion' records, not the {schema} schema")
    for i, m in enumerate(messages):
        if not m["content"].strip():
            raise loc.error("is empty", field=f"{field}[{i}].content")
    if messages[-1]["role"] != "assistant":
        raise loc.error(
            f"the conversation ends on a {messages[-1]['role']} turn; SFT learns the assistant's turns, so a training conversation must end with one",
            field=f"{field}[{len(messages) - 1}].role",
        )
    return messages


def hash_split(keys: list[bytes], fraction: float) -> list[bool]:
    """Which items go to a held-out split: those whose key hashes below `fraction` (so the same
    item always lands on the same side). When that holds none out but there are at least two
    items and fraction > 0, the item of the lowest hash is held out: a small dataset still gets a
    validation example."""
    h = [int.from_bytes(hashlib.blake2b(k, digest_size=8).digest(), "little") / 2**64 for k in keys]
    out = [x < fraction for x in h]
    if fraction > 0 and not any(out) and len(set(keys)) >= 2:
        lowest = keys[h.index(min(h))]
        out = [k == lowest for k in keys]  # every copy of it: a duplicate must not stay in training
    return out


def held_out_examples(datasets: list[list[Example]], fraction: float) -> tuple[list[list[Example]], list[Example]]:
    """(datasets without their held-out examples, the held-out examples): `fraction` of all
    examples by a hash of their tokens (`hash_split`)."""
    flat = [e for d in datasets for e in d]
    val_of = iter(hash_split([e.ids.tobytes() for e in flat], fraction))
    marks = [[next(val_of) for _ in d] for d in datasets]
    train = [[e for e, v in zip(d, m) if not v] for d, m in zip(datasets, marks)]
    val = [e for d, m in zip(datasets, marks) for e, v in zip(d, m) if v]
    return [d for d in train if d], val


def read_examples(
    path: str | os.PathLike,
    tokenizer,
    *,
    max_len: int,
    long: Literal["truncate", "skip", "error"] = "truncate",
    system: str = "",
    split: str | None = None,
    group_by: str = "",
) -> tuple[list[Example], dict]:
    """The examples of one dataset and what reading them did: {"examples", "truncated",
    "skipped", "tokens", "answer_tokens"}. `system` is added to conversations that have no
    system message; with `group_by` (a field, dotted for a nested one: meta.language) each
    example records its group."""
    if long not in LONG:
        raise ConfigError(f"must be one of {', '.join(LONG)}, got {long!r}", field="long")
    examples: list[Example] = []
    stats = {"examples": 0, "truncated": 0, "skipped": 0, "tokens": 0, "answer_tokens": 0}
    schema = None
    for record, loc in iter_validated(path, split=split):
        schema = schema or detect_schema(record, loc)
        conv = _conversation(record, loc, schema)
        if isinstance(conv, tuple):
            r: Rendered = render_plain(tokenizer, *conv)
        else:
            if system and conv[0]["role"] != "system":
                conv = [{"role": "system", "content": system}, *conv]
            r = render(tokenizer, conv)
        ids, mask = r.ids, r.mask
        if len(ids) > max_len:
            if long == "error":
                raise loc.error(f"{len(ids)} tokens, longer than the context of {max_len} (set long=truncate or long=skip to go on)")
            if long == "skip" or sum(mask[:max_len]) == 0:  # a cut that leaves nothing to learn is a skip
                stats["skipped"] += 1
                continue
            ids, mask = ids[:max_len], mask[:max_len]
            stats["truncated"] += 1
        group = field_value(record, loc, group_by) if group_by else ""
        examples.append(Example(np.asarray(ids, dtype=np.int32), np.asarray(mask, dtype=np.int8), f"{loc.path}:{loc.line}", group))
        stats["examples"] += 1
        stats["tokens"] += len(ids)
        stats["answer_tokens"] += int(sum(mask))
    if not examples:
        raise InputError("no examples to train on" + (f" ({stats['skipped']} skipped as too long)" if stats["skipped"] else ""), path=path)
    if stats["truncated"] or stats["skipped"]:
        warnings.warn(f"{path}: {stats['truncated']} examples truncated and {stats['skipped']} skipped: longer than {max_len} tokens", stacklevel=2)
    return examples, stats


# --------------------------------------------------------------------------- mixtures


def mixture_weights(sizes: list[int], temperature: float) -> np.ndarray:
    """p_i proportional to n_i^(1/T) (Xue et al. 2021)."""
    if temperature <= 0:
        raise ConfigError(f"must be positive, got {temperature}", field="temperature")
    w = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
    return w / w.sum()


def epoch_order(sizes: list[int], temperature: float, seed: int, epoch: int) -> list[tuple[int, int]]:
    """(dataset, example) for the sum(sizes) draws of one epoch, deterministic in (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    p = mixture_weights(sizes, temperature)
    choice = rng.choice(len(sizes), size=int(sum(sizes)), p=p) if len(sizes) > 1 else np.zeros(sizes[0], dtype=np.int64)
    order = []
    taken = [0] * len(sizes)
    streams: list[np.ndarray] = []
    for i, n in enumerate(sizes):
        need = int((choice == i).sum())
        # as many fresh permutations of dataset i as this epoch draws from it
        streams.append(np.concatenate([rng.permutation(n) for _ in range(max(1, math.ceil(need / n)))]))
    for i in choice:
        order.append((int(i), int(streams[i][taken[i]])))
        taken[i] += 1
    return order


# --------------------------------------------------------------------------- batches


class SFTLoader:
    """Batches of SFT examples, packed or padded (see the module docstring); resumable by
    (epoch, batch), rank r taking the r-th slice of each global batch."""

    def __init__(
        self,
        datasets: list[list[Example]],
        batch_size: int,
        seq_len: int,
        *,
        pack: bool = True,
        temperature: float = 1.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad_id: int = 0,
        shrink: bool = False,
    ):
        if batch_size < 1 or seq_len < 2:
            raise ConfigError("batch_size must be >= 1 and seq_len >= 2")
        self.datasets, self.batch_size, self.seq_len, self.pack = datasets, batch_size, seq_len, pack
        self.temperature, self.seed, self.rank, self.world_size, self.pad_id = temperature, seed, rank, world_size, pad_id
        longest = max(len(e) for d in datasets for e in d)
        if longest > seq_len + 1:
            raise ConfigError(f"an example of {longest} tokens does not fit rows of {seq_len} positions", field="seq_len")
        self.epoch, self.batch = 0, 0
        self.served = 0  # batches handed out, all epochs together
        self._rows_epoch, self._rows = -1, []
        self.batches_per_epoch = len(self._epoch_rows()) // (batch_size * world_size)
        if self.batches_per_epoch == 0 and shrink and len(self._rows) >= world_size:
            # a small dataset trains in smaller batches rather than not at all (said where it happens)
            self.batch_size = len(self._rows) // world_size
            warnings.warn(f"{sum(map(len, datasets))} examples make {len(self._rows)} rows: too few for one batch of {batch_size * world_size}; batches of {self.batch_size * world_size} instead", stacklevel=2)
            self.batches_per_epoch = 1
        if self.batches_per_epoch == 0:
            raise InputError(f"{sum(map(len, datasets))} examples make {len(self._rows)} rows: too few for one batch of {batch_size * world_size}; lower batch_size")

    def _epoch_rows(self) -> list[list[Example]]:
        if self._rows_epoch != self.epoch:
            order = [self.datasets[d][i] for d, i in epoch_order([len(d) for d in self.datasets], self.temperature, self.seed, self.epoch)]
            if not self.pack:
                self._rows = [[e] for e in order]
            else:  # next fit: whole examples, in order, into rows of seq_len positions (an example of L tokens takes L - 1)
                self._rows, row, used = [], [], 0
                for e in order:
                    if row and used + len(e) - 1 > self.seq_len:
                        self._rows.append(row)
                        row, used = [], 0
                    row.append(e)
                    used += len(e) - 1
                if row:
                    self._rows.append(row)
            self._rows_epoch = self.epoch
        return self._rows

    def __iter__(self) -> "SFTLoader":
        return self

    def __next__(self) -> dict:
        rows = self._epoch_rows()
        g = self.batch_size * self.world_size
        lo = self.batch * g + self.rank * self.batch_size
        batch = make_batch(rows[lo : lo + self.batch_size], self.seq_len if self.pack else None, self.pad_id)
        self.batch += 1
        self.served += 1
        if self.batch >= len(rows) // g:
            self.epoch, self.batch = self.epoch + 1, 0
        return batch

    @property
    def progress(self) -> float:
        return self.epoch + self.batch / max(1, len(self._epoch_rows()) // (self.batch_size * self.world_size))

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "served": self.served, "seed": self.seed, "batch_size": self.batch_size, "seq_len": self.seq_len, "world_size": self.world_size, "pack": self.pack}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "batch_size", "seq_len", "world_size", "pack"):
            if state.get(key) != getattr(self, key):
                raise InputError(f"saved data position was made with {key}={state.get(key)}, this run has {getattr(self, key)}; resume with the same data settings", field=f"data.{key}")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self.served = int(state.get("served", 0))


def make_batch(rows: list[list[Example]], width: int | None, pad_id: int = 0) -> dict:
    """Tensors for rows of examples: packed into `width` positions with segment ids, or (width
    None) one example a row, right-padded to the longest."""
    import torch

    if width is None:
        width = max(len(e) - 1 for r in rows for e in r)
    B = len(rows)
    ids = np.full((B, width), pad_id, dtype=np.int64)
    targets = np.full((B, width), pad_id, dtype=np.int64)
    loss_mask = np.zeros((B, width), dtype=bool)
    real = np.zeros((B, width), dtype=bool)
    positions = np.zeros((B, width), dtype=np.int64)
    segments = np.full((B, width), -1, dtype=np.int64)
    for b, row in enumerate(rows):
        at = 0
        for s, e in enumerate(row):
            n = len(e) - 1  # positions this example takes: it predicts tokens 1..n from 0..n-1
            ids[b, at : at + n] = e.ids[:-1]
            targets[b, at : at + n] = e.ids[1:]
            loss_mask[b, at : at + n] = e.mask[1:].astype(bool)
            real[b, at : at + n] = True
            positions[b, at : at + n] = np.arange(n)
            segments[b, at : at + n] = s
            at += n
    out = {k: torch.from_numpy(v) for k, v in (("input_ids", ids), ("targets", targets), ("loss_mask", loss_mask), ("real", real), ("positions", positions))}
    if any(len(r) > 1 for r in rows):
        out["segments"] = torch.from_numpy(segments)
    return out
