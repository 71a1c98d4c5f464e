"""Tasks of the built-in world: instruction templates, each with a generator and a checker.

A task turns a random generator into an `Example` (prompt, reference answer, metadata) and
judges a response to it with a score in [0, 1] (`check`). The metadata carries everything the
checker needs, so a prompt written to a file today can be checked tomorrow.

Tasks: fact questions about the world, arithmetic, sorting and reversing a short list,
counting, grammar correction ("Poor English input: ... Good English output: ...", as in the
GPT-3 paper's few-shot example), sentiment of a product review, and a short story about an
entity, whose checker looks at relevance, consistency with the facts and length.

Every example has a `key` that names its combination (which entity and attribute, which
operands, ...); `split_of(key)` sends a fixed share of combinations to held-out evaluation
only, so evaluation prompts ask what no training prompt asked. A task with few combinations in
a small world (a story about one of 7 creatures and people) might find none on one side;
`split_in` then moves the one combination nearest the line, so every world has both splits.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
import hashlib
import random
import re
from dataclasses import dataclass, field

from .ontology import ATTRIBUTES, QUESTIONS, VALUES, Entity, World

EVAL_SHARE = 0.15  # share of combinations kept for held-out evaluation
# A right answer that is not complete: the bare value of a fact, the bare result of a sum or a
# count. Helpful, but less than the full sentence that says what it answers.
INCOMPLETE = 0.8


@dataclass
class Example:
    task: str
    prompt: str
    reference: str
    meta: dict = field(default_factory=dict)
    # the instruction template and what fills it (the prompt is template.format(**slots)): a
    # multilingual world can give the instruction in one language and the data in another
    template: str = field(default="", repr=False)
    slots: dict = field(default_factory=dict, repr=False)

    def record(self) -> dict:
        return {"prompt": self.prompt, "task": self.task, "meta": self.meta}

    def prompt_in(self, instruction: str, data: str, tell) -> str:
        """The prompt with its instruction in one language and its data in another: `tell(text,
        code)` says English text in a language (mT0's "English prompts, multilingual data")."""
        if not self.template or instruction == data:
            return tell(self.prompt, data)
        template = self.template if instruction == "en" else _translate_template(self.template, instruction, tell)
        return template.format(**{k: tell(str(v), data) for k, v in self.slots.items()})


def _translate_template(template: str, code: str, tell) -> str:
    parts = re.split(r"(\{\w+\})", template)
    return "".join(p if re.fullmatch(r"\{\w+\}", p) else tell(p, code) for p in parts)


def _ask(template: str, **slots) -> tuple[str, str, dict]:
    return template.format(**slots), template, slots


def _share(key: str) -> float:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") / 2**64


def split_of(key: str) -> str:
    return "eval" if _share(key) < EVAL_SHARE else "train"


def split_in(world: World, task: "Task", key: str) -> str:
    """`split_of(key)`, unless the task's combinations in this world all fall on one side: then
    the one nearest the line crosses it, so held-out evaluation has a combination and training
    keeps the rest. Worlds where both sides are filled are unchanged."""
    if task.name not in world.split_moved:  # once per task and world: sample_example asks often
        keys = task.keys(world) or []
        evals = sum(split_of(k) == "eval" for k in keys)
        moved = None
        if len(keys) > 1 and evals == 0:
            moved = min(keys, key=_share)
        elif len(keys) > 1 and evals == len(keys):
            moved = max(keys, key=_share)
        world.split_moved[task.name] = moved
    side = split_of(key)
    if key == world.split_moved[task.name]:
        side = "train" if side == "eval" else "eval"
    return side


# ------------------------------------------------------------------ text helpers

_WORD = re.compile(r"[A-Za-z]+|\d+")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def numbers(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"-?\d+", text)]


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


# ------------------------------------------------------------------ reviews (shared with the corpus)

REVIEW_POS = [
    "I love this {item}.", "It works great.", "The {item} is excellent and lovely.", "Best {item} I have had.",
    "It makes me happy every day.", "A perfect {item}, wonderful value.",
]  # fmt: skip
REVIEW_NEG = [
    "I hate this {item}.", "It arrived broken.", "The {item} is awful and useless.", "Worst {item} I have had.",
    "It makes me sad every day.", "A terrible {item}, poor value.",
]  # fmt: skip


def review_text(world: World, rng: random.Random, positive: bool) -> tuple[str, str]:
    """(product mention, review body) with a clear sentiment."""
    product = rng.choice(world.kinds["product"])
    lines = rng.sample(REVIEW_POS if positive else REVIEW_NEG, rng.randint(2, 3))
    return product.mention(), " ".join(line.format(item=product.item) for line in lines)


