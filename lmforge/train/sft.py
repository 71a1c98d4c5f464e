"""Supervised fine-tuning: step 1 of InstructGPT (Ouyang et al. 2022, section 3.5).

The base model keeps its next-token objective, now on demonstrations: prompts with the answers
labelers wrote, rendered with the chat template. The loss is the mean cross-entropy over the
answer tokens (each assistant turn and the end-of-turn token that closes it); the prompt is
context only. `prompt_loss_weight` > 0 adds the prompt tokens' loss at that weight (1: every
token counts, the variant that trains on the whole sequence).

`lmforge sft [RECIPE] init=BASE [key=value ...] --out DIR` loads the base model and its
tokenizer, reads the demonstrations (`lmforge.data.sft`: TRL's `messages` or
`prompt`/`completion` records; "world" means the built-in world's sft.jsonl, the world the base
model was pretrained on when it can be found), trains on the one loop for `epochs` passes, and
evaluates the answer loss on held-out demonstrations. The result is a run directory like
pretraining's; its config.json names the chat template, so generation and evaluation know to
prompt the model as a chat model.

With `select.val_loss=true` the stage chooses its own length and learning rate the way
InstructGPT chose its SFT model's, by held-out data (section 3.5; they trained 16 epochs and
picked by validation score): for each learning rate in `select.lr` it trains `epochs` passes,
measures the held-out answer loss every `select.every` epochs, and keeps the weights of the
lowest; the best of those is the model. Never by the oracle: the choice sees only the held-out
demonstrations. DIR/selection.json holds every curve and the choice; DIR/trials/ the runs.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from ..data.sft import Example, SFTLoader, held_out_examples, make_batch, mixture_weights, read_examples
from ..errors import ConfigError, InputError
from ..io import atomic_write_text
from ..models import load_model, model_config_json
from ..models.lora import LoRAConfig, apply_lora
from ..tokenizer import Tokenizer
from .loop import OptimConfig, ScheduleConfig, TrainConfig, run_config_text, train

CHAT_TEMPLATE_NAME = "lmforge"  # what config.json's "chat_template" says: lmforge.data.chat's template


@dataclass
class SFTDataConfig:
    train: list[str] = field(default_factory=lambda: ["world"])  # data PATHs, mixed by temperature; "world": the world's sft.jsonl ("world:NAME": its NAME.jsonl)
    val: str = "auto"  # held-out demonstrations: a PATH; "world": the world's sft_val.jsonl; "auto": that when training on the world only, else val_fraction of the training records; "": none
    val_fraction: float = 0.05  # with val=auto and a user's data: the share of its records held out (by a hash of each, so no record is in both)
    temperature: float = 1.0  # mixture temperature T: dataset i drawn with p_i proportional to n_i^(1/T)
    group_by: str = ""  # mix by a record field instead of by file (language, meta.language): each value a dataset
    system: str = ""  # a system prompt for conversations that have none
    seq_len: int = 0  # tokens per row and at most per example (0: the length the base model was trained on)
    long: Literal["truncate", "skip", "error"] = "truncate"  # an example longer than seq_len
    pack: bool = True  # several examples a row (block-diagonal attention) instead of one a row, padded
    world_seed: int = 0  # the world to generate when "world" is asked for and the base model's cannot be found

    def validate(self) -> None:
        if not self.train:
            raise ConfigError("give at least one dataset", field="train")
        if self.temperature <= 0:
            raise ConfigError(f"must be positive, got {self.temperature}", field="temperature")
        if self.seq_len < 0 or self.seq_len == 1:
            raise ConfigError(f"must be 0 (the base model's) or at least 2, got {self.seq_len}", field="seq_len")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.val_fraction}", field="val_fraction")

    def own_data(self) -> bool:
        """Whether any training set is a user's file rather than the built-in world's."""
        return any(not (p == "world" or p.startswith("world:")) for p in self.train)


def _sft_train() -> TrainConfig:
    return TrainConfig(
        steps=1, batch_size=16, eval_every=0, log_every=5, save_every=50, keep_last=1,
        optim=OptimConfig(lr=1e-3, weight_decay=0.0), schedule=ScheduleConfig(kind="cosine", warmup_steps=10, min_lr_ratio=0.1),
    )  # fmt: skip


@dataclass
class SelectConfig:
    val_loss: bool = False  # keep the weights of the lowest held-out answer loss (early stopping), over epochs and `lr`
    lr: list[float] = field(default_factory=list)  # learning rates to try (empty: train.optim.lr alone)
    every: float = 1.0  # epochs between held-out evaluations

    def validate(self) -> None:
        if self.every <= 0:
            raise ConfigError(f"must be positive, got {self.every}", field="select.every")
        if any(lr <= 0 for lr in self.lr):
            raise ConfigError(f"learning rates must be positive, got {self.lr}", field="select.lr")


@dataclass
class SFTConfig:
    init: str = ""  # the base model: a model folder or run directory
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    prompt_loss_weight: float = 0.0  # 0: the loss on answers only; 1: on every token
    epochs: float = 4.0  # passes over the data; train.steps follows from it (0: use train.steps); with select: the most
    select: SelectConfig = field(default_factory=SelectConfig)  # choose epochs and learning rate by held-out loss
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # lora.r > 0: train low-rank adapters only, merged at the end
    train: TrainConfig = field(default_factory=_sft_train)

    def validate(self) -> None:
        if not self.init:
            raise ConfigError("SFT starts from a base model: give init=PATH (a model folder or a pretraining run directory)", field="init")
        if not 0.0 <= self.prompt_loss_weight <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {self.prompt_loss_weight}", field="prompt_loss_weight")
        if self.epochs < 0:
            raise ConfigError(f"must be >= 0, got {self.epochs}", field="epochs")
        self.lora.validate()
        self.select.validate()
        if self.select.val_loss and (self.epochs <= 0 or not self.data.val):
            raise ConfigError("choosing by held-out loss needs epochs > 0 (the most to train) and data.val (held-out demonstrations)", field="select.val_loss")


# --------------------------------------------------------------------------- the objective


def sft_loss(prompt_loss_weight: float = 0.0):
    """Mean cross-entropy over the answer tokens of a batch (plus the prompt tokens', weighted)."""

    def objective(model, batch: dict):
        logits = model(batch["input_ids"], positions=batch["positions"], segments=batch.get("segments"))
        targets = batch["targets"]
        ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)
        answer, real = batch["loss_mask"], batch["real"]
        weight = answer.float()
        if prompt_loss_weight:
            weight = weight + prompt_loss_weight * (real & ~answer).float()
        loss = (ce * weight).sum() / weight.sum().clamp(min=1.0)
        return loss, {"tokens": int(real.sum()), "answer_tokens": int(answer.sum())}

    return objective


