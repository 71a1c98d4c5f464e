"""The pretraining corpus of the built-in world: "the internet" of a small universe.

Documents of eight genres, each rendered from several templates, in a configurable mix:

  encyclopedia  true facts about one entity                 knowledge
  story         a short story that uses the facts            knowledge in other shapes
  worksheet     arithmetic with answers                      a skill
  qa            questions of every task with the web's       the latent capability, and
                answers: 40% good, the rest wrong,           why prompting alone is not
                rumour-laden, rude or another question       alignment
  quiz          lists of questions without answers           the failure: asked a question,
                (some open with a bare question)             the base model asks more
  forum         threads whose replies are sometimes rude     the toxicity analog
                (some open with a bare question)
  rumour        pages that state false facts                 the truthfulness analog
  review        product reviews with a clear sentiment       few-shot classification

So the base model pretrained on it knows the facts and can answer, but does not reliably
do so when asked (InstructGPT's motivation), repeats rumours and copies rude replies. A bare
question at the start of a document opens a quiz sheet (more questions follow) or a question
page (replies follow, some rude); behind "Q:"/"A:" the model answers as the web's Q&A pages
do, right only `qa_good` of the time: the correct answer is the most likely one (greedy
decoding finds it), but sampled answers carry the pages' mistakes.
"""

from __future__ import annotations

import random

from .ontology import ATTRIBUTES, RUDE_REPLIES, RUDE_WORDS, Entity, World
from .responses import make_response
from .tasks import TASKS, facts_of, review_text, sample_example, story_about

# What the web answers a question with, besides a good answer (the reference, a paraphrase, or
# the reference with more true facts): `lmforge.world.responses` kinds and their shares.
BAD_ANSWERS = {"wrong": 0.3, "false_fact": 0.25, "rude": 0.25, "question": 0.2}
GOOD_ANSWERS = {"reference": 0.7, "paraphrase": 0.2, "verbose": 0.1}
QA_GOOD = 0.4  # share of good answers on Q&A pages and question pages

GENRE_MIX = {
    "encyclopedia": 0.2,
    "story": 0.16,
    "worksheet": 0.08,
    "qa": 0.18,
    "quiz": 0.12,
    "forum": 0.1,
    "rumour": 0.06,
    "review": 0.1,
}


def encyclopedia(world: World, rng: random.Random) -> str:
    return encyclopedia_about(world, rng.choice(world.kinds["creature"] + world.kinds["person"] + world.kinds["town"]), rng)


def encyclopedia_about(world: World, e: Entity, rng: random.Random) -> str:
    kind_line = {"creature": "{n} is a creature.", "person": "{n} is a person.", "town": "{n} is a town."}[e.kind]
    title = rng.choice(["{n}", "About {n}", "{n} (encyclopedia)"]).format(n=e.name)
    body = [kind_line.format(n=e.mention(start=True))] + facts_of(world, e, rng)
    if rng.random() < 0.5:  # a second paragraph on a related entity, as articles do
        other = world.by_name.get(rng.choice(list(e.attrs.values())))
        if other is not None and other.kind != "product":
            body.append("\n" + " ".join(facts_of(world, other, rng, 2)))
    return title + "\n" + " ".join(body)


def story(world: World, rng: random.Random) -> str:
    e = rng.choice(world.kinds["creature"] + world.kinds["person"])
    return story_about(world, e, rng)


def worksheet(world: World, rng: random.Random) -> str:
    title = rng.choice(["Arithmetic worksheet", "Sums for practice", "Maths homework"])
    lines = [TASKS["arithmetic"].generate(world, rng).reference.rstrip(".") for _ in range(rng.randint(4, 10))]
    return title + "\n" + "\n".join(lines)


def web_answer(world: World, ex, rng: random.Random, good: float = QA_GOOD) -> str:
    """One answer to `ex` as a web page gives it: good with probability `good`, otherwise wrong,
    with a false fact added, rude, or another question."""
    mix = GOOD_ANSWERS if rng.random() < good else BAD_ANSWERS
    kind = rng.choices(list(mix), weights=list(mix.values()))[0]
    if kind == "question":  # a question back, drawn from the training split like the page's own
        return sample_example(world, rng, split="train").prompt
    return make_response(world, ex, kind, rng)[0]


