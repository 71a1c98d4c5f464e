"""The inference engine: from a model's probabilities to tokens, and back to scores.

It drives any model with `new_cache` and `model(ids, positions=, pad_mask=, cache=)`: the
transformer (its cache holds keys and values) and the recurrent baselines (their cache is the
hidden state). It knows token ids only; text goes in and out through a tokenizer at the edges
(the `decode` argument, used for stop strings). It provides:

  - `generate`: batched sampling with a KV cache. Prompts of different lengths are left
    padded; positions come from the padding mask, so a padded row computes exactly what it
    would alone. Greedy (temperature 0), temperature, top-k, nucleus (top-p; Holtzman et al.
    2020), repetition penalty (Keskar et al. 2019), stop tokens and stop strings, a maximum
    number of new tokens, a seed. Per-token log-probabilities of what was sampled come back
    too (PPO needs them).
  - `stream`: the same, yielding each step's tokens as they are chosen.
  - `beam_search`: beams with a length penalty ((5 + len) / 6) ** alpha (Wu et al. 2016).
  - `sequence_logprobs`: log-probabilities of given continuations after given prompts,
    batched (for scoring, DPO and PPO).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import torch

from .errors import InputError
from .models.transformer import Transformer, positions_from_mask


@dataclass
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 1.0  # 0: greedy
    top_k: int | None = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop_ids: list[int] = field(default_factory=list)  # ids that end an answer (kept out of the output)
    stop_strings: list[str] = field(default_factory=list)  # needs `decode`
    seed: int | None = None

    def validate(self) -> None:
        if self.temperature < 0:
            raise InputError(f"temperature must be >= 0, got {self.temperature}", field="temperature")
        if not 0.0 < self.top_p <= 1.0:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}", field="top_p")
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"top_k must be >= 1, got {self.top_k}", field="top_k")
        if self.max_new_tokens < 0:
            raise InputError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}", field="max_new_tokens")
        if self.repetition_penalty <= 0:
            raise InputError(f"repetition_penalty must be > 0, got {self.repetition_penalty}", field="repetition_penalty")


@dataclass
class Generation:
    tokens: list[int]  # new tokens, without the stop token
    finished: bool  # ended by a stop token or string (False: ran out of max_new_tokens)
    logprobs: list[float]  # log-probability of each new token under the sampling distribution's logits / T
    stop_token: int | None = None  # the stop token that ended it (not in `tokens`); None if none did


# --------------------------------------------------------------------------- token selection


def process_logits(logits: torch.Tensor, p: SamplingParams, history: torch.Tensor | None = None, history_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, V) after repetition penalty, temperature, top-k and top-p (masked to -inf)."""
    seen = None
    if p.repetition_penalty != 1.0 and history is not None:
        weight = history_mask.float() if history_mask is not None else torch.ones_like(history, dtype=torch.float)
        seen = torch.zeros(logits.shape, device=logits.device).scatter_add_(1, history, weight) > 0
    B = logits.size(0)

    def full(v, dtype):
        return torch.full((B,), v, dtype=dtype, device=logits.device)

    return process_rows(logits, full(p.temperature, torch.float), full(p.top_k or 0, torch.long), full(p.top_p, torch.float), full(p.repetition_penalty, torch.float), seen)


