"""Comparison data for the reward model: rankings of K answers, and preference pairs.

Two record schemas (lmforge.data.schemas):

  ranking      {"prompt", "completions": [K answers], "ranking": [indices, best first],
                "finished"?: [K bools], "labeler"?, "task"?, "meta"?}   (InstructGPT's K-way rankings)
  preference   {"prompt", "chosen", "rejected", "margin"?}             (TRL's pairs: K = 2)

A ranking of K answers stands for its C(K,2) pairs, each (better, worse) (Ouyang et al. 2022,
section 3.5). Following the paper, the pairs of one prompt stay together as one element of a
batch: the reward model scores each of the K answers once and the loss averages over the
prompt's pairs.

What cannot be learned from is counted and skipped, never an error that stops a run of
thousands: a pair of identical answers (a duplicate in a ranking, or chosen equal to rejected),
a comparison left with no pair, an answer that does not fit the context. What is malformed is an
error naming file, line and field: a ranking that is not a permutation of the answers, fewer
than two answers (the schema's checks).

An answer is rendered as the reward model's base model was taught to read it: through the chat
template (the prompt a user turn, the answer the assistant's, closed by <|end|> if it finished)
for a chat model, or as plain text (prompt + answer, and the end-of-text token if it finished).
The reward is read at the last token of each rendered answer.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .chat import render, render_plain
from .schemas import detect_schema, iter_validated


@dataclass
class Comparison:
    prompt: str | list[dict]
    completions: list[str]
    pairs: list[tuple[int, int]]  # (better, worse) indices into completions
    finished: list[bool]
    margins: list[float] = field(default_factory=list)  # per pair (preference records' "margin"), else 0
    labeler: str = ""
    task: str = ""
    meta: dict = field(default_factory=dict)
    where: str = ""


def ranking_pairs(ranking: list[int]) -> list[tuple[int, int]]:
    """The C(K,2) (better, worse) pairs a best-first ranking implies."""
    return [(ranking[i], ranking[j]) for i in range(len(ranking)) for j in range(i + 1, len(ranking))]


def read_comparisons(path: str | os.PathLike, *, split: str | None = None) -> tuple[list[Comparison], dict]:
    """Comparisons from ranking or preference records, and what was skipped:
    {"comparisons", "pairs", "skipped_pairs" (identical answers), "skipped_comparisons" (no pair left)}."""
    out: list[Comparison] = []
    stats = {"comparisons": 0, "pairs": 0, "skipped_pairs": 0, "skipped_comparisons": 0}
    schema = None
    for record, loc in iter_validated(path, split=split):
        schema = schema or detect_schema(record, loc)
        where = f"{loc.path}:{loc.line}"
        if schema == "ranking":
            completions = record["completions"]
            finished = record.get("finished", [True] * len(completions))
            if not (isinstance(finished, list) and len(finished) == len(completions) and all(isinstance(f, bool) for f in finished)):
                raise loc.error(f"must be a list of {len(completions)} booleans, one per completion", field="finished")
            pairs = ranking_pairs(record["ranking"])
            margins = [0.0] * len(pairs)
        elif schema == "preference":
            chosen, rejected = record["chosen"], record["rejected"]
            if isinstance(chosen, list) or isinstance(rejected, list):  # conversational: the answer is the assistant's last turn
                chosen, rejected = _last_answer(chosen, loc, "chosen"), _last_answer(rejected, loc, "rejected")
            completions, finished, pairs = [chosen, rejected], [True, True], [(0, 1)]
            margin = record.get("margin", 0.0)
            if not isinstance(margin, (int, float)) or isinstance(margin, bool):
                raise loc.error(f"must be a number, got {margin!r}", field="margin")
            margins = [float(margin)]
        else:
            raise loc.error(f"the reward model reads ranking or preference records, not the {schema} schema")
        keep = [(p, m) for p, m in zip(pairs, margins) if completions[p[0]] != completions[p[1]]]
        stats["skipped_pairs"] += len(pairs) - len(keep)
        if not keep:
            stats["skipped_comparisons"] += 1
            continue
        out.append(
            Comparison(
                record["prompt"], list(completions), [p for p, _ in keep], list(finished), [m for _, m in keep],
                str(record.get("labeler", "")), str(record.get("task", "")), record.get("meta") or {}, where,
            )
        )  # fmt: skip
        stats["comparisons"] += 1
        stats["pairs"] += len(keep)
    if not out:
        raise InputError("no comparisons to learn from" + (f" ({stats['skipped_comparisons']} had only identical answers)" if stats["skipped_comparisons"] else ""), path=path)
    if stats["skipped_pairs"]:
        warnings.warn(f"{path}: {stats['skipped_pairs']} pairs of identical answers skipped ({stats['skipped_comparisons']} comparisons left with none)", stacklevel=2)
    return out, stats


def _last_answer(messages: list[dict], loc, name: str) -> str:
    if not messages or messages[-1]["role"] != "assistant":
        raise loc.error("a conversational answer must end with an assistant message", field=name)
    return messages[-1]["content"]


def split_by_prompt(comparisons: list, val_fraction: float) -> tuple[list, list]:
    """(train, val): a comparison (or anything with a .prompt) goes to val by a hash of its
    prompt, so no prompt is in both."""

    from .sft import hash_split

    keys = [(c.prompt if isinstance(c.prompt, str) else repr(c.prompt)).encode() for c in comparisons]
    held = {k for k, v in zip(keys, hash_split(keys, val_fraction)) if v}  # every comparison of a held-out prompt
    train = [c for c, k in zip(comparisons, keys) if k not in held]
    val = [c for c, k in zip(comparisons, keys) if k in held]
    return train, val


# --------------------------------------------------------------------------- rendering


def answer_ids(tokenizer, prompt: str | list[dict], answer: str, finished: bool, chat: bool) -> list[int]:
    """The ids a reward model reads for (prompt, answer); the reward is read at the last one."""
    if chat:
        ids = render(tokenizer, [*_messages(prompt), {"role": "assistant", "content": answer}]).ids
        return ids if finished else ids[:-1]  # an answer that never ended has no <|end|>
    ids = render_plain(tokenizer, _text(prompt), answer).ids
    return ids if finished else ids[:-1]


def answer_start(tokenizer, prompt: str | list[dict], chat: bool) -> int:
    """Where the answer's tokens begin in `answer_ids` for this prompt: after the prompt's
    rendering (for a chat model, the turns and the assistant marker). At least 1, so that every
    answer token has a position before it that predicts it."""
    if chat:
        return max(1, len(render(tokenizer, _messages(prompt), add_generation_prompt=True).ids))
    return max(1, len(tokenizer.encode_plain(_text(prompt))))


def _messages(prompt: str | list[dict]) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def _text(prompt: str | list[dict]) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)


@dataclass
class Encoded:
    """A comparison ready for the reward model: its K answers' ids and its pairs."""

    seqs: list[np.ndarray]
    pairs: np.ndarray  # (P, 2) better, worse
    margins: np.ndarray  # (P,)
    source: Comparison
    start: int = 1  # where the answers begin in each of seqs (the prompt is the same for all K)


