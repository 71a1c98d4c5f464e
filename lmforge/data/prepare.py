"""The data stage: a corpus becomes a tokenizer and token shards, ready for LM training.

    corpus (txt | jsonl | parquet | HF dataset)  ->  tokenizer.json  ->  shards/

`lmforge prepare [RECIPE] [key=value ...] --out DIR` runs it; later stages read `DIR/shards`.
A tokenizer is trained on the corpus unless `tokenizer_path` names one to reuse (a model's
tokenizer must not change under it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import dump_yaml
from ..errors import ConfigError
from ..io import atomic_output_dir, atomic_write_json, atomic_write_text
from ..tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
from ..tracking import progress, progress_enabled
from .readers import SampleBy, iter_text_pieces, text_bytes
from .shards import ShardConfig, write_shards


@dataclass
class CorpusConfig:
    """Where the text comes from."""

    path: str = ""  # a file or folder of .txt/.jsonl/.parquet, a saved HF dataset, or hf:NAME
    text_field: str = "text"  # the field that holds the text in JSONL, Parquet and datasets
    sample_by: SampleBy = "document"  # how plain-text files split into documents
    split: str | None = None  # the split of a Hugging Face dataset (default: train)


@dataclass
class PrepareConfig:
    data: CorpusConfig = field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    tokenizer_path: str | None = None  # use this tokenizer.json instead of training one
    shards: ShardConfig = field(default_factory=ShardConfig)

    def validate(self) -> None:
        if not self.data.path:
            raise ConfigError("is required: the corpus to prepare (e.g. data.path=corpus.txt)", field="data.path")


def corpus_pieces(cfg: CorpusConfig):
    return iter_text_pieces(cfg.path, text_field=cfg.text_field, sample_by=cfg.sample_by, split=cfg.split)


def corpus_texts(cfg: CorpusConfig):
    return (piece for piece, _ in corpus_pieces(cfg))


def run_prepare(cfg: PrepareConfig, out: str | Path, *, overwrite: bool = False) -> dict:
    """Train (or load) the tokenizer and write the shards into `out`; returns a summary."""
    cfg.validate()
    with atomic_output_dir(out, overwrite) as tmp:
        atomic_write_text(tmp / "config.yaml", dump_yaml(cfg))
        if cfg.tokenizer_path:
            tok = Tokenizer.load(cfg.tokenizer_path)
        else:
            tok = train_tokenizer(corpus_texts(cfg.data), cfg.tokenizer, show_progress=progress_enabled())
        tok.save(tmp)
        with progress(total=text_bytes(cfg.data.path), desc="encoding", unit="B") as bar:
            index = write_shards(corpus_pieces(cfg.data), tok, tmp / "shards", cfg.shards, progress=bar.update)
        summary = {
            "tokenizer": {"kind": tok.kind, "vocab_size": tok.vocab_size},
            "splits": {
                name: {
                    "documents": s["documents"],
                    "tokens": s["tokens"],
                    "bytes": s["bytes"],
                    "bytes_per_token": s["bytes"] / s["tokens"] if s["tokens"] else 0.0,
                    "shards": len(s["shards"]),
                }
                for name, s in index["splits"].items()
            },
        }
        atomic_write_json(tmp / "summary.json", summary)
    return summary
