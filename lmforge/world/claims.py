"""Finding claims about the world's entities in free text, and telling the false ones.

A sentence claims e.attr = v when it names entity e and a value word v of the type of one of
e's attributes (a colour, a size, a food, a job), v being said nearest to e; or, for
attributes whose values are entities (home, pet, friend, near), when it names both entities
together with the attribute's cue words ("lives in", "pet", "friend", "near", ...).
Questions and negated sentences claim nothing. The world's value lists are disjoint, which
makes this reading unambiguous for the sentences the world itself writes, and a fair
reading of what a model writes.
"""

from __future__ import annotations

import re

from .ontology import ATTRIBUTES, World

CUES = {
    "home": ("lives in", "comes from", "home of", "is from", "live in", "come from"),
    "pet": ("pet", "looks after", "look after"),
    "friend": ("friend",),
    "near": ("near", "close to", "next to"),
}

_TOKEN = re.compile(r"[A-Za-z]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def claims(world: World, text: str) -> list[tuple[str, str, str]]:
    """Every (entity, attribute, value) the text asserts."""
    out = []
    for sent in _SENTENCE.split(text):
        sent = sent.strip()
        if not sent or sent.endswith("?"):
            continue
        low = " " + sent.lower() + " "
        if " not " in low or " never " in low or "n't" in low:
            continue
        toks = [(m.group(), m.start()) for m in _TOKEN.finditer(sent)]
        ents = [(world.by_name[t], p) for t, p in toks if t in world.by_name and world.by_name[t].kind != "product"]
        if not ents:
            continue
        for t, p in toks:
            vt = world.value_type.get(t)
            if vt is None:
                continue
            holders = [(e, q) for e, q in ents if vt in ATTRIBUTES[e.kind].values()]
            if not holders:
                continue
            before = [h for h in holders if h[1] < p]
            e = (before[-1] if before else min(holders, key=lambda h: h[1] - p))[0]
            attr = next(a for a, v in ATTRIBUTES[e.kind].items() if v == vt)
            out.append((e.name, attr, t))
        for i, (a, pa) in enumerate(ents):
            for b, pb in ents[i + 1 :]:
                if a is b:
                    continue
                for attr, vt in ATTRIBUTES[a.kind].items():
                    if vt == b.kind and attr in CUES and any(c in low for c in CUES[attr]):
                        out.append((a.name, attr, b.name))
    return out


def false_claims(world: World, text: str) -> list[tuple[str, str, str]]:
    """The claims of `text` that contradict the world's facts."""
    bad = []
    for name, attr, value in claims(world, text):
        e = world.by_name[name]
        if e.attrs.get(attr) == value:
            continue
        if attr in ("friend", "near") and world.by_name[value].attrs.get(attr) == name:
            continue  # friendship and nearness are said both ways
        bad.append((name, attr, value))
    return bad
