"""Batching for the server: concurrent requests share the model's forward passes.

Continuous batching (the default, `mode="continuous"`): one worker thread owns the model and a
`lmforge.engine.ContinuousBatch`. Between two decode steps it moves waiting requests into free
rows (a request's n answers join together), and an answer leaves its row the step it ends (stop
token, its own max_tokens, the context, a client gone, a stop string met), so a new request
starts within one step instead of waiting for the batch in front of it to drain (Yu et al. 2022,
"Orca"; vLLM and TGI schedule the same way). Each row samples with its request's own settings,
and a seeded request draws from its own generator, so it gets the same answer whatever else is
running.

Admission is by tokens: a request holds n * (prompt + max_tokens) tokens from the moment it is
queued until it ends, and one that would take the total past `max_tokens_in_flight` (or the
queue past `max_queue` requests) is refused at once (`Overloaded`: 429 with Retry-After, the
seconds the tokens ahead of it take at the rate the server is running) instead of letting
the latency of every request grow without bound; the server answers 503 for a request that ran
past its deadline.

`mode="waves"` is the scheduler continuous batching replaced, kept for comparison
(benchmarks/serve_load.py) and for models without KV slots (the recurrent baselines): each wave
takes the oldest request and every waiting one that samples alike, runs them as one left-padded
batch through `lmforge.engine.stream` until the last row ends, then takes the next. `mode="off"`:
one request at a time.

Tokens travel back to the request's event loop as events on an asyncio queue: (row, token id,
None) for a token, (row, None, "stop" | "length") at its end, (None, None, "error: ...") if the
step failed.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from dataclasses import dataclass, field, replace

import torch

from ..engine import ContinuousBatch, SamplingParams, stream


class Overloaded(Exception):
    """No room for the request: the tokens in flight or the queue are at their limit."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


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
        self.tokens = sum(len(p) for p in prompts) + len(prompts) * params.max_new_tokens  # what it holds of the budget
        self.seqs: list = []  # its rows in a continuous batch, once admitted

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
        for q in self.seqs:
            q.cancel()


class Batcher:
    """The worker thread and its queue (see the module docstring)."""

    def __init__(self, model, *, pad_id: int = 0, max_batch: int = 32, max_queue: int = 1024, max_tokens_in_flight: int = 1 << 18, mode: str = "continuous", compile: bool = False):
        if mode not in ("continuous", "waves", "off"):
            raise ValueError(f"batching is continuous, waves or off, got {mode!r}")
        if mode == "continuous" and not hasattr(model, "new_slots"):
            mode = "waves"  # a recurrent model has no KV slots
        self.model = model
        self.pad_id = pad_id
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_tokens_in_flight = max_tokens_in_flight
        self.mode = mode
        self.batching = mode != "off"
        self.context = model.cfg.max_seq_len
        self.compile = compile
        self.engine = ContinuousBatch(model, max_rows=max_batch, compile=compile) if mode == "continuous" else None
        self.waves = 0  # forward-pass batches run so far (continuous: decode steps), for tests and /health
        self.rows_served = 0
        self.in_flight = 0  # tokens held by queued and running requests
        self.rate = 0.0  # tokens a second the worker has been producing (a moving average)
        self._pending: deque[Job] = deque()
        self._running: list[Job] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop if self.engine is None else self._continuous, name="lmforge-batcher", daemon=True)
        self._thread.start()

    def queued(self) -> int:
        with self._cv:
            return len(self._pending)

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._closed:
                raise Overloaded("the server is shutting down")
            if len(job.rows) > self.max_batch:
                raise Overloaded(f"{len(job.rows)} answers do not fit a batch of {self.max_batch} rows")
            if len(self._pending) >= self.max_queue or (self.in_flight and self.in_flight + job.tokens > self.max_tokens_in_flight):
                excess = self.in_flight + job.tokens - self.max_tokens_in_flight
                wait = max(1, min(60, math.ceil(max(excess, job.tokens) / max(self.rate, 50.0))))
                raise Overloaded(f"{self.in_flight} tokens are in flight and {len(self._pending)} requests wait (the server holds {self.max_tokens_in_flight} tokens and {self.max_queue} requests); retry in {wait} s", wait)
            self.in_flight += job.tokens
            self._pending.append(job)
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=10)

    def _release(self, job: Job) -> None:
        with self._cv:
            self.in_flight -= job.tokens

    # ----------------------------------------------------------------------- continuous

    def _continuous(self) -> None:
        import time

        if self.compile:
            self.engine.warm_up()  # compile every batch size's graph before the first request
        while True:
            engine = self.engine
            with self._cv:
                while not self._closed and not self._pending and not engine.busy():
                    self._cv.wait()
                if self._closed:
                    return
                self._admit()
            t0 = time.perf_counter()
            try:
                events = engine.step()
            except Exception as e:  # a failed step fails the requests in it, not the server
                self._fail(e)
                continue
            self.waves += 1
            owner = {id(q): (job, i) for job in self._running for i, q in enumerate(job.seqs)}
            made = 0
            for q, tok, end in events:
                job, i = owner[id(q)]
                if tok is not None:
                    made += 1
                    job.emit((i, tok, None))
                else:
                    job.emit((i, None, end))
            dt = time.perf_counter() - t0
            if made and dt > 0:
                self.rate = made / dt if not self.rate else 0.9 * self.rate + 0.1 * made / dt
            for job in [j for j in self._running if all(q.end is not None for q in j.seqs)]:
                self._running.remove(job)
                self._release(job)

    def _admit(self) -> None:
        """Move waiting requests into the batch while it has rows for all of a request's answers
        (called holding the lock)."""
        engine = self.engine
        while self._pending:
            job = self._pending[0]
            if job.cancelled:
                self._pending.popleft()
                self._release(job)  # (the condition's lock is re-entrant)
                continue
            if engine.free_rows() < len(job.rows):
                return
            self._pending.popleft()
            job.seqs = [engine.add(r.prompt, replace(job.params, stop_strings=[]), seed_offset=i) for i, r in enumerate(job.rows)]
            if job.cancelled:  # cancelled while its rows were being made
                job.cancel()
            self._running.append(job)
            self.rows_served += len(job.rows)

    def _fail(self, e: Exception) -> None:
        for job in self._running:
            job.emit((None, None, f"error: {type(e).__name__}: {e}"))
            self._release(job)
        self._running = []
        self.engine = ContinuousBatch(self.model, max_rows=self.max_batch, compile=self.compile)

    # ----------------------------------------------------------------------- waves

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
            for job in wave:
                if job.cancelled:
                    self._release(job)
            wave = [j for j in wave if not j.cancelled]
            if not wave:
                continue
            try:
                self._run(wave)
            except Exception as e:  # a failed wave fails its requests, not the server
                for job in wave:
                    job.emit((None, None, f"error: {type(e).__name__}: {e}"))
            for job in wave:
                self._release(job)

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
