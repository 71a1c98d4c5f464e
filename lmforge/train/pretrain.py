"""Pretraining: next-token prediction with cross-entropy on a corpus's token shards.

The objective is `lm_loss`: for inputs x and targets y (x shifted by one), the mean over
positions of -log p(y_t | x_<=t) (Radford et al. 2018, eq. 1). Evaluation reports the held-out
loss per token, perplexity exp(loss), and bits per byte: the summed loss in bits divided by
the UTF-8 bytes those tokens stand for, which compares models with different tokenizers.

`objective=mlm` trains an encoder instead (`lmforge.train.mlm`, BERT's masked LM): the same model
with bidirectional attention, on the same shards, in the same loop, with the same checkpoints,
resumption and torchrun; its tokenizer gets a `<|mask|>` token appended.

The recurrent baselines (`arch=rnn`: Elman RNN, LSTM, GRU) train in the same loop on the same
shards, with truncated backpropagation through time over consecutive batches (`rnn_objective`,
`StreamLoader`); the carried state is saved with the data position, so a resumed
single-process run continues exactly (under torchrun each rank restarts its streams from zero).

`lmforge pretrain [RECIPE] [key=value ...] --out DIR` runs the stage: it takes prepared shards
(`data.shards`), or prepares `data.corpus` first (by default the built-in world, generated
into DIR/world), builds the model with the tokenizer's vocabulary size, and trains it with the
one loop. Running it again on the same DIR resumes.
"""

from __future__ import annotations

import json
import warnings

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..config import dump_yaml
from ..data.prepare import CorpusConfig, PrepareConfig, run_prepare
from ..data.shards import BatchLoader, ShardConfig, StreamLoader, TokenShards
from ..errors import ConfigError, InputError
from ..eval.perplexity import score_stream
from ..io import atomic_write_text
from ..models import model_config_json
from ..models.rnn import RNNLM, RNNConfig, RNNState
from ..models.transformer import ModelConfig, Transformer
from ..tokenizer import Tokenizer, TokenizerConfig
from .loop import TrainConfig, run_config_text, train
from .mlm import MaskedBatches, MLMConfig, evaluate_mlm, mlm_loss, special_mask


@dataclass
class PretrainDataConfig:
    PATH_OF_SECTION: ClassVar[dict[str, str]] = {"tokenizer": "tokenizer_path"}  # data.tokenizer=DIR reuses that tokenizer

    shards: str = ""  # a folder made by `lmforge prepare` (or its shards/); empty: prepare `corpus` first
    corpus: str = "world"  # a data PATH, or "world": the built-in world, generated with world_seed
    world_seed: int = 0
    group_by: str = ""  # the corpus's sources for temperature: a record field (language) or "file"
    temperature: float = 1.0  # source i sampled with p_i proportional to n_i^(1/T) (mT5); 1: as the corpus is
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    tokenizer_path: str = ""  # reuse a trained tokenizer (a folder with tokenizer.json, or the file) instead of training one on the corpus
    val_fraction: float = 0.05  # held out for validation: whole documents by hash; the corpus's last tokens when it has too few documents
    seq_len: int = 128  # tokens per training sequence (at most model.max_seq_len)
    eval_batches: int = 20  # validation batches per evaluation (0: the whole val split)


