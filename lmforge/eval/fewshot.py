"""In-context evaluation: how well a model does a task from its prompt alone (Brown et al. 2020).

A task is a list of items (a prompt, its reference answer, and for multiple choice the choices
and the index of the right one), a pool of demonstrations and a scorer. Each item is asked
zero-shot, or k-shot with k demonstrations of the same task drawn for it from the pool by a
random generator seeded with (seed, its prompt), so the draw does not depend on the order of
the items or on --limit, and never includes the item itself.

How the prompt is written (`render`):

    raw    the prompt as a user would type it to a base model:  {prompt}\\n
           with demonstrations before it as                   {prompt}\\n{answer}\\n\\n
           the answer ends at a blank line or the end-of-text token
    qa     the Q&A pages of the pretraining corpus:             Q: {prompt}\\nA: {answer}\\n\\n ...  Q: {prompt}\\nA:
           the answer ends at "\\nQ:", a blank line or the end-of-text token
    chat   the chat template (lmforge.data.chat): each demonstration a user turn and an
           assistant turn, then the user's prompt and the generation prompt; the answer ends
           with the end-of-turn token
    auto   chat for a model fine-tuned on conversations; for a base model raw zero-shot and
           qa few-shot (a bare prompt is what InstructGPT's users typed; few-shot prompts
           for a base model are written in a format it has seen)

A base model reads raw and qa prompts as a new document: after the end-of-text token, as
every pretraining document follows one. When k demonstrations and room for the answer do not
fit the model's context, the last demonstrations are dropped (as many as fit, as GPT-3 does);
`mean_shots` reports how many were used.

How an answer is scored:

  - generative tasks: greedy decoding, the answer judged by the world task's checker (or,
    for a user's file, by exact match after normalising case, spaces and end punctuation).
    Reported: `accuracy` (share judged fully correct), `score` (mean checker score),
    `question_rate` (share of answers that ask a question instead of answering: the
    oracle's test, InstructGPT's "moon landing" failure), `mean_length` (words),
    `finished_rate` (share that ended by themselves), per task when several tasks run.
  - classification and multiple choice, by log-probability: the prediction is the choice
    whose tokens are most likely after the prompt, log p(choice | prompt) summed over the
    choice's tokens (those that prompt + choice encode to after the prompt's, so a chat
    model's choice begins as the chat template begins an answer). Classification is cast
    this way with the label words only (" Positive" against " Negative" after "A:").
    Reported: `accuracy`, `chance` (the mean of 1 / number
    of choices) and `centered_accuracy` = (accuracy - chance) / (1 - chance): 0 at chance,
    1 when always right.

World tasks come from a world directory: the held-out prompts of eval.jsonl, demonstrations
from sft.jsonl. `sentiment-choice` asks eval.jsonl's sentiment prompts with the label words
Positive and Negative; `fact-choice` asks its fact questions with, as choices, the reference
answer sentence with each value of the attribute's type in place of the true one.

It does not sample (answers are greedy) and it trains nothing; the oracle's checkers are the
ground truth, which is why this lives under eval/.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import chat as chat_template
from ..engine import SamplingParams, generate, sequence_logprobs
from ..errors import InputError

FORMATS = ("auto", "raw", "qa", "chat")
CHOICE_TASKS = {"sentiment-choice": "sentiment", "fact-choice": "fact"}  # -> the world task they ask
LABELS = ("Positive", "Negative")  # sentiment-choice's label words (meta["answer"] is "positive" or "negative")


@dataclass
class Item:
    prompt: str
    answer: str  # the reference answer (what a demonstration of this prompt says)
    task: str = "custom"  # the world task that checks it ("fact", ...), or "custom"
    meta: dict = field(default_factory=dict)
    choices: list[str] | None = None  # multiple choice: scored by log-probability
    label: int | None = None  # index of the right choice


@dataclass
class Task:
    name: str
    items: list[Item]
    demos: list[Item]  # the pool; an item's demonstrations come from those of its own task
    check: Callable[[Item, str], float] | None = None  # generative scorer, response -> [0, 1]


@dataclass
class FewShotConfig:
    shots: int = 0
    format: str = "auto"  # auto | raw | qa | chat
    max_new_tokens: int = 64
    batch_size: int = 32  # prompts per generation batch (choice tasks: prompt-choice pairs)
    seed: int = 0  # draws the demonstrations
    show: int = 0  # example answers to include in the result

    def validate(self) -> None:
        if self.shots < 0:
            raise InputError(f"must be >= 0, got {self.shots}", field="shots")
        if self.format not in FORMATS:
            raise InputError(f"unknown format {self.format!r}; expected one of {', '.join(FORMATS)}", field="format")
        if self.max_new_tokens < 1:
            raise InputError(f"must be >= 1, got {self.max_new_tokens}", field="max_new_tokens")
        if self.batch_size < 1:
            raise InputError(f"must be >= 1, got {self.batch_size}", field="batch_size")
        if self.show < 0:
            raise InputError(f"must be >= 0, got {self.show}", field="show")


# --------------------------------------------------------------------------- tasks


def world_task_names() -> list[str]:
    from ..world.tasks import TASKS

    return [*TASKS, *CHOICE_TASKS, "all"]


def _read_jsonl(path: Path):
    from ..data.readers import iter_records

    if not path.exists():
        raise InputError("not found", path=path)
    yield from iter_records(path)


def _demo_of(record: dict, loc) -> Item:
    """A demonstration from a {"prompt", "answer"} record or a conversation {"messages": [...]}."""
    if "messages" in record:
        msgs = record["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise loc.error("expected a list of messages", field="messages")
        users = [m.get("content") for m in msgs if m.get("role") == "user"]
        answers = [m.get("content") for m in msgs if m.get("role") == "assistant"]
        if not users or not answers or not isinstance(users[0], str) or not isinstance(answers[0], str):
            raise loc.error("a demonstration needs a user message and an assistant message", field="messages")
        prompt, answer = users[0], answers[0]
    else:
        prompt, answer = _text_field(record, loc, "prompt"), _text_field(record, loc, "answer")
    task = record.get("task")
    return Item(prompt, answer, task if isinstance(task, str) else "custom", record.get("meta") or {})


def _text_field(record: dict, loc, name: str) -> str:
    if name not in record:
        raise loc.error(f"missing (a record needs \"prompt\" and \"answer\"; got {', '.join(map(repr, record)) or 'nothing'})", field=name)
    v = record[name]
    if not isinstance(v, str) or (name == "prompt" and not v.strip()):
        raise loc.error(f"expected a non-empty string, got {v!r}"[:200], field=name)
    return v


def file_items(path: str | Path) -> list[Item]:
    """A user's task: records {"prompt", "answer"}, with "choices" (a list of strings holding the
    answer) for multiple choice; all records or none must have choices."""
    items, where_choices = [], None
    for record, loc in _read_jsonl(Path(path)):
        prompt, answer = _text_field(record, loc, "prompt"), _text_field(record, loc, "answer")
        choices = record.get("choices")
        has = choices is not None
        if where_choices is None:
            where_choices = has
        elif has != where_choices:
            raise loc.error("either every record has choices (multiple choice) or none does (generation)", field="choices")
        label = None
        if has:
            if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
                raise loc.error("expected a list of at least two non-empty strings", field="choices")
            if answer not in choices:
                raise loc.error("the answer must be one of the choices", field="answer")
            label = choices.index(answer)
        items.append(Item(prompt, answer, "custom", {}, choices, label))
    return items


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(".!?;:,\"'").strip()).lower()


def exact_match(item: Item, response: str) -> float:
    return float(_normalise(response) == _normalise(item.answer))


def fact_choices(world, meta: dict) -> tuple[list[str], int]:
    """The reference answer sentence with each value of the attribute's type in place of the true
    one, and the index of the true one."""
    from ..world.ontology import VALUES

    e = world.by_name[meta["entity"]]
    vt, attr = meta["value_type"], meta["attr"]
    pool = [x.name for x in world.kinds[vt] if x.name != e.name] if vt in world.kinds else list(VALUES[vt])
    choices = [world.answer(dataclasses.replace(e, attrs={**e.attrs, attr: v}), attr) for v in pool]
    return choices, pool.index(meta["answer"])


def world_task(name: str, world_dir: str | Path, demos: str | Path | None = None) -> Task:
    """A task of the built-in world: eval.jsonl's held-out prompts, sft.jsonl's demonstrations."""
    from ..world.build import load_world
    from ..world.tasks import TASKS

    if name not in world_task_names():
        raise InputError(f"unknown task {name!r}; expected one of {', '.join(world_task_names())}, or a JSONL file", field="task")
    world_dir = Path(world_dir)
    world, _, _ = load_world(world_dir)
    wanted = CHOICE_TASKS.get(name, name)
    items = []
    for record, loc in _read_jsonl(world_dir / "eval.jsonl"):
        task, meta = record.get("task"), record.get("meta")
        if task not in TASKS or not isinstance(meta, dict):
            raise loc.error(f"expected a world task and its meta, got task {task!r}", field="task")
        if wanted != "all" and task != wanted:
            continue
        prompt = _text_field(record, loc, "prompt")
        if name == "sentiment-choice":
            label = LABELS.index(meta["answer"].capitalize())
            items.append(Item(prompt, LABELS[label], task, meta, list(LABELS), label))
        elif name == "fact-choice":
            choices, label = fact_choices(world, meta)
            items.append(Item(prompt, choices[label], task, meta, choices, label))
        else:
            items.append(Item(prompt, _reference(world, task, meta), task, meta))
    if not items:
        raise InputError(f"no {wanted!r} prompts in eval.jsonl", path=world_dir / "eval.jsonl")
    pool = [_demo_of(r, loc) for r, loc in _read_jsonl(Path(demos) if demos else world_dir / "sft.jsonl")]

    def check(item: Item, response: str) -> float:
        return TASKS[item.task].check(world, item.meta, response) if response.strip() else 0.0

    return Task(name, items, pool, None if name in CHOICE_TASKS else check)


def _reference(world, task: str, meta: dict) -> str:
    """The reference answer the meta determines (eval.jsonl holds none; shown with --show). A
    story has none: its checker judges relevance and facts, not one text."""
    if task == "fact":
        return world.answer(world.by_name[meta["entity"]], meta["attr"])
    if "target" in meta:
        return ", ".join(meta["target"]) + "."
    if task == "sentiment":
        return meta["answer"].capitalize() + "."
    if task == "arithmetic":  # the full form ("7 + 5 = 12.") the checker scores 1; a bare "12." is incomplete
        a, op, b = re.fullmatch(r"arith:(\d+)([-+*])(\d+)", meta["key"]).groups()
        return f"{a} {op} {b} = {meta['answer']}."
    if task == "count":
        return f"There are {meta['answer']} words."
    return str(meta.get("answer", ""))


def load_task(spec: str, *, world: str | Path | None = None, model_path: str | Path | None = None, demos: str | Path | None = None) -> Task:
    """A world task by name (the world from `world`, else found next to the model), or a user's
    JSONL file of items (demonstrations from `demos`, else from the file itself)."""
    if spec in world_task_names():
        from ..world.build import find_world

        world_dir = Path(world) if world else find_world(model_path)
        return world_task(spec, world_dir, demos)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"unknown task {spec!r}: not a world task ({', '.join(world_task_names())}) nor a file", field="task")
    items = file_items(path)
    pool = [_demo_of(r, loc) for r, loc in _read_jsonl(Path(demos))] if demos else items
    return Task(path.stem, items, pool, None if items[0].choices else exact_match)


# --------------------------------------------------------------------------- the world a model was trained on


# --------------------------------------------------------------------------- prompts


def pick_demos(pool: list[Item], item: Item, k: int, seed: int) -> list[Item]:
    """k demonstrations for `item` from the pool: its own task's, never itself, drawn with a
    generator seeded by (seed, its prompt)."""
    if k == 0:
        return []
    same = [d for d in pool if d.prompt != item.prompt and (item.task == "custom" or d.task in (item.task, "custom"))]
    if len(same) < k:
        raise InputError(f"{k} demonstrations asked for, but the pool has only {len(same)} for task {item.task!r}", field="shots")
    return random.Random(f"{seed}:{item.prompt}").sample(same, k)


def resolve_format(fmt: str, model, shots: int) -> str:
    template = getattr(model, "chat_template", None)
    if template not in (None, "lmforge"):
        raise InputError(f"unknown chat template {template!r} in the model's config.json", field="chat_template")
    if fmt == "auto":
        return "chat" if template else ("qa" if shots > 0 else "raw")
    if fmt == "chat" and not template:
        warnings.warn("--format chat on a base model: it has never seen the chat template's tokens", stacklevel=2)
    return fmt


def render(fmt: str, prompt: str, demos: list[Item], markers: tuple[str, str] = ("Q:", "A:")) -> str | list[dict]:
    """The prompt as text (raw, qa) or as chat messages (chat). `markers`: qa's question and
    answer markers (a multilingual world's Q&A pages say them in their language)."""
    if fmt == "raw":
        return "".join(f"{d.prompt}\n{d.answer}\n\n" for d in demos) + f"{prompt}\n"
    if fmt == "qa":
        q, a = markers
        return "".join(f"{q} {d.prompt}\n{a} {d.answer}\n\n" for d in demos) + f"{q} {prompt}\n{a}"
    if fmt == "chat":
        turns = [m for d in demos for m in ({"role": "user", "content": d.prompt}, {"role": "assistant", "content": d.answer})]
        return turns + [{"role": "user", "content": prompt}]
    raise ValueError(fmt)


def encode(tok, fmt: str, rendered: str | list[dict]) -> list[int]:
    if fmt == "chat":
        return chat_template.prompt_ids(tok, rendered)
    return tok.document_ids(rendered, plain=False)  # a new document, as in pretraining


def choice_ids(tok, fmt: str, rendered: str | list[dict], prompt: list[int], choice: str) -> list[int]:
    """The tokens of a choice as they follow the prompt: what the prompt and the choice encoded
    together have after the prompt's tokens. The choice goes after "A:" and a space (qa), at the
    start of the line (raw), or as the assistant's turn, rendered by the chat template (chat;
    without the end-of-turn token: the label words only)."""
    if fmt == "chat":
        full = chat_template.render(tok, [*rendered, {"role": "assistant", "content": choice}]).ids
        if full and full[-1] in chat_template.stop_ids(tok):
            full = full[:-1]
    else:
        full = encode(tok, fmt, rendered + (" " if fmt == "qa" else "") + choice)
    if full[: len(prompt)] == prompt:
        return full[len(prompt) :]
    # the tokenizer merged across the boundary: the choice encoded alone
    return tok.encode_plain(choice) if fmt == "chat" else tok.encode((" " if fmt == "qa" else "") + choice)


def sampling(tok, fmt: str, max_new_tokens: int) -> SamplingParams:
    if fmt == "chat":
        return SamplingParams(max_new_tokens=max_new_tokens, temperature=0, stop_ids=chat_template.stop_ids(tok))
    stops = ["\nQ:", "\n\n"] if fmt == "qa" else ["\n\n"]
    return SamplingParams(max_new_tokens=max_new_tokens, temperature=0, stop_ids=[tok.eos_id], stop_strings=stops)


def build_prompts(task: Task, tok, fmt: str, shots: int, seed: int, context: int, room: Callable[[Item, str | list[dict], list[int]], int]) -> list[tuple[list[int], int, str | list[dict]]]:
    """(ids, demonstrations used, rendered prompt) per item: k demonstrations, fewer when k and
    `room(item, rendered, ids)` tokens for the answer do not fit `context`."""
    out = []
    for i, item in enumerate(task.items):
        demos = pick_demos(task.demos, item, shots, seed)
        while True:
            rendered = render(fmt, item.prompt, demos)
            ids = encode(tok, fmt, rendered)
            need = room(item, rendered, ids)
            if len(ids) + need <= context or not demos:
                break
            demos = demos[:-1]
        need = need if item.choices else 1  # a generation may be cut short, a choice may not
        if len(ids) + need > context:
            raise InputError(f"item {i + 1} ({item.prompt[:40]!r}...) has {len(ids)} prompt tokens; the model's context of {context} leaves no room for the answer", field="prompt")
        out.append((ids, len(demos), rendered))
    return out


# --------------------------------------------------------------------------- evaluation


def evaluate(model, tok, task: Task, cfg: FewShotConfig, *, progress: Callable[[int, int], None] | None = None) -> dict:
    """Ask every item of `task` and score the answers; returns the metrics (see the module docstring).
    `progress(done, total)` hears after each batch (items generated, or prompt-choice pairs scored)."""
    cfg.validate()
    if not task.items:
        raise InputError(f"task {task.name!r} has no items to ask")
    fmt = resolve_format(cfg.format, model, cfg.shots)
    start = time.time()
    context = model.cfg.max_seq_len
    choice = task.check is None
    if choice:  # room for the longest choice

        def room(item, rendered, ids):
            return max(len(choice_ids(tok, fmt, rendered, ids, c)) for c in item.choices)

        prompts = build_prompts(task, tok, fmt, cfg.shots, cfg.seed, context, room)
        result = _score_choices(model, tok, task, fmt, prompts, cfg, progress)
    else:
        prompts = build_prompts(task, tok, fmt, cfg.shots, cfg.seed, context, lambda *_: cfg.max_new_tokens)
        result = _score_generations(model, tok, task, fmt, prompts, cfg, progress)
    used = [n for _, n, _ in prompts]
    head = {"task": task.name, "format": fmt, "shots": cfg.shots, "mean_shots": sum(used) / len(used), "n": len(task.items)}
    examples = result.pop("examples")
    return {**head, **result, "seconds": round(time.time() - start, 3), "examples": examples}


def _by_length(prompts, batch_size: int):
    """Item indices in batches of similar prompt lengths (less padding), longest first."""
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i][0]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _shown_prompt(tok, fmt: str, ids: list[int], rendered) -> str:
    return tok.decode(ids) if fmt == "chat" else rendered


