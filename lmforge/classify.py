"""Text classification with a pretrained transformer, two of the lectures' three ways (the third,
in-context prompting, is `lmforge eval fewshot`):

- **fine-tuned head** (`lmforge classify train`): the pretrained body and a linear layer on its
  pooled states, every weight trained with cross-entropy on the one loop, as BERT is fine-tuned
  for classification (Devlin et al. 2019, section 4.1: the [CLS] state; here mean pooling for an
  encoder) and as GPT was (Radford et al. 2018, section 3.3: the last token's state, which has
  read the whole text);
- **probe** (`lmforge classify probe`): the body frozen, its document embeddings (`lmforge embed`)
  fed to a logistic regression (scikit-learn).

Both are scored on held-out labelled texts by accuracy and macro-F1 (the mean of the classes' F1,
so a rare class counts as much as a frequent one), each with a 95% bootstrap interval over the
examples, and report how long they took. Data: JSONL, Parquet or any data PATH with a text field
and a label field (`text`/`label` by default; TRL's and the datasets' usual names), or the built-in
world's two sets, `world:sentiment` (its reviews: rating 4-5 positive, 1-2 negative, the rating
line removed, 3 left out) and `world:genre` (its documents' 8 genres), each split 80/20 into
train and test by a hash of the text, from the world next to the model (as `eval fewshot` finds it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .data.readers import read_texts
from .embed import EmbedConfig, embed_documents, load_transformer, pad_batch, pool
from .errors import ConfigError, InputError
from .io import atomic_write_text
from .train.loop import OptimConfig, ScheduleConfig, TrainConfig, run_config_text, train


@dataclass
class ClassifyDataConfig:
    train: str = "world:sentiment"  # labelled texts to train on: a data PATH, or world:sentiment | world:genre (their train split)
    val: str = ""  # labelled texts to report accuracy on while training (optional; a world set: its test split)
    text_field: str = "text"
    label_field: str = "label"
    max_len: int = 0  # tokens of a text read (0: the length the body was trained on); the rest is cut


@dataclass
class ClassifyConfig:
    init: str = ""  # the pretrained body: an encoder, a GPT or an imported BERT (a model folder)
    data: ClassifyDataConfig = field(default_factory=ClassifyDataConfig)
    pooling: Literal["auto", "mean", "cls", "last"] = "auto"  # auto: mean for an encoder, last for a GPT
    epochs: float = 3.0  # passes over the training texts; train.steps follows from it
    # fine-tuning: a small learning rate, no weight decay, a short warm-up (BERT's recipe, section 4, scaled to small models)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=16, eval_every=0, log_every=10, save_every=0, optim=OptimConfig(lr=1e-4, weight_decay=0.0), schedule=ScheduleConfig(warmup_steps=10)))

    def validate(self) -> None:
        if not self.init:
            raise ConfigError("give the pretrained model to fine-tune (init=DIR)", field="init")
        if not self.data.train:
            raise ConfigError("give labelled training texts (data.train=PATH or a world set)", field="data.train")
        if self.epochs <= 0:
            raise ConfigError(f"must be above 0, got {self.epochs}", field="epochs")


WORLD_SETS = ("world:sentiment", "world:genre")


def world_labelled(name: str, world_dir: str | Path, split: str) -> tuple[list[str], list[str]]:
    """(texts, labels) of a world set's train or test split (see the module's docstring)."""
    import hashlib
    import json
    import re

    texts, labels = [], []
    with open(Path(world_dir) / "pretrain.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            text, label = doc["text"], doc["genre"]
            if name == "world:sentiment":
                m = re.search(r"\nRating: (\d) out of 5", text) if label == "review" else None
                if m is None or m.group(1) == "3":
                    continue
                text, label = text[: m.start()], "positive" if int(m.group(1)) >= 4 else "negative"
            test = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 5 == 0
            if test == (split == "test"):
                texts.append(text)
                labels.append(label)
    return texts, labels


def read_labelled(path: str, text_field: str, label_field: str, *, model: str | None = None, split: str = "train") -> tuple[list[str], list[str]]:
    """(texts, labels as strings) of every record under `path`, or of a world set (`model`: where
    to find the world)."""
    if path in WORLD_SETS:
        from .world.build import find_world

        return world_labelled(path, find_world(model), split)
    if path.startswith("world:"):
        raise InputError(f"unknown world set {path!r} (there are {', '.join(WORLD_SETS)})", field="data")
    texts, labels = read_texts(path, text_field, label_field)
    return texts, labels or []


def encode_texts(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    return [(tokenizer.document_ids(t) or [tokenizer.pad_id])[:max_len] for t in texts]


class ClassBatches:
    """Seeded, resumable batches of (ids, pad_mask, class ids): a new shuffle each epoch."""

    def __init__(self, rows: list[list[int]], ys: list[int], batch_size: int, pad_id: int, seed: int):
        self.rows, self.ys, self.batch_size, self.pad_id, self.seed = rows, ys, batch_size, pad_id, seed
        self.batches_per_epoch = max(1, len(rows) // batch_size)
        self.epoch, self.batch = 0, 0

    def __iter__(self) -> ClassBatches:
        return self

    def __next__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.rows))
        pick = order[self.batch * self.batch_size : (self.batch + 1) * self.batch_size]
        self.batch += 1
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        ids, mask = pad_batch([self.rows[i] for i in pick], self.pad_id)
        return ids, mask, torch.tensor([self.ys[i] for i in pick])

    @property
    def progress(self) -> float:
        return self.epoch + self.batch / self.batches_per_epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        if (state.get("seed"), state.get("batch_size")) != (self.seed, self.batch_size):
            raise InputError("saved data position was made with another seed or batch size; resume with the same settings", field="train.seed")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


def class_logits(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, n_classes): the classes head's logits, pooled over each text's tokens."""
    return pool(model(ids, pad_mask=mask), mask, model.pooling)