@torch.no_grad()
def evaluate_sft(model, examples: list[Example], batch_size: int = 16) -> dict:
    """Answer-token loss and perplexity on held-out demonstrations (one example a row)."""
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        b = {k: v.to(device) for k, v in make_batch([[e] for e in examples[i : i + batch_size]], None).items()}
        logits = model(b["input_ids"], positions=b["positions"]).float()
        ce = F.cross_entropy(logits.flatten(0, 1), b["targets"].flatten(), reduction="none").view_as(b["targets"])
        nll += float(ce[b["loss_mask"]].sum())
        count += int(b["loss_mask"].sum())
    loss = nll / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "answer_tokens": count}


# --------------------------------------------------------------------------- the stage


def _world_dir(cfg: SFTConfig, out: Path) -> Path:
    """The world the base model was pretrained on, or else a world generated into DIR/world."""
    from ..world.build import WorldConfig, build_world, find_world

    try:
        return find_world(cfg.init)
    except InputError:
        pass

    world = out / "world"
    if not (world / "manifest.json").exists():
        build_world(WorldConfig(seed=cfg.data.world_seed), world, overwrite=True)
    return world


@torch.no_grad()
def start_end_of_turn(model, tokenizer) -> bool:
    """Start <|end|>'s output row as a copy of <|endoftext|>'s when pretraining saw the one and
    never the other; True if it did.

    Plain text never contains <|end|>, so pretraining only ever pushed its row down, the same way
    as every other token it never saw (in the default world 703 of 1216 ids, their rows within cos
    0.998 of one direction). Fine-tuning then raises <|end|> after an answer fastest by turning the
    hidden state that way, which raises all of those tokens at once: after one epoch the SFT model
    gave <|end|> 0.04 after a finished answer and spread the rest almost evenly over the unseen
    tokens (entropy 6.5 nats where the base model had 0.8, in plain text too), and its sampled
    answers ran on into stray tokens and whatever sentence followed them. A new token is better
    started from a trained row (Hewitt 2021, "Initializing new word embeddings for pretrained
    language models"); the one whose job it shares is the end of a document. Started there, one
    epoch gives <|end|> 0.97 after an answer, and held-out answer loss 0.30 instead of 0.56."""
    untrained = set(getattr(model, "untrained_tokens", None) or ())
    end, eos = tokenizer.special_id("end_of_turn"), tokenizer.special_id("eos")
    if model.chat_template is not None or end is None or eos is None or end not in untrained or eos in untrained:
        return False
    head = model.lm_head.weight  # with tied embeddings also <|end|>'s input row: a boundary either way
    head[end] = head[eos]
    return True