# ------------------------------------------------------------------ stories (shared with the corpus)


def facts_of(world: World, e: Entity, rng: random.Random, n: int | None = None) -> list[str]:
    attrs = list(e.attrs)
    rng.shuffle(attrs)
    return [world.statement(e, a, rng) for a in attrs[: n or len(attrs)]]


def story_about(world: World, e: Entity, rng: random.Random) -> str:
    """A short story that states true facts about `e` (and its neighbours) consistently."""
    s, s_in = e.mention(start=True), e.mention()
    home = world.by_name[e.attrs["home"]]
    opening = rng.choice(["Once upon a time, {s_in} lived in {h}.", "This is a story about {s_in}.", "One morning in {h}, {s_in} woke up early."])
    lines = [opening.format(s_in=s_in, h=home.name)]
    lines += facts_of(world, e, rng, 2)
    if e.kind == "person":
        pet = world.by_name[e.attrs["pet"]]
        lines.append(rng.choice(["{s} fed {p} some {f}.", "{s} gave {p} a bowl of {f}."]).format(s=s, p=pet.mention(), f=pet.attrs["food"]))
        lines.append(world.statement(pet, "colour", rng))
        friend = world.by_name[e.attrs["friend"]]
        lines.append(rng.choice(["Then {s_in} visited {f}.", "Later {s_in} met {f}."]).format(s_in=s_in, f=friend.name))
    else:
        lines.append(rng.choice(["{s} looked for {f} all day.", "{s} found some {f} and was happy."]).format(s=s, f=e.attrs["food"]))
    near = world.by_name[home.attrs["near"]]
    lines.append(rng.choice(["In the evening {s_in} walked to {n}, which is near {h}.", "The next day {s_in} went to {n}."]).format(s_in=s_in, n=near.name, h=home.name))
    lines.append(rng.choice(["The end.", "It was a good day.", "And that was the day."]))
    return " ".join(x[0].upper() + x[1:] for x in lines)  # "the Zorblat ..." opens as "The Zorblat ..."


# ------------------------------------------------------------------ the tasks


class Task(ABC):
    name = ""
    templates: list[str] = []

    @abstractmethod
    def generate(self, world: World, rng: random.Random) -> Example:
        """A random example of this task."""

    @abstractmethod
    def check(self, world: World, meta: dict, response: str) -> float:
        """How correct `response` is, in [0, 1]."""

    def keys(self, world: World) -> list[str] | None:
        """Every combination this task can ask about in `world`, where they are few enough to
        list (None: too many to all fall on one side of the split)."""
        return None


class FactTask(Task):
    name = "fact"

    def generate(self, world, rng):
        e = rng.choice(world.kinds["creature"] + world.kinds["person"] + world.kinds["town"])
        attr = rng.choice(list(ATTRIBUTES[e.kind]))
        vt = ATTRIBUTES[e.kind][attr]
        prompt, template, slots = _ask(rng.choice(QUESTIONS[(e.kind, attr)]), s_in=e.mention())  # world.question's draw
        return Example(
            self.name,
            prompt,
            world.answer(e, attr),
            {"entity": e.name, "attr": attr, "answer": e.attrs[attr], "value_type": vt, "key": f"fact:{e.name}:{attr}"},
            template,
            slots,
        )

    def keys(self, world):
        return [f"fact:{e.name}:{attr}" for e in world.kinds["creature"] + world.kinds["person"] + world.kinds["town"] for attr in ATTRIBUTES[e.kind]]

    def check(self, world, meta, response):
        vt, answer = meta["value_type"], meta["answer"]
        pool = [x.name for x in world.kinds[vt]] if vt in world.kinds else VALUES[vt]
        said = {w.lower() for w in words(response)}  # "Red." says red
        if answer.lower() not in said:
            return 0.0
        others = [v for v in pool if v != answer and v.lower() in said and v != meta["entity"]]
        if others:
            return 0.5  # hedging between values is half an answer
        return 1.0 if meta["entity"].lower() in said else INCOMPLETE  # "Red." answers; "The Zorblat is red." answers in full


