"""The training loop: the only one in lmforge. Objectives are functions it calls.

    for step in steps:
        lr = schedule(step)
        for micro-batch in gradient accumulation:
            loss, metrics = objective(model, batch)      # an objective is just a function
            (loss / accum).backward()                    # NaN/inf is caught here, at once
        clip gradients; AdamW step
        log; evaluate every N; checkpoint every N

What it takes care of, so objectives need not: AdamW without weight decay on norms, biases and
embeddings; warmup then cosine decay, or warmup-stable-decay (WSD; Hu et al. 2024, MiniCPM),
or constant; gradient accumulation; clipping; bf16 autocast on GPU (fp32 on CPU); the
checkpoint/resume cycle through the run directory (weights, optimizer, step, RNG states,
data position), so a run killed at any point and started again ends bitwise where an
uninterrupted one does (CPU, one process); `torch.distributed` under `torchrun`, with DDP, or
FSDP2 (`fully_shard`) for models that do not fit one device; optional `torch.compile`.

Data comes from a `batches` object: an iterator with `state_dict()`/`load_state_dict()` (the
shard `BatchLoader` is one). In a distributed run each rank's iterator yields its own slice
of the global batch.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.distributed as dist
import torch.nn as nn

from ..checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint, save_model
from ..errors import ConfigError, InputError
from ..tracking import MetricsLogger, progress


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.1  # on matrices only; never on norms, biases, embeddings
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping


@dataclass
class ScheduleConfig:
    kind: Literal["cosine", "wsd", "constant"] = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # the final learning rate, as a share of optim.lr
    decay_frac: float = 0.2  # wsd: the share of steps spent decaying at the end


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 16  # sequences per micro-batch, per process
    grad_accum: int = 1  # micro-batches per optimizer step
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval_every: int = 100  # steps between evaluations (0: only at the end)
    log_every: int = 10
    save_every: int = 200  # steps between checkpoints (0: only at the end)
    keep_last: int = 2  # checkpoints kept
    seed: int = 0
    nan_policy: Literal["stop", "skip"] = "stop"  # on a NaN/inf loss: stop with a diagnostic, or skip the step
    compile: bool = False  # torch.compile the model
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere
    parallel: Literal["ddp", "fsdp"] = "ddp"  # under torchrun with several processes
    tensorboard: bool = False
    wandb: bool = False

    def validate(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "log_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be at least 1, got {getattr(self, name)}", field=name)
        if self.optim.lr <= 0:
            raise ConfigError(f"must be positive, got {self.optim.lr}", field="optim.lr")
        if not 0 <= self.schedule.decay_frac <= 1:
            raise ConfigError(f"must be in [0, 1], got {self.schedule.decay_frac}", field="schedule.decay_frac")


class TrainingDiverged(InputError):
    """The loss became NaN or infinite (and nan_policy is stop)."""


# --------------------------------------------------------------------------- pieces


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based)."""
    s, base = cfg.schedule, cfg.optim.lr
    floor = base * s.min_lr_ratio
    if step < s.warmup_steps:
        return base * (step + 1) / s.warmup_steps
    if s.kind == "constant":
        return base
    if s.kind == "cosine":
        span = max(1, cfg.steps - s.warmup_steps)
        t = min(1.0, (step - s.warmup_steps) / span)
        return floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * t))
    decay_start = cfg.steps - int(s.decay_frac * cfg.steps)  # wsd: hold, then decay linearly
    if step < decay_start:
        return base
    t = (step - decay_start) / max(1, cfg.steps - decay_start)
    return base + (floor - base) * min(1.0, t)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices; none on norms, biases and embeddings (shared ones once)."""
    no_decay = set()
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            no_decay.add(id(m.weight))
    decay, other, seen = [], [], set()
    for p in model.parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 and id(p) not in no_decay else other).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the process group that torchrun describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(cfg: TrainConfig, local_rank: int = 0) -> torch.device:
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda but no CUDA device is available", field="train.device")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


def _autocast(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _full_state(model: nn.Module, optimizer, parallel: str, distributed: bool) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts (collective under FSDP: every rank calls it)."""
    if distributed and parallel == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=opts), get_optimizer_state_dict(model, optimizer, options=opts)
    inner = model.module if hasattr(model, "module") else model
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile wrapper
    return {k: v.detach().cpu() for k, v in inner.state_dict().items()}, optimizer.state_dict()


def batch_to_device(batch, device: torch.device):
    """A batch (a tuple of tensors, or a dict of them) on `device`."""
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return tuple(t.to(device, non_blocking=True) for t in batch)


