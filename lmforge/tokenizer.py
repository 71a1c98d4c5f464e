"""Tokenizers: text <-> token ids, through Hugging Face `tokenizers`.

Three kinds, each trained on any corpus lmforge can read:
  - `bpe`:  byte-level BPE as in GPT-2 (Radford et al. 2019): text is split by GPT-2's
            pre-tokenization regex, each piece is mapped to bytes, and merges learned on the
            corpus build the vocabulary up from the 256 bytes. Any string encodes, and
            decodes back exactly.
  - `char`: one token per Unicode character seen in training (the most frequent ones, up to
            the vocabulary size); others become `<|unk|>`.
  - `word`: one token per word or run of punctuation (`\\w+|[^\\w\\s]+`); decoding joins
            words with single spaces, so whitespace is not preserved.

Every kind reserves the same special tokens at the same ids, first in the vocabulary:
padding, beginning and end of text, unknown, and the chat role markers that supervised
fine-tuning renders conversations with. The tokenizer is saved as a standard
`tokenizer.json`, which `tokenizers.Tokenizer.from_file` and `transformers` load with
identical ids. Special-token strings that occur in raw text are read as the special tokens
(the `tokenizers` default); decoding keeps them, so round trips stay exact.

This module maps text to ids; it does not know about documents, shards or models.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Literal

from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from .errors import ConfigError, InputError
from .io import atomic_write_text

# name -> token; the order fixes the ids (0, 1, 2, ...) for every kind of tokenizer.
SPECIAL_TOKENS: dict[str, str] = {
    "pad": "<|pad|>",
    "bos": "<|bos|>",
    "eos": "<|endoftext|>",
    "unk": "<|unk|>",
    "system": "<|system|>",
    "user": "<|user|>",
    "assistant": "<|assistant|>",
    "end_of_turn": "<|end|>",
}

# The masked-LM token (BERT's [MASK]): not among SPECIAL_TOKENS, so causal tokenizers keep their
# ids; `with_mask` appends it to the vocabulary of an encoder's copy of the tokenizer.
MASK_TOKEN = "<|mask|>"

Kind = Literal["bpe", "char", "word"]


@dataclass
class TokenizerConfig:
    """How to train a tokenizer."""

    kind: Kind = "bpe"
    vocab_size: int = 4096  # total, special tokens included
    min_frequency: int = 2  # a merge (bpe) or a word/char must be seen this often to enter the vocabulary
    max_train_bytes: int | None = None  # train on the first N bytes of the corpus only (None: all of it)

    def validate(self) -> None:
        floor = len(SPECIAL_TOKENS) + (256 if self.kind == "bpe" else 1)
        if self.vocab_size < floor:
            raise ConfigError(f"must be at least {floor} for a {self.kind} tokenizer, got {self.vocab_size}", field="vocab_size")
        if self.min_frequency < 1:
            raise ConfigError(f"must be at least 1, got {self.min_frequency}", field="min_frequency")


class Tokenizer:
    """A trained tokenizer: encode, decode, special ids, save and load."""

    def __init__(self, hf: HFTokenizer, config: dict | None = None, generation: dict | None = None):
        # lmforge pads and cuts sequences itself; an imported tokenizer.json may pad every text to a
        # fixed length or truncate it (sentence-transformers' MiniLM pads to 128 with [PAD])
        hf.no_padding()
        hf.no_truncation()
        self.hf = hf
        missing = [t for t in SPECIAL_TOKENS.values() if hf.token_to_id(t) is None]
        self.specials = {name: hf.token_to_id(tok) for name, tok in SPECIAL_TOKENS.items()}
        self.missing_specials = missing
        # An imported tokenizer (lmforge import hf/gguf) names its own special tokens and chat
        # template in Hugging Face's tokenizer_config.json, its end-of-turn ids in generation_config.json.
        self.config, self.generation = config or {}, generation or {}
        for name in ("pad", "bos", "eos", "unk"):
            if self.specials[name] is None:
                tok = self.config.get(f"{name}_token")
                tok = tok.get("content") if isinstance(tok, dict) else tok
                self.specials[name] = hf.token_to_id(tok) if isinstance(tok, str) else None
        if self.specials["pad"] is None:
            self.specials["pad"] = self.specials["eos"]
        from .data.chat import CHAT_TEMPLATE

        template = self.config.get("chat_template")
        self.chat_template = template if isinstance(template, str) and template != CHAT_TEMPLATE else None
        eos = self.generation.get("eos_token_id")
        stops = eos if isinstance(eos, list) else [eos]
        self.stop_token_ids = sorted({int(i) for i in stops if isinstance(i, int)} | ({self.specials["eos"]} if self.specials["eos"] is not None else set()))

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Load `tokenizer.json` (or a directory that holds one)."""
        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.json"
        if not p.exists():
            raise InputError("tokenizer not found (expected a tokenizer.json or a directory holding one)", path=p)
        try:
            hf = HFTokenizer.from_file(str(p))
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise InputError(f"not a valid tokenizer.json: {e}", path=p) from None
        return cls(hf, _side_file(p.parent / "tokenizer_config.json"), _side_file(p.parent / "generation_config.json"))

    def to_json(self) -> str:
        return self.hf.to_str(pretty=True)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `directory/tokenizer.json` atomically (and an imported tokenizer's
        tokenizer_config.json and generation_config.json); returns its path."""
        out = Path(directory) / "tokenizer.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, self.to_json())
        for name, obj in (("tokenizer_config.json", self.config), ("generation_config.json", self.generation)):
            if obj and self.missing_specials:  # lmforge's own tokenizers need neither
                atomic_write_text(out.parent / name, json.dumps(obj, indent=2) + "\n")
        return out

    @property
    def sha256(self) -> str:
        """A fingerprint of the vocabulary and rules, to tell tokenizers apart."""
        return hashlib.sha256(self.hf.to_str().encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ properties

    @property
    def kind(self) -> str:
        model = type(self.hf.model).__name__
        if model == "BPE":
            return "bpe"
        return "char" if isinstance(self.hf.decoder, decoders.Fuse) else "word"

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def special_id(self, name: str) -> int:
        tid = self.specials.get(name)
        if tid is None:
            raise InputError(f"tokenizer has no {SPECIAL_TOKENS.get(name, name)!r} token", field=name)
        return tid

    @property
    def pad_id(self) -> int:
        return self.special_id("pad")

    @property
    def bos_id(self) -> int:
        return self.special_id("bos")

    @property
    def eos_id(self) -> int:
        return self.special_id("eos")

    @property
    def unk_id(self) -> int:
        return self.special_id("unk")

    def _find_mask(self) -> int | None:
        named = self.config.get("mask_token")  # an imported tokenizer's, in tokenizer_config.json
        named = named.get("content") if isinstance(named, dict) else named
        for tok in (MASK_TOKEN, named, "[MASK]", "<mask>"):
            tid = self.hf.token_to_id(tok) if isinstance(tok, str) else None
            if tid is not None:
                return tid
        return None

    @property
    def mask_id(self) -> int:
        """The masked-LM token's id (BERT's [MASK], or `<|mask|>`); see `with_mask`."""
        tid = self._find_mask()
        if tid is None:
            raise InputError(f"tokenizer has no {MASK_TOKEN!r} token (an encoder's tokenizer gets one from masked-LM pretraining)", field="mask")
        return tid

    def with_mask(self) -> "Tokenizer":
        """This tokenizer, or a copy with `<|mask|>` appended as a special token (the next id):
        the ids of every other token stay, so shards made with this tokenizer serve the encoder."""
        if self._find_mask() is not None:
            return self
        from tokenizers import AddedToken

        hf = HFTokenizer.from_str(self.hf.to_str())
        hf.add_special_tokens([AddedToken(MASK_TOKEN, special=True, normalized=False)])
        return Tokenizer(hf, self.config, self.generation)

    CHAT_TOKENS = ("system", "user", "assistant", "end_of_turn")

    def with_chat_tokens(self) -> "Tokenizer":
        """This tokenizer, or a copy with lmforge's role and end-of-turn tokens appended as special
        tokens (the next ids) where it has neither them nor a chat template of its own: an imported
        base model then learns lmforge's chat format in SFT (TRL's setup_chat_format does the same
        with ChatML's tokens). Every other id stays."""
        missing = [SPECIAL_TOKENS[n] for n in self.CHAT_TOKENS if self.specials.get(n) is None]
        if self.chat_template or not missing:
            return self
        from tokenizers import AddedToken

        hf = HFTokenizer.from_str(self.hf.to_str())
        hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
        return Tokenizer(hf, self.config, self.generation)

    def special_ids(self) -> list[int]:
        """Every special token's id (the added tokens marked special): what masking never selects
        and never draws as a random replacement."""
        return sorted(i for i, t in self.hf.get_added_tokens_decoder().items() if t.special)

    # ------------------------------------------------------------------ encoding

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_plain(self, text: str) -> list[int]:
        """Encode `text` reading special-token strings in it as plain text: what a user wrote
        cannot forge a role marker or an end of turn. The chat template encodes contents so."""
        return self._plain_tokenizer().encode(text, add_special_tokens=False).ids

    def _plain_tokenizer(self) -> HFTokenizer:
        """A copy of the tokenizer that reads special-token strings as text (built once)."""
        if getattr(self, "_plain", None) is None:
            self._plain = HFTokenizer.from_str(self.hf.to_str())
            self._plain.encode_special_tokens = True
        return self._plain

    def document_ids(self, text: str, *, plain: bool = True) -> list[int]:
        """`text` as the start of a new document, what a base model continues. lmforge's own
        tokenizers separate pretraining documents with the end-of-text token, so it comes first.
        An imported tokenizer starts a document as its model was trained to, as transformers'
        `tokenizer(text)` does: with what its tokenizer.json's post-processor adds (Llama's
        <s>), the begin token where tokenizer_config.json sets add_bos_token, else nothing (GPT-2,
        SmolLM2), and the begin or end token only for an empty text. `plain`: special-token
        strings in `text` stay text (see `encode_plain`)."""
        if not self.missing_specials:
            return [self.eos_id, *(self.encode_plain(text) if plain else self.encode(text))]
        ids = (self._plain_tokenizer() if plain else self.hf).encode(text, add_special_tokens=True).ids
        bos, eos = self.specials["bos"], self.specials["eos"]
        if bos is not None and self.config.get("add_bos_token") and ids[:1] != [bos]:
            ids = [bos, *ids]
        if not ids:
            start = bos if bos is not None else eos
            ids = [start] if start is not None else []
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, i: int) -> str | None:
        return self.hf.id_to_token(i)

    def token_bytes(self) -> list[int]:
        """UTF-8 bytes of text each id stands for (0 for special tokens): the divisor of bits per byte.

        Byte-level BPE: exact (each token's characters map back to bytes, GPT-2's table).
        Char: the character's bytes. Word: the word's bytes plus one for the space before it.
        """
        special = set(self.specials.values())
        if self.kind == "bpe":
            to_byte = {c: b for b, c in _bytes_to_unicode().items()}
        out = []
        for i in range(self.vocab_size):
            tok = self.hf.id_to_token(i)
            if i in special or tok is None:
                out.append(0)
            elif self.kind == "bpe":
                out.append(sum(1 for c in tok if c in to_byte))
            elif self.kind == "char":
                out.append(len(tok.encode("utf-8")))
            else:
                out.append(len(tok.encode("utf-8")) + 1)
        return out


