"""Batching for the server: concurrent requests share the model's forward passes.

Requests wait in a bounded queue. One worker thread owns the model; each wave it takes the
oldest waiting request and, with batching on, every other waiting request that samples alike
(same temperature, top-p, top-k, repetition penalty and stop tokens), up to `max_batch` rows and
as long as the longest prompt plus the longest answer fits the context. The wave runs as one
left-padded batch through `lmforge.engine.stream` (so a row computes what it would alone). Each
row ends at a stop token or at its own `max_tokens`; a request whose client went away or whose
answer met a stop string is cancelled, and the wave ends when no row of it is left. A seeded
request runs alone, so its seed gives the same answer whatever else is being served.

A full queue refuses a request at once (`Overloaded`: the server answers 429) instead of letting
the latency of every request grow without bound; the server answers 503 for a request that
waited past its deadline. Tokens travel back to the request's event loop as events on an
asyncio queue: (row, token id, None) for a token, (row, None, "stop" | "length") at its end,
(None, None, "error: ...") if the wave failed.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field, replace

import torch

from ..engine import SamplingParams, stream


class Overloaded(Exception):
    """The queue is full."""


@dataclass(eq=False)
class Row:
    prompt: list[int]
    max_new: int
    tokens: list[int] = field(default_factory=list)
    done: bool = False


class Job:
    """One request: `n` rows (answers) to `prompt` ids, sampled with `params`."""

    def __init__(self, prompts: list[list[int]], params: SamplingParams, loop: asyncio.AbstractEventLoop | None = None):
        self.rows = [Row(list(p), params.max_new_tokens) for p in prompts]
        self.params = params
        self.loop = loop or asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = False

    @property
    def key(self):
        p = self.params
        return (p.temperature, p.top_p, p.top_k, p.repetition_penalty, tuple(p.stop_ids))

    def emit(self, event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the request's loop is gone (server shutting down)
            self.cancelled = True

    def cancel(self) -> None:
        self.cancelled = True


class Batcher:
    """The worker thread and its queue (see the module docstring)."""

    def __init__(self, model, *, pad_id: int, max_batch: int = 32, max_queue: int = 64, batching: bool = True):
        self.model = model
        self.pad_id = pad_id
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.batching = batching
        self.context = model.cfg.max_seq_len
        self.waves = 0  # for tests and /health: forward-pass batches run so far
        self.rows_served = 0
        self._pending: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="lmforge-batcher", daemon=True)
        self._thread.start()

    def queued(self) -> int:
        with self._cv:
            return len(self._pending)

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closed:
                raise Overloaded("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                raise Overloaded(f"{len(self._pending)} requests are waiting (the queue holds {self.max_queue}); try again shortly")
            self._pending.append(job)
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=10)

    # ----------------------------------------------------------------------- worker

    def _take(self) -> list[Job] | None:
        with self._cv:
            while not self._closed and not self._pending:
                self._cv.wait()
            if self._closed:
                return None
            first = self._pending.popleft()
            wave = [first]
            if not (self.batching and first.params.seed is None):
                return wave
            rows = len(first.rows)
            longest = max(len(r.prompt) for r in first.rows)
            answer = first.params.max_new_tokens
            for job in list(self._pending):
                if job.cancelled or job.params.seed is not None or job.key != first.key:
                    continue
                n = len(job.rows)
                lp = max(longest, max(len(r.prompt) for r in job.rows))
                ans = max(answer, job.params.max_new_tokens)
                if rows + n > self.max_batch or lp + ans > self.context:
                    continue
                self._pending.remove(job)
                wave.append(job)
                rows, longest, answer = rows + n, lp, ans
            return wave

    def _loop(self) -> None:
        while True:
            wave = self._take()
            if wave is None:
                return
            wave = [j for j in wave if not j.cancelled]
            if not wave:
                continue
            try:
                self._run(wave)
            except Exception as e:  # a failed wave fails its requests, not the server
                for job in wave:
                    job.emit((None, None, f"error: {type(e).__name__}: {e}"))

    @torch.no_grad()
    def _run(self, wave: list[Job]) -> None:
        slots = [(job, i, row) for job in wave for i, row in enumerate(job.rows)]
        params = replace(wave[0].params, max_new_tokens=max(r.max_new for _, _, r in slots), stop_strings=[])
        stops = set(params.stop_ids)
        self.waves += 1
        self.rows_served += len(slots)
        for tok, _, _ in stream(self.model, [r.prompt for _, _, r in slots], params, pad_id=self.pad_id):
            for b, (job, i, row) in enumerate(slots):
                if row.done:
                    continue
                if job.cancelled:
                    row.done = True
                    continue
                t = int(tok[b])
                if t in stops:
                    row.done = True
                    job.emit((i, None, "stop"))
                    continue
                row.tokens.append(t)
                job.emit((i, t, None))
                if len(row.tokens) >= row.max_new:
                    row.done = True
                    job.emit((i, None, "length"))
            if all(r.done for _, _, r in slots):
                break
        for job, i, row in slots:  # the context ran out before the row's own limit
            if not row.done:
                row.done = True
                job.emit((i, None, "length"))
