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

from dataclasses import dataclass, field
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
    logits = logits.float()
    if p.repetition_penalty != 1.0 and history is not None:
        # CTRL's penalty (Keskar et al. 2019): seen tokens' positive logits are divided, negative multiplied.
        weight = history_mask.float() if history_mask is not None else torch.ones_like(history, dtype=torch.float)
        seen = torch.zeros_like(logits).scatter_add_(1, history, weight) > 0
        penalised = torch.where(logits > 0, logits / p.repetition_penalty, logits * p.repetition_penalty)
        logits = torch.where(seen, penalised, logits)
    if p.temperature > 0:
        logits = logits / p.temperature
    if p.top_k is not None and p.top_k < logits.size(-1):
        kth = torch.topk(logits, p.top_k, dim=-1).indices
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, kth, True)  # exactly k, ties broken by topk
        logits = logits.masked_fill(~keep, float("-inf"))
    if p.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass strictly above each token
        drop_sorted = before >= p.top_p  # keep the smallest prefix whose mass reaches top_p
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
) -> list[Generation]:
    """Answers to a batch of prompts (lists of token ids), in the order given."""
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
            if params.stop_strings and any(s in decode(out[i].tokens) for s in params.stop_strings):
                text = decode(out[i].tokens)
                out[i].finished = True
                cut = min(text.index(s) for s in params.stop_strings if s in text)
                # drop the tokens that make up the stop string
                while out[i].tokens and len(decode(out[i].tokens)) > cut:
                    out[i].tokens.pop()
                    out[i].logprobs.pop()
    return out


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