def classify_loss(model, batch) -> tuple[torch.Tensor, dict]:
    ids, mask, y = batch
    return F.cross_entropy(class_logits(model, ids, mask).float(), y), {"tokens": int(mask.sum())}


@torch.no_grad()
def predict(model, rows: list[list[int]], pad_id: int, batch_size: int = 32) -> np.ndarray:
    """The predicted class index of every tokenized text."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    for lo in range(0, len(order), batch_size):
        ids, mask = pad_batch([rows[i] for i in order[lo : lo + batch_size]], pad_id)
        out.append(class_logits(model, ids.to(device), mask.to(device)).argmax(-1).cpu())
    pred = np.empty(len(rows), dtype=np.int64)
    pred[order] = torch.cat(out).numpy()
    return pred


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, bootstrap: int = 1000, seed: int = 0) -> dict:
    """Accuracy and macro-F1, each with a 95% bootstrap interval over the examples."""
    from sklearn.metrics import f1_score

    labels = list(range(n_classes))

    def both(t, p):
        return float((t == p).mean()), float(f1_score(t, p, labels=labels, average="macro", zero_division=0))

    acc, f1 = both(y_true, y_pred)
    rng = np.random.default_rng(seed)
    draws = np.array([both(y_true[i], y_pred[i]) for i in (rng.integers(0, len(y_true), len(y_true)) for _ in range(bootstrap))])
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    return {"examples": len(y_true), "accuracy": acc, "accuracy_interval": [float(lo[0]), float(hi[0])], "macro_f1": f1, "macro_f1_interval": [float(lo[1]), float(hi[1])]}


def _class_ids(labels: list[str], names: list[str], path: str, field_name: str) -> list[int]:
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise InputError(f"labels the classifier does not know: {unknown[:5]} (it knows {names})", path=path, field=field_name)
    return [index[x] for x in labels]


def run_classify_train(cfg: ClassifyConfig, out: str | Path) -> dict:
    """Fine-tune `cfg.init` with a classes head on `cfg.data.train`; write the classifier to `out`."""
    from .models import model_config_json
    from .models.transformer import Transformer

    cfg.validate()
    out = Path(out)
    body, _, tokenizer = load_transformer(cfg.init, field="init")
    texts, labels = read_labelled(cfg.data.train, cfg.data.text_field, cfg.data.label_field, model=cfg.init)
    names = sorted(set(labels))
    if len(names) < 2:
        raise InputError(f"needs at least 2 classes, found {names}", path=cfg.data.train, field=cfg.data.label_field)
    pooling = cfg.pooling if cfg.pooling != "auto" else ("mean" if not body.cfg.causal else "last")
    EmbedConfig(pooling=pooling).validate(body.cfg.n_layer, body.cfg.causal)  # cls on a causal model is refused there
    model = Transformer(body.cfg, head="classes", n_classes=len(names))
    state = {k: v for k, v in body.state_dict().items() if not k.startswith("lm_head.")}
    model.load_state_dict(state, strict=False)  # the body; the classes head starts from the usual init
    model.labels, model.pooling = names, pooling
    max_len = min(cfg.data.max_len or body.trained_seq_len or body.cfg.max_seq_len, body.cfg.max_seq_len)
    rows = encode_texts(tokenizer, texts, max_len)
    batches = ClassBatches(rows, [names.index(x) for x in labels], cfg.train.batch_size, tokenizer.pad_id, cfg.train.seed)
    cfg.train.steps = max(1, round(cfg.epochs * batches.batches_per_epoch))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", run_config_text(cfg, out))
    evaluate = None
    if cfg.data.val:
        vt, vl = read_labelled(cfg.data.val, cfg.data.text_field, cfg.data.label_field, model=cfg.init, split="test")
        vrows, vy = encode_texts(tokenizer, vt, max_len), np.array(_class_ids(vl, names, cfg.data.val, cfg.data.label_field))

        def evaluate(net):
            return {"accuracy": float((predict(net, vrows, tokenizer.pad_id) == vy).mean())}

    t0 = time.perf_counter()
    last = train(model, classify_loss, batches, cfg.train, out, model_config={**model_config_json(model), "trained_seq_len": max_len}, tokenizer=tokenizer, evaluate=evaluate)
    return {**last, "classes": len(names), "examples": len(texts), "steps": cfg.train.steps, "seconds": round(time.perf_counter() - t0, 1)}


def run_classify_eval(model_dir: str, data: str, text_field: str = "text", label_field: str = "label") -> dict:
    """A fine-tuned classifier's accuracy and macro-F1 on labelled texts."""
    from .models import load_model
    from .tokenizer import Tokenizer

    model, folder = load_model(model_dir)
    if getattr(model, "head_kind", "") != "classes":
        raise InputError("not a classifier (train one with lmforge classify train)", path=folder, field="model")
    tokenizer = Tokenizer.load(folder)
    texts, labels = read_labelled(data, text_field, label_field, model=model_dir, split="test")
    y = np.array(_class_ids(labels, model.labels, data, label_field))
    t0 = time.perf_counter()
    pred = predict(model, encode_texts(tokenizer, texts, model.trained_seq_len or model.cfg.max_seq_len), tokenizer.pad_id)
    return {"way": "fine-tuned head", **scores(y, pred, len(model.labels)), "seconds": round(time.perf_counter() - t0, 2)}


