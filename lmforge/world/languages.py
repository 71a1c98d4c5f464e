"""Languages of the built-in world: English and generated languages that say the same facts.

A multilingual world (`lmforge world languages=[en,xv,xt]`) tells the same universe of entities
and facts in several languages, as the web does in mT5's 101 (Xue et al. 2021): English and
generated languages, each with

  a lexicon      every English word the world writes has its own word, made of the language's
                 syllables (its own sounds: Velish's v, l, s, n ... with e, i, a; Torin's t, d, g,
                 b ... with o, u, a), drawn from (seed, language, word), so two seeds give two
                 vocabularies; proper names (the Zorblat, Kori, Pemora) are the same in every
                 language, as names are
  a morphology   Velish marks with a suffix what English marks with -s (a plural noun, a verb
                 of the third person: friends, eats) on the bare word's own (friend, eat), so
                 the grammar task's agreement errors are a missing suffix; Torin has no
                 articles but a definite and an indefinite suffix on the word they determine
                 ("the colour" is one word)
  a word order   Velish says each phrase back to front (head-final); Torin swaps neighbouring
                 words (its modifiers follow what they modify); lists, numbers and
                 punctuation stay where they are

Translation is exact and invertible: the world writes everything in English and says it in
the document's or prompt's language (`Language.translate`), and the oracle reads an answer
back into English (`Language.to_english`) to judge it with the same checkers, so a fact said in
one language is the same fact in another, and `identify` tells which language an answer is in
(an answer in another language than the prompt's is not helpful to its reader).

The lexicon covers the words of every string the world's generators are written with
(`vocabulary()`), so every generated text translates; a word a model makes up is read as it is.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import ConfigError

ENGLISH = "en"


@dataclass(frozen=True)
class Spec:
    """What a generated language is made of."""

    name: str
    consonants: str
    vowels: str
    order: str  # mirror: each phrase back to front; pairs: neighbouring words swapped
    morphology: str  # plural: a plural suffix; articles: definite and indefinite suffixes
    suffixes: dict = field(default_factory=dict)  # reserved syllables, never inside a word


SPECS: dict[str, Spec] = {
    "xv": Spec("Velish", "vlsnmrtkp", "eia", "mirror", "plural", {"plural": "se"}),
    "xt": Spec("Torin", "tdgbzrhk", "oua", "pairs", "articles", {"the": "du", "a": "ga"}),
}
NAMES = {ENGLISH: "English", **{code: s.name for code, s in SPECS.items()}}
# Shares of the pretraining corpus when a world does not say: a high-, a mid- and a low-resource
# language, roughly as English and two smaller languages stand on the web (mC4's long tail).
DEFAULT_SHARES = {ENGLISH: 0.80, "xv": 0.15, "xt": 0.05}

_SPLIT = re.compile(r"([A-Za-z]+)")
_PLURAL_ENDINGS = (("ies", "y"), ("ves", "f"), ("ves", "fe"), ("es", ""), ("s", ""))


def check_codes(codes: list[str], field_name: str = "languages") -> None:
    """Refuse an unknown or repeated language code, naming the known ones."""
    for code in codes:
        if code not in NAMES:
            known = ", ".join(f"{c} ({n})" for c, n in NAMES.items())
            raise ConfigError(f"unknown language {code!r}; the world's languages are {known}", field=field_name)
    if len(set(codes)) != len(codes):
        raise ConfigError(f"a language is named twice: {codes}", field=field_name)


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """Every lower-case word of the strings the world's modules write with (their templates,
    value lists, habits; docstrings aside): the English the world can write."""
    words: set[str] = set()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name == "languages.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                words.update(w.lower() for w in _SPLIT.findall(node.value))
    return tuple(sorted(words))


def _case(word: str) -> str:
    if word.islower():
        return "lower"
    if word[0].isupper() and (len(word) == 1 or word[1:].islower()):
        return "title"
    if word.isupper():
        return "upper"
    return "mixed"


def _cased(word: str, case: str) -> str:
    return {"lower": word, "title": word[:1].upper() + word[1:], "upper": word.upper()}.get(case, word)


def _singular(word: str, vocab: set[str]) -> str | None:
    for ending, stem in _PLURAL_ENDINGS:
        if word.endswith(ending) and len(word) > len(ending) + 1 and word[: -len(ending)] + stem in vocab:
            return word[: -len(ending)] + stem
    return None


class Language:
    """A generated language: its lexicon (English word -> its word) and its rules."""

    def __init__(self, code: str, lexicon: dict[str, str]):
        if code not in SPECS:
            check_codes([code])
            raise ConfigError(f"{code} is English, which needs no lexicon", field="languages")
        self.code, self.spec, self.lexicon = code, SPECS[code], dict(lexicon)
        self.english = {v: k for k, v in self.lexicon.items()}

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def make(cls, code: str, seed: int, avoid: set[str] = frozenset()) -> Language:
        """The language `code` of the world of `seed`: a word for each word of `vocabulary()`,
        none of them an English word, a name in `avoid` (lower case) or another's word."""
        check_codes([code])
        spec = SPECS[code]
        reserved = set(spec.suffixes.values())
        syllables = [c + v for c in spec.consonants for v in spec.vowels if c + v not in reserved]
        vocab = vocabulary()
        taken = set(vocab) | {a.lower() for a in avoid}
        lexicon: dict[str, str] = {}
        plural = spec.suffixes.get("plural")
        known = set(vocab)
        # Bare words first, then the -s words built on them; within each, an order set by each
        # word's own hash, so that a word added to the world's writing takes a form only from the
        # words after it whose form it happens to want (almost never), not from everything after
        # it in the alphabet.
        words = sorted(vocab, key=lambda w: (_singular(w, known) is not None, hashlib.blake2b(f"{seed}:{code}:{w}".encode(), digest_size=8).digest()))
        for w in words:
            stem = _singular(w, known) if plural else None
            if stem is not None and stem in lexicon and lexicon[stem] + plural not in taken:
                form = lexicon[stem] + plural
            else:
                rng = random.Random(f"{seed}:{code}:{w}")
                n = 1 + (len(w) >= 3) + (len(w) >= 7)
                tries = 0
                while True:
                    form = "".join(rng.choice(syllables) for _ in range(n))
                    if form not in taken:
                        break
                    tries += 1
                    if tries % 20 == 0:
                        n += 1
            taken.add(form)
            lexicon[w] = form
        return cls(code, lexicon)

    # -- English -> the language ----------------------------------------------------------------
    def word(self, english: str) -> str:
        """The language's word for an English word (lower case), or the word itself if the
        lexicon has none (a name)."""
        return self.lexicon.get(english.lower(), english)

    def translate(self, text: str, names: set[str] | frozenset = frozenset()) -> str:
        """`text`, written by the world in English, said in this language. Every word must be a
        name in `names` (lower case; a name is a name in any case) or in the lexicon (a ValueError
        otherwise: the world wrote a word that `vocabulary()` does not know)."""
        parts = _SPLIT.split(text)  # separators at even indices, words at odd ones
        words, seps = parts[1::2], parts[0::2]
        out_words, out_seps = [], [seps[0]]
        i = 0
        articles = self.spec.suffixes if self.spec.morphology == "articles" else {}
        while i < len(words):
            w = words[i]
            if w.lower() in names:
                out_words.append(w)
            else:
                case = _case(w)
                low = w.lower()
                if low not in self.lexicon or case == "mixed":
                    raise ValueError(f"the world wrote {w!r}, which {self.name} has no word for")
                nxt = words[i + 1] if i + 1 < len(words) else None
                art = "a" if low in ("a", "an") else low
                if art in ("the", "a") and art in articles and seps[i + 1] == " " and nxt is not None and nxt not in names and nxt.islower() and nxt in self.lexicon and (low != "a" or nxt[0] not in "aeiou") and (low != "an" or nxt[0] in "aeiou"):
                    out_words.append(_cased(self.lexicon[nxt] + articles[art], case))
                    out_seps.append(seps[i + 2])
                    i += 2
                    continue
                out_words.append(_cased(self.lexicon[low], case))
            out_seps.append(seps[i + 1])
            i += 1
        return _join(self._reorder(out_words, out_seps), out_seps)

    # -- the language -> English ----------------------------------------------------------------
    def to_english(self, text: str, names: set[str] | frozenset = frozenset()) -> str:
        """`text` in this language read back into English: exact for what `translate` wrote; a
        word the lexicon does not have (a name, an English word, a made-up one) stays as it is."""
        parts = _SPLIT.split(text)
        words, seps = self._reorder(parts[1::2], parts[0::2]), parts[0::2]
        out_words, out_seps = [], [seps[0]]
        articles = {v: k for k, v in self.spec.suffixes.items()} if self.spec.morphology == "articles" else {}
        for i, w in enumerate(words):
            english, article = self.read(w, names, articles)
            if article is not None:
                out_words += [article, english]
                out_seps += [" ", seps[i + 1]]
            else:
                out_words.append(english)
                out_seps.append(seps[i + 1])
        return _join(out_words, out_seps)

    def read(self, w: str, names=frozenset(), articles: dict | None = None) -> tuple[str, str | None]:
        """(English word, its article or None) for one word of the language; (w, None) for a
        word it does not know."""
        if articles is None:
            articles = {v: k for k, v in self.spec.suffixes.items()} if self.spec.morphology == "articles" else {}
        if w.lower() in names:
            return w, None
        case, low = _case(w), w.lower()
        if low in self.english:
            return _cased(self.english[low], case), None
        for suffix, art in articles.items():
            if low.endswith(suffix) and low[: -len(suffix)] in self.english:
                noun = self.english[low[: -len(suffix)]]
                if art == "a" and noun[0] in "aeiou":
                    art = "an"
                return noun, _cased(art, case)
        return w, None

    def knows(self, w: str) -> bool:
        """Whether `w` is a word of this language (its lexicon's, or one with an article suffix)."""
        low = w.lower()
        return low in self.english or any(low.endswith(s) and low[: -len(s)] in self.english for s in self.spec.suffixes.values() if self.spec.morphology == "articles")

    def _reorder(self, words: list[str], seps: list[str]) -> list[str]:
        """The language's word order within each phrase (words joined by single spaces); its own
        inverse, so reading back applies it again."""
        out, start = list(words), 0
        for i in range(len(words) + 1):
            if i == len(words) or seps[i + 1] != " ":  # words[i] ends a phrase
                phrase = out[start : i + 1]
                if self.spec.order == "mirror":
                    phrase = phrase[::-1]
                elif self.spec.order == "pairs":
                    for j in range(0, len(phrase) - 1, 2):
                        phrase[j], phrase[j + 1] = phrase[j + 1], phrase[j]
                out[start : i + 1] = phrase
                start = i + 1
        return out

    def to_json(self) -> dict:
        return {"code": self.code, "name": self.name, "lexicon": self.lexicon}

    @classmethod
    def from_json(cls, data: dict) -> Language:
        return cls(data["code"], data["lexicon"])


