"""What alignment did to a policy, measured on held-out prompts with the world's ground truth.

Each model answers the held-out prompts greedily: a chat model through its template; a base
model zero-shot, the prompt as the start of a new document (how InstructGPT's "GPT-3" baseline
is asked), or few-shot, behind one fixed prefix of k of the world's demonstrations as
"Q: ... A: ..." pairs (their "GPT-3 (prompted)"). The world's oracle scores every answer. Per
model:

  oracle_score       the oracle's mean total (helpful, truthful, harmless, well formed)
  task_accuracy      answers the task's checker accepts in full
  false_claim_rate   answers that state something false about the world (truthfulness)
  rude_rate          answers with a rude word (toxicity)
  question_rate      answers that ask a question (or give another of the world's instructions)
                     instead of answering
  mean_length        words an answer
  finished           answers that ended by themselves

and against a baseline model, the win rate: the share of prompts whose answer the oracle scores
higher than the baseline's, ties counted half (as InstructGPT's preference rates). `by_task`
splits the task accuracy, oracle score and win rate by the world's task: a task that neither the
baseline nor the aligned model can do is won only on form (tone, stopping, not asking back), so
an overall win rate is read beside which tasks the models can do at all.

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
def greedy_answers(model, prompt_ids: list[list[int]], *, stops: list[int], pad_id: int, max_new_tokens: int, batch_size: int = 64, stop_strings: list[str] | None = None, decode=None, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0):
    """Each prompt answered greedily, or with `temperature` > 0 sampled (one answer, seeded per
    batch): (answer token lists without the stop token, finished flags). `stop_strings` (with
    `decode`) end an answer too, the string itself cut off."""
    from ..engine import SamplingParams, generate
    from ..sample import _batch_seed

    tokens, finished = [], []
    for i in range(0, len(prompt_ids), batch_size):
        batch_seed = _batch_seed(seed, i // batch_size) if temperature > 0 else None
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop_ids=stops, stop_strings=list(stop_strings or []), seed=batch_seed)
        for g in generate(model, prompt_ids[i : i + batch_size], params, pad_id=pad_id, decode=decode):
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


def sample_collapse(world_dir, samples_path) -> dict:
    """How varied and how good K samples a prompt are (a samples.jsonl of `lmforge sample`), the
    watch on a self-training loop for collapse: how many different answers a prompt gets (1/K:
    every sample the same), distinct word bigrams over all samples (Li et al. 2016's distinct-2),
    words, and the oracle's false-claim rate and task accuracy (reward hacking shows as answers
    getting longer and less true)."""
    import itertools
    import json
    from pathlib import Path

    from ..world import oracle
    from ..world.build import load_world

    world, _, _ = load_world(world_dir)
    distinct, bigrams, n_bigrams, lengths, false, correct = [], set(), 0, [], [], []
    for line in Path(samples_path).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        texts = rec["completions"]
        distinct.append(len(set(texts)) / len(texts))
        for text, fin in zip(texts, rec.get("finished", [True] * len(texts))):
            w = text.split()  # words as the policy evaluation counts them
            bigrams.update(itertools.pairwise(w))
            n_bigrams += max(0, len(w) - 1)
            lengths.append(len(w))
            sc = oracle.score(world, rec["task"], rec["meta"], text, fin)
            false.append(sc["truthful"] < 1.0)
            correct.append(sc["helpful"] >= 1.0)

    def mean(xs):
        return sum(xs) / max(1, len(xs))

    return {"samples": len(lengths), "distinct_answers": mean(distinct), "distinct_2": len(bigrams) / max(1, n_bigrams),
            "words": mean(lengths), "false_claims": mean(false), "task_accuracy": mean(correct)}  # fmt: skip


def win_rate(scores: list[float], baseline: list[float]) -> float:
    """Share of prompts where `scores` beats `baseline`, ties counted half."""
    if len(scores) != len(baseline) or not scores:
        raise ValueError("win rate needs the same, non-empty set of prompts for both models")
    a, b = np.asarray(scores, dtype=float), np.asarray(baseline, dtype=float)
    return float(np.mean((a > b) + 0.5 * (a == b)))


def win_rate_interval(scores: list[float], baseline: list[float], *, bootstrap: int = 1000, seed: int = 0) -> list[float]:
    """A 95% bootstrap interval of `win_rate` over prompts (ties half)."""
    x = (np.asarray(scores) > np.asarray(baseline)) + 0.5 * (np.asarray(scores) == np.asarray(baseline))
    return mean_interval(x, bootstrap=bootstrap, seed=seed)


def mean_interval(x, *, bootstrap: int = 1000, seed: int = 0) -> list[float]:
    """A 95% bootstrap interval of a mean over prompts."""
    a = np.asarray(x, dtype=float)
    means = a[np.random.default_rng(seed).integers(0, len(a), size=(bootstrap, len(a)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def qa_markers(world_dir) -> dict[str, tuple[str, str]]:
    """The Q/A markers of the world's Q&A pages in each of its languages ({} for a one-language
    world: English's are the default)."""
    from ..world.build import load_world

    world = load_world(world_dir)[0]
    if not world.languages:
        return {}
    return {code: (world.tell("Q:", code), world.tell("A:", code)) for code in ["en", *world.languages]}