class ArithmeticTask(Task):
    name = "arithmetic"
    templates = ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "How much is {a} {op} {b}?", "Work out {a} {op} {b}."]

    def generate(self, world, rng):
        op = rng.choice(["+", "-", "*"])
        if op == "*":
            a, b = rng.randint(2, 9), rng.randint(2, 9)
        else:
            a, b = rng.randint(0, 20), rng.randint(0, 20)
            if op == "-" and b > a:
                a, b = b, a
        c = {"+": a + b, "-": a - b, "*": a * b}[op]
        prompt, template, slots = _ask(rng.choice(self.templates), a=a, op=op, b=b)
        return Example(self.name, prompt, f"{a} {op} {b} = {c}.", {"answer": c, "key": f"arith:{a}{op}{b}"}, template, slots)

    def check(self, world, meta, response):
        m = re.search(r"=\s*(-?\d+)", response)
        nums = [int(m.group(1))] if m else numbers(response)
        if not nums or nums[-1] != meta["answer"]:
            return 0.0
        return 1.0 if m else INCOMPLETE  # "12." is right; "7 + 5 = 12." shows how


def _list_words(rng: random.Random, n: int) -> list[str]:
    return rng.sample(VALUES["food"] + VALUES["colour"], n)


def _order_score(response: str, target: list[str]) -> float:
    """1 for exactly the target sequence; partial credit for coverage and pairwise order."""
    got = [w for w in words(response) if w in target]
    if got == target:
        return 1.0
    if not got:
        return 0.0
    coverage = len(set(got)) / len(target)
    pos = {w: i for i, w in enumerate(target)}
    seq = list(dict.fromkeys(got))
    pairs = [(pos[x] < pos[y]) for i, x in enumerate(seq) for y in seq[i + 1 :]]
    order = sum(pairs) / len(pairs) if pairs else 0.0
    return round(0.5 * coverage * order, 4)


class ListOrderTask(Task):
    """Rearrange a short list of words: the answer is the list in a target order."""

    def __init__(self, name: str, templates: list[str], order):
        self.name, self.templates, self.order = name, templates, order  # order(items, world)

    def generate(self, world, rng):
        items = _list_words(rng, rng.randint(3, 5))
        target = self.order(items, world)
        prompt, template, slots = _ask(rng.choice(self.templates), items=", ".join(items))
        return Example(self.name, prompt, ", ".join(target) + ".", {"items": items, "target": target, "key": f"{self.name}:" + ",".join(items)}, template, slots)

    def check(self, world, meta, response):
        return _order_score(response, meta["target"])


# Alphabetical in the language the world speaks: its words are spelt otherwise than English's.
SORT = ListOrderTask("sort", ["Sort these words in alphabetical order: {items}.", "Put these words in alphabetical order: {items}.", "Alphabetize: {items}."], lambda xs, world: sorted(xs, key=world.spelling))
REVERSE = ListOrderTask("reverse", ["Reverse this list: {items}.", "Write this list backwards: {items}.", "Say these words in reverse order: {items}."], lambda xs, world: xs[::-1])


class CountTask(Task):
    name = "count"
    templates = ["How many words are in this list: {items}?", "Count the words: {items}.", "How many items are there in: {items}?"]

    def generate(self, world, rng):
        items = _list_words(rng, rng.randint(2, 7))
        n = len(items)
        prompt, template, slots = _ask(rng.choice(self.templates), items=", ".join(items))
        return Example(self.name, prompt, f"There are {n} words.", {"answer": n, "key": "count:" + ",".join(items)}, template, slots)

    def check(self, world, meta, response):
        nums = numbers(response)
        if not nums or nums[0] != meta["answer"]:
            return 0.0
        return 1.0 if re.search(rf"\b{nums[0]}\s+(words|items)\b", response) else INCOMPLETE  # "3." against "There are 3 words."


# Subject-verb agreement errors: the "poor English" of the grammar task.
_BREAK = {"is": "are", "has": "have", "eats": "eat", "lives": "live", "likes": "like", "comes": "come", "works": "work", "looks": "look", "grow": "grows", "lies": "lie"}


class GrammarTask(Task):
    name = "grammar"
    templates = ["Poor English input: {bad}\nGood English output:", "Correct the grammar: {bad}", "Fix this sentence: {bad}"]

    def generate(self, world, rng):
        while True:
            e = rng.choice(world.kinds["creature"] + world.kinds["person"] + world.kinds["town"])
            attr = rng.choice(list(ATTRIBUTES[e.kind]))
            good = world.statement(e, attr, rng)
            toks = good.rstrip(".").split(" ")
            idx = [i for i, t in enumerate(toks) if t in _BREAK]
            if idx:
                break
        i = rng.choice(idx)
        toks[i] = _BREAK[toks[i]]
        bad = " ".join(toks)
        bad = bad[0].lower() + bad[1:] if rng.random() < 0.5 else bad  # and sometimes no capital
        prompt, template, slots = _ask(rng.choice(self.templates), bad=bad)
        return Example(self.name, prompt, good, {"answer": good, "key": f"grammar:{good}"}, template, slots)

    def check(self, world, meta, response):
        target = meta["answer"].rstrip(".")
        said = [s.strip().rstrip(".") for s in sentences(response)]
        if not said:
            return 0.0
        if target in said or any(s.endswith(": " + target) for s in said):
            return 1.0
        return round(0.5 * difflib.SequenceMatcher(None, said[0].split(), target.split()).ratio(), 4)