@torch.no_grad()
def _score_generations(model, tok, task: Task, fmt: str, prompts, cfg: FewShotConfig, progress) -> dict:
    from ..world.oracle import asks_instead_of_answering

    params = sampling(tok, fmt, cfg.max_new_tokens)
    answers: list[str] = [""] * len(prompts)
    finished = [False] * len(prompts)
    batches = _by_length(prompts, cfg.batch_size)
    for k, batch in enumerate(batches):
        gens = generate(model, [prompts[i][0] for i in batch], params, pad_id=tok.pad_id, decode=tok.decode)
        for i, g in zip(batch, gens):
            answers[i] = tok.decode(g.tokens, skip_special_tokens=True).strip()
            finished[i] = g.finished
        if progress:
            progress(sum(len(b) for b in batches[: k + 1]), len(prompts))
    rows = []
    for item, answer, done in zip(task.items, answers, finished):
        score = float(task.check(item, answer))
        rows.append({"task": item.task, "score": score, "asks": asks_instead_of_answering(answer), "words": len(answer.split()), "finished": done})

    def summary(rs):
        n = len(rs)
        return {
            "n": n,
            "accuracy": sum(r["score"] == 1.0 for r in rs) / n,
            "score": sum(r["score"] for r in rs) / n,
            "question_rate": sum(r["asks"] for r in rs) / n,
            "mean_length": sum(r["words"] for r in rs) / n,
            "finished_rate": sum(r["finished"] for r in rs) / n,
        }

    out = summary(rows)
    del out["n"]
    tasks = sorted({r["task"] for r in rows})
    if len(tasks) > 1:
        out["per_task"] = {t: summary([r for r in rows if r["task"] == t]) for t in tasks}
    out["examples"] = [
        {"prompt": item.prompt, "input": _shown_prompt(tok, fmt, ids, rendered), "answer": answer, "reference": item.answer, "score": r["score"], "asks": r["asks"]}
        for item, (ids, _, rendered), answer, r in list(zip(task.items, prompts, answers, rows))[: cfg.show]
    ]
    return out