def _join(words: list[str], seps: list[str]) -> str:
    out = [seps[0]]
    for w, s in zip(words, seps[1:]):
        out += [w, s]
    return "".join(out)


def identify(text: str, languages: dict[str, Language], names=frozenset()) -> dict[str, int]:
    """How many of the words of `text` (names, lower case, and single letters aside) each language has:
    English's are the world's vocabulary."""
    vocab = set(vocabulary())
    counts = {ENGLISH: 0, **{code: 0 for code in languages}}
    for w in _SPLIT.findall(text):
        if w.lower() in names or len(w) < 2:
            continue
        if w.lower() in vocab:
            counts[ENGLISH] += 1
        for code, lang in languages.items():
            if lang.knows(w):
                counts[code] += 1
    return counts


def in_language(text: str, code: str, languages: dict[str, Language], names=frozenset()) -> bool:
    """Whether `text` is in language `code`: no other language has more of its words (an answer
    of numbers alone is in every language)."""
    counts = identify(text, languages, names)
    return counts.get(code, 0) >= max(counts.values())


def make_languages(seed: int, codes: list[str], names=frozenset()) -> dict[str, Language]:
    """The generated languages among `codes` for the world of `seed`, made in one fixed order
    (each avoiding the words of those before it), so a language's lexicon is the same whichever
    others the world has."""
    check_codes(codes)
    taken, out = set(names), {}
    for code in SPECS:
        lang = Language.make(code, seed, taken)
        taken |= set(lang.lexicon.values())
        if code in codes:
            out[code] = lang
    return out