def fewshot_prompt_ids(tok, items, pool, shots: int, *, room: int, context: int, seed: int = 0, markers: dict[str, tuple[str, str]] | None = None) -> list[list[int]]:
    """Base-model prompts behind one fixed prefix of `shots` demonstrations ("Q: ... A: ..."
    pairs, `lmforge.eval.fewshot`'s qa format), drawn once with `seed` from the whole pool, any
    task: InstructGPT's "GPT-3 (prompted)" baseline, a prefix that puts the model in an
    instruction-following mode rather than demonstrations of each prompt's own task (those would
    hand it the answer's template). Demonstrations are dropped from the end where they and `room`
    answer tokens do not fit `context`. A prompt that names its language (a multilingual world's)
    gets its prefix drawn from the demonstrations in that language, as MEGA prompts in-language
    (Ahuja et al. 2023): an English prefix before a Torin question asks for an English answer.
    `markers[language]`: the Q/A markers in that language (the world's own Q&A pages': "Q:" and
    "A:" are English words too)."""
    import random

    from .fewshot import encode, render

    prefix = random.Random(seed).sample(pool, min(shots, len(pool)))
    in_language: dict[str, list] = {}

    def prefix_of(lang: str | None) -> list:
        if lang is None:
            return prefix
        if lang not in in_language:
            same = [d for d in pool if (d.meta or {}).get("language") == lang]
            in_language[lang] = random.Random(f"{seed}:{lang}").sample(same, min(shots, len(same))) if same else prefix
        return in_language[lang]

    out = []
    for p in items:
        text = p.prompt if isinstance(p.prompt, str) else p.prompt[0]["content"]
        lang = (getattr(p, "meta", None) or {}).get("language")
        demos = list(prefix_of(lang))
        qa = (markers or {}).get(lang, ("Q:", "A:"))
        ids = encode(tok, "qa", render("qa", text, demos, qa))
        while demos and len(ids) + room > context:
            demos = demos[:-1]
            ids = encode(tok, "qa", render("qa", text, demos, qa))
        out.append(ids)
    return out