@torch.no_grad()
def _score_choices(model, tok, task: Task, fmt: str, prompts, cfg: FewShotConfig, progress) -> dict:
    pairs = [(i, j) for i, item in enumerate(task.items) for j in range(len(item.choices))]
    conts = {(i, j): choice_ids(tok, fmt, prompts[i][2], prompts[i][0], c) for i, item in enumerate(task.items) for j, c in enumerate(item.choices)}
    scores = {}
    pairs.sort(key=lambda p: -(len(prompts[p[0]][0]) + len(conts[p])))
    was_training = model.training
    model.eval()
    try:
        for b in range(0, len(pairs), cfg.batch_size):
            batch = pairs[b : b + cfg.batch_size]
            lp = sequence_logprobs(model, [prompts[i][0] for i, _ in batch], [conts[p] for p in batch], pad_id=tok.pad_id)
            scores.update(zip(batch, lp.tolist()))
            if progress:
                progress(b + len(batch), len(pairs))
    finally:
        model.train(was_training)
    predicted = [max(range(len(item.choices)), key=lambda j: (scores[(i, j)], -j)) for i, item in enumerate(task.items)]
    n = len(task.items)
    accuracy = sum(p == item.label for p, item in zip(predicted, task.items)) / n
    chance = sum(1 / len(item.choices) for item in task.items) / n
    out = {"accuracy": accuracy, "chance": chance, "centered_accuracy": (accuracy - chance) / (1 - chance)}
    out["examples"] = [
        {
            "prompt": item.prompt,
            "input": _shown_prompt(tok, fmt, ids, rendered),
            "choices": item.choices,
            "logprobs": [scores[(i, j)] for j in range(len(item.choices))],
            "predicted": item.choices[predicted[i]],
            "answer": item.answer,
            "correct": predicted[i] == item.label,
        }
        for i, (item, (ids, _, rendered)) in enumerate(zip(task.items[: cfg.show], prompts))
    ]
    return out


