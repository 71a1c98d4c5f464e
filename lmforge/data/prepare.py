"""The data stage: a corpus becomes a tokenizer and token shards, ready for LM training.

    corpus (txt | jsonl | parquet | HF dataset)  ->  tokenizer.json  ->  shards/

`lmforge prepare [RECIPE] [key=value ...] --out DIR` runs it; later stages read `DIR/shards`.
A tokenizer is trained on the corpus unless `tokenizer_path` names one to reuse (a model's
tokenizer must not change under it).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config import dump_yaml
from ..errors import ConfigError, InputError
from ..io import atomic_output_dir, atomic_write_json, atomic_write_text
from ..tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
from ..tracking import progress, progress_enabled
from .readers import SampleBy, iter_grouped_texts, iter_text_pieces, text_bytes
from .sft import mixture_weights
from .shards import ShardConfig, write_shards


@dataclass
class CorpusConfig:
    """Where the text comes from."""

    path: str = ""  # a file or folder of .txt/.jsonl/.parquet, a saved HF dataset, or hf:NAME
    text_field: str = "text"  # the field that holds the text in JSONL, Parquet and datasets
    sample_by: SampleBy = "document"  # how plain-text files split into documents
    split: str | None = None  # the split of a Hugging Face dataset (default: train)
    group_by: str = ""  # the sources that temperature mixes: a record field (language, meta.language) or "file"
    temperature: float = 1.0  # T: source i, of n_i bytes, gets p_i proportional to n_i^(1/T) of the corpus (mT5); 1 keeps it as it is
    seed: int = 0  # which documents a resampling repeats or leaves out

    def validate(self) -> None:
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise ConfigError(f"must be positive, got {self.temperature}", field="data.temperature")
        if self.temperature != 1.0 and not self.group_by:
            raise ConfigError("mixes sources: name them with data.group_by (a record field such as language, or file)", field="data.temperature")


@dataclass
class PrepareConfig:
    data: CorpusConfig = field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    tokenizer_path: str | None = None  # use this tokenizer.json instead of training one
    shards: ShardConfig = field(default_factory=ShardConfig)

    def validate(self) -> None:
        if not self.data.path:
            raise ConfigError("is required: the corpus to prepare (e.g. data.path=corpus.txt)", field="data.path")
        self.data.validate()


def group_sizes(cfg: CorpusConfig) -> dict[str, int]:
    """Bytes of text in each source (group) of the corpus, in the order they first appear."""
    sizes: dict[str, int] = {}
    for text, group in iter_grouped_texts(cfg.path, cfg.group_by, text_field=cfg.text_field, sample_by=cfg.sample_by, split=cfg.split):
        sizes[group] = sizes.get(group, 0) + len(text.encode("utf-8"))
    if not sizes:
        raise InputError("no documents", path=cfg.path)
    return sizes


def resampling(sizes: dict[str, int], temperature: float) -> dict[str, dict]:
    """Each source's share before and after temperature sampling (p_i proportional to
    n_i^(1/T): Xue et al. 2021, mT5 section 3.3; Conneau et al. 2020 use alpha = 1/T), and the
    factor its documents are repeated (above 1) or thinned (below) by, keeping the corpus's size."""
    names = list(sizes)
    p = mixture_weights([sizes[g] for g in names], temperature)
    total = sum(sizes.values())
    return {g: {"bytes": sizes[g], "share": sizes[g] / total, "sampled_share": float(p[i]), "factor": float(p[i]) * total / sizes[g] if sizes[g] else 0.0} for i, g in enumerate(names)}


def _copies(factor: float, seed: int, group: str, index: int) -> int:
    """How many times the `index`-th document of `group` enters the corpus: floor(factor), and
    one more with probability frac(factor), drawn from a hash (deterministic, streamed)."""
    whole = math.floor(factor)
    u = int.from_bytes(hashlib.blake2b(f"{seed}:{group}:{index}".encode(), digest_size=8).digest(), "little") / 2**64
    return whole + (u < factor - whole)


def corpus_pieces(cfg: CorpusConfig, plan: dict[str, dict] | None = None):
    """The corpus as (text, end_of_document) pieces; with group_by, (document, True, group)
    triples, each document repeated or left out as temperature sampling asks (`plan`: the
    corpus's `resampling`, measured here when not given)."""
    if not cfg.group_by:
        return iter_text_pieces(cfg.path, text_field=cfg.text_field, sample_by=cfg.sample_by, split=cfg.split)
    factors = None
    if cfg.temperature != 1.0:
        plan = plan or resampling(group_sizes(cfg), cfg.temperature)
        factors = {g: r["factor"] for g, r in plan.items()}

    def pieces():
        seen: dict[str, int] = {}
        for text, group in iter_grouped_texts(cfg.path, cfg.group_by, text_field=cfg.text_field, sample_by=cfg.sample_by, split=cfg.split):
            i = seen[group] = seen.get(group, -1) + 1
            for _ in range(1 if factors is None else _copies(factors[group], cfg.seed, group, i)):
                yield text, True, group

    return pieces()


def corpus_texts(cfg: CorpusConfig, plan: dict[str, dict] | None = None):
    return (piece[0] for piece in corpus_pieces(cfg, plan))


def run_prepare(cfg: PrepareConfig, out: str | Path, *, overwrite: bool = False) -> dict:
    """Train (or load) the tokenizer and write the shards into `out`; returns a summary."""
    cfg.validate()
    plan = resampling(group_sizes(cfg.data), cfg.data.temperature) if cfg.data.group_by else None  # one pass over the sources, for every use
    with atomic_output_dir(out, overwrite) as tmp:
        atomic_write_text(tmp / "config.yaml", dump_yaml(cfg))
        if cfg.tokenizer_path:
            tok = Tokenizer.load(cfg.tokenizer_path)
        else:
            tok = train_tokenizer(corpus_texts(cfg.data, plan), cfg.tokenizer, show_progress=progress_enabled())
        tok.save(tmp)
        with progress(total=text_bytes(cfg.data.path), desc="encoding", unit="B") as bar:
            index = write_shards(corpus_pieces(cfg.data, plan), tok, tmp / "shards", cfg.shards, progress=bar.update)
        summary = {
            "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size},
            "splits": {
                name: {
                    "documents": s["documents"],
                    "tokens": s["tokens"],
                    "bytes": s["bytes"],
                    "bytes_per_token": s["bytes"] / s["tokens"] if s["tokens"] else 0.0,
                    "shards": len(s["shards"]),
                    **({"groups": s["groups"]} if "groups" in s else {}),
                }
                for name, s in index["splits"].items()
            },
        }
        if cfg.data.group_by:
            # the shares the hash draws gave: near the plan for many documents, uneven for a few long ones
            drawn = {g: sum(s.get("groups", {}).get(g, {}).get("bytes", 0) for s in index["splits"].values()) for g in plan}
            total = sum(drawn.values()) or 1
            groups = {g: {**r, "drawn_share": drawn[g] / total} for g, r in plan.items()}
            summary["sources"] = {"group_by": cfg.data.group_by, "temperature": cfg.data.temperature, "groups": groups}
        atomic_write_json(tmp / "summary.json", summary)
    return summary