@dataclass
class PretrainConfig:
    arch: Literal["transformer", "rnn"] = "transformer"
    objective: Literal["clm", "mlm"] = "clm"  # clm: the next token (a GPT); mlm: masked tokens (a BERT encoder, bidirectional)
    mlm: MLMConfig = field(default_factory=MLMConfig)  # the masking, when objective=mlm
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # the transformer; vocab_size comes from the tokenizer
    rnn: RNNConfig = field(default_factory=RNNConfig)  # the recurrent baseline, when arch=rnn
    train: TrainConfig = field(default_factory=TrainConfig)
    # start from a trained transformer of the same width and fewer layers, grown in depth (grow):
    # the larger model begins computing what the smaller one does and trains on from there
    grow_from: str = ""
    # "optimal": the model's shape and train.steps from a scaling study (`lmforge scaling`): the
    # compute-optimal size for what `minutes` of training buy at the study's measured speed
    size: str = ""
    scaling: str = ""  # the study's directory (its fit.json and runs.json), with size=optimal
    minutes: float = 0.0  # the training time to size the model for, with size=optimal

    def validate(self) -> None:
        if self.objective == "mlm":
            if self.arch != "transformer":
                raise ConfigError("masked-LM pretraining trains a transformer encoder (arch=transformer)", field="objective")
            self.mlm.validate()
            self.model.causal = False  # an encoder: every position sees the whole window
        elif not self.model.causal:
            raise ConfigError("a bidirectional model sees the token it is asked to predict; train it with objective=mlm", field="model.causal")
        if self.data.shards and (self.data.group_by or self.data.temperature != 1.0):
            raise ConfigError("sources are mixed when shards are made: prepare them with data.group_by and data.temperature (lmforge prepare)", field="data.temperature")
        if self.grow_from and self.arch != "transformer":
            raise ConfigError("only a transformer grows from a smaller one", field="grow_from")
        if self.size not in ("", "optimal"):
            raise ConfigError(f"'optimal' (from a scaling study) or empty, got {self.size!r}", field="size")
        if self.size == "optimal" and (not self.scaling or self.minutes <= 0):
            raise ConfigError("size=optimal needs scaling=DIR (a finished `lmforge scaling` study) and minutes > 0 (the training time to size for)", field="size")
        if self.arch == "transformer" and self.data.seq_len > self.model.max_seq_len:
            raise ConfigError(f"({self.data.seq_len}) must not exceed model.max_seq_len ({self.model.max_seq_len})", field="data.seq_len")


def lm_loss(model, batch) -> tuple[torch.Tensor, dict]:
    """Mean next-token cross-entropy over every position of (inputs, targets)."""
    x, y = batch
    logits = model(x)
    loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
    return loss, {"tokens": y.numel()}


def rnn_objective(loader: StreamLoader):
    """Next-token loss for a recurrent model with truncated backpropagation through time: row r
    of a batch continues row r of the one before (`StreamLoader`), so the state is carried
    across batches (in `loader.carry`, which checkpoints save) and detached in between, so that
    gradients flow through `seq_len` steps only (Williams & Peng 1990; Zaremba et al. 2014)."""

    def objective(model, batch):
        x, y = batch
        state = RNNState(max_len=x.size(1))
        if not loader.fresh and loader.carry is not None:  # a new pass starts from a zero state
            state.h = loader.carry
            state.map(lambda t: t.to(device=x.device, dtype=next(model.parameters()).dtype))
        logits = model(x, cache=state)
        state.detach()
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
        # a non-finite step (skipped under nan_policy=skip) must not poison the batches after it
        loader.carry = state.h if torch.isfinite(loss.detach()) else None
        return loss, {"tokens": y.numel()}

    return objective


@torch.no_grad()
def evaluate_lm(model, shards: TokenShards, seq_len: int, batch_size: int, token_bytes: torch.Tensor, max_batches: int = 0) -> dict:
    """Held-out loss, perplexity and bits per byte over the val split, read in order as one stream
    (`lmforge.eval.perplexity.score_stream`); with `max_batches`, its first
    max_batches * batch_size * seq_len tokens only."""
    stream = shards.read_all()
    if max_batches > 0:
        stream = stream[: max_batches * batch_size * seq_len + 1]
    return score_stream(model, torch.from_numpy(stream), token_bytes, window=seq_len, batch_size=batch_size)


def token_counts(shards: TokenShards, vocab_size: int) -> np.ndarray:
    """How often each id occurs in the split."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for array in shards.arrays:
        for i in range(0, len(array), 1 << 24):  # in pieces: bincount widens to int64
            counts += np.bincount(array[i : i + (1 << 24)], minlength=vocab_size)[:vocab_size]
    return counts


def untrained_tokens(shards: TokenShards, vocab_size: int) -> list[int]:
    """The ids that never occur in the training split: the model learns nothing about them except
    that they do not come next, so their output rows all end up pushed the same way (in the default
    world 703 of 1216 ids, their head rows within cos 0.998 of one direction). SFT reads this list
    to start the chat template's tokens, which plain text never contains, somewhere better."""
    return [int(i) for i in np.flatnonzero(token_counts(shards, vocab_size) == 0)]


