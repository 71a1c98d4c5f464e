"""Model shapes for scaling studies, and sizing a pretraining run by a finished study.

A shape is `d_model x n_layer` ("128x4"); its heads are d_model / head_dim, the flavour, context
and tying come from the run's own model section. `pretrain size=optimal scaling=DIR minutes=M`
asks a finished `lmforge scaling` study (DIR/fit.json, runs.json, config.json) which of its
shapes and how many steps M minutes of training should buy (`size_from_study`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import ConfigError, InputError
from ..io import atomic_write_text


def parse_size(text: str) -> tuple[int, int]:
    """'128x4' -> (d_model 128, n_layer 4)."""
    try:
        d, n = (int(x) for x in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(f"a size is d_model x n_layer, such as 128x4; got {text!r}", field="study.sizes") from None
    if d < 1 or n < 1:
        raise ConfigError(f"a size needs a positive width and depth; got {text!r}", field="study.sizes")
    return d, n


def shape_model(base, size: str, head_dim: int, vocab_size: int):
    """(ModelConfig, Transformer) of shape `size`, the rest as `base` (a ModelConfig) has it."""
    from ..models.transformer import ModelConfig, Transformer

    d, n = parse_size(size)
    heads = max(1, d // head_dim)
    while d % heads:
        heads -= 1
    m = ModelConfig(flavour=base.flavour, vocab_size=vocab_size, n_layer=n, n_head=heads, n_kv_head=None, d_model=d, max_seq_len=base.max_seq_len, tie_embeddings=base.tie_embeddings)
    m.validate()
    return m, Transformer(m)


def size_from_study(cfg, out: Path, train_tokens: int = 0) -> dict:
    """`pretrain size=optimal scaling=DIR minutes=M` (cfg: a PretrainConfig whose vocab_size is
    known): the budget M minutes buy at the study's measured speed (its runs' FLOPs over their
    seconds, on the machine it ran on), the fitted compute-optimal N for that budget, the study's
    shape nearest it (the fit holds along the study's family of shapes), and the steps that spend
    the budget at that shape. Sets cfg.model's shape, cfg.train.steps and a cosine schedule over
    them; writes out/sizing.json.

    train_tokens: this run's training split; the optimum may read it at most PASSES_WORTH_NEW
    (4) times (more passes are worth much less than the law assumes), so a corpus too small for
    the budget's optimum gets the larger model that spends the budget in 4 passes."""
    from ..eval.scaling_laws import (
        PASSES_WORTH_NEW,
        flops_per_token_curve,
        optimal_allocation,
    )

    study = Path(cfg.scaling)
    try:
        fit = json.loads((study / "fit.json").read_text())
        runs = json.loads((study / "runs.json").read_text())
        settings = json.loads((study / "config.json").read_text())["study"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"not a finished scaling study ({e})", path=study, field="scaling") from None
    speed = sum(r["flops"] for r in runs) / sum(r["seconds"] for r in runs)
    budget = speed * cfg.minutes * 60
    fpt = flops_per_token_curve(sorted({(r["non_embedding"], r["flops_per_token"]) for r in runs}))
    best = optimal_allocation(fit, budget, fpt, max_tokens=PASSES_WORTH_NEW * train_tokens if train_tokens else None)
    shapes = {r["size"]: r["non_embedding"] for r in runs}
    size = min(shapes, key=lambda s: abs(math.log(shapes[s] / best["n"])))
    model, net = shape_model(cfg.model, size, settings["head_dim"], cfg.model.vocab_size)  # this run's vocabulary
    for k in ("flavour", "n_layer", "n_head", "n_kv_head", "d_model", "tie_embeddings"):
        setattr(cfg.model, k, getattr(model, k))
    tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum * cfg.data.seq_len
    cfg.train.steps = max(1, round(budget / (net.flops_per_token(cfg.data.seq_len) * tokens_per_step)))
    cfg.train.schedule.kind = "cosine"
    cfg.train.schedule.warmup_steps = max(1, round(settings["warmup_frac"] * cfg.train.steps))
    cfg.size = ""  # sized: the saved config is the model it trains
    sizing = {"study": str(study), "minutes": cfg.minutes, "flops_per_second": speed, "budget": budget, "optimal_n": best["n"], "optimal_d": best["d"],
              "predicted_loss": best["loss"], "data_limited": best["data_limited"], "train_tokens": train_tokens, "max_passes": PASSES_WORTH_NEW, "size": size, "non_embedding": shapes[size], "steps": cfg.train.steps, "tokens": cfg.train.steps * tokens_per_step}  # fmt: skip
    atomic_write_text(out / "sizing.json", json.dumps(sizing, indent=1) + "\n")
    return sizing