def encode_comparisons(comparisons: list[Comparison], tokenizer, *, max_len: int, chat: bool) -> tuple[list[Encoded], int]:
    """Encoded comparisons, and how many were skipped because an answer does not fit `max_len`
    (the reward is read at the answer's end, so a cut answer would be scored for what it lost)."""
    out, skipped = [], 0
    for c in comparisons:
        seqs = [np.asarray(answer_ids(tokenizer, c.prompt, a, f, chat), dtype=np.int64) for a, f in zip(c.completions, c.finished)]
        if max(len(s) for s in seqs) > max_len:
            skipped += 1
            continue
        pairs = np.asarray(c.pairs, dtype=np.int64).reshape(-1, 2)
        out.append(Encoded(seqs, pairs, np.asarray(c.margins or [0.0] * len(c.pairs)), c, answer_start(tokenizer, c.prompt, chat)))
    return out, skipped


def pack_rows(seqs: list, width: int) -> list[list[int]]:
    """Which sequences share a row of `width` tokens: first-fit decreasing (longest first, each
    into the first row with room). Rows of whole sequences, each list indices into `seqs`."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(seqs)), key=lambda i: -len(seqs[i])):
        n = len(seqs[i])
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(width - n)
    return rows


def fill_rows(seqs: list, pad_id: int = 0, pack: bool = True):
    """Token rows (R, L) for `seqs`, L the longest: packed by `pack_rows` or one a row. Returns
    ids, positions (from 0 in each sequence), segment ids (1, 2, ... within a row; padding 0)
    and where each sequence starts: (row, column) per sequence, in `seqs`' order."""
    L = max(len(s) for s in seqs)
    rows = pack_rows(seqs, L) if pack else [[i] for i in range(len(seqs))]
    ids = np.full((len(rows), L), pad_id, dtype=np.int64)
    positions = np.zeros((len(rows), L), dtype=np.int64)
    segments = np.zeros((len(rows), L), dtype=np.int64)
    place = [(0, 0)] * len(seqs)
    for r, members in enumerate(rows):
        at = 0
        for k, i in enumerate(members):
            n = len(seqs[i])
            ids[r, at : at + n] = seqs[i]
            positions[r, at : at + n] = np.arange(n)
            segments[r, at : at + n] = k + 1  # padding keeps segment 0
            place[i] = (r, at)
            at += n
    return ids, positions, segments, place


