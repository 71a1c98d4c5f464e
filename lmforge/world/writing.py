"""How the simulated labelers write answers: uneven drafts, as people write them.

InstructGPT's demonstrations were written by labelers (Ouyang et al. 2022, section 3.4), and
people write unevenly: mostly right, now and then a misremembered fact or a rumour taken for one,
padding, a rude aside, a hedge or a question back, and often an answer that is fine but not the
best the task admits (the bare value where a sentence says what it answers, a story with one of
the entity's facts where it has four). A labeler's `WritingHabits` are the rates at which its
drafts do each of these; `draft` writes one draft with them. Which draft becomes the
demonstration is the labeler's choice (`labelers.Labeler.write`), made with the same noisy
perception it ranks with.

Recall and recognition: a labeler misremembers a fixed share of the world's facts when it writes
(its own ones, the same every time: `Memory`), but judges answers by the world's truth when it
ranks them. People recognise much more reliably than they recall (Shepard 1967, "Recognition
memory for words, sentences, and pictures"); that gap, with the perception noise, is why a
labeler's rankings can teach a model more than its demonstrations.

Nothing here reads the oracle: drafts are written from the world's facts and the labeler's memory.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, fields

from .ontology import ATTRIBUTES, RUDE_WORDS, VALUES, Entity, World
from .tasks import Example

# What a draft can do wrong: the names `draft` reports, one rate each in WritingHabits
FLAWS = ("slip", "terse", "padding", "rumour", "hedge", "rude", "question", "ramble")
# The flaws a task admits: a fact is misremembered rather than slipped (Memory); a list, a
# corrected sentence and a label have no shorter form; only a named value can be hedged.
NOT_ON = {
    "fact": {"slip"},
    "sort": {"terse", "hedge"}, "reverse": {"terse", "hedge"}, "grammar": {"terse", "hedge"}, "sentiment": {"terse", "hedge"},
    "arithmetic": {"hedge"}, "count": {"hedge"}, "story": {"slip", "hedge"},
}  # fmt: skip


def flaws_of(task: str) -> tuple[str, ...]:
    """The flaws a draft of this task can have."""
    return tuple(f for f in FLAWS if f not in NOT_ON.get(task, ()))

RUDE_ASIDES = ["Honestly, only a {r} would not know this.", "Any {r} could tell you that.", "What a {r} thing to ask.", "Do not be a {r}."]
QUESTIONS_BACK = ["Why do you want to know?", "Is this for homework?", "Do you really not know?", "Can you not look it up?"]
HEDGES = ["Or maybe {o}, I am not sure.", "It could also be {o}.", "Unless it is {o}."]


@dataclass
class WritingHabits:
    """The rates at which one labeler's drafts go wrong (each independently, per draft), its share
    of misremembered facts, and how many drafts it considers before writing one down."""

    drafts: int = 2  # answers considered; the labeler writes down the one it judges best
    misremember: float = 0.1  # share of the world's facts it recalls wrongly (its own, fixed)
    slip: float = 0.05  # a careless mistake: a sum off, two words swapped, the review misread
    terse: float = 0.4  # fine but not the best: the bare answer; a story with one or two facts
    padding: float = 0.15  # true facts nobody asked for
    rumour: float = 0.04  # a rumour it once heard, added as fact
    hedge: float = 0.04  # a second value, in case
    rude: float = 0.03  # a rude aside
    question: float = 0.03  # a question back before the answer
    ramble: float = 0.02  # says it all again

    def validate(self) -> None:
        from ..errors import ConfigError

        if self.drafts < 1:
            raise ConfigError(f"must be at least 1, got {self.drafts}", field="writing.drafts")
        for f in ("misremember",) + FLAWS:
            if not 0.0 <= getattr(self, f) <= 1.0:
                raise ConfigError(f"a rate in [0, 1], got {getattr(self, f)}", field=f"writing.{f}")

    def scaled(self, factor: float) -> "WritingHabits":
        """These habits with every rate multiplied by `factor` (capped at 1): a more careful
        (< 1) or more careless (> 1) writer."""
        rates = {f.name: min(1.0, getattr(self, f.name) * factor) for f in fields(self) if f.name != "drafts"}
        return WritingHabits(drafts=self.drafts, **rates)

    @classmethod
    def from_json(cls, data: dict | None) -> "WritingHabits":
        return cls(**(data or {}))

    def to_json(self) -> dict:
        return asdict(self)


class Memory:
    """What one labeler recalls of the world's facts: the truth, except a fixed share of
    (entity, attribute) pairs it misremembers, each always as the same wrong value."""

    def __init__(self, world: World, name: str, misremember: float):
        self.world, self.name, self.rate = world, name, misremember

    def _u(self, *key) -> float:
        h = hashlib.blake2b(":".join(map(str, (self.world.seed, self.name) + key)).encode(), digest_size=8).digest()
        return int.from_bytes(h, "little") / 2**64

    def wrong(self, e: Entity, attr: str) -> bool:
        return self._u("recall", e.name, attr) < self.rate

    def recall(self, e: Entity, attr: str) -> str:
        if not self.wrong(e, attr):
            return e.attrs[attr]
        rng = random.Random(f"{self.world.seed}:{self.name}:{e.name}:{attr}")
        return self.world.false_value(e, attr, rng)


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _said(world: World, e: Entity, attr: str, value: str) -> str:
    return world.say(ATTRIBUTES[e.kind][attr], value)


def _subjects(world: World) -> list[Entity]:
    return world.kinds["creature"] + world.kinds["person"] + world.kinds["town"]


def _answer(world: World, ex: Example, memory: Memory, terse: bool, slip: bool, rng: random.Random) -> tuple[str, str | None]:
    """The draft's answer proper, and the value it names when the task asks for one (for a hedge)."""
    m, task = ex.meta, ex.task
    if task == "fact":
        e = world.by_name[m["entity"]]
        v = memory.recall(e, m["attr"])
        if terse:
            return _sentence(_said(world, e, m["attr"], v)) + ".", v
        return world.statement(e, m["attr"], rng, value=v), v
    if task in ("arithmetic", "count"):
        c = m["answer"] + (rng.choice([-2, -1, 1, 2, 10]) if slip else 0)
        if task == "count":
            return (f"{c}." if terse else f"There are {c} words."), None
        a, op, b = _operands(m["key"])
        return (f"{c}." if terse else f"{a} {op} {b} = {c}."), None
    if task in ("sort", "reverse"):
        items = list(m["target"])
        if slip and len(items) > 1:
            i = rng.randrange(len(items) - 1)
            items[i], items[i + 1] = items[i + 1], items[i]
        return ", ".join(items) + ".", None
    if task == "grammar":
        if slip:  # copied the sentence without fixing it
            return ex.prompt.split(": ", 1)[-1].split("\n")[0].strip(), None
        return m["answer"], None
    if task == "sentiment":
        label = m["answer"] if not slip else ("negative" if m["answer"] == "positive" else "positive")
        return label.capitalize() + ".", None
    if task == "story":
        return _story(world, world.by_name[m["entity"]], memory, terse, rng), None
    raise ValueError(f"no writer for task {task!r}")