def run_config_text(cfg, run_dir: Path) -> str:
    """The config as a run directory saves it (config.yaml), after checking that a run already
    begun there (it has checkpoints) was begun with the same: a resumed run must not change."""
    from ..config import dump_yaml

    saved = Path(run_dir) / "config.yaml"
    text = dump_yaml(cfg)
    if saved.exists() and (Path(run_dir) / "checkpoints").exists() and saved.read_text() != text:
        raise InputError("this run directory was started with another config; resume with the same settings or choose a new --out", path=saved)
    return text


# --------------------------------------------------------------------------- the loop


def _prepare(model: nn.Module, batches, cfg: TrainConfig, run_dir: Path, device: torch.device, distributed: bool):
    """(the network to call, the optimizer, the checkpoint resumed from or None): the model
    resumed and placed, sharded or wrapped for data parallelism, and the optimizer with its
    state. Weights go in before wrapping; the optimizer state after the optimizer exists."""
    ckpt = load_checkpoint(run_dir) if run_dir.exists() else None
    if ckpt is not None:
        missing, unexpected = model.load_state_dict(ckpt.model_state, strict=False)
        if [k for k in missing if k != "lm_head.weight"] or unexpected:
            raise InputError(f"checkpoint does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})", path=ckpt.path)
    model.to(device)
    if distributed and cfg.parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in getattr(model, "blocks", []):
            fully_shard(block)
        fully_shard(model)
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2), eps=cfg.optim.eps,
        fused=device.type == "cuda",
    )  # fmt: skip
    if ckpt is not None:
        if ckpt.optimizer_state is not None:
            if distributed and cfg.parallel == "fsdp":
                from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

                set_optimizer_state_dict(model, optimizer, ckpt.optimizer_state, options=StateDictOptions(full_state_dict=True))
            else:
                optimizer.load_state_dict(ckpt.optimizer_state)
        restore_rng(ckpt.trainer_state["rng"])
        batches.load_state_dict(ckpt.trainer_state["data"])
    net = model
    if distributed and cfg.parallel == "ddp":
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    return net, optimizer, ckpt


def _step(net, objective, batches, optimizer, cfg: TrainConfig, device: torch.device, distributed: bool, to_device):
    """One optimizer step over `cfg.grad_accum` micro-batches: (mean loss, mean extra metrics,
    tokens of a micro-batch or None, gradient norm, or None when a loss was not finite on any
    rank and the step was skipped: the gradients are dropped, the weights untouched)."""
    loss_sum = torch.zeros((), device=device)
    extra: dict[str, float] = {}
    tokens = None
    bad = False
    for micro in range(cfg.grad_accum):
        batch = to_device(next(batches), device)
        sync = contextlib.nullcontext()
        if distributed and cfg.parallel == "ddp" and micro < cfg.grad_accum - 1:
            sync = net.no_sync()  # gradients are all-reduced once, on the last micro-batch
        with sync:
            with _autocast(device, cfg.precision):
                loss, metrics = objective(net, batch)
            if not torch.isfinite(loss.detach()):
                bad = True
            (loss / cfg.grad_accum).backward()
        loss_sum += loss.detach() / cfg.grad_accum
        tokens = metrics.pop("tokens", tokens)
        for k, v in metrics.items():
            extra[k] = extra.get(k, 0.0) + float(v) / cfg.grad_accum
    if distributed:  # every rank skips together, or the replicas drift apart
        flag = torch.tensor([float(bad)], device=device)
        dist.all_reduce(flag)
        bad = bool(flag.item())
    if bad:
        optimizer.zero_grad(set_to_none=True)
        return loss_sum, extra, tokens, None
    gnorm = nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, extra, tokens, gnorm


def _save(run_dir: Path, step: int, state: dict, opt_state, trainer_state: dict, cfg: TrainConfig, model_config: dict, tokenizer, final: bool) -> None:
    """A checkpoint at `step`; at the end also the model itself (LoRA: merged, and the adapters apart)."""
    save_checkpoint(run_dir, step, model_state=state, model_config=model_config, trainer_state=trainer_state, optimizer_state=opt_state, tokenizer=tokenizer, keep_last=cfg.keep_last)
    if final:
        from ..models.lora import adapter_state, merged_state

        if any(k.endswith(".lora_a") for k in state):
            from ..checkpoint import save_weights

            save_weights(run_dir / "adapter.safetensors", adapter_state(state))
        save_model(run_dir, merged_state(state), model_config, tokenizer)