def _shard_dir(path: Path) -> Path:
    return path / "shards" if (path / "shards" / "index.json").exists() else path


def prepare_data(data: PretrainDataConfig, out: Path) -> Path:
    """The shard folder to train on, preparing it under `out` if needed."""
    if data.shards:
        return _shard_dir(Path(data.shards))
    data_dir = out / "data"
    if (data_dir / "shards" / "index.json").exists():
        return data_dir / "shards"
    corpus = data.corpus
    if corpus == "world":
        from ..world.build import WorldConfig, build_world

        world_dir = out / "world"
        if not (world_dir / "manifest.json").exists():
            build_world(WorldConfig(seed=data.world_seed), world_dir, overwrite=True)
        corpus = str(world_dir / "pretrain.jsonl")
    prep = PrepareConfig(data=CorpusConfig(path=corpus, group_by=data.group_by, temperature=data.temperature), tokenizer=data.tokenizer,
                         tokenizer_path=data.tokenizer_path or None, shards=ShardConfig(val_fraction=data.val_fraction))  # fmt: skip
    run_prepare(prep, data_dir, overwrite=True)
    return data_dir / "shards"


def resolved_config(cfg: PretrainConfig, out: Path, tokenizer: Tokenizer) -> str:
    """The config as the run directory `out` saves it (vocabulary size from the tokenizer), after
    checking that a run already begun there was begun with the same one."""
    cfg.model.vocab_size = tokenizer.vocab_size
    cfg.rnn.vocab_size = tokenizer.vocab_size
    return run_config_text(cfg, out)


@torch.no_grad()
def grow(model: Transformer, source: str | Path) -> None:
    """Initialise `model` from a smaller trained transformer of the same width and flavour
    (function-preserving depth growth, in the spirit of Net2Net's deeper networks, Chen et al.
    2016, and progressive stacking, Gong et al. 2019): the embeddings, the final norm and the head
    are copied, the smaller model's blocks are placed at evenly spaced depths, and each new block's
    two output projections (attention's and the MLP's) start at zero, so with pre-norm residual
    blocks it adds nothing: the grown model computes exactly what the smaller one computes, and
    training goes on from there with more capacity (the new blocks' other weights are random, so
    their gradients are not zero)."""
    from ..models import load_model

    small, folder = load_model(source)
    if not isinstance(small, Transformer) or small.head_kind != "lm":
        raise InputError("grow_from takes a transformer language model", path=folder, field="grow_from")
    a, b = small.cfg, model.cfg
    same = ("flavour", "d_model", "n_head", "n_kv_head", "vocab_size", "ff_dim", "tied", "norm_eps")
    differ = [k for k in same if getattr(a, k, None) != getattr(b, k, None)]
    if differ or b.n_layer <= a.n_layer or b.max_seq_len < a.max_seq_len:
        raise ConfigError(f"grows a model of the same width ({', '.join(same)}) to more layers; they differ in {differ or ['n_layer']}", field="grow_from")
    at = [round(i * b.n_layer / a.n_layer) for i in range(a.n_layer)]  # where the trained blocks go
    state = small.state_dict()
    mine = model.state_dict()
    for k, v in state.items():
        if k.startswith("blocks."):
            i, rest = k.split(".", 2)[1:]
            mine[f"blocks.{at[int(i)]}.{rest}"].copy_(v)
        elif k in mine and mine[k].shape == v.shape:
            mine[k].copy_(v)
        elif k.startswith("pos_emb"):
            mine[k][: v.shape[0]].copy_(v)
    for j, block in enumerate(model.blocks):
        if j not in at:
            block.attn.out.weight.zero_()
            block.mlp.down.weight.zero_()
            for lin in (block.attn.out, block.mlp.down):
                if lin.bias is not None:
                    lin.bias.zero_()