def process_rows(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, penalty: torch.Tensor, seen: torch.Tensor | None) -> torch.Tensor:
    """`process_logits` with each row's own settings (B,) (top_k 0: none), on the whole batch at
    once: the rows of a continuous batch each sample as their request asked."""
    logits = logits.float()
    V = logits.size(-1)
    if seen is not None and bool((penalty != 1.0).any()):
        # CTRL's penalty (Keskar et al. 2019): seen tokens' positive logits are divided, negative multiplied.
        r = penalty[:, None]
        penalised = torch.where(logits > 0, logits / r, logits * r)
        logits = torch.where(seen & (penalty != 1.0)[:, None], penalised, logits)
    if bool((temperature > 0).any()):
        logits = logits / torch.where(temperature > 0, temperature, 1.0)[:, None]
    k = torch.where((top_k > 0) & (top_k < V), top_k, V)
    if bool((k < V).any()):
        kmax = int(k.max())
        kth = torch.topk(logits, kmax, dim=-1).indices
        first = torch.arange(kmax, device=logits.device)[None, :] < k[:, None]
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, kth, first)  # exactly k, ties broken by topk
        logits = logits.masked_fill(~keep, float("-inf"))
    if bool((top_p < 1.0).any()):
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass strictly above each token
        drop_sorted = (before >= top_p[:, None]) & (top_p < 1.0)[:, None]  # keep the smallest prefix whose mass reaches top_p
        drop = torch.zeros_like(drop_sorted).scatter_(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def select(logits: torch.Tensor, p: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    """Next token per row from processed logits (B, V)."""
    if p.temperature == 0:
        return logits.argmax(-1)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# --------------------------------------------------------------------------- generation


def _left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(x) for x in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), T), dtype=torch.bool, device=device)
    for i, x in enumerate(prompts):
        if x:
            ids[i, T - len(x) :] = torch.tensor(x, dtype=torch.long, device=device)
            mask[i, T - len(x) :] = True
    return ids, mask


def _check_prompts(model: Transformer, prompts: list[list[int]], max_new_tokens: int) -> None:
    if not prompts:
        raise InputError("no prompts to generate from")
    ctx = model.cfg.max_seq_len
    for i, x in enumerate(prompts):
        if not x:
            raise InputError(f"prompt {i} is empty (give at least one token, e.g. the bos token)")
        if len(x) >= ctx:
            raise InputError(f"prompt {i} has {len(x)} tokens; the model's context is {ctx}, leaving no room for an answer")
        if any(t < 0 or t >= model.cfg.vocab_size for t in x):
            raise InputError(f"prompt {i} has a token id outside the vocabulary (0..{model.cfg.vocab_size - 1})")


