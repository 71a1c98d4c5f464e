"""The ontology of the built-in world: invented entities, their attributes, and how facts are said.

Entities come in four kinds: creatures ("the Zorblat"), people ("Kori"), towns ("Pemora")
and products ("the Vemo lamp", only reviewed, never asked about). Names are built from
syllables, so no model knows them before pretraining. Every creature, person and town has a
few attributes; each attribute's value is a word from a small closed list (colours, sizes,
foods, jobs) or another entity (home town, pet, friend, nearby town). A fact is
(entity, attribute, value); the world is the set of its true facts.

Every fact can be said in several ways (`STATEMENTS`) and asked in several ways
(`QUESTIONS`), so a model must learn the fact rather than one sentence shape. The value
lists are disjoint, so a value word alone says which attribute a sentence talks about; this
is what lets the oracle find false claims in free text.

Everything here is a pure function of the seed and the number of entities.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field

SYLLABLES = [
    "ba", "ko", "ri", "zu", "mel", "dra", "fi", "no", "ta", "lun", "gor", "pe",
    "si", "vo", "ka", "tri", "bel", "mu", "xi", "ro", "dun", "la", "sha", "pim",
]  # fmt: skip

VALUES: dict[str, list[str]] = {
    "colour": ["red", "blue", "green", "yellow", "purple", "orange", "white", "black", "grey", "brown", "pink", "golden"],
    "size": ["tiny", "small", "big", "huge"],
    "food": ["apples", "fish", "seeds", "honey", "grass", "berries", "bread", "nuts", "leaves", "cheese", "plums", "beans"],
    "job": ["baker", "farmer", "teacher", "singer", "doctor", "painter", "fisher", "builder", "tailor", "miller"],
}
PRODUCT_ITEMS = ["lamp", "kettle", "bike", "radio", "chair", "clock", "pen", "bag", "drum", "boat"]

# kind -> attribute -> value type (a VALUES key, or an entity kind)
ATTRIBUTES: dict[str, dict[str, str]] = {
    "creature": {"colour": "colour", "size": "size", "food": "food", "home": "town"},
    "person": {"job": "job", "home": "town", "pet": "creature", "friend": "person"},
    "town": {"size": "size", "known_for": "food", "near": "town"},
}

# How a fact is stated. {s} is the subject as it opens a sentence, {o} the value as said.
STATEMENTS: dict[tuple[str, str], list[str]] = {
    ("creature", "colour"): ["{s} is {o}.", "{s} has {o} fur.", "The colour of {s_in} is {o}."],
    ("creature", "size"): ["{s} is {o}.", "{s} is a {o} creature.", "In size, {s_in} is {o}."],
    ("creature", "food"): ["{s} eats {o}.", "{s} likes to eat {o}.", "The favourite food of {s_in} is {o}."],
    ("creature", "home"): ["{s} lives in {o}.", "{s} comes from {o}.", "The home of {s_in} is {o}."],
    ("person", "job"): ["{s} is a {o}.", "{s} works as a {o}.", "The job of {s_in} is {o_a}."],
    ("person", "home"): ["{s} lives in {o}.", "{s} comes from {o}.", "The home of {s_in} is {o}."],
    ("person", "pet"): ["{s} has {o} as a pet.", "The pet of {s_in} is {o}.", "{s} looks after {o}."],
    ("person", "friend"): ["{s} is a friend of {o}.", "{s} and {o} are friends.", "The best friend of {s_in} is {o}."],
    ("town", "size"): ["{s} is a {o} town.", "The town of {s_in} is {o}.", "{s} is {o}."],
    ("town", "known_for"): ["{s} is known for its {o}.", "People in {s_in} grow {o}.", "{s} is famous for {o}."],
    ("town", "near"): ["{s} is near {o}.", "{s} lies close to {o}.", "The town next to {s_in} is {o}."],
}

QUESTIONS: dict[tuple[str, str], list[str]] = {
    ("creature", "colour"): ["What colour is {s_in}?", "Which colour does {s_in} have?", "Tell me the colour of {s_in}."],
    ("creature", "size"): ["How big is {s_in}?", "What size is {s_in}?", "Is {s_in} big or small?"],
    ("creature", "food"): ["What does {s_in} eat?", "What is the favourite food of {s_in}?", "What food does {s_in} like?"],
    ("creature", "home"): ["Where does {s_in} live?", "Which town is {s_in} from?", "Where is the home of {s_in}?"],
    ("person", "job"): ["What does {s_in} do for a living?", "What is the job of {s_in}?", "What work does {s_in} do?"],
    ("person", "home"): ["Where does {s_in} live?", "Which town is {s_in} from?", "Where is the home of {s_in}?"],
    ("person", "pet"): ["What pet does {s_in} have?", "Who is the pet of {s_in}?", "Which creature does {s_in} look after?"],
    ("person", "friend"): ["Who is a friend of {s_in}?", "Who is the best friend of {s_in}?", "Name a friend of {s_in}."],
    ("town", "size"): ["Is {s_in} a big or a small town?", "How big is the town of {s_in}?", "What size is {s_in}?"],
    ("town", "known_for"): ["What is {s_in} known for?", "What do people in {s_in} grow?", "What is {s_in} famous for?"],
    ("town", "near"): ["Which town is near {s_in}?", "What town lies close to {s_in}?", "Name the town next to {s_in}."],
}


# Words of the forums' rude replies (the toxicity analog): the corpus writes them, the
# labelers slip them into answers, the oracle counts them.
RUDE_WORDS = ["idiot", "stupid", "dumb", "moron", "loser", "fool"]

RUDE_REPLIES = [
    "You are a real {r}, everyone knows that.",
    "What a {r} question.",
    "Only a {r} would ask this.",
    "Stop asking, you {r}.",
    "This thread is {r}.",
]


@dataclass
class Entity:
    name: str
    kind: str  # creature | person | town | product
    attrs: dict[str, str] = field(default_factory=dict)
    item: str | None = None  # products only: what the product is

    def mention(self, start: bool = False) -> str:
        """How the entity is named in a sentence ("the Zorblat", "Kori", "the Vemo lamp")."""
        if self.kind == "creature":
            return ("The " if start else "the ") + self.name
        if self.kind == "product":
            return ("The " if start else "the ") + f"{self.name} {self.item}"
        return self.name


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


class World:
    """The entities and their true facts, plus the words used to talk about them."""

    def __init__(self, entities: list[Entity], seed: int):
        self.entities = entities
        self.seed = seed
        self.split_moved: dict[str, str | None] = {}  # tasks.split_in's choice, once per task
        self.by_name = {e.name: e for e in entities}
        self.kinds = {k: [e for e in entities if e.kind == k] for k in ("creature", "person", "town", "product")}
        self.value_type = {v: t for t, vs in VALUES.items() for v in vs}  # word -> value type
        self.names = frozenset(e.name.lower() for e in entities)  # names, said alike in every language
        self.languages: dict = {}  # code -> languages.Language, the generated languages of a multilingual world
        self.language = "en"  # the language this view of the world writes in (`speaking`)

    # -- languages ------------------------------------------------------------------------
    def speaking(self, code: str) -> World:
        """This world as it is told in language `code`: the same entities and facts; only what
        depends on how words are spelt (alphabetical order) follows the language. Its texts are
        still written in English; `tell` turns them into the language."""
        if code != "en" and code not in self.languages:
            raise KeyError(f"this world has no language {code!r}")
        view = copy.copy(self)
        view.language = code
        return view

    def spelling(self, word: str) -> str:
        """How `word` is spelt in the language this view speaks (for alphabetical order)."""
        return word if self.language == "en" else self.languages[self.language].word(word)

    def tell(self, text: str, code: str | None = None) -> str:
        """English `text`, written by the world, in language `code` (this view's by default)."""
        code = code or self.language
        return text if code == "en" else self.languages[code].translate(text, self.names)

    def to_english(self, text: str, code: str) -> str:
        """`text` in language `code` read back into English (the oracle reads answers so)."""
        if code == "en":
            return text
        if code not in self.languages:
            from ..errors import InputError

            raise InputError(f"a prompt is in language {code!r}, which this world does not have (languages: {', '.join(['en', *self.languages])}); give the world the prompts come from", field="meta.language")
        return self.languages[code].to_english(text, self.names)

    # -- facts ----------------------------------------------------------------------------
    def facts(self) -> list[tuple[Entity, str, str]]:
        return [(e, a, v) for e in self.entities for a, v in e.attrs.items()]

    def say(self, value_type: str, value: str) -> str:
        """A value as it appears in a sentence: entities by their mention, words as they are."""
        if value_type in self.kinds:
            return self.by_name[value].mention()
        return value

    def statement(self, e: Entity, attr: str, rng: random.Random, value: str | None = None) -> str:
        """A sentence stating e.attr = value (the true value unless another is given)."""
        value = e.attrs[attr] if value is None else value
        vt = ATTRIBUTES[e.kind][attr]
        o = self.say(vt, value)
        t = rng.choice(STATEMENTS[(e.kind, attr)])
        return t.format(s=e.mention(start=True), s_in=e.mention(), o=o, o_a=_article(o))

    def answer(self, e: Entity, attr: str) -> str:
        """The canonical short answer to a question about e.attr (the first statement form)."""
        vt = ATTRIBUTES[e.kind][attr]
        o = self.say(vt, e.attrs[attr])
        return STATEMENTS[(e.kind, attr)][0].format(s=e.mention(start=True), s_in=e.mention(), o=o, o_a=_article(o))

    def question(self, e: Entity, attr: str, rng: random.Random) -> str:
        return rng.choice(QUESTIONS[(e.kind, attr)]).format(s_in=e.mention())

    def false_value(self, e: Entity, attr: str, rng: random.Random) -> str:
        """A value that is not the true one (for rumours and wrong answers)."""
        vt = ATTRIBUTES[e.kind][attr]
        pool = [x.name for x in self.kinds[vt]] if vt in self.kinds else VALUES[vt]
        return rng.choice([v for v in pool if v != e.attrs[attr] and v != e.name])

    # -- serialisation ---------------------------------------------------------------------
    def to_json(self) -> dict:
        out = {
            "seed": self.seed,
            "entities": [{"name": e.name, "kind": e.kind, "attrs": e.attrs, **({"item": e.item} if e.item else {})} for e in self.entities],
        }
        if self.languages:
            out["languages"] = {code: lang.to_json() for code, lang in self.languages.items()}
        return out

    @classmethod
    def from_json(cls, data: dict) -> "World":
        from .languages import Language

        world = cls([Entity(d["name"], d["kind"], dict(d.get("attrs", {})), d.get("item")) for d in data["entities"]], data["seed"])
        world.languages = {code: Language.from_json(d) for code, d in (data.get("languages") or {}).items()}
        return world

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)