def _side_file(path: Path) -> dict:
    """A Hugging Face JSON file beside tokenizer.json ({} when there is none)."""
    if not path.exists():
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"corrupt {path.name}: {e}", path=path) from None
    if not isinstance(obj, dict):
        raise InputError("must be a JSON object", path=path)
    return obj


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


# --------------------------------------------------------------------------- training


def _empty(kind: str) -> HFTokenizer:
    if kind == "bpe":
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
    elif kind == "char":
        tok = HFTokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk"]))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
    elif kind == "word":
        tok = HFTokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk"]))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
    else:
        raise ConfigError(f"unknown tokenizer kind {kind!r}; expected bpe, char or word", field="kind")
    return tok


def _limit_bytes(texts: Iterable[str], max_bytes: int | None) -> Iterator[str]:
    seen = 0
    for t in texts:
        yield t
        seen += len(t.encode("utf-8"))
        if max_bytes is not None and seen >= max_bytes:
            return


def _batched(texts: Iterable[str], n: int = 1000) -> Iterator[list[str]]:
    batch = []
    for t in texts:
        batch.append(t)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig, *, show_progress: bool = False) -> Tokenizer:
    """Learn a vocabulary from an iterable of texts (streamed: nothing is held in memory)."""
    cfg.validate()
    tok = _empty(cfg.kind)
    specials = list(SPECIAL_TOKENS.values())
    texts = _batched(_limit_bytes(texts, cfg.max_train_bytes))
    if cfg.kind == "bpe":
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
    else:
        trainer = trainers.WordLevelTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=specials,
            show_progress=show_progress,
        )
    tok.train_from_iterator(texts, trainer=trainer)
    out = Tokenizer(tok)
    if out.vocab_size <= len(specials):
        raise InputError("the training corpus has no text to learn a vocabulary from")
    return out


