"""Sampling K answers per prompt: what labelers rank (InstructGPT step 2, Ouyang et al. 2022).

`lmforge sample` reads prompts, asks a model for K answers to each, and writes one JSON line
per prompt, ready for `lmforge label`:

    {"prompt", "completions": [K strings], "finished": [K bools], "model", "task"?, "meta"?}

A prompt is kept as it was given (a string, or a list of messages). `finished` says whether an
answer ended by itself (the model's end token) rather than running out of `max_new_tokens`:
labelers, and the world's oracle, hold an unfinished answer against it. `task` and `meta` are
carried over from the prompts file (the world's `ppo_prompts.jsonl` and `eval.jsonl` hold them),
since the world's labelers need them to judge.

Prompts come as evaluation records {"prompt", "task", "meta"}, TRL prompt-only records
{"prompt"} (text or messages), or conversations {"messages"} that end on a user turn. A chat
model (one fine-tuned with the chat template) is asked through the template, the prompt as a
user turn; a base model continues the prompt's text as a new document, as in pretraining.

The K copies of several prompts go through the engine as one batch (`batch_size` sequences).
Every prompt must leave room for `max_new_tokens` in the model's context, so that an unfinished
answer always means "ran out of its budget", never "hit the context"; a prompt that does not is
an error naming its line, or, with `long="skip"`, a counted skip.

This module samples; it does not rank (`lmforge.label` does), and it never sees the oracle.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .data import chat
from .data.readers import Location, iter_records
from .data.schemas import check_messages
from .errors import InputError
from .io import atomic_write_text


@dataclass
class SampleConfig:
    k: int = 4  # answers per prompt (InstructGPT ranked 4 to 9)
    max_new_tokens: int = 64
    temperature: float = 1.0  # 1.0: the model's own distribution, what a policy's samples look like
    top_p: float = 1.0
    top_k: int | None = None
    batch_size: int = 64  # sequences per engine call: the K answers of batch_size // K prompts
    seed: int = 0
    limit: int | None = None  # sample only the first N prompts
    chat: str = "auto"  # auto (chat template for a chat model) | on | off
    long: str = "error"  # a prompt without room for max_new_tokens: error | skip
    device: str = "cpu"

    def validate(self) -> None:
        if self.k < 2:
            raise InputError(f"must be >= 2 (a labeler ranks at least two answers), got {self.k}", field="k")
        if self.max_new_tokens < 1:
            raise InputError(f"must be >= 1, got {self.max_new_tokens}", field="max_new_tokens")
        if self.batch_size < 1:
            raise InputError(f"must be >= 1, got {self.batch_size}", field="batch_size")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"must be >= 1, got {self.limit}", field="limit")
        if self.chat not in ("auto", "on", "off"):
            raise InputError(f"must be auto, on or off, got {self.chat!r}", field="chat")
        if self.long not in ("error", "skip"):
            raise InputError(f"must be error or skip, got {self.long!r}", field="long")


@dataclass
class Prompt:
    prompt: str | list[dict]  # as given
    task: str | None
    meta: dict | None
    where: Location
    field: str = "prompt"  # the record's field it came from: prompt | messages


# --------------------------------------------------------------------------- reading prompts


def prompt_of(record: dict, loc: Location) -> Prompt:
    """The prompt of one record: {"prompt": text | messages, "task"?, "meta"?} or {"messages"}
    ending on a user turn."""
    if "prompt" in record:
        field, prompt = "prompt", record["prompt"]
    elif "messages" in record:
        field, prompt = "messages", record["messages"]
    else:
        keys = ", ".join(map(str, record)) or "no fields"
        raise loc.error(f"missing (record has: {keys}); a prompt record has 'prompt' (text or messages) or 'messages' ending on a user turn", field="prompt")
    if isinstance(prompt, list):
        check_messages(prompt, loc, field)
        if prompt[-1]["role"] != "user":
            raise loc.error(f"ends on the {prompt[-1]['role']}'s turn; a prompt must end on a user turn", field=f"{field}[{len(prompt) - 1}].role")
    elif not isinstance(prompt, str):
        raise loc.error(f"must be a string or a list of messages, got {type(prompt).__name__}", field=field)
    task, meta = record.get("task"), record.get("meta")
    if task is not None and not isinstance(task, str):
        raise loc.error(f"must be a string, got {type(task).__name__}", field="task")
    if meta is not None and not isinstance(meta, dict):
        raise loc.error(f"must be an object, got {type(meta).__name__}", field="meta")
    return Prompt(prompt, task, meta, loc, field)


def read_prompts(path: str | Path, limit: int | None = None) -> list[Prompt]:
    """The prompts under `path` (the first `limit` of them), every one checked."""
    out = []
    for record, loc in iter_records(path):
        if limit is not None and len(out) >= limit:
            break
        out.append(prompt_of(record, loc))
    return out


def prompt_tokens(tok, prompt: str | list[dict], as_chat: bool, where: Location | None = None, field: str = "prompt") -> list[int]:
    """The ids a model is asked with: the chat template's (a user turn, then <|assistant|>) for a
    chat model; for a base model the text after an end-of-text token, the start of a new
    document as in pretraining."""
    if as_chat:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        return chat.prompt_ids(tok, messages)
    if isinstance(prompt, list):
        if len(prompt) != 1:
            err = f"a base model continues text; this prompt is a conversation of {len(prompt)} turns (give a chat model, or --chat on)"
            raise where.error(err, field=field) if where else InputError(err, field=field)
        prompt = prompt[0]["content"]
    return tok.document_ids(prompt, plain=False)


# --------------------------------------------------------------------------- sampling


def _batch_seed(seed: int, batch: int) -> int:
    """An independent stream per batch, the same for a (seed, batch) whatever else runs."""
    return int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])


def run_sample(model_path: str | Path, prompts_path: str | Path, out: str | Path, cfg: SampleConfig, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """Sample `cfg.k` answers to every prompt and write the samples file; returns a summary.
    `progress(prompts done, prompts in all)` is called after each batch."""
    from .engine import SamplingParams, generate
    from .models import load_model
    from .tokenizer import Tokenizer

    cfg.validate()
    SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p).validate()
    if cfg.temperature == 0:
        warnings.warn(f"temperature 0 is greedy: the {cfg.k} answers to a prompt will be identical", stacklevel=2)
    prompts = read_prompts(prompts_path, cfg.limit)  # every prompt checked before any work
    model, folder = load_model(model_path, cfg.device)
    model.eval()
    tok = Tokenizer.load(folder)
    as_chat = cfg.chat == "on" or (cfg.chat == "auto" and model.chat_template is not None)
    stops = chat.stop_ids(tok) if as_chat else [tok.eos_id]
    text_of = (lambda ids: chat.answer_text(tok, ids)) if as_chat else tok.decode
    ctx = model.cfg.max_seq_len

    todo: list[tuple[Prompt, list[int]]] = []
    skipped = 0
    for p in prompts:
        ids = prompt_tokens(tok, p.prompt, as_chat, p.where, p.field)
        if len(ids) + cfg.max_new_tokens > ctx:
            if cfg.long == "skip":
                skipped += 1
                continue
            raise p.where.error(
                f"has {len(ids)} tokens; with --max-new-tokens {cfg.max_new_tokens} that exceeds the model's context of {ctx} "
                "(shorten the prompt, lower --max-new-tokens, or pass --long skip)",
                field=p.field,
            )
        todo.append((p, ids))
    if not todo:
        raise InputError(f"no prompt to sample from ({skipped} too long for the model's context)", path=prompts_path)

    per_batch = max(1, cfg.batch_size // cfg.k)
    records, n_tokens, n_finished, distinct = [], 0, 0, 0
    start = time.perf_counter()
    for b, lo in enumerate(range(0, len(todo), per_batch)):
        chunk = todo[lo : lo + per_batch]
        params = SamplingParams(
            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
            stop_ids=stops, seed=_batch_seed(cfg.seed, b),
        )  # fmt: skip
        gens = generate(model, [ids for _, ids in chunk for _ in range(cfg.k)], params, pad_id=tok.pad_id)
        for i, (p, _) in enumerate(chunk):
            mine = gens[i * cfg.k : (i + 1) * cfg.k]
            texts = [text_of(g.tokens) for g in mine]
            record = {"prompt": p.prompt, "completions": texts, "finished": [g.finished for g in mine], "model": str(model_path)}
            if p.task is not None:
                record["task"] = p.task
            if p.meta is not None:
                record["meta"] = p.meta
            records.append(record)
            n_tokens += sum(len(g.tokens) for g in mine)
            n_finished += sum(g.finished for g in mine)
            distinct += len(set(texts))
        if progress:
            progress(lo + len(chunk), len(todo))
    seconds = time.perf_counter() - start

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    n = len(records) * cfg.k
    return {
        "model": str(model_path),
        "prompts": len(records),
        "samples": n,
        "skipped": skipped,
        "k": cfg.k,
        "chat": as_chat,
        "temperature": cfg.temperature,
        "finished_rate": round(n_finished / n, 4),
        "mean_tokens": round(n_tokens / n, 2),
        "distinct_per_prompt": round(distinct / len(records), 3),  # of K: how varied one prompt's answers are
        "seconds": round(seconds, 2),
        "tokens_per_second": round(n_tokens / seconds, 1) if seconds > 0 else None,
        "out": str(out),
    }