def add_chat_tokens(model, tokenizer):
    """(model, tokenizer) able to hold a conversation: an imported base model whose tokenizer has
    neither a chat template nor lmforge's role and end-of-turn tokens gets them (new ids, rows at
    the mean, <|end|>'s copied from <|endoftext|>'s as `start_end_of_turn` argues), as TRL's
    setup_chat_format gives a base model ChatML's. A third value names the tokens added."""
    grown = tokenizer.with_chat_tokens()
    if grown is tokenizer:
        return model, tokenizer, []
    new = [grown.special_id(n) for n in grown.CHAT_TOKENS if tokenizer.specials.get(n) is None]
    eos = tokenizer.specials.get("eos")
    model.add_tokens(new, {grown.special_id("end_of_turn"): eos} if eos is not None else None)
    return model, grown, [grown.hf.id_to_token(i) for i in new]


def _train_sft(cfg: SFTConfig, out: Path, *, keep_best_every: float = 0.0) -> dict:
    """One SFT run into `out`; with `keep_best_every` > 0, the held-out loss every that many epochs
    and the weights of the lowest kept in out/best."""
    model, folder = load_model(cfg.init)
    if getattr(model, "head_kind", "lm") != "lm" or not hasattr(model, "blocks"):
        raise InputError("SFT fine-tunes a transformer language model; this is not one", path=folder, field="init")
    tokenizer = Tokenizer.load(folder)
    model, tokenizer, added = add_chat_tokens(model, tokenizer)
    if added and cfg.lora.r:
        raise ConfigError(f"the tokenizer of {folder} has no chat template and no chat tokens; the ones SFT adds must be learnt, which low-rank adapters cannot (they freeze the embeddings): fine-tune fully (lora.r=0) or start from a chat model", field="lora.r")
    if added:
        warnings.warn(f"{folder}: the tokenizer has no chat template and no chat tokens: added {', '.join(added)} (new ids), learned in this SFT", stacklevel=2)
    d = cfg.data
    seq_len = d.seq_len or model.trained_seq_len or model.cfg.max_seq_len
    if seq_len > model.cfg.max_seq_len:
        raise ConfigError(f"({seq_len}) must not exceed the base model's context ({model.cfg.max_seq_len})", field="data.seq_len")

    world = None
    paths = []
    for p in d.train:
        if p == "world" or p.startswith("world:"):  # world:sft_en is the world's sft_en.jsonl
            world = world or _world_dir(cfg, out)
            p = str(world / ((p.partition(":")[2] or "sft") + ".jsonl"))
        paths.append(p)
    datasets, stats = [], {}
    for p in paths:
        examples, s = read_examples(p, tokenizer, max_len=seq_len + 1, long=d.long, system=d.system, group_by=d.group_by)
        datasets.append(examples)
        stats[p] = s
    if d.group_by:  # one dataset per group across the files, mixed by temperature (mT5's, over languages)
        groups: dict[str, list] = {}
        for ex in (ex for examples in datasets for ex in examples):
            groups.setdefault(ex.group, []).append(ex)
        datasets = list(groups.values())
        p_mix = mixture_weights([len(x) for x in datasets], d.temperature)
        total = sum(len(x) for x in datasets)
        stats["groups"] = {"group_by": d.group_by, "temperature": d.temperature, "groups": {g: {"examples": len(x), "share": len(x) / total, "sampled_share": float(q)} for (g, x), q in zip(groups.items(), p_mix)}}
    val = None
    if d.val == "auto" and d.own_data():  # no world unless asked: hold out a share of the user's own records
        datasets, val = held_out_examples(datasets, d.val_fraction)
        stats["held_out"] = {"val_fraction": d.val_fraction, "examples": len(val)}
        val = val or None
    elif d.val:
        vpath = str((world or _world_dir(cfg, out)) / "sft_val.jsonl") if d.val in ("world", "auto") else d.val
        val, stats[vpath] = read_examples(vpath, tokenizer, max_len=seq_len + 1, long="truncate", system=d.system)
    if val is None and (cfg.select.val_loss or keep_best_every > 0):  # (select_sft's trials run with select reset)
        raise ConfigError("choosing by held-out loss needs held-out demonstrations, and none were held out (raise data.val_fraction or give data.val=PATH)", field="data.val")
    if val is None:
        warnings.warn("SFT trains with no held-out demonstrations (data.val is empty, or too few records for data.val_fraction): no validation loss", stacklevel=2)

    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    batches = SFTLoader(datasets, cfg.train.batch_size, seq_len, pack=d.pack, temperature=d.temperature, seed=cfg.train.seed, rank=rank, world_size=world_size, pad_id=tokenizer.pad_id, shrink=True)
    cfg.train.batch_size = batches.batch_size  # smaller when the data has fewer rows than one batch (warned)
    if cfg.epochs > 0:
        cfg.train.steps = max(1, math.ceil(cfg.epochs * batches.batches_per_epoch))
    cfg.data.seq_len = seq_len
    out.mkdir(parents=True, exist_ok=True)
    text = run_config_text(cfg, out)
    atomic_write_text(out / "config.yaml", text)
    atomic_write_text(out / "data_stats.json", json.dumps(stats, indent=2))
    extra = {}
    template = "tokenizer" if tokenizer.chat_template else CHAT_TEMPLATE_NAME  # an imported model keeps its own
    if template == CHAT_TEMPLATE_NAME and start_end_of_turn(model, tokenizer):
        extra["end_of_turn_from"] = "eos"
    if cfg.lora.r:
        extra["trainable_parameters"] = apply_lora(model, cfg.lora)

    evaluate = (lambda m: evaluate_sft(m, val, cfg.train.batch_size)) if val else None  # noqa: E731
    model_config = {**model_config_json(model), "trained_seq_len": seq_len, "chat_template": template}
    if keep_best_every > 0 and evaluate is not None:
        cfg.train.eval_every = cfg.train.save_every = max(1, round(keep_best_every * batches.batches_per_epoch))
        evaluate = keeping_best(evaluate, out / "best", model_config, tokenizer, lambda: batches.served / batches.batches_per_epoch)
    last = train(
        model, sft_loss(cfg.prompt_loss_weight), batches, cfg.train, out,
        model_config=model_config, tokenizer=tokenizer, evaluate=evaluate,
        log_config={"config": text},
    )  # fmt: skip
    return {**last, "steps": cfg.train.steps, **extra, "data": stats}