# --------------------------------------------------------------------------- statistics


_WORDS = re.compile(r"\w+")


def token_stats(tok: Tokenizer, texts: Iterable[str], batch: int = 1000, by: list[str] | None = None, reference: str | None = None) -> dict:
    """How a tokenizer does on a corpus: bytes per token, tokens per word, vocabulary use,
    unknown rate; with `by` (a group for each text, such as its language), the same per group,
    and each group's tokens per word against the `reference` group's (default: the one with the
    most texts) - `premium`: how much more the same number of words costs in it, the unfairness
    Petrov et al. 2023 measure across languages. Words are runs of letters and digits, so for a
    script written without spaces (Japanese, Chinese, Thai) tokens per word means little: compare
    bytes per token there."""
    counts: Counter[int] = Counter()
    n_bytes = n_tokens = n_docs = n_words = 0
    groups: dict[str, Counter] = {}
    for chunk in _batched(texts, batch):
        for text, ids in zip(chunk, tok.encode_batch(chunk)):
            b, w = len(text.encode("utf-8")), len(_WORDS.findall(text))
            n_bytes += b
            n_tokens += len(ids)
            n_words += w
            counts.update(ids)
            if by is not None:
                groups.setdefault(str(by[n_docs]), Counter()).update(documents=1, bytes=b, tokens=len(ids), words=w)
            n_docs += 1
    unk = tok.specials.get("unk")
    top = [{"id": i, "token": tok.id_to_token(i), "count": c} for i, c in counts.most_common(10)]
    return {
        "kind": tok.kind,
        "vocab_size": tok.vocab_size,
        "documents": n_docs,
        "bytes": n_bytes,
        "tokens": n_tokens,
        "bytes_per_token": n_bytes / n_tokens if n_tokens else 0.0,
        "words": n_words,
        "tokens_per_word": n_tokens / n_words if n_words else 0.0,
        **({"by": _group_stats(groups, reference)} if by is not None else {}),
        "vocab_used": len(counts),
        "vocab_use": len(counts) / tok.vocab_size,
        "unk_rate": counts.get(unk, 0) / n_tokens if n_tokens else 0.0,
        "top_tokens": top,
    }


def _group_stats(groups: dict[str, Counter], reference: str | None = None) -> dict:
    out = {}
    for name, c in sorted(groups.items(), key=lambda kv: -kv[1]["documents"]):
        out[name] = {**c, "bytes_per_token": c["bytes"] / c["tokens"] if c["tokens"] else 0.0, "tokens_per_word": c["tokens"] / c["words"] if c["words"] else 0.0}
    if reference is not None and reference not in out:
        raise InputError(f"no text has {reference!r} (the groups: {', '.join(out)})", field="reference")
    if out:
        base = out[reference or next(iter(out))]["tokens_per_word"]  # the reference group's, or the largest's
        for g in out.values():
            g["premium"] = g["tokens_per_word"] / base if base else 0.0
    return out
