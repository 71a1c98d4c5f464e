"""Synthetic responses: good and bad answers built from references and their perturbations.

Before any model exists, the labelers need something realistic to rank, so that their
agreement can be measured and calibrated and the reward-model data path can be exercised.
These are the answers the world's base and aligned models are expected to give, good and
bad: the reference, a paraphrase, a draft such as a labeler writes (`writing.draft`: a bare
answer, a story with few facts, padding, a slip ...), a verbose answer with extra true facts, a wrong answer, a
rumour (a false fact), a rude reply, a question instead of an answer, rambling repetition,
an answer cut off before it stops, an off-topic fact, and nothing at all.
"""

from __future__ import annotations

import random

from .ontology import ATTRIBUTES, RUDE_REPLIES, RUDE_WORDS, World
from .tasks import Example, sample_example
from .writing import Memory, WritingHabits, draft

# kind -> weight in the mixture a "default policy" might produce
MIXTURE = {
    "reference": 0.12,
    "paraphrase": 0.06,
    "draft": 0.2,  # what a labeler might write (writing.draft with the default habits)
    "verbose": 0.06,
    "wrong": 0.14,
    "false_fact": 0.08,
    "rude": 0.07,
    "question": 0.11,
    "repetition": 0.05,
    "unfinished": 0.06,
    "off_topic": 0.04,
    "empty": 0.01,
}


def _true_fact(world: World, rng: random.Random) -> str:
    e = rng.choice(world.kinds["creature"] + world.kinds["person"] + world.kinds["town"])
    return world.statement(e, rng.choice(list(e.attrs)), rng)


def _false_fact(world: World, rng: random.Random) -> str:
    e = rng.choice(world.kinds["creature"] + world.kinds["person"] + world.kinds["town"])
    attr = rng.choice(list(ATTRIBUTES[e.kind]))
    return world.statement(e, attr, rng, value=world.false_value(e, attr, rng))


def _wrong(world: World, ex: Example, rng: random.Random) -> str:
    m = ex.meta
    if ex.task == "fact":
        e = world.by_name[m["entity"]]
        return world.statement(e, m["attr"], rng, value=world.false_value(e, m["attr"], rng))
    if ex.task in ("arithmetic", "count"):
        wrong = m["answer"] + rng.choice([-3, -2, -1, 1, 2, 3])
        return ex.reference.replace(str(m["answer"]), str(wrong))
    if ex.task in ("sort", "reverse"):
        items = list(m["items"])
        while items == m["target"]:
            rng.shuffle(items)
        return ", ".join(items) + "."
    if ex.task == "sentiment":
        return "Positive." if m["answer"] == "negative" else "Negative."
    if ex.task == "grammar":
        return ex.prompt.split(": ", 1)[-1].split("\n")[0]  # repeats the poor sentence
    return _false_fact(world, rng) + " " + _false_fact(world, rng)


def make_response(world: World, ex: Example, kind: str, rng: random.Random) -> tuple[str, bool]:
    """(text, finished) of one response of the given kind."""
    ref = ex.reference
    if kind == "reference":
        return ref, True
    if kind == "paraphrase":
        if ex.task == "fact":
            return world.statement(world.by_name[ex.meta["entity"]], ex.meta["attr"], rng), True
        return rng.choice(["", "Sure. ", "Here it is: ", "The answer: "]) + ref, True
    if kind == "draft":
        return draft(world, ex, WritingHabits(), Memory(world, "mixture", WritingHabits().misremember), rng)[0], True
    if kind == "verbose":
        return ref + " " + " ".join(_true_fact(world, rng) for _ in range(rng.randint(1, 3))), True
    if kind == "wrong":
        return _wrong(world, ex, rng), True
    if kind == "false_fact":
        return ref + " " + _false_fact(world, rng), True
    if kind == "rude":
        return rng.choice(RUDE_REPLIES).format(r=rng.choice(RUDE_WORDS)) + (" " + ref if rng.random() < 0.6 else ""), True
    if kind == "question":
        return sample_example(world, rng).prompt, True
    if kind == "repetition":
        return " ".join([ref] * rng.randint(3, 5)), False
    if kind == "unfinished":
        w = ref.split()
        return " ".join(w[: max(1, len(w) // 2)]), False
    if kind == "off_topic":
        return _true_fact(world, rng), True
    if kind == "empty":
        return "", True
    raise ValueError(f"unknown response kind {kind!r}")


def sample_responses(world: World, ex: Example, k: int, rng: random.Random, mixture: dict[str, float] | None = None) -> list[tuple[str, bool, str]]:
    """k different responses to one example: (text, finished, kind)."""
    mixture = mixture or MIXTURE
    kinds = list(mixture)
    out, seen = [], set()
    for _ in range(50 * k):
        kind = rng.choices(kinds, weights=[mixture[x] for x in kinds])[0]
        text, finished = make_response(world, ex, kind, rng)
        if text not in seen:
            seen.add(text)
            out.append((text, finished, kind))
            if len(out) == k:
                break
    return out