def run_sft(cfg: SFTConfig, out: str | Path) -> dict:
    cfg.validate()
    out = Path(out)
    if cfg.select.val_loss:
        return select_sft(cfg, out)
    return _train_sft(cfg, out)


# --------------------------------------------------------------------------- choosing by held-out loss


def keeping_best(evaluate, folder: Path, model_config: dict, tokenizer, epoch) -> Callable:
    """`evaluate`, and after it the model's weights saved into `folder` whenever its held-out loss
    is the lowest yet (folder/best.json: that loss and the epoch, `epoch()`). What is saved is read
    back on resume, so a resumed run keeps the same best as an uninterrupted one."""
    from ..checkpoint import save_model
    from ..io import atomic_write_json
    from ..models.lora import merged_state

    def wrapped(model) -> dict:
        metrics = evaluate(model)
        if int(os.environ.get("RANK", "0")) != 0:
            return metrics
        record = folder / "best.json"
        best = json.loads(record.read_text(encoding="utf-8")) if record.exists() else None
        if best is None or metrics["loss"] < best["loss"]:
            inner = getattr(model, "module", model)
            inner = getattr(inner, "_orig_mod", inner)
            save_model(folder, merged_state({k: v.detach().cpu() for k, v in inner.state_dict().items()}), model_config, tokenizer)
            atomic_write_json(record, {"loss": metrics["loss"], "epoch": round(epoch(), 4)})
        return metrics

    return wrapped