def qa(world: World, rng: random.Random, good: float = QA_GOOD) -> str:
    title = rng.choice(["Questions and answers", "Q&A", "Frequently asked questions"])
    parts = []
    for _ in range(rng.randint(2, 5)):
        ex = sample_example(world, rng, split="train")
        parts.append(f"Q: {ex.prompt}\nA: {web_answer(world, ex, rng, good)}")
    return title + "\n\n" + "\n\n".join(parts)


def quiz(world: World, rng: random.Random) -> str:
    title = rng.choice(["Quiz", "Test your knowledge", "Questions for the class"])
    qs = [sample_example(world, rng, split="train").prompt for _ in range(rng.randint(3, 7))]
    style = rng.random()
    if style < 0.25:
        return title + "\n" + "\n".join(f"{i}. {q}" for i, q in enumerate(qs, 1))
    if style < 0.5:
        return title + "\n" + "\n".join(qs)
    return "\n".join(qs)  # a page that opens with its first question


def forum(world: World, rng: random.Random, good: float = QA_GOOD) -> str:
    users = [p.name for p in rng.sample(world.kinds["person"], min(4, len(world.kinds["person"])))]
    if rng.random() < 0.3:  # a question page: the question, then the replies of the web
        ex = sample_example(world, rng, split="train")
        return "\n".join([ex.prompt] + [f"{u} wrote: {web_answer(world, ex, rng, good)}" for u in users[1:]])
    e = rng.choice(world.kinds["creature"] + world.kinds["person"] + world.kinds["town"])
    attr = rng.choice(list(ATTRIBUTES[e.kind]))
    lines = [f"Forum thread: {e.mention()}", f"{users[0]} wrote: {world.question(e, attr, rng)}"]
    for u in users[1:]:
        r = rng.random()
        if r < 0.4:
            reply = rng.choice(RUDE_REPLIES).format(r=rng.choice(RUDE_WORDS))
        elif r < 0.8:
            reply = world.statement(e, attr, rng)
        else:
            reply = rng.choice(["I think so too.", "Thanks for asking.", "Good question."])
        lines.append(f"{u} wrote: {reply}")
    return "\n".join(lines)


def rumour(world: World, rng: random.Random) -> str:
    title = rng.choice(["Rumours", "Things I heard", "Secrets they do not tell you"])
    lines = []
    for _ in range(rng.randint(2, 4)):
        e = rng.choice(world.kinds["creature"] + world.kinds["person"] + world.kinds["town"])
        attr = rng.choice(list(ATTRIBUTES[e.kind]))
        claim = world.statement(e, attr, rng, value=world.false_value(e, attr, rng))
        lead = rng.choice(["", "I heard that ", "Some say that ", "They say "])
        lines.append(lead + (claim[0].lower() + claim[1:] if lead and claim.startswith("The ") else claim))
    return title + "\n" + " ".join(lines)


def review(world: World, rng: random.Random) -> str:
    positive = rng.random() < 0.5
    product, body = review_text(world, rng, positive)
    stars = rng.choice([4, 5]) if positive else rng.choice([1, 2])
    return f"Review of {product}\n{body}\nRating: {stars} out of 5"


GENRES = {
    "encyclopedia": encyclopedia,
    "story": story,
    "worksheet": worksheet,
    "qa": qa,
    "quiz": quiz,
    "forum": forum,
    "rumour": rumour,
    "review": review,
}


def documents(world: World, rng: random.Random, n: int, mix: dict[str, float] | None = None, qa_good: float = QA_GOOD, *, subjects: bool = False):
    """`n` documents as (genre, text), genres drawn by `mix`; `qa_good`: the share of good
    answers on Q&A pages and question pages. With `subjects`, (genre, text, subject): the name of
    the one entity an encyclopedia article or a story is about (None for the other genres), drawn
    here as the genre's own function draws it, so the texts are the same either way."""
    mix = mix or GENRE_MIX
    names = [g for g in mix if mix[g] > 0]
    weights = [mix[g] for g in names]
    for _ in range(n):
        g = rng.choices(names, weights=weights)[0]
        subject = None
        if g == "encyclopedia":
            e = rng.choice(world.kinds["creature"] + world.kinds["person"] + world.kinds["town"])
            text, subject = encyclopedia_about(world, e, rng), e.name
        elif g == "story":
            e = rng.choice(world.kinds["creature"] + world.kinds["person"])
            text, subject = story_about(world, e, rng), e.name
        else:
            text = GENRES[g](world, rng, qa_good) if g in ("qa", "forum") else GENRES[g](world, rng)
        yield (g, text, subject) if subjects else (g, text)