def run_pretrain(cfg: PretrainConfig, out: str | Path) -> dict:
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shard_dir = prepare_data(cfg.data, out)
    tokenizer = Tokenizer.load(shard_dir)
    if cfg.size == "optimal":  # the shape and steps a scaling study gives this time (the vocabulary counts)
        from .sizing import size_from_study

        from ..data.shards import read_index

        cfg.model.vocab_size = tokenizer.vocab_size
        size_from_study(cfg, out, train_tokens=read_index(shard_dir)["splits"]["train"]["tokens"])
    if cfg.objective == "mlm":
        tokenizer = tokenizer.with_mask()  # the shards' ids stay; <|mask|> comes after them
    atomic_write_text(out / "config.yaml", resolved_config(cfg, out, tokenizer))

    import os

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    train_shards = TokenShards(shard_dir, "train")
    torch.manual_seed(cfg.train.seed)
    if cfg.arch == "rnn":
        batches = StreamLoader(train_shards, cfg.train.batch_size, cfg.data.seq_len, rank=rank, world_size=world)
        model, objective = RNNLM(cfg.rnn), rnn_objective(batches)
    else:
        batches = BatchLoader(train_shards, cfg.train.batch_size, cfg.data.seq_len, seed=cfg.train.seed, rank=rank, world_size=world)
        model, objective = Transformer(cfg.model), lm_loss
        if cfg.grow_from and not (out / "checkpoints").exists():  # a resumed run has its own weights
            grow(model, cfg.grow_from)
    if cfg.objective == "mlm":
        return _run_mlm(cfg, out, shard_dir, tokenizer, train_shards, batches, model)
    evaluate = None
    if "val" in train_shards.index["splits"]:
        val = TokenShards(shard_dir, "val")
        token_bytes = torch.tensor(tokenizer.token_bytes(), dtype=torch.float64)
        evaluate = lambda model: evaluate_lm(model, val, cfg.data.seq_len, cfg.train.batch_size, token_bytes, cfg.data.eval_batches)  # noqa: E731
    elif cfg.train.eval_every and rank == 0:
        warnings.warn(f"{shard_dir}: no validation split (data.val_fraction is 0): training without a held-out loss", stacklevel=2)
    model_config = {**model_config_json(model), "trained_seq_len": cfg.data.seq_len, "untrained_tokens": untrained_tokens(train_shards, tokenizer.vocab_size)}
    result = train(model, objective, batches, cfg.train, out, model_config=model_config, tokenizer=tokenizer, evaluate=evaluate, log_config={"config": dump_yaml(cfg)})
    groups = train_shards.index["splits"]["train"].get("groups")
    if groups and isinstance(result, dict):  # a corpus of several sources (languages): the tokens each gave
        seen = cfg.train.steps * cfg.train.batch_size * cfg.data.seq_len
        total = sum(g["tokens"] for g in groups.values())
        result["tokens_seen"] = {name: round(seen * g["tokens"] / total) for name, g in groups.items()}
        if rank == 0:
            atomic_write_text(out / "tokens_seen.json", json.dumps({"tokens": seen, "by_source": result["tokens_seen"]}, indent=1) + "\n")
    return result


def _run_mlm(cfg: PretrainConfig, out: Path, shard_dir: Path, tokenizer: Tokenizer, train_shards: TokenShards, loader: BatchLoader, model: Transformer) -> dict:
    """The loop on masked batches (`lmforge.train.mlm`), evaluated by masked-token accuracy."""
    special = special_mask(tokenizer.vocab_size, tokenizer.special_ids())
    batches = MaskedBatches(loader, cfg.mlm, tokenizer.mask_id, special, seed=cfg.train.seed)
    counts = token_counts(train_shards, tokenizer.vocab_size)
    counts[special.numpy()] = 0
    unigram_id = int(counts.argmax())  # the unigram guess: the most frequent ordinary token
    evaluate = None
    if "val" in train_shards.index["splits"]:
        stream = TokenShards(shard_dir, "val").read_all()
        evaluate = lambda model: evaluate_mlm(  # noqa: E731
            model, stream, cfg.data.seq_len, cfg.train.batch_size, cfg.mlm, tokenizer.mask_id, special, unigram_id, cfg.data.eval_batches
        )
    model_config = {**model_config_json(model), "trained_seq_len": cfg.data.seq_len, "objective": "mlm"}
    return train(model, mlm_loss, batches, cfg.train, out, model_config=model_config, tokenizer=tokenizer, evaluate=evaluate, log_config={"config": dump_yaml(cfg)})