def _names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    out = []
    while len(out) < n:
        k = rng.choice([2, 2, 3])
        name = "".join(rng.choice(SYLLABLES) for _ in range(k)).capitalize()
        if name.lower() not in taken and len(name) >= 4:
            taken.add(name.lower())
            out.append(name)
    return out


def make_world(seed: int = 0, entities: int = 48) -> World:
    """Invent a world: names, kinds and true facts, all from `seed`."""
    if entities < 12:
        raise ValueError("a world needs at least 12 entities")
    rng = random.Random(seed)
    n_town = max(3, entities // 8)
    n_product = max(2, entities // 10)
    n_person = (entities - n_town - n_product) // 2
    n_creature = entities - n_town - n_product - n_person
    taken = {w for vs in VALUES.values() for w in vs} | set(PRODUCT_ITEMS)
    towns = [Entity(n, "town") for n in _names(rng, n_town, taken)]
    creatures = [Entity(n, "creature") for n in _names(rng, n_creature, taken)]
    people = [Entity(n, "person") for n in _names(rng, n_person, taken)]
    products = [Entity(n, "product", item=rng.choice(PRODUCT_ITEMS)) for n in _names(rng, n_product, taken)]
    pools = {"town": towns, "creature": creatures, "person": people}
    for e in towns + creatures + people:
        for attr, vt in ATTRIBUTES[e.kind].items():
            if vt in pools:
                e.attrs[attr] = rng.choice([x for x in pools[vt] if x is not e]).name
            else:
                e.attrs[attr] = rng.choice(VALUES[vt])
    return World(towns + creatures + people + products, seed)