def choose(trials: list[dict]) -> dict:
    """The trial of lowest held-out loss (the first of equals: the smaller learning rate as listed)."""
    return min(trials, key=lambda t: t["loss"])


def select_sft(cfg: SFTConfig, out: Path) -> dict:
    """Train one run per learning rate, each up to `epochs`, keep each one's weights of lowest
    held-out loss, and make the best of them the model in `out`."""
    import copy
    import shutil

    from ..tracking import read_metrics

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", run_config_text(cfg, out))
    trials = []
    for lr in cfg.select.lr or [cfg.train.optim.lr]:
        c = copy.deepcopy(cfg)
        c.select, c.train.optim.lr = SelectConfig(), lr
        folder = out / "trials" / f"lr{lr:g}"
        stats = _train_sft(c, folder, keep_best_every=cfg.select.every)["data"]
        best = json.loads((folder / "best" / "best.json").read_text(encoding="utf-8"))
        per_epoch = c.train.steps / cfg.epochs  # steps = ceil(epochs x batches an epoch)
        curve = [{"epoch": round(r["step"] / per_epoch, 3), "loss": r["eval/loss"]} for r in read_metrics(folder) if "eval/loss" in r]
        trials.append({"lr": lr, "epoch": best["epoch"], "loss": best["loss"], "steps": c.train.steps, "curve": curve, "folder": str(folder.relative_to(out))})
    best = choose(trials)
    src = out / best["folder"] / "best"
    files = sorted(p for p in src.iterdir() if p.is_file() and p.name not in ("best.json", "config.json"))
    for f in files + [src / "config.json"]:  # config.json last: its presence marks a complete model
        shutil.copyfile(f, out / f.name)
    at_end = bool(best["curve"]) and best["epoch"] >= best["curve"][-1]["epoch"] - 1e-3  # still falling: more epochs might help
    selection = {"by": "held-out answer loss", "chosen": {k: best[k] for k in ("lr", "epoch", "loss")}, "max_epochs": cfg.epochs, "stopped_at_the_end": at_end, "trials": trials}
    atomic_write_text(out / "selection.json", json.dumps(selection, indent=2))
    return {"eval/loss": best["loss"], "lr": best["lr"], "epoch": best["epoch"], "data": stats, "selection": selection}
