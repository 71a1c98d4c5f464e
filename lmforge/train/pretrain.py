"""Pretraining: next-token prediction with cross-entropy on a corpus's token shards.

The objective is `lm_loss`: for inputs x and targets y (x shifted by one), the mean over
positions of -log p(y_t | x_<=t) (Radford et al. 2018, eq. 1). Evaluation reports the held-out
loss per token, perplexity exp(loss), and bits per byte: the summed loss in bits divided by
the UTF-8 bytes those tokens stand for, which compares models with different tokenizers.

`lmforge pretrain [RECIPE] [key=value ...] --out DIR` runs the stage: it takes prepared shards
(`data.shards`), or prepares `data.corpus` first (by default the built-in world, generated
into DIR/world), builds the model with the tokenizer's vocabulary size, and trains it with the
one loop. Running it again on the same DIR resumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import dump_yaml
from ..data.prepare import CorpusConfig, PrepareConfig, run_prepare
from ..data.shards import BatchLoader, ShardConfig, TokenShards
from ..errors import ConfigError, InputError
from ..io import atomic_write_text
from ..models import model_config_json
from ..models.transformer import ModelConfig, Transformer
from ..tokenizer import Tokenizer, TokenizerConfig
from .loop import TrainConfig, train


@dataclass
class PretrainDataConfig:
    shards: str = ""  # a folder made by `lmforge prepare` (or its shards/); empty: prepare `corpus` first
    corpus: str = "world"  # a data PATH, or "world": the built-in world, generated with world_seed
    world_seed: int = 0
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    val_fraction: float = 0.05
    seq_len: int = 128  # tokens per training sequence (at most model.max_seq_len)
    eval_batches: int = 20  # validation batches per evaluation (0: the whole val split)


@dataclass
class PretrainConfig:
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # vocab_size is taken from the tokenizer
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.data.seq_len > self.model.max_seq_len:
            raise ConfigError(f"({self.data.seq_len}) must not exceed model.max_seq_len ({self.model.max_seq_len})", field="data.seq_len")


def lm_loss(model, batch) -> tuple[torch.Tensor, dict]:
    """Mean next-token cross-entropy over every position of (inputs, targets)."""
    x, y = batch
    logits = model(x)
    loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
    return loss, {"tokens": y.numel()}


@torch.no_grad()
def evaluate_lm(model, shards: TokenShards, seq_len: int, batch_size: int, token_bytes: torch.Tensor, max_batches: int = 0) -> dict:
    """Held-out loss, perplexity and bits per byte over the val split (in order, no shuffling)."""
    loader = BatchLoader(shards, batch_size, seq_len, shuffle=False)
    n = loader.batches_per_epoch if max_batches <= 0 else min(max_batches, loader.batches_per_epoch)
    device = next(model.parameters()).device
    token_bytes = token_bytes.to(device)
    nll = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    n_bytes = torch.zeros((), dtype=torch.float64, device=device)
    for _ in range(n):
        x, y = (t.to(device) for t in next(loader))
        logits = model(x).float()
        losses = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1), reduction="none")
        nll += losses.double().sum()
        count += y.numel()
        n_bytes += token_bytes[y.reshape(-1)].double().sum()
    loss = (nll / count).item()
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "bpb": (nll / (math.log(2) * n_bytes)).item(), "tokens": count}


def _shard_dir(path: Path) -> Path:
    return path / "shards" if (path / "shards" / "index.json").exists() else path


def prepare_data(cfg: PretrainConfig, out: Path) -> Path:
    """The shard folder to train on, preparing it under `out` if needed."""
    if cfg.data.shards:
        return _shard_dir(Path(cfg.data.shards))
    data_dir = out / "data"
    if (data_dir / "shards" / "index.json").exists():
        return data_dir / "shards"
    corpus = cfg.data.corpus
    if corpus == "world":
        from ..world.build import WorldConfig, build_world

        world_dir = out / "world"
        if not (world_dir / "manifest.json").exists():
            build_world(WorldConfig(seed=cfg.data.world_seed), world_dir, overwrite=True)
        corpus = str(world_dir / "pretrain.jsonl")
    prep = PrepareConfig(data=CorpusConfig(path=corpus), tokenizer=cfg.data.tokenizer, shards=ShardConfig(val_fraction=cfg.data.val_fraction))
    run_prepare(prep, data_dir, overwrite=True)
    return data_dir / "shards"


def run_pretrain(cfg: PretrainConfig, out: str | Path) -> dict:
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shard_dir = prepare_data(cfg, out)
    tokenizer = Tokenizer.load(shard_dir)
    cfg.model.vocab_size = tokenizer.vocab_size
    saved = out / "config.yaml"
    text = dump_yaml(cfg)
    if saved.exists() and (out / "checkpoints").exists() and saved.read_text() != text:
        raise InputError("this run directory was started with another config; resume with the same settings or choose a new --out", path=saved)
    atomic_write_text(saved, text)

    import os

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    train_shards = TokenShards(shard_dir, "train")
    batches = BatchLoader(train_shards, cfg.train.batch_size, cfg.data.seq_len, seed=cfg.train.seed, rank=rank, world_size=world)
    evaluate = None
    if "val" in train_shards.index["splits"]:
        val = TokenShards(shard_dir, "val")
        token_bytes = torch.tensor(tokenizer.token_bytes(), dtype=torch.float64)
        evaluate = lambda model: evaluate_lm(model, val, cfg.data.seq_len, cfg.train.batch_size, token_bytes, cfg.data.eval_batches)  # noqa: E731
    torch.manual_seed(cfg.train.seed)
    model = Transformer(cfg.model)
    return train(model, lm_loss, batches, cfg.train, out, model_config=model_config_json(model), tokenizer=tokenizer, evaluate=evaluate, log_config={"config": dump_yaml(cfg)})