def summary_text(r: dict) -> str:
    """A few readable lines for the terminal."""
    shots = f"{r['shots']}-shot" + (f" ({r['mean_shots']:.2f} demonstrations fit on average)" if r["mean_shots"] < r["shots"] else "")
    head = f"{r['task']}: {r['n']} prompts, {r['format']} format, {shots}, {r['seconds']:.1f} s"
    if "chance" in r:
        lines = [head, f"accuracy {r['accuracy']:.3f}  chance {r['chance']:.3f}  centered accuracy {r['centered_accuracy']:.3f}"]
    else:
        lines = [head, _gen_line(r)]
        for name, t in r.get("per_task", {}).items():
            lines.append(f"  {name:<11} n {t['n']:>4}  " + _gen_line(t))
    for ex in r.get("examples", []):
        lines.append(f"- {ex['prompt']!r} -> {ex.get('predicted', ex['answer'])!r}")
    return "\n".join(lines)


def _gen_line(r: dict) -> str:
    return f"accuracy {r['accuracy']:.3f}  score {r['score']:.3f}  asks a question {r['question_rate']:.3f}  length {r['mean_length']:.1f} words  finished {r['finished_rate']:.3f}"


__all__ = ["FewShotConfig", "Item", "Task", "encode", "evaluate", "fact_choices", "file_items", "load_task", "pick_demos", "render", "summary_text", "world_task"]