class SentimentTask(Task):
    name = "sentiment"
    templates = ["Is this review positive or negative?\nReview: {review}", "Review: {review}\nIs the review positive or negative?", "What is the sentiment of this review, positive or negative? {review}"]

    def generate(self, world, rng):
        positive = rng.random() < 0.5
        product, body = review_text(world, rng, positive)
        label = "Positive" if positive else "Negative"
        prompt, template, slots = _ask(rng.choice(self.templates), review=body)
        return Example(self.name, prompt, f"{label}.", {"answer": label.lower(), "key": f"sent:{body}"}, template, slots)

    def check(self, world, meta, response):
        said = {w.lower() for w in words(response)}
        other = "negative" if meta["answer"] == "positive" else "positive"
        if meta["answer"] in said and other not in said:
            return 1.0
        return 0.0


class StoryTask(Task):
    name = "story"
    templates = ["Write a short story about {s}.", "Tell me a short story about {s}.", "Write a few sentences about {s}."]

    def generate(self, world, rng):
        e = rng.choice(world.kinds["creature"] + world.kinds["person"])
        prompt, template, slots = _ask(rng.choice(self.templates), s=e.mention())
        return Example(self.name, prompt, story_about(world, e, rng), {"entity": e.name, "key": f"story:{e.name}"}, template, slots)

    def keys(self, world):
        return [f"story:{e.name}" for e in world.kinds["creature"] + world.kinds["person"]]

    def check(self, world, meta, response):
        from .claims import false_claims

        e = world.by_name[meta["entity"]]
        said = words(response)
        relevant = e.name in said
        true_facts = sum(1 for a, v in e.attrs.items() if v in said)
        n = len(said)
        consistent = not false_claims(world, response)
        # graded: a story that uses every one of the entity's facts is better than one that uses one
        score = 0.3 * relevant + 0.3 * min(1.0, true_facts / len(e.attrs)) + 0.2 * (consistent and relevant) + 0.2 * (15 <= n <= 120)
        return round(score, 4)


TASKS: dict[str, Task] = {t.name: t for t in (FactTask(), ArithmeticTask(), SORT, REVERSE, CountTask(), GrammarTask(), SentimentTask(), StoryTask())}



def _request_pattern() -> re.Pattern:
    """The first line of every prompt template (fact questions included) as one pattern."""
    from .ontology import QUESTIONS

    lines = {t.split("\n")[0] for task in TASKS.values() for t in task.templates}
    lines |= {t for ts in QUESTIONS.values() for t in ts}
    alternatives = [".+".join(re.escape(part) for part in re.split(r"\{\w+\}", line)) for line in sorted(lines)]
    return re.compile("(?:" + "|".join(alternatives) + ")")


REQUEST = _request_pattern()


def is_request(text: str) -> bool:
    """True when `text` opens with a prompt of the world's tasks (a question or an instruction):
    a reply that asks or instructs instead of answering, as the base model continues a quiz
    sheet ("Explain the moon landing to a 6 year old" -> "Explain the theory of gravity ...",
    Ouyang et al. 2022, Figure 2's failure)."""
    stripped = text.strip()
    return bool(stripped) and REQUEST.fullmatch(stripped.split("\n")[0].strip()) is not None


# How often each task appears among instruction prompts.
TASK_MIX = {"fact": 0.3, "arithmetic": 0.15, "sort": 0.08, "reverse": 0.08, "count": 0.08, "grammar": 0.1, "sentiment": 0.11, "story": 0.1}


def sample_example(world: World, rng: random.Random, split: str | None = None, mix: dict[str, float] | None = None) -> Example:
    """A random example of a random task; with `split`, only combinations of that split."""
    mix = mix or TASK_MIX
    names = list(mix)
    task = TASKS[rng.choices(names, weights=[mix[n] for n in names])[0]]
    for _ in range(1000):
        ex = task.generate(world, rng)
        if split is None or split_in(world, task, ex.meta["key"]) == split:
            return ex
    from ..errors import ConfigError  # split_in keeps both sides filled; only a one-combination task gets here

    raise ConfigError(f"the world is too small: task {task.name} has no {split} combination; use more entities", field="entities")


def check(world: World, task: str, meta: dict, response: str) -> float:
    return TASKS[task].check(world, meta, response)