def _skip_or_stop(cfg: TrainConfig, logger, step: int, lr: float, loss: torch.Tensor, run_dir: Path) -> None:
    """A step whose loss was not finite: stop with what to change (train.nan_policy=stop), or
    log the skipped step and go on (skip)."""
    msg = f"loss is {loss.item()} at step {step + 1} (lr {lr:.3g})"
    if cfg.nan_policy == "stop":
        raise TrainingDiverged(
            msg + "; lower optim.lr, raise schedule.warmup_steps, or set train.nan_policy=skip. "
            f"The last good checkpoint is in {run_dir / 'checkpoints'}",
            field="loss",
        )
    if logger is not None:
        logger.log(step + 1, skipped=1, reason=msg)


def train(
    model: nn.Module,
    objective: Callable[[nn.Module, Any], tuple[torch.Tensor, dict]],
    batches,
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    model_config: dict,
    tokenizer=None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    to_device: Callable[[Any, torch.device], Any] | None = None,
    log_config: dict | None = None,
) -> dict:
    """Train `model` on `batches` with `objective`; returns the last logged and evaluated metrics.

    Resumes from the newest good checkpoint in `run_dir` if there is one.
    """
    cfg.validate()
    run_dir = Path(run_dir)
    device = pick_device(cfg, int(os.environ.get("LOCAL_RANK", "0")))
    d = setup_distributed(device.type)
    distributed = d.world > 1
    torch.manual_seed(cfg.seed)
    to_device = to_device or batch_to_device
    net, optimizer, ckpt = _prepare(model, batches, cfg, run_dir, device, distributed)
    start = ckpt.step if ckpt is not None else 0

    logger = MetricsLogger(run_dir, resume_step=start if ckpt is not None else None, tensorboard=cfg.tensorboard, wandb=cfg.wandb, config=log_config) if d.main else None
    last: dict = dict(ckpt.trainer_state.get("last", {})) if ckpt is not None else {}

    def checkpoint(step: int, final: bool = False) -> None:
        state, opt_state = _full_state(net if cfg.parallel == "fsdp" else model, optimizer, cfg.parallel, distributed)
        if d.main:
            trainer_state = {"rng": capture_rng(), "data": batches.state_dict(), "last": last, "world_size": d.world}
            _save(run_dir, step, state, opt_state, trainer_state, cfg, model_config, tokenizer, final)
        if distributed:
            dist.barrier()

    def run_eval(step: int) -> None:
        if evaluate is None:
            return
        net.eval()
        with torch.no_grad(), _autocast(device, cfg.precision):
            metrics = evaluate(net)
        net.train()
        last.update({f"eval/{k}": v for k, v in metrics.items()})
        if logger is not None:
            logger.log(step, **{f"eval/{k}": v for k, v in metrics.items()})

    if start >= cfg.steps:  # already finished: make sure the final model is there
        if not (run_dir / "model.safetensors").exists():
            checkpoint(start, final=True)
        if logger is not None:
            logger.close()
        return last

    net.train()
    t_log, steps_since_log, tokens_per_step = time.perf_counter(), 0, 0
    bar = progress(total=cfg.steps, initial=start, desc="train", unit="step") if d.main else None
    try:
        for step in range(start, cfg.steps):
            lr = lr_at(step, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            loss_sum, extra, tokens, gnorm = _step(net, objective, batches, optimizer, cfg, device, distributed, to_device)
            tokens_per_step = tokens if tokens is not None else tokens_per_step
            bad = gnorm is None
            if bad:
                _skip_or_stop(cfg, logger, step, lr, loss_sum, run_dir)
            steps_since_log += 1
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                if distributed:
                    dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
                dt = time.perf_counter() - t_log
                tps = tokens_per_step * cfg.grad_accum * d.world * steps_since_log / dt if dt > 0 else 0.0
                last.update({"loss": loss_sum.item(), "lr": lr, **extra})
                if logger is not None:
                    record = {"loss": loss_sum.item(), "lr": lr, "tokens_per_s": round(tps, 1), **extra}
                    if not bad:
                        record["grad_norm"] = float(gnorm)
                    if hasattr(batches, "progress"):
                        record["epoch"] = round(batches.progress, 4)
                    logger.log(done, **record)
                t_log, steps_since_log = time.perf_counter(), 0
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum.item():.4f}", refresh=False)
            if done == cfg.steps or (cfg.eval_every and done % cfg.eval_every == 0):
                run_eval(done)
            if done == cfg.steps:
                checkpoint(done, final=True)
            elif cfg.save_every and done % cfg.save_every == 0:
                checkpoint(done)
    finally:
        if bar is not None:
            bar.close()
        if logger is not None:
            logger.close()
    return last