def run_probe(model_dir: str, train_data: str, test_data: str, text_field: str = "text", label_field: str = "label", pooling: str = "mean", seed: int = 0) -> dict:
    """A logistic regression on the frozen model's document embeddings, scored on `test_data`."""
    from sklearn.linear_model import LogisticRegression

    model, _, tokenizer = load_transformer(model_dir)
    model.eval()
    cfg = EmbedConfig(pooling=pooling)  # type: ignore[arg-type]
    cfg.validate(model.cfg.n_layer, model.cfg.causal)
    texts, labels = read_labelled(train_data, text_field, label_field, model=model_dir)
    names = sorted(set(labels))
    if len(names) < 2:
        raise InputError(f"needs at least 2 classes, found {names}", path=train_data, field=label_field)
    test_texts, test_labels = read_labelled(test_data, text_field, label_field, model=model_dir, split="test")
    y_test = np.array(_class_ids(test_labels, names, test_data, label_field))
    t0 = time.perf_counter()
    x, _ = embed_documents(model, tokenizer, texts, cfg)
    x_test, _ = embed_documents(model, tokenizer, test_texts, cfg)
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(x, [names.index(v) for v in labels])
    pred = clf.predict(x_test)
    return {"way": "probe (logistic regression on frozen embeddings)", **scores(y_test, pred, len(names)), "seconds": round(time.perf_counter() - t0, 2)}