@torch.no_grad()
def stream(
    model: Transformer,
    prompts: list[list[int]],
    params: SamplingParams,
    *,
    pad_id: int = 0,
    decode: Callable[[list[int]], str] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Generate step by step. Yields (tokens (B,), logprobs (B,), active (B,)) per step; rows
    that have finished are inactive and their tokens are meaningless."""
    params.validate()
    _check_prompts(model, prompts, params.max_new_tokens)
    if params.stop_strings and decode is None:
        raise ValueError("stop strings need a decode function")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        gen = None
        if params.seed is not None:
            gen = torch.Generator(device=device).manual_seed(params.seed)
        ids, mask = _left_pad(prompts, pad_id, device)
        B, T = ids.shape
        budget = min(params.max_new_tokens, model.cfg.max_seq_len - T)
        dtype = next(model.parameters()).dtype
        cache = model.new_cache(B, T + budget, device, dtype)
        positions = positions_from_mask(mask)
        logits = model(ids, positions=positions, pad_mask=mask, cache=cache)[:, -1]
        next_pos = positions[:, -1] + 1
        active = torch.ones(B, dtype=torch.bool, device=device)
        history, hist_mask = ids, mask
        stop = torch.tensor(params.stop_ids or [-1], device=device)
        new: list[list[int]] = [[] for _ in range(B)]
        for step in range(budget):
            processed = process_logits(logits, params, history, hist_mask)
            tok = select(processed, params, gen)
            scored = processed if params.temperature > 0 else logits.float()  # greedy: the model's own log-prob
            logp = scored.log_softmax(-1).gather(1, tok[:, None]).squeeze(1)
            yield tok, logp, active.clone()
            ended = torch.isin(tok, stop)
            if params.stop_strings:
                for i in range(B):
                    if active[i] and not ended[i]:
                        new[i].append(int(tok[i]))
                        text = decode(new[i])
                        if any(s in text for s in params.stop_strings):
                            ended[i] = True
            active = active & ~ended
            if not active.any() or step == budget - 1:
                break
            history = torch.cat([history, tok[:, None]], 1)
            hist_mask = torch.cat([hist_mask, active[:, None]], 1)
            logits = model(tok[:, None], positions=next_pos[:, None], pad_mask=torch.ones(B, 1, dtype=torch.bool, device=device), cache=cache)[:, -1]
            next_pos = next_pos + 1
    finally:
        model.train(was_training)


def generate(
    model: Transformer,
    prompts: list[list[int]],
    params: SamplingParams,
    *,
    pad_id: int = 0,
    decode: Callable[[list[int]], str] | None = None,
    max_batch: int | None = None,
    compile: bool = False,
) -> list[Generation]:
    """Answers to a batch of prompts (lists of token ids), in the order given.

    A transformer's answers come from a `ContinuousBatch` of up to `max_batch` rows (default: all
    the prompts at once): a row that ends is given to the next prompt at once, so a batch of
    mixed-length answers does not wait for its longest, and every row's positions are its own.
    Seeded sampling gives the i-th prompt the generator seed + i. With `compile`, the decode step
    is compiled (`torch.compile`; see ContinuousBatch). Other models (the recurrent baselines,
    Nash-MD's mixture) go through `stream`'s left-padded batch."""
    if not hasattr(model, "new_slots"):
        return _generate_padded(model, prompts, params, pad_id=pad_id, decode=decode)
    params.validate()
    _check_prompts(model, prompts, params.max_new_tokens)
    if params.stop_strings and decode is None:
        raise ValueError("stop strings need a decode function")
    rows = len(prompts) if max_batch is None else max(1, min(max_batch, len(prompts)))
    longest = min(model.cfg.max_seq_len, max(len(p) for p in prompts) + params.max_new_tokens)
    was_training = model.training
    model.eval()
    try:
        batch = ContinuousBatch(model, max_rows=rows, max_len=longest, compile=compile)
        inner = replace(params, stop_strings=[])
        seqs = [batch.add(p, inner, seed_offset=i) for i, p in enumerate(prompts)]
        by_string: set[int] = set()
        while batch.busy():
            for q, tok, _ in batch.step():
                if tok is not None and params.stop_strings and _cut_at_stop_string(q.tokens, q.logprobs, params.stop_strings, decode):
                    by_string.add(id(q))
                    q.cancel()
    finally:
        model.train(was_training)
    return [Generation(q.tokens, q.end == "stop" or id(q) in by_string, q.logprobs, q.stop_token) for q in seqs]


def _cut_at_stop_string(tokens: list[int], logprobs: list[float], stops: list[str], decode) -> bool:
    """If the answer's text holds a stop string, drop the tokens that make it up (and from
    there on) and say so."""
    text = decode(tokens)
    if not any(s in text for s in stops):
        return False
    cut = min(text.index(s) for s in stops if s in text)
    while tokens and len(decode(tokens)) > cut:
        tokens.pop()
        logprobs.pop()
    return True


def _generate_padded(model, prompts: list[list[int]], params: SamplingParams, *, pad_id: int = 0, decode=None) -> list[Generation]:
    """`generate` for models without KV slots: one left-padded batch through `stream`."""
    B = len(prompts)
    out = [Generation([], False, []) for _ in range(B)]
    stop = set(params.stop_ids)
    for tok, logp, active in stream(model, prompts, params, pad_id=pad_id, decode=decode):
        for i in range(B):
            if not active[i]:
                continue
            t = int(tok[i])
            if t in stop:
                out[i].finished, out[i].stop_token = True, t
                continue
            out[i].tokens.append(t)
            out[i].logprobs.append(float(logp[i]))
            if params.stop_strings and _cut_at_stop_string(out[i].tokens, out[i].logprobs, params.stop_strings, decode):
                out[i].finished = True  # (stream ends the row the same step)
    return out


# --------------------------------------------------------------------------- continuous batching


def _buckets(limit: int, first: int) -> list[int]:
    """Powers of two from `first` below `limit`, then `limit`: the shapes a compiled step is made for."""
    out = []
    size = first
    while size < limit:
        out.append(size)
        size *= 2
    return [*out, limit]


def _bucket(n: int, limit: int, first: int) -> int:
    """The smallest of `_buckets(limit, first)` that holds n."""
    return next(b for b in _buckets(limit, first) if b >= n)


def _decode_step(model, ids: torch.Tensor, real: torch.Tensor, cache) -> torch.Tensor:
    return model(ids, pad_mask=real, cache=cache)[:, -1]


_COMPILED: dict[tuple, Callable] = {}


def _compiled_decode(model) -> Callable:
    """The decode step compiled by `torch.compile` (static shapes: the whole slot buffer,
    masked, so one graph serves every step of a batch size), one per model and state of its
    weights. Inductor's freezing folds the weights into the graph as constants (and prepacks
    them for the CPU's matrix kernels), so a model whose weights change (an optimizer step
    bumps their version counters) is compiled again rather than decoded with stale ones."""
    key = (id(model), sum(p._version for p in model.parameters()))
    # one graph a (batch, keys) shape: up to 6 x 4 for 32 rows and 256 positions, past dynamo's
    # default of 8 before it falls back to running eagerly
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    if key not in _COMPILED:
        _COMPILED.clear()  # one model at a time: a compiled graph holds on to its weights
        # on a GPU, CUDA graphs too: the step replayed as one launch (unmeasured here: no GPU was lent)
        options = {"freezing": True, **({"triton.cudagraphs": True} if next(model.parameters()).is_cuda else {})}
        _COMPILED[key] = torch.compile(_decode_step, dynamic=False, options=options)
    return _COMPILED[key]


class Sequence:
    """One answer a `ContinuousBatch` is writing: its prompt and settings, the tokens so far, and
    how it ended (`end`: "stop" at a stop token, "length" at its max_new_tokens or the context,
    "cancelled"; None while running)."""

    def __init__(self, prompt: list[int], params: SamplingParams, generator: torch.Generator | None):
        self.prompt, self.params, self.generator = list(prompt), params, generator
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.end: str | None = None
        self.stop_token: int | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """Leave the batch at the next step (its slot is freed there)."""
        self.cancelled = True


class ContinuousBatch:
    """Continuous batching (Yu et al. 2022, "Orca"; vLLM, TGI): sequences join the running batch
    at the next decode step and leave it as soon as they end, so a short answer does not wait for
    the longest one beside it and a new request does not wait for the batch to drain.

    Each sequence has a row of the model's `SlotCache` (its own length and positions, no left
    padding: a row computes what it would alone) and its own sampling settings, applied to the
    whole batch at once (`process_rows`). A step: admit waiting sequences into free rows (one
    right-padded prefill for all of them), pick every row's next token, end the rows that met a
    stop token, their max_new_tokens or the context, and run one decode pass for the rest.
    Seeded sequences draw from their own generator (the n answers of a request with seed s: s,
    s + 1, ...), so a seed gives the same answer whatever else is in the batch."""

    def __init__(self, model: Transformer, max_rows: int = 32, max_prefill_tokens: int = 4096, max_len: int | None = None, compile: bool = False):
        self.model = model
        self.max_rows, self.max_prefill_tokens = max_rows, max_prefill_tokens
        self.device = next(model.parameters()).device
        self.context = min(model.cfg.max_seq_len, max_len or model.cfg.max_seq_len)  # prompt + answer, a row
        self.cache = model.new_slots(max_rows, self.context, self.device, next(model.parameters()).dtype, static=compile)
        self._decode = _compiled_decode(model) if compile else None
        self._settings: tuple | None = None  # the rows' sampling settings as tensors, while the rows stay
        self._padding: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        V = model.cfg.vocab_size
        self.rows: list[Sequence] = []  # rows[i] owns cache row i
        self.logits = torch.zeros(0, V, device=self.device)  # next-token logits of each row
        self.seen = torch.zeros(max_rows, V, dtype=torch.bool, device=self.device)  # for the repetition penalty
        self.waiting: deque[Sequence] = deque()
        self.steps = 0  # decode passes run, for tests and /health

    def add(self, prompt: list[int], params: SamplingParams, seed_offset: int = 0) -> Sequence:
        """Queue a sequence; it joins the batch at the next step with a free row."""
        params.validate()
        if params.stop_strings:
            raise ValueError("a continuous batch stops at token ids; check stop strings on the text")
        _check_prompts(self.model, [prompt], params.max_new_tokens)
        gen = None
        if params.seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(params.seed + seed_offset)
        seq = Sequence(prompt, params, gen)
        self.waiting.append(seq)
        return seq

    def busy(self) -> bool:
        return bool(self.rows or self.waiting)

    def free_rows(self) -> int:
        return self.max_rows - len(self.rows) - len(self.waiting)

    @torch.no_grad()
    def step(self) -> list[tuple[Sequence, int | None, str | None]]:
        """One step: (sequence, token, None) for each new token, (sequence, None, end) for each
        sequence that ended."""
        events: list[tuple[Sequence, int | None, str | None]] = []
        self._drop([i for i, q in enumerate(self.rows) if q.cancelled], events)
        self._admit(events)
        if not self.rows:
            return events
        rows = self.rows
        dev = self.device
        if self._settings is None or self._settings[0] != [id(q) for q in rows]:  # rows came or went
            params = [q.params for q in rows]
            self._settings = (
                [id(q) for q in rows],
                torch.tensor([p.temperature for p in params], device=dev),
                torch.tensor([p.top_k or 0 for p in params], device=dev),
                torch.tensor([p.top_p for p in params], device=dev),
                torch.tensor([p.repetition_penalty for p in params], device=dev),
                all(p.temperature == 0 and p.repetition_penalty == 1.0 for p in params),
            )  # fmt: skip
        _, temp, top_k, top_p, penalty, greedy = self._settings
        if greedy:  # nothing to process: the argmax of the model's own logits
            processed = self.logits
        else:
            processed = process_rows(self.logits, temp, top_k, top_p, penalty, self.seen[: len(rows)])
        tok = processed.argmax(-1) if greedy else self._select(processed, temp, rows)
        scored = processed if greedy else torch.where((temp > 0)[:, None], processed, self.logits.float())  # greedy: the model's own log-prob
        logp = scored.log_softmax(-1).gather(1, tok[:, None]).squeeze(1).tolist()
        ended = []
        for i, (q, t) in enumerate(zip(rows, tok.tolist())):
            if t in q.params.stop_ids:
                q.end, q.stop_token = "stop", t
            else:
                q.tokens.append(t)
                q.logprobs.append(logp[i])
                events.append((q, t, None))
                if len(q.tokens) >= q.params.max_new_tokens or len(q.prompt) + len(q.tokens) >= self.context:
                    q.end = "length"
            if q.end:
                ended.append(i)
        if not greedy:
            self.seen[torch.arange(len(rows), device=dev), tok] = True
        order = list(range(len(rows)))  # which old row each row holds after the drops
        self._drop(ended, events, order)
        if self.rows:  # one decode pass for the rows still running
            last = tok[torch.tensor(order[: len(self.rows)], device=dev)] if ended else tok
            self.logits = self._step(last)
            self.steps += 1
        return events

    @torch.no_grad()
    def warm_up(self) -> None:
        """Compile the decode step for every batch size it can take (powers of two up to
        max_rows), with every row masked out so that nothing moves; a no-op uncompiled."""
        if self._decode is None or self.rows:
            return
        for size in _buckets(self.max_rows, 1):
            for keys in _buckets(self.context, 32):
                ids = torch.zeros(size, 1, dtype=torch.long, device=self.device)
                self._decode(self.model, ids, torch.zeros(size, 1, dtype=torch.bool, device=self.device), self.cache.select(0, size, keys))

    def _step(self, last: torch.Tensor) -> torch.Tensor:
        n = len(self.rows)
        if self._decode is None:
            return self.model(last[:, None], cache=self.cache.select(0, n))[:, -1].float()
        # compiled: the batch padded to a power of two and the keys attended to cut at the next
        # power of two past the longest row (a few shapes to compile, as vLLM captures CUDA
        # graphs for a few batch sizes); padded rows are free slots, masked out so that their
        # lengths do not move
        size = _bucket(n, self.max_rows, 1)
        longest = max(len(q.prompt) + len(q.tokens) for q in self.rows)  # positions the step attends to
        keys = _bucket(longest, self.context, 32)
        if n not in self._padding:
            self._padding[n] = (torch.zeros(size, 1, dtype=torch.long, device=self.device), (torch.arange(size, device=self.device) < n)[:, None])
        ids, real = self._padding[n]
        ids[:n, 0] = last
        return self._decode(self.model, ids, real, self.cache.select(0, size, keys))[:n].float()

    def _select(self, processed: torch.Tensor, temp: torch.Tensor, rows: list[Sequence]) -> torch.Tensor:
        tok = processed.argmax(-1)
        sampled = temp > 0
        if bool(sampled.any()):
            probs = processed.softmax(-1)
            free = [i for i, q in enumerate(rows) if sampled[i] and q.generator is None]
            if free:
                idx = torch.tensor(free, device=self.device)
                tok[idx] = torch.multinomial(probs[idx], 1).squeeze(-1)
            for i, q in enumerate(rows):  # a seeded row draws from its own generator
                if sampled[i] and q.generator is not None:
                    tok[i] = torch.multinomial(probs[i : i + 1], 1, generator=q.generator)[0, 0]
        return tok

    def _drop(self, idx: list[int], events: list, order: list[int] | None = None) -> None:
        """End the rows `idx`: the last running row moves into each freed one (rows stay compact;
        `order` follows the moves)."""
        for i in sorted(idx, reverse=True):
            q = self.rows[i]
            if q.end is None:
                q.end = "cancelled"
            if q.end != "cancelled":
                events.append((q, None, q.end))
            last = len(self.rows) - 1
            self.cache.move(last, i)
            self.seen[i] = self.seen[last]
            self.seen[last] = False
            if i != last:
                self.logits[i] = self.logits[last]
            self.rows[i] = self.rows[last]
            self.rows.pop()
            if order is not None:
                order[i] = order[last]
                order.pop()
            self.logits = self.logits[: len(self.rows)]

    def _admit(self, events: list) -> None:
        """Prefill waiting sequences into free rows: one pass, right padded."""
        new: list[Sequence] = []
        while self.waiting and len(self.rows) + len(new) < self.max_rows:
            q = self.waiting[0]
            if q.cancelled:
                self.waiting.popleft().end = "cancelled"
                continue
            if q.params.max_new_tokens == 0:
                self.waiting.popleft().end = "length"
                events.append((q, None, "length"))
                continue
            T = max([len(x.prompt) for x in new] + [len(q.prompt)])
            if new and T * (len(new) + 1) > self.max_prefill_tokens:
                break
            new.append(self.waiting.popleft())
        if not new:
            return
        a = len(self.rows)
        T = max(len(q.prompt) for q in new)
        ids = torch.zeros(len(new), T, dtype=torch.long, device=self.device)
        mask = torch.zeros(len(new), T, dtype=torch.bool, device=self.device)
        for j, q in enumerate(new):
            ids[j, : len(q.prompt)] = torch.tensor(q.prompt, device=self.device)
            mask[j, : len(q.prompt)] = True
            self.seen[a + j] = False
            self.seen[a + j, ids[j, : len(q.prompt)]] = True
        out = self.model(ids, pad_mask=mask, cache=self.cache.select(a, a + len(new))).float()
        last = out[torch.arange(len(new), device=self.device), mask.sum(1) - 1]  # each prompt's last real token
        self.logits = torch.cat([self.logits, last])
        self.rows += new


# --------------------------------------------------------------------------- beam search


@torch.no_grad()
def beam_search(
    model: Transformer,
    prompt: list[int],
    *,
    beams: int = 4,
    max_new_tokens: int = 64,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
) -> list[tuple[list[int], float]]:
    """The `beams` best continuations of one prompt, best first, as (tokens, score).

    score = sum of log-probabilities / ((5 + length) / 6) ** length_penalty (Wu et al. 2016);
    a hypothesis ends at `eos_id` (not included in its tokens).
    """
    if beams < 1:
        raise InputError(f"beams must be >= 1, got {beams}", field="beams")
    _check_prompts(model, [prompt], max_new_tokens)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        T = len(prompt)
        budget = min(max_new_tokens, model.cfg.max_seq_len - T)
        cache = model.new_cache(1, T + budget, device, next(model.parameters()).dtype)
        logits = model(torch.tensor([prompt], device=device), cache=cache)[:, -1]
        seqs: list[list[int]] = [[]]
        scores = torch.zeros(1, device=device)
        done: list[tuple[list[int], float]] = []

        def penalty(n):
            return ((5 + n) / 6) ** length_penalty

        for step in range(budget):
            logp = logits.float().log_softmax(-1)  # (nb, V)
            total = (scores[:, None] + logp).view(-1)
            top = torch.topk(total, min(2 * beams, total.numel()))
            V = logp.size(-1)
            keep_rows, keep_toks, keep_scores = [], [], []
            for s, flat in zip(top.values.tolist(), top.indices.tolist()):
                row, tok = divmod(flat, V)
                if eos_id is not None and tok == eos_id:
                    done.append((seqs[row], s / penalty(len(seqs[row]))))
                else:
                    keep_rows.append(row)
                    keep_toks.append(tok)
                    keep_scores.append(s)
                if len(keep_rows) == beams:
                    break
            if not keep_rows:
                seqs = []
                break
            seqs = [seqs[r] + [t] for r, t in zip(keep_rows, keep_toks)]
            scores = torch.tensor(keep_scores, device=device)
            done.sort(key=lambda x: -x[1])
            if len(done) >= beams and done[beams - 1][1] >= max(keep_scores) / penalty(step + 1):
                seqs = []  # no open beam can overtake the finished ones any more
                break
            if step == budget - 1:
                break
            cache.reorder(torch.tensor(keep_rows, device=device))
            logits = model(torch.tensor(keep_toks, device=device)[:, None], cache=cache)[:, -1]
        # beams still open when the budget ran out count as they are
        done += [(s, sc / penalty(len(s))) for s, sc in zip(seqs, scores.tolist()) if s]
        done.sort(key=lambda x: -x[1])
        return done[:beams]
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- scoring


def sequence_logprobs(
    model: Transformer,
    prompts: list[list[int]],
    continuations: list[list[int]],
    *,
    pad_id: int = 0,
    temperature: float = 1.0,
    per_token: bool = False,
):
    """log p(continuation | prompt) for each pair, summed over the continuation's tokens.

    Batched with left padding, positions from the mask. With `per_token`, returns a list of
    1-D tensors instead. `temperature` divides the logits first, as the sampler did (Huang et
    al.: log-probs recomputed for PPO must use the sampling temperature). Gradients flow when
    called under grad mode.
    """
    seqs = [p + c for p, c in zip(prompts, continuations)]
    if any(len(s) > model.cfg.max_seq_len for s in seqs):
        raise InputError(f"a prompt and continuation exceed the model's context of {model.cfg.max_seq_len} tokens")
    device = next(model.parameters()).device
    ids, mask = _left_pad(seqs, pad_id, device)
    logits = model(ids[:, :-1], positions=positions_from_mask(mask[:, :-1]), pad_mask=mask[:, :-1]).float()
    if temperature != 1.0:
        logits = logits / temperature
    logp = logits.log_softmax(-1).gather(2, ids[:, 1:, None]).squeeze(-1)  # (B, T-1): log p(token t+1 | ..t)
    T = ids.size(1)
    out = []
    for i, c in enumerate(continuations):
        n = len(c)
        out.append(logp[i, T - 1 - n :] if n else logp.new_zeros(0))
    if per_token:
        return out
    return torch.stack([x.sum() for x in out])
