"""What alignment did to a policy, measured on held-out prompts with the world's ground truth.

Each model answers the held-out prompts greedily (a chat model through its template, a base
model as a continuation); the world's oracle scores every answer. Per model:

  oracle_score       the oracle's mean total (helpful, truthful, harmless, well formed)
  task_accuracy      answers the task's checker accepts in full
  false_claim_rate   answers that state something false about the world (truthfulness)
  rude_rate          answers with a rude word (toxicity)
  question_rate      answers that ask a question instead of answering
  mean_length        words an answer
  finished           answers that ended by themselves

and against a baseline model, the win rate: the share of prompts whose answer the oracle scores
higher than the baseline's, ties counted half (as InstructGPT's preference rates).

`greedy_answers` is shared with training code (held-out evaluation during PPO and DPO); the
oracle is reached only from here (`oracle_scorer`), never from lmforge/train.
`lmforge eval policy --model M [--model M2 ...] --baseline B --json` runs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError


@torch.no_grad()
def greedy_answers(model, prompt_ids: list[list[int]], *, stops: list[int], pad_id: int, max_new_tokens: int, batch_size: int = 64):
    """Each prompt answered greedily: (answer token lists without the stop token, finished flags)."""
    from ..engine import SamplingParams, generate

    tokens, finished = [], []
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0, stop_ids=stops)
    for i in range(0, len(prompt_ids), batch_size):
        for g in generate(model, prompt_ids[i : i + batch_size], params, pad_id=pad_id):
            tokens.append(list(g.tokens))
            finished.append(bool(g.finished))
    return tokens, finished


def oracle_scorer(world_dir: str | Path):
    """score(tasks_and_metas, texts, finished) -> the oracle's per-answer score dicts."""
    from ..world import oracle
    from ..world.build import load_world

    world, _, _ = load_world(world_dir)

    def score(sources, texts: list[str], finished: list[bool]) -> list[dict | None]:
        out = []
        for source, text, done in zip(sources, texts, finished):
            task, meta = getattr(source, "task", None), getattr(source, "meta", None)
            out.append({**oracle.score(world, task, meta or {}, text, done), "words": len(text.split())} if task else None)
        return out

    return score


def summarize(scores: list[dict]) -> dict:
    """The per-model metrics of the module docstring from the oracle's per-answer scores."""
    if not scores:
        return {}
    return {
        "oracle_score": float(np.mean([s["total"] for s in scores])),
        "task_accuracy": float(np.mean([s["helpful"] >= 1.0 for s in scores])),
        "false_claim_rate": float(np.mean([s["truthful"] < 1.0 for s in scores])),
        "rude_rate": float(np.mean([s["harmless"] < 1.0 for s in scores])),
        "question_rate": float(np.mean([bool(s["asks"]) for s in scores])),
        "mean_length": float(np.mean([s["words"] for s in scores])),
    }


def win_rate(scores: list[float], baseline: list[float]) -> float:
    """Share of prompts where `scores` beats `baseline`, ties counted half."""
    if len(scores) != len(baseline) or not scores:
        raise ValueError("win rate needs the same, non-empty set of prompts for both models")
    a, b = np.asarray(scores, dtype=float), np.asarray(baseline, dtype=float)
    return float(np.mean((a > b) + 0.5 * (a == b)))


def answer_prompts(models: dict[str, str], prompts: str, *, limit: int = 0, max_new_tokens: int = 48, world: str | None = None):
    """Every model's greedy answers to the same held-out prompts: (world_dir, prompt records,
    {name: (texts, finished)}). `prompts`: a file of evaluation records, or "world" (the world's
    eval.jsonl, found next to the first model)."""
    from ..data import chat
    from ..models import load_model
    from ..sample import prompt_tokens, read_prompts
    from ..tokenizer import Tokenizer
    from ..world.build import find_world

    first = next(iter(models.values()))
    world_dir = Path(world) if world else find_world(first)
    path = str(world_dir / "eval.jsonl") if prompts == "world" else prompts
    items = read_prompts(path, limit or None)
    if not items:
        raise InputError("no prompts", path=path)
    if any(p.task is None for p in items):
        raise InputError("the oracle scores prompts of the world's tasks; some prompts have no 'task'", path=path)
    answers = {}
    for name, path_ in models.items():
        model, folder = load_model(path_)
        tok = Tokenizer.load(folder)
        as_chat = getattr(model, "chat_template", None) is not None
        ids = [prompt_tokens(tok, p.prompt, as_chat, p.where, p.field) for p in items]
        stops = chat.stop_ids(tok) if as_chat else [tok.eos_id]
        tokens, finished = greedy_answers(model.eval(), ids, stops=stops, pad_id=tok.pad_id, max_new_tokens=max_new_tokens)
        answers[name] = ([chat.answer_text(tok, t) if as_chat else tok.decode(t) for t in tokens], finished)
    return world_dir, items, answers


def evaluate_models(models: dict[str, str], prompts: str, *, baseline: str | None = None, limit: int = 0, max_new_tokens: int = 48, world: str | None = None) -> dict:
    """Every model answers the same held-out prompts; the oracle's metrics for each, and each
    one's win rate against `baseline` (a key of `models`)."""
    if baseline is not None and baseline not in models:
        raise InputError(f"the baseline {baseline!r} is not one of the models ({', '.join(models)})", field="baseline")
    world_dir, items, answers = answer_prompts(models, prompts, limit=limit, max_new_tokens=max_new_tokens, world=world)
    scorer = oracle_scorer(world_dir)
    results, per_answer = {}, {}
    for name, (texts, finished) in answers.items():
        scores = scorer(items, texts, finished)
        per_answer[name] = scores
        results[name] = {**summarize(scores), "finished": float(np.mean(finished)), "answers": len(scores)}
    if baseline is not None:
        for name in models:
            results[name]["win_rate_vs_" + baseline] = win_rate([s["total"] for s in per_answer[name]], [s["total"] for s in per_answer[baseline]])
    return {"prompts": len(items), "models": results}