def _operands(key: str) -> tuple[str, str, str]:
    body = key.split(":", 1)[1]  # "arith:12+7"
    for op in "+-*":
        a, sep, b = body.partition(op)
        if sep and a and b:
            return a, op, b
    raise ValueError(f"not an arithmetic key: {key!r}")


def _story(world: World, e: Entity, memory: Memory, terse: bool, rng: random.Random) -> str:
    """A short story about `e` that states some of its facts as the labeler recalls them: one or
    two when terse, otherwise three or all of them."""
    attrs = list(e.attrs)
    rng.shuffle(attrs)
    k = rng.randint(1, 2) if terse else rng.randint(3, len(attrs))
    opening = rng.choice(["This is a story about {s}.", "Once upon a time there was {s}.", "Here is a story about {s}."]).format(s=e.mention())
    facts = [world.statement(e, a, rng, value=memory.recall(e, a)) for a in attrs[:k]]
    closing = rng.choice(["The end.", "It was a good day.", "And that was the day."])
    return " ".join([opening] + facts + [closing])


def draft(world: World, ex: Example, habits: WritingHabits, memory: Memory, rng: random.Random) -> tuple[str, list[str]]:
    """One draft answer to `ex` written with these habits: (text, the flaws it has, in FLAWS'
    names; a misremembered fact is not listed, it is not a flaw of this draft but of the memory)."""
    flaws = [f for f in flaws_of(ex.task) if rng.random() < getattr(habits, f)]
    text, value = _answer(world, ex, memory, "terse" in flaws, "slip" in flaws, rng)
    parts = [text]
    if "hedge" in flaws:
        parts.append(rng.choice(HEDGES).format(o=_hedge_value(world, ex, value, rng)))
    if "padding" in flaws:
        parts += [_true_fact(world, ex, rng) for _ in range(rng.randint(1, 2))]
    if "rumour" in flaws:
        parts.append(_rumour(world, rng))
    if "ramble" in flaws:
        parts.append(text)
    if "rude" in flaws:
        aside = rng.choice(RUDE_ASIDES).format(r=rng.choice(RUDE_WORDS))
        parts = [aside] + parts if rng.random() < 0.5 else parts + [aside]
    if "question" in flaws:
        parts = [rng.choice(QUESTIONS_BACK)] + parts
    return " ".join(parts), flaws


def _hedge_value(world: World, ex: Example, value: str, rng: random.Random) -> str:
    """Another value of the asked attribute's type, as the draft would say it."""
    e = world.by_name[ex.meta["entity"]]
    vt = ATTRIBUTES[e.kind][ex.meta["attr"]]
    pool = [x.name for x in world.kinds[vt]] if vt in world.kinds else VALUES[vt]
    return world.say(vt, rng.choice([v for v in pool if v not in (value, e.name)]))


def _true_fact(world: World, ex: Example, rng: random.Random) -> str:
    """A true fact about some other entity than the one asked about: padding."""
    asked = ex.meta.get("entity")
    e = rng.choice([x for x in _subjects(world) if x.name != asked])
    return world.statement(e, rng.choice(list(e.attrs)), rng)


def _rumour(world: World, rng: random.Random) -> str:
    e = rng.choice(_subjects(world))
    attr = rng.choice(list(e.attrs))
    return world.statement(e, attr, rng, value=world.false_value(e, attr, rng))


def best_answer(world: World, ex: Example) -> str:
    """The best answer the task admits, as a careful writer who remembers everything writes it:
    complete, right, concise; a story with every one of the entity's facts."""
    rng = random.Random(f"best:{ex.meta.get('key')}")
    perfect = Memory(world, "perfect", 0.0)
    if ex.task == "story":
        e = world.by_name[ex.meta["entity"]]
        facts = [world.statement(e, a, rng) for a in e.attrs]
        return " ".join([f"This is a story about {e.mention()}."] + facts + ["The end."])
    return _answer(world, ex, perfect, terse=False, slip=False, rng=rng)[0]