def answer_prompts(models: dict[str, str], prompts: str, *, limit: int = 0, max_new_tokens: int = 48, world: str | None = None, shots: dict[str, int] | None = None, seed: int = 0, temperature: float = 0.0, top_p: float = 1.0, device: str = "cpu", oracle: bool = True):
    """Every model's greedy answers to the same held-out prompts: (world_dir, prompt records,
    {name: (texts, finished)}). `prompts`: a file of evaluation records, or "world" (the world's
    eval.jsonl, found next to the first model). `shots[name]` > 0 asks that base model few-shot,
    behind a prefix of demonstrations drawn (with `seed`) from the world's sft.jsonl. With
    `temperature` > 0 the answers are sampled (seeded by `seed`) instead of greedy. Without
    `oracle` (a user's own prompts, `eval/own_data.py`) no world is looked for (world_dir is None)
    and the prompts need no task."""
    from ..data import chat
    from ..models import load_model
    from ..sample import prompt_tokens, read_prompts
    from ..tokenizer import Tokenizer
    from ..world.build import find_world, is_world, world_file

    first = next(iter(models.values()))
    world_dir = Path(world) if world else find_world(first) if oracle else None
    path = world_file(world_dir, prompts, "eval.jsonl") if is_world(prompts) else prompts
    items = read_prompts(path, limit or None)
    if not items:
        raise InputError("no prompts", path=path)
    if oracle and any(p.task is None for p in items):
        raise InputError("the oracle scores prompts of the world's tasks; some prompts have no 'task'", path=path)
    pool, markers = None, {}
    answers = {}
    for name, path_ in models.items():
        model, folder = load_model(path_, device)
        tok = Tokenizer.load(folder)
        as_chat = getattr(model, "chat_template", None) is not None
        k = (shots or {}).get(name, 0)
        if k and as_chat:
            raise InputError(f"{name} is a chat model: it is asked through its template, not few-shot", field="shots")
        strings = []
        if k:
            from .fewshot import _demo_of, _read_jsonl

            if pool is None:
                pool = [_demo_of(r, loc) for r, loc in _read_jsonl(world_dir / "sft.jsonl")]
                markers = qa_markers(world_dir)
            ids = fewshot_prompt_ids(tok, items, pool, k, room=max_new_tokens, context=model.cfg.max_seq_len, seed=seed, markers=markers)
            strings = sorted({"\n" + q for q, _ in markers.values()} | {"\nQ:", "\n\n"})  # the next demonstration would begin: the answer is over
        else:
            ids = [prompt_tokens(tok, p.prompt, as_chat, p.where, p.field) for p in items]
        stops = chat.stop_ids(tok) if as_chat else [tok.eos_id]
        tokens, finished = greedy_answers(model.eval(), ids, stops=stops, pad_id=tok.pad_id, max_new_tokens=max_new_tokens, stop_strings=strings, decode=tok.decode, temperature=temperature, top_p=top_p, seed=seed)
        answers[name] = ([chat.answer_text(tok, t) if as_chat else tok.decode(t).strip() if k else tok.decode(t) for t in tokens], finished)
    return world_dir, items, answers


def score_answers(world_dir, items, answers: dict, *, baseline: str | None = None) -> tuple[dict, dict]:
    """The oracle's metrics for each model's answers (and win rates against `baseline`):
    ({name: metrics}, {name: per-answer oracle scores})."""
    scorer = oracle_scorer(world_dir)
    results, per_answer = {}, {}
    for name, (texts, finished) in answers.items():
        scores = scorer(items, texts, finished)
        per_answer[name] = scores
        results[name] = {**summarize(scores), "finished": float(np.mean(finished)), "answers": len(scores)}
    if baseline is not None:
        base = [s["total"] for s in per_answer[baseline]]
        for name in answers:
            mine = [s["total"] for s in per_answer[name]]
            results[name]["win_rate_vs_" + baseline] = win_rate(mine, base)
            results[name][f"win_rate_vs_{baseline}_ci"] = win_rate_interval(mine, base)
    return results, per_answer


def by_task(items, per_answer: dict[str, list[dict]], *, baseline: str | None = None) -> dict:
    """{name: {task: {prompts, task_accuracy, oracle_score[, win_rate_vs_<baseline>]}}} from
    `score_answers`' per-answer scores; prompts without a task are left out."""
    tasks = [getattr(it, "task", None) for it in items]
    out = {}
    for name, scores in per_answer.items():
        rows = {}
        for task in sorted({t for t in tasks if t}):
            idx = [i for i, t in enumerate(tasks) if t == task]
            row = {
                "prompts": len(idx),
                "task_accuracy": float(np.mean([scores[i]["helpful"] >= 1.0 for i in idx])),
                "oracle_score": float(np.mean([scores[i]["total"] for i in idx])),
            }
            if baseline is not None:
                base = per_answer[baseline]
                row["win_rate_vs_" + baseline] = win_rate([scores[i]["total"] for i in idx], [base[i]["total"] for i in idx])
            rows[task] = row
        out[name] = rows
    return out