def collate(batch: list[Encoded], pad_id: int = 0, pack: bool = True) -> dict:
    """One batch: every answer of every comparison, each read by the reward model once; `last`
    the flat index (row * width + column) of each answer's last token, in the comparisons' order;
    `starts` the flat index of each answer's first token (after its prompt); pairs as indices
    into those answers, and the comparison each pair is of.

    Packed (the default), answers share rows as wide as the longest one, with positions from 0
    and segment ids so each attends only to itself (the transformer's block-diagonal mask): the
    same scores as one answer a row, without computing padding. The answers of a batch differ a
    lot in length (a world comparison has empty and 40-word answers side by side): one a row, 62%
    of the default run's positions were padding. Unpacked, each is right-padded in its own row."""
    import torch

    seqs = [s for e in batch for s in e.seqs]
    ids, positions, segments, place = fill_rows(seqs, pad_id, pack)
    L = ids.shape[1]
    last = np.array([r * L + at + len(s) - 1 for (r, at), s in zip(place, seqs)], dtype=np.int64)
    begins = [e.start for e in batch for _ in e.seqs]
    starts = np.array([r * L + at + b for (r, at), b in zip(place, begins)], dtype=np.int64)  # each answer's first token (past `last` if it has none)
    offsets = np.cumsum([0] + [len(e.seqs) for e in batch[:-1]])
    pairs = np.concatenate([e.pairs + off for e, off in zip(batch, offsets)])
    group = np.concatenate([np.full(len(e.pairs), g) for g, e in enumerate(batch)])
    margins = np.concatenate([e.margins for e in batch]).astype(np.float32)
    out = {"input_ids": ids, "last": last, "starts": starts, "pairs": pairs, "group": group, "margins": margins}
    if pack:
        out.update(positions=positions, segments=segments)
    return {k: torch.from_numpy(v) for k, v in out.items()}


class ComparisonLoader:
    """Batches of `batch_size` comparisons (all the pairs of each; or any items `collate_fn` batches), shuffled each epoch by
    (seed, epoch); resumable by (epoch, batch); rank r takes the r-th slice of each global batch."""

    def __init__(self, data: list, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, pad_id: int = 0, collate_fn=None, shrink: bool = False):
        self.data, self.batch_size, self.seed, self.rank, self.world_size, self.pad_id = data, batch_size, seed, rank, world_size, pad_id
        self.collate = collate_fn or collate  # DPO's items batch their own way
        self.batches_per_epoch = len(data) // (batch_size * world_size)
        if self.batches_per_epoch == 0 and shrink and len(data) >= world_size:  # a small dataset: smaller batches, said where it happens
            self.batch_size, self.batches_per_epoch = len(data) // world_size, 1
            warnings.warn(f"{len(data)} comparisons: too few for one batch of {batch_size * world_size}; batches of {self.batch_size * world_size} instead", stacklevel=2)
        if self.batches_per_epoch == 0:
            raise InputError(f"{len(data)} comparisons: too few for one batch of {batch_size * world_size}; lower batch_size")
        self.epoch = self.batch = 0

    def __iter__(self) -> "ComparisonLoader":
        return self

    def __next__(self) -> dict:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.data))
        lo = (self.batch * self.world_size + self.rank) * self.batch_size
        batch = self.collate([self.data[i] for i in order[lo : lo + self.batch_size]], self.pad_id)
        self.batch += 1
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        return batch

    @property
    def progress(self) -> float:
        return self.epoch + self.batch / self.batches_per_epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "batch_size": self.batch_size, "world_size": self.world_size, "comparisons": len(self.data)}

    def load_state_dict(self, state: dict) -> None:
        for key, have in (("seed", self.seed), ("batch_size", self.batch_size), ("world_size", self.world_size), ("comparisons", len(self.data))):
            if state.get(key) != have:
                raise InputError(f"saved data position was made with {key}={state.get(key)}, this run has {have}; resume with the same data settings", field=f"data.{key}")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
