"""`lmforge scaling`: measure how held-out loss scales with model size and training tokens on
a corpus, fit the scaling laws, and say how big a model a compute budget should buy.

Kaplan et al. (2020) found the loss of a language model falling as a power law in parameters,
data and compute; Hoffmann et al. (2022, Chinchilla) that for a fixed budget parameters and
tokens should grow together (about 20 tokens a parameter), and that each run's learning-rate
schedule must be sized to its own length (a cosine cycle longer than the run overstates the
loss of short runs and moved Kaplan's estimate toward larger models). So a study here is a grid:

  for each compute budget C (training FLOPs) and each model shape (d_model x n_layer),
  one run of the one training loop on the same prepared data, with as many steps as C buys at
  that size (D = C / FLOPs per token, `Transformer.flops_per_token`) and a cosine schedule over
  exactly those steps; its held-out loss (nats per token) at the end.

Runs a budget buys fewer than `study.min_steps` steps of are skipped (too short to train), as is a
size the budget gives more than `study.max_tokens_per_param` or fewer than
`study.min_tokens_per_param` tokens a parameter (far from the budget's optimum: it only costs time). Each run is a folder DIR/runs/NAME with the run's result in
scaling.json; running the study again skips finished runs (an interrupted one starts over).
`--shard I/N` (or torchrun's RANK and WORLD_SIZE) runs every N-th run from the I-th, so several
processes, GPUs or machines share a study; the fit is made when every run has its result.

Then `lmforge.eval.scaling_laws` fits isoFLOP profiles and the parametric loss (with bootstrap
intervals), checks the fit by predicting the largest budget's best loss from the smaller budgets
alone, and gives the compute-optimal N and D for each budget and for any budget asked with
`--optimal-for`. DIR/fit.json, DIR/runs.json, DIR/plots/, DIR/report.md.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import from_dict, layered_data, to_dict
from .errors import ConfigError
from .io import atomic_write_text
from .train.pretrain import PretrainConfig, prepare_data, run_pretrain
from .train.sizing import parse_size, shape_model
from .world.build import WorldConfig

PRESET_DIR = Path(__file__).resolve().parent / "presets"
PRESETS = ("tiny", "default")


@dataclass
class StudyConfig:
    sizes: list[str] = field(default_factory=lambda: ["64x2", "96x3", "128x4", "192x4"])  # model shapes, d_model x n_layer
    budgets: list[float] = field(default_factory=lambda: [3e12, 1e13])  # training FLOPs of each run
    head_dim: int = 32  # n_head = d_model / head_dim (at least 1)
    min_steps: int = 50  # a run the budget buys fewer optimizer steps of is skipped
    max_tokens_per_param: float = 2000.0  # a size the budget gives more tokens a parameter than this is skipped
    min_tokens_per_param: float = 0.0  # and one it gives fewer than this (far past the budget's optimum the other way)
    max_epochs: float = 4.0  # a run that would read the training split more often than this is skipped (0: no limit)
    warmup_frac: float = 0.05  # warmup steps as a share of each run's steps
    bootstrap: int = 200  # resamples of the runs for the parametric fit's intervals
    optimal_for: list[float] = field(default_factory=list)  # budgets (FLOPs) to give the compute-optimal N and D for

    def validate(self) -> None:
        if not self.sizes or not self.budgets:
            raise ConfigError("a study needs sizes and budgets", field="study.sizes")
        for s in self.sizes:
            parse_size(s)
        if any(b <= 0 for b in self.budgets):
            raise ConfigError(f"budgets are FLOPs, positive; got {self.budgets}", field="study.budgets")
        if self.min_steps < 1 or self.head_dim < 1:
            raise ConfigError("min_steps and head_dim must be at least 1", field="study.min_steps")


@dataclass
class ScalingConfig:
    world: WorldConfig = field(default_factory=WorldConfig)  # the built-in world, when pretrain.data.corpus is "world"
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # data, flavour, batch, optimizer: what every run shares
    study: StudyConfig = field(default_factory=StudyConfig)

    def validate(self) -> None:
        self.study.validate()
        if self.pretrain.arch != "transformer" or self.pretrain.objective != "clm":
            raise ConfigError("a scaling study trains GPTs (arch transformer, objective clm)", field="pretrain.arch")


def load_scaling_config(recipe: str | None, preset: str | None, overrides: list[str]) -> ScalingConfig:
    """The preset (scaling_default.yaml or scaling_tiny.yaml), the recipe over it, the overrides."""
    name = preset or "default"
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}", field="preset")
    data, lines, source = layered_data(ScalingConfig, PRESET_DIR / f"scaling_{name}.yaml", recipe, overrides)
    cfg = from_dict(ScalingConfig, data, source=source, lines=lines)
    cfg.validate()
    return cfg


# --------------------------------------------------------------------------- the grid


def _model_for(cfg: ScalingConfig, size: str, vocab_size: int):
    return shape_model(cfg.pretrain.model, size, cfg.study.head_dim, vocab_size)


def plan(cfg: ScalingConfig, vocab_size: int, train_tokens: int = 0) -> list[dict]:
    """Every run of the grid: {name, size, budget, params, non_embedding, flops_per_token, steps,
    tokens, flops, epochs (passes over the `train_tokens` of the training split), skip (why it is
    not run, or None)}."""
    t = cfg.pretrain.train
    tokens_per_step = t.batch_size * t.grad_accum * cfg.pretrain.data.seq_len
    runs = []
    for budget in sorted(cfg.study.budgets):
        for size in cfg.study.sizes:
            _, model = _model_for(cfg, size, vocab_size)
            n = model.num_params(non_embedding=True)
            fpt = model.flops_per_token(cfg.pretrain.data.seq_len)
            steps = round(budget / (fpt * tokens_per_step))
            tokens = steps * tokens_per_step
            skip = None
            if steps < cfg.study.min_steps:
                skip = f"{steps} steps (fewer than study.min_steps {cfg.study.min_steps})"
            elif tokens / n > cfg.study.max_tokens_per_param:
                skip = f"{tokens / n:.0f} tokens a parameter (more than study.max_tokens_per_param {cfg.study.max_tokens_per_param:g})"
            elif tokens / n < cfg.study.min_tokens_per_param:
                skip = f"{tokens / n:.2g} tokens a parameter (fewer than study.min_tokens_per_param {cfg.study.min_tokens_per_param:g})"
            elif train_tokens and cfg.study.max_epochs and tokens / train_tokens > cfg.study.max_epochs:
                # repeated data is worth less than new (Muennighoff et al. 2023: up to about 4 passes
                # nearly as good), and L(N, D) assumes D new tokens
                skip = f"{tokens / train_tokens:.1f} passes over the training data (more than study.max_epochs {cfg.study.max_epochs:g})"
            runs.append({"name": f"C{budget:.2g}-{size}".replace("+", ""), "size": size, "budget": budget, "params": model.num_params(), "non_embedding": n,
                         "flops_per_token": fpt, "steps": steps, "tokens": tokens, "flops": float(tokens * fpt),
                         "epochs": tokens / train_tokens if train_tokens else None, "skip": skip})  # fmt: skip
    return runs


def _run_config(cfg: ScalingConfig, run: dict, shards: Path) -> PretrainConfig:
    p = copy.deepcopy(cfg.pretrain)
    p.data.shards = str(shards)
    p.data.corpus = ""
    p.data.group_by, p.data.temperature = "", 1.0  # mixed when the shards were made
    p.model, _ = _model_for(cfg, run["size"], p.model.vocab_size)
    p.train.steps = run["steps"]
    p.train.schedule.kind = "cosine"  # sized to this run's length (Chinchilla, section 3)
    p.train.schedule.warmup_steps = max(1, round(cfg.study.warmup_frac * run["steps"]))
    p.train.eval_every = 0  # the held-out loss at the end only
    p.train.save_every = 0
    p.train.keep_last = 1
    p.train.log_every = max(1, min(p.train.log_every, run["steps"] // 4))
    return p


def _one_run(cfg: ScalingConfig, run: dict, shards: Path, folder: Path) -> dict:
    start = time.time()
    result = run_pretrain(_run_config(cfg, run, shards), folder)
    if "eval/loss" not in result:
        raise ConfigError("the shards have no validation split to measure held-out loss on; prepare them with data.val_fraction > 0", field="pretrain.data.val_fraction")
    out = {k: v for k, v in run.items() if k != "skip"}
    out.update({"loss": float(result["eval/loss"]), "bpb": float(result.get("eval/bpb", float("nan"))), "train_loss": float(result.get("loss", float("nan"))), "seconds": round(time.time() - start, 1)})
    atomic_write_text(folder / "scaling.json", json.dumps(out, indent=1) + "\n")
    return out


def _shard_from_env(shard: tuple[int, int] | None) -> tuple[int, int]:
    """(index, count) of this process's share of the runs: --shard, else torchrun's RANK and
    WORLD_SIZE (each process then trains its runs alone: the loop sees one process, on its own
    GPU by LOCAL_RANK)."""
    if shard is not None:
        return shard
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        rank = int(os.environ.get("RANK", "0"))
        os.environ["WORLD_SIZE"], os.environ["RANK"] = "1", "0"
        return rank, world
    return 0, 1


def run_scaling(cfg: ScalingConfig, out: str | Path, *, shard: tuple[int, int] | None = None, log=print, wait: float = 0.0) -> dict | None:
    """Run (this process's share of) the grid, then fit when every run has its result: the fit's
    summary, or None when other shards' runs are still missing (`wait` seconds are spent polling
    for them first)."""
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index, count = _shard_from_env(shard)
    if index == 0:
        atomic_write_text(out / "config.json", json.dumps(to_dict(cfg), indent=1) + "\n")
    shards = _prepare_once(cfg, out, index)
    from .data.shards import read_index
    from .tokenizer import Tokenizer

    cfg.pretrain.model.vocab_size = Tokenizer.load(shards).vocab_size
    runs = plan(cfg, cfg.pretrain.model.vocab_size, read_index(shards)["splits"]["train"]["tokens"])
    todo = [r for r in runs if r["skip"] is None]
    for r in runs:
        if r["skip"]:
            log(f"skip {r['name']}: {r['skip']}")
    for i, r in enumerate(todo):
        folder = out / "runs" / r["name"]
        if i % count != index or (folder / "scaling.json").exists():
            continue
        log(f"[{i + 1}/{len(todo)}] {r['name']}: {r['non_embedding']:,} parameters (non-embedding), {r['steps']} steps, {r['tokens']:,} tokens, {r['flops']:.3g} FLOPs")
        done = _one_run(cfg, r, shards, folder)
        log(f"    held-out loss {done['loss']:.4f} in {done['seconds']:.0f} s")
    deadline = time.time() + wait
    while True:
        results = [json.loads((out / "runs" / r["name"] / "scaling.json").read_text()) for r in todo if (out / "runs" / r["name"] / "scaling.json").exists()]
        if len(results) == len(todo) or time.time() >= deadline:
            break
        time.sleep(5)
    if len(results) < len(todo):
        log(f"{len(todo) - len(results)} of {len(todo)} runs have no result yet (other shards); run again to fit")
        return None
    if index != 0:
        return None
    from .eval.scaling_report import write_study

    return write_study(cfg, out, results, [r for r in runs if r["skip"]])


def _prepare_once(cfg: ScalingConfig, out: Path, index: int) -> Path:
    """The shards every run reads (DIR/data), prepared by the first shard; the others wait."""
    d = copy.deepcopy(cfg.pretrain.data)
    if d.shards:
        return prepare_data(d, out)
    ready = out / "data" / "shards" / "index.json"
    if index != 0:
        while not ready.exists():
            time.sleep(5)
        return ready.parent
    if d.corpus == "world":
        from .world.build import build_world

        if not (out / "world" / "manifest.json").exists():
            build_world(cfg.world, out / "world", overwrite=True)
        d.corpus = str(out / "world" / "pretrain.jsonl")
    return prepare_data(d, out)