def by_language(items, per_answer: dict[str, list[dict]], *, baseline: str | None = None) -> dict:
    """For prompts of a multilingual world (meta.language): {name: {language: {prompts,
    task_accuracy (+ 95% interval), oracle_score, wrong_language, by_task: {task: accuracy}
    [, win_rate_vs_<baseline> (+ interval)]}}}, the per-language table MEGA reports; {} when
    no prompt names a language."""
    langs = [(getattr(it, "meta", None) or {}).get("language") if getattr(it, "task", None) else None for it in items]
    if not any(langs):
        return {}
    tasks = [getattr(it, "task", None) for it in items]
    out = {}
    for name, scores in per_answer.items():
        rows = {}
        for lang in dict.fromkeys(code for code in langs if code):
            idx = [i for i, code in enumerate(langs) if code == lang]
            acc = [float(scores[i]["helpful"] >= 1.0) for i in idx]
            row = {
                "prompts": len(idx),
                "task_accuracy": float(np.mean(acc)),
                "task_accuracy_ci": mean_interval(acc),
                "oracle_score": float(np.mean([scores[i]["total"] for i in idx])),
                "wrong_language": float(np.mean([bool(scores[i].get("wrong_language")) for i in idx])),
                "by_task": {t: float(np.mean([scores[i]["helpful"] >= 1.0 for i in idx if tasks[i] == t])) for t in sorted({tasks[i] for i in idx})},
            }
            if baseline is not None:
                mine, base = [scores[i]["total"] for i in idx], [per_answer[baseline][i]["total"] for i in idx]
                row["win_rate_vs_" + baseline] = win_rate(mine, base)
                row[f"win_rate_vs_{baseline}_ci"] = win_rate_interval(mine, base)
            rows[lang] = row
        out[name] = rows
    return out


def evaluate_models(models: dict[str, str], prompts: str, *, baseline: str | None = None, limit: int = 0, max_new_tokens: int = 48, world: str | None = None, shots: dict[str, int] | None = None, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, device: str = "cpu") -> dict:
    """Every model answers the same held-out prompts; the oracle's metrics for each, and each
    one's win rate against `baseline` (a key of `models`)."""
    if baseline is not None and baseline not in models:
        raise InputError(f"the baseline {baseline!r} is not one of the models ({', '.join(models)})", field="baseline")
    world_dir, items, answers = answer_prompts(models, prompts, limit=limit, max_new_tokens=max_new_tokens, world=world, shots=shots, temperature=temperature, top_p=top_p, seed=seed, device=device)
    results, per_answer = score_answers(world_dir, items, answers, baseline=baseline)
    out = {"prompts": len(items), "models": results, "by_task": by_task(items, per_answer, baseline=baseline)}
    languages = by_language(items, per_answer, baseline=baseline)
    if languages:
        out["by_language"] = languages
    return out


def best_of_n_answers(policy: str | Path, reward_model: str | Path, items, ns: list[int], *, max_new_tokens: int = 48, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 64) -> dict:
    """Best-of-n, rejection sampling against the reward model (Nakano et al. 2021; Stiennon et
    al. 2020): the policy samples n answers to each prompt and the reward model keeps its
    favourite. The first n of max(ns) samples serve each n, so best-of-4 is nested in best-of-16
    (a smaller n is the same procedure on fewer samples, not a different draw).
    Returns {"best_of_<n>": (texts, finished)}."""
    from ..data import chat
    from ..models import load_model
    from ..sample import prompt_tokens
    from ..tokenizer import Tokenizer
    from ..train.reward import reward_scores

    if not ns or min(ns) < 1:
        raise InputError(f"best-of-n needs n >= 1, got {ns}", field="best_of")
    model, folder = load_model(policy)
    tok = Tokenizer.load(folder)
    if getattr(model, "chat_template", None) is None:
        raise InputError("best-of-n samples a chat model (the SFT model); this one has no chat template", path=folder)
    n_max = max(ns)
    ids = [prompt_tokens(tok, p.prompt, True, p.where, p.field) for p in items]
    tokens, finished = greedy_answers(model.eval(), [x for x in ids for _ in range(n_max)], stops=chat.stop_ids(tok), pad_id=tok.pad_id, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed, batch_size=batch_size)
    texts = [chat.answer_text(tok, t) for t in tokens]
    rm, rm_folder = load_model(reward_model)
    prompts = [p.prompt for p in items for _ in range(n_max)]
    scores = reward_scores(rm.eval(), Tokenizer.load(rm_folder), prompts, texts, finished).view(len(items), n_max)
    out = {}
    for n in sorted(set(ns)):
        pick = [i * n_max + int(j) for i, j in enumerate(scores[:, :n].argmax(1))]
        out[f"best_of_{n}"] = ([texts[k] for k in pick], [finished[k] for k in pick])
    return out
