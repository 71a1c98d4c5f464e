"""`lmforge compare`: n-gram, recurrent and transformer language models side by side on one corpus.

The lectures build up from counts (n-grams with Kneser-Ney smoothing) to recurrences (RNN,
LSTM, GRU) to attention (the GPT); this stage trains (or loads) one or more of each on the same
corpus and scores them on the same held-out documents:

  - bits per byte: the summed negative log-likelihood in bits over the UTF-8 bytes of the
    held-out text, comparable across tokenizers and model families;
  - perplexity per token, comparable between models that share the tokenizer (by default all of
    them: the n-grams count the same BPE tokens the neural models predict, with </s> in the
    place of the end-of-text token, so the token counts agree exactly);
  - size (parameters; for an n-gram, the number of stored n-grams) and training time.

Each family is scored the way its literature scores it: an n-gram from the start of each
document, an RNN with its state carried through the whole held-out stream, a GPT through
windows of the length it was trained on, sliding by half a window, so that every token past
the first few has at least half a window of context (a GPT scored in non-overlapping windows
loses the start of every document a window boundary cuts: on the world that costs ~7% bits
per byte).

The neural models are trained by `lmforge.train.pretrain.run_pretrain` (the one loop) in
DIR/rnn and DIR/gpt, the n-grams by `lmforge.models.ngram.estimate`; a model given by `load`
is scored instead of trained. Re-running on the same DIR reuses finished runs. Results go to
DIR/comparison.json and a bar plot DIR/comparison.png.

Byte-level BPE tokens need `discount_fallback` for Kneser-Ney: a subword vocabulary gives
unigram count-of-counts for which Chen & Goodman's discount estimates fall outside their
range (lmplz refuses the same data without --discount_fallback).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import dump_yaml, to_dict
from .data.shards import TokenShards
from .errors import ConfigError, InputError
from .io import atomic_write_text, json_text
from .models.rnn import RNNConfig
from .models.transformer import ModelConfig
from .tokenizer import Tokenizer, TokenizerConfig
from .train.loop import OptimConfig, ScheduleConfig, TrainConfig
from .train.pretrain import PretrainConfig, PretrainDataConfig, prepare_data, resolved_config, run_pretrain


# The defaults are the CPU setting of recipes/compare.yaml: each neural model gets recipes/small.yaml's
# budget (1500 steps of 16 x 128 tokens), the LSTM about as many parameters as the GPT.


def _cpu_train(lr: float) -> TrainConfig:
    return TrainConfig(
        steps=1500, batch_size=16, eval_every=250, log_every=25, save_every=250,
        optim=OptimConfig(lr=lr, weight_decay=0.1), schedule=ScheduleConfig(kind="cosine", warmup_steps=100, min_lr_ratio=0.1),
    )  # fmt: skip


@dataclass
class NGramSection:
    orders: list[int] = field(default_factory=lambda: [2, 3, 4, 6, 8, 12])  # one interpolated modified Kneser-Ney model per order
    discount_fallback: bool = True  # D = 0.5, 1, 1.5 where an order's count-of-counts give no valid discounts
    load: list[str] = field(default_factory=list)  # models (ARPA or .npz) over this corpus's token ids, scored instead of trained

    def validate(self) -> None:
        if any(n < 1 for n in self.orders):
            raise ConfigError(f"orders must be >= 1, got {self.orders}", field="orders")


@dataclass
class RNNSection:
    enabled: bool = True
    load: str = ""  # a model folder or run directory to score instead of training one
    model: RNNConfig = field(default_factory=lambda: RNNConfig(cell="lstm", d_embed=192, d_hidden=384, n_layer=2))  # vocab_size: the tokenizer's
    train: TrainConfig = field(default_factory=lambda: _cpu_train(5e-3))  # LSTMs take a higher rate than the GPT (measured: 5e-3 beat 2e-3 and 1e-2)


@dataclass
class GPTSection:
    enabled: bool = True
    load: str = ""
    model: ModelConfig = field(default_factory=lambda: ModelConfig(flavour="llama", n_layer=4, n_head=4, n_kv_head=2, d_model=192, max_seq_len=256))
    train: TrainConfig = field(default_factory=lambda: _cpu_train(2e-3))


@dataclass
class CompareConfig:
    data: PretrainDataConfig = field(default_factory=lambda: PretrainDataConfig(tokenizer=TokenizerConfig(kind="bpe", vocab_size=2048)))
    ngram: NGramSection = field(default_factory=NGramSection)
    rnn: RNNSection = field(default_factory=RNNSection)
    gpt: GPTSection = field(default_factory=GPTSection)
    also: list[str] = field(default_factory=list)  # more trained models scored beside, each FAMILY=DIR (lmforge run: gpt_large=DIR)

    def validate(self) -> None:
        for spec in self.also:
            family, sep, path = spec.partition("=")
            if not sep or not family or not path:
                raise ConfigError(f"expected FAMILY=DIR, got {spec!r}", field="also")
        # checked before any work: a mistake found after an hour of training helps nobody
        if not (self.ngram.orders or self.ngram.load or self.rnn.enabled or self.rnn.load or self.gpt.enabled or self.gpt.load):
            raise ConfigError("nothing to compare: give n-gram orders, or enable the rnn or gpt section", field="ngram.orders")
        if self.gpt.enabled and not self.gpt.load and self.data.seq_len > self.gpt.model.max_seq_len:
            raise ConfigError(f"({self.data.seq_len}) must not exceed gpt.model.max_seq_len ({self.gpt.model.max_seq_len})", field="data.seq_len")


# --------------------------------------------------------------------------- held-out data


def split_documents(tokens: np.ndarray, eos_id: int) -> list[np.ndarray]:
    """A shard split (documents each followed by eos) as one array per document, eos dropped; a
    last piece with no eos after it (a train split cut by position, `data/shards.py`) is one too."""
    ends = np.flatnonzero(tokens == eos_id)
    starts = np.concatenate([[0], ends[:-1] + 1])
    docs = [tokens[s:e] for s, e in zip(starts, ends)]
    tail = tokens[ends[-1] + 1 :] if len(ends) else tokens
    return docs + [tail] if len(tail) else docs


# --------------------------------------------------------------------------- scoring


def _row(name: str, family: str, *, bits: float, tokens: int, n_bytes: int, params: int, seconds: float | None, same_tokenizer: bool, **extra) -> dict:
    return {
        "name": name,
        "family": family,
        "bpb": bits / n_bytes,
        "perplexity": 2 ** (bits / tokens),
        "tokens": tokens,
        "same_tokenizer": same_tokenizer,
        "params": params,
        "train_seconds": seconds,
        **extra,
    }


def _ngram_rows(cfg: NGramSection, shard_dir: Path, eos_id: int, val_docs: list[np.ndarray], n_bytes: int, log) -> list[dict]:
    from .models.ngram import FALLBACK, estimate, load

    if not (cfg.load or cfg.orders):
        return []
    val = [[str(t) for t in d] for d in val_docs]
    rows = []
    if cfg.load:
        for path in cfg.load:
            t0 = time.perf_counter()
            lm = load(path)
            r = lm.evaluate(val)
            if r["oov"] > r["tokens"] / 2:
                raise InputError(
                    f"{r['oov']} of {r['tokens']} held-out tokens are unknown to this model: its words are not this corpus's token ids "
                    "(train it with `lmforge ngram train --tokenize tokenizer` and this corpus's tokenizer)",
                    path=path,
                    field="ngram.load",
                )
            log(f"ngram {path}: read and scored in {time.perf_counter() - t0:.1f}s")
            rows.append(_ngram_row(Path(path).stem, lm, r, n_bytes, None))
        return rows
    train = [[str(t) for t in d] for d in split_documents(TokenShards(shard_dir, "train").read_all(), eos_id)]
    for order in cfg.orders:
        t0 = time.perf_counter()
        lm = estimate(train, order, discount_fallback=FALLBACK if cfg.discount_fallback else None)
        seconds = time.perf_counter() - t0
        r = lm.evaluate(val)
        log(f"ngram order {order}: estimated in {seconds:.1f}s, perplexity {r['perplexity']:.3f}")
        rows.append(_ngram_row(f"ngram-{order}", lm, r, n_bytes, seconds, order=order))
    return rows


def _ngram_row(name, lm, r, n_bytes, seconds, **extra) -> dict:
    bits = -r["log10_prob"] * math.log2(10)
    return _row(name, "ngram", bits=bits, tokens=r["tokens"], n_bytes=n_bytes, params=lm.num_entries, seconds=seconds, same_tokenizer=True, oov=r["oov"], **extra)


def _neural_row(name: str, family: str, model_dir: Path, tokenizer: Tokenizer, val_docs: list[np.ndarray], n_bytes: int, seconds: float | None) -> dict:
    from .eval.perplexity import default_window, is_recurrent, score_stream
    from .models import load_model

    model, folder = load_model(model_dir, device="cuda" if torch.cuda.is_available() else "cpu")
    model.eval()
    if family in ("rnn", "gpt") and is_recurrent(model) != (family == "rnn"):
        kind = "a recurrent model" if is_recurrent(model) else "a transformer"
        raise InputError(f"{model_dir} holds {kind}, not what the {family} section scores", field=f"{family}.load")
    own = Tokenizer.load(folder)
    same = own.sha256 == tokenizer.sha256
    if same:
        stream = np.concatenate([[tokenizer.eos_id]] + [np.append(d, tokenizer.eos_id) for d in val_docs])
    else:  # another tokenizer: score the same text, re-encoded (bits per byte still compare)
        if tokenizer.kind != "bpe":
            raise InputError(
                f"{model_dir} has another tokenizer: scoring it needs the held-out text back from the shards, "
                f"which only a byte-level BPE tokenizer decodes exactly (this corpus's is {tokenizer.kind})",
                field=f"{family}.load",
            )
        ids = [own.eos_id]
        for d in val_docs:
            ids += own.encode(tokenizer.decode(d.tolist())) + [own.eos_id]
        stream = np.array(ids)
    window = stride = None
    if not is_recurrent(model):  # a transformer: sliding windows at half the training length, every token has context
        window = default_window(model)
        stride = max(1, window // 2)
    r = score_stream(model, torch.from_numpy(stream.astype(np.int64)), n_bytes=n_bytes, window=window, stride=stride)
    bits = r["loss"] * r["tokens"] / math.log(2)
    arch = getattr(model.cfg, "cell", None) or getattr(model.cfg, "flavour", "")
    return _row(name, family, bits=bits, tokens=r["tokens"], n_bytes=n_bytes, params=model.num_params(), seconds=seconds, same_tokenizer=same, arch=arch)


def _pretrain_config(section, family: str, data: PretrainDataConfig) -> PretrainConfig:
    if family == "rnn":
        return PretrainConfig(arch="rnn", data=data, rnn=section.model, train=section.train)
    return PretrainConfig(arch="transformer", data=data, model=section.model, train=section.train)


def _train_neural(cfg: PretrainConfig, arch: str, run_dir: Path, log) -> float:
    """Train (or finish, or just check) one neural model; its training seconds, summed over the
    runs that trained it. run_pretrain refuses a run directory begun with other settings."""
    timing = run_dir / "train_seconds.json"
    previous = json.loads(timing.read_text())["seconds"] if timing.exists() else 0.0
    finished = (run_dir / "model.safetensors").exists()
    t0 = time.perf_counter()
    run_pretrain(cfg, run_dir)
    if finished:
        log(f"{arch}: {run_dir} is trained with these settings; reusing it")
        return previous
    seconds = previous + time.perf_counter() - t0
    atomic_write_text(timing, json.dumps({"seconds": seconds}))
    return seconds


def run_compare(cfg: CompareConfig, out: str | Path, *, log=print) -> dict:
    out = Path(out)
    saved = out / "config.yaml"
    if saved.exists():
        import yaml

        before = yaml.safe_load(saved.read_text()) or {}
        if before.get("data") != to_dict(cfg.data):
            raise InputError("this run directory was made from other data settings; choose a new --out", path=saved, field="data")
    if not cfg.data.shards:  # the corpus is prepared inside DIR (given shards are only read)
        out.mkdir(parents=True, exist_ok=True)
    shard_dir = prepare_data(cfg.data, out)
    tokenizer = Tokenizer.load(shard_dir)
    index = TokenShards(shard_dir, "train").index
    if "val" not in index["splits"]:
        raise InputError("the shards have no val split to compare on; prepare them with a val fraction > 0", path=shard_dir, field="data.val_fraction")
    val_docs = split_documents(TokenShards(shard_dir, "val").read_all(), tokenizer.eos_id)
    n_bytes = int(index["splits"]["val"]["bytes"])
    data = dataclasses.replace(cfg.data, shards=str(shard_dir))

    neural = {}  # the runs to train, each checked against what its directory holds before any work
    for family, section in (("rnn", cfg.rnn), ("gpt", cfg.gpt)):
        if section.enabled and not section.load:
            neural[family] = _pretrain_config(section, family, data)
            resolved_config(neural[family], out / family, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, dump_yaml(cfg))

    rows = _ngram_rows(cfg.ngram, shard_dir, tokenizer.eos_id, val_docs, n_bytes, log)
    for family, section in (("rnn", cfg.rnn), ("gpt", cfg.gpt)):
        if section.load:
            rows.append(_neural_row(f"{family}-loaded", family, Path(section.load), tokenizer, val_docs, n_bytes, None))
        elif section.enabled:
            seconds = _train_neural(neural[family], family, out / family, log)
            row = _neural_row(family, family, out / family, tokenizer, val_docs, n_bytes, seconds)
            row["name"] = f"{family}-{row['arch']}"
            rows.append(row)
    for spec in cfg.also:
        family, _, path = spec.partition("=")
        rows.append(_neural_row(family, family, Path(path), tokenizer, val_docs, n_bytes, None))
    best = {}
    for r in rows:
        if r["family"] not in best or r["bpb"] < best[r["family"]]["bpb"]:
            best[r["family"]] = {"name": r["name"], "bpb": r["bpb"], "perplexity": r["perplexity"]}
    result = {
        "val": {"documents": len(val_docs), "tokens": int(sum(len(d) + 1 for d in val_docs)), "bytes": n_bytes, "tokenizer": tokenizer.kind, "vocab_size": tokenizer.vocab_size},
        "models": rows,
        "best": best,
    }
    atomic_write_text(out / "comparison.json", json_text(result, indent=2))
    plot_comparison(rows, out / "comparison.png")
    return result


# --------------------------------------------------------------------------- presentation


def format_table(result: dict) -> str:
    head = f"{'model':<16} {'bits/byte':>9} {'ppl/token':>10} {'params':>10} {'train s':>8}"
    lines = [head, "-" * len(head)]
    for r in sorted(result["models"], key=lambda r: r["bpb"]):
        ppl = f"{r['perplexity']:.3f}" + ("" if r["same_tokenizer"] else "*")
        secs = "-" if r["train_seconds"] is None else f"{r['train_seconds']:.1f}"
        lines.append(f"{r['name']:<16} {r['bpb']:>9.4f} {ppl:>10} {_size(r['params']):>10} {secs:>8}")
    v = result["val"]
    lines.append(f"held out: {v['documents']} documents, {v['bytes']} bytes, {v['tokens']} {v['tokenizer']} tokens; n-gram size = n-grams stored")
    if any(not r["same_tokenizer"] for r in result["models"]):
        lines.append("* another tokenizer: its perplexity per token does not compare with the others")
    return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def plot_comparison(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"ngram": "#8c8c8c", "rnn": "#4c72b0", "gpt": "#dd8452"}
    rows = sorted((r for r in rows if math.isfinite(r["bpb"])), key=lambda r: -r["bpb"])  # an MLE model's inf has no bar
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    bars = ax.barh([r["name"] for r in rows], [r["bpb"] for r in rows], color=[colours.get(r["family"], "#55a868") for r in rows])
    ax.bar_label(bars, labels=[f"{r['bpb']:.3f}" for r in rows], padding=3, fontsize=8)
    ax.set_xlabel("bits per byte on held-out text (lower is better)")
    ax.set_title("n-gram vs RNN vs GPT on the same corpus")
    ax.margins(x=0.15)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
