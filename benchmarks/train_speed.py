"""Training throughput: lmforge's loop against a plain nanoGPT-style loop of the same model.

    python benchmarks/train_speed.py [--preset small|tiny] [--steps N] [--rounds N] [--warmup N] [--profile]

Both methods train the same `Transformer` (same config, same initial weights) on the same
synthetic batches (random token ids, cycled from memory) for the same number of steps, with
AdamW, the same learning-rate schedule (`lr_at`), the same weight-decay groups and gradient
clipping at 1.0. Rounds are interleaved (reference, lmforge, reference, lmforge, ...) because
a shared VM is noisy; the best round of each method is reported (the median too).

How time is measured. The batch stream records a timestamp every time a batch is taken, so
for both methods the "steady" rate covers exactly the steps between the batch fetch of step
`warmup` and that of the last step: forward, loss, backward, clip, AdamW, zero_grad and the
loop's own bookkeeping, nothing else. lmforge's `train` also builds its optimizer, opens its
metrics log and always writes a final checkpoint (weights, optimizer state, checksums, the
final model); that is excluded from the steady rate, reported in the "whole call" row, and
the cost of one final checkpoint is timed separately. Checkpoints and evaluation are
otherwise off (`save_every=0`, `eval_every=0`, no evaluate function); metrics are logged
every 25 steps as in recipes/small.yaml.

MFU = tokens/s * model.flops_per_token(seq_len) / peak, the peak being the best rate of a
2048x2048 fp32 `torch.mm` on this machine (measured here, before and after the rounds).
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize` (see its header).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

os.environ.setdefault("LMFORGE_PROGRESS", "0")  # no progress bar on stderr  # noqa: E402

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lmforge.checkpoint import capture_rng, save_checkpoint, save_model  # noqa: E402
from lmforge.models import model_config_json  # noqa: E402
from lmforge.models.transformer import ModelConfig, Transformer  # noqa: E402
from lmforge.train.loop import OptimConfig, ScheduleConfig, TrainConfig, lr_at, param_groups, train  # noqa: E402
from lmforge.train.pretrain import lm_loss  # noqa: E402

TOLERANCE = 0.97  # lmforge counts as "not slower" at >= 97% of the reference's tokens/s

PRESETS = {
    # recipes/small.yaml (vocab from its 2048-token BPE tokenizer)
    "small": dict(
        model=ModelConfig(flavour="llama", vocab_size=2048, n_layer=4, n_head=4, n_kv_head=2, d_model=192, max_seq_len=256),
        seq_len=128, batch_size=16, lr=2e-3, weight_decay=0.1, warmup_steps=100,
    ),
    # recipes/tiny.yaml (vocab 512)
    "tiny": dict(
        model=ModelConfig(flavour="gpt2", vocab_size=512, n_layer=2, n_head=2, d_model=64, max_seq_len=64),
        seq_len=64, batch_size=8, lr=3e-3, weight_decay=0.0, warmup_steps=10,
    ),
}  # fmt: skip


# --------------------------------------------------------------------------- data


class SyntheticBatches:
    """Random (inputs, targets) batches held in memory and cycled; a resumable iterator, as
    `train` wants. Records the time each batch is taken (`stamps`)."""

    def __init__(self, vocab: int, batch: int, seq_len: int, n_distinct: int = 16, seed: int = 1234):
        g = torch.Generator().manual_seed(seed)
        data = torch.randint(0, vocab, (n_distinct, batch, seq_len + 1), generator=g)
        self.batches = [(d[:, :-1].contiguous(), d[:, 1:].contiguous()) for d in data]
        self.pos = 0
        self.stamps: list[float] = []

    def __iter__(self):
        return self

    def __next__(self):
        self.stamps.append(time.perf_counter())
        b = self.batches[self.pos % len(self.batches)]
        self.pos += 1
        return b

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.pos = int(state["pos"])

    def reset(self) -> None:
        self.pos = 0
        self.stamps = []


# --------------------------------------------------------------------------- the two methods


def make_model(cfg: ModelConfig) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(**vars(cfg)))


def train_cfg(preset: dict, steps: int) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch_size=preset["batch_size"], device="cpu", precision="fp32",
        optim=OptimConfig(lr=preset["lr"], weight_decay=preset["weight_decay"], grad_clip=1.0),
        schedule=ScheduleConfig(kind="cosine", warmup_steps=preset["warmup_steps"]),
        eval_every=0, save_every=0, log_every=25, keep_last=1,
    )  # fmt: skip


def run_reference(preset: dict, batches: SyntheticBatches, steps: int) -> float:
    """nanoGPT-style: model, AdamW, forward, cross-entropy, backward, clip, step, zero_grad.
    Returns the seconds for the whole call (optimizer set-up included)."""
    model = make_model(preset["model"])
    cfg = train_cfg(preset, steps)
    batches.reset()
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model.train()
    o = cfg.optim
    optimizer = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    for step in range(steps):
        lr = lr_at(step, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        x, y = next(batches)
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
            loss.item()  # what a logging line costs: one sync for the loss
    return time.perf_counter() - t0


def run_lmforge(preset: dict, batches: SyntheticBatches, steps: int) -> float:
    """lmforge.train.loop.train with lm_loss; returns seconds for the whole train() call."""
    model = make_model(preset["model"])
    cfg = train_cfg(preset, steps)
    batches.reset()
    with tempfile.TemporaryDirectory(prefix="train_speed.") as tmp:
        run_dir = Path(tmp) / "run"  # fresh: nothing to resume
        t0 = time.perf_counter()
        train(model, lm_loss, batches, cfg, run_dir, model_config=model_config_json(model))
        return time.perf_counter() - t0


def time_final_checkpoint(preset: dict, batches: SyntheticBatches) -> float:
    """Seconds for what `train` does at the end: a full checkpoint plus the final model,
    done the way its `checkpoint(final=True)` does it (optimizer state after one real step)."""
    model = make_model(preset["model"])
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    batches.reset()
    loss, _ = lm_loss(model, next(batches))
    loss.backward()
    optimizer.step()
    best = float("inf")
    for _ in range(3):
        with tempfile.TemporaryDirectory(prefix="train_speed_ckpt.") as tmp:
            t0 = time.perf_counter()
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            trainer_state = {"rng": capture_rng(), "data": batches.state_dict(), "last": {}, "world_size": 1}
            save_checkpoint(tmp, 1, model_state=state, model_config=model_config_json(model), trainer_state=trainer_state, optimizer_state=optimizer.state_dict(), keep_last=1)
            save_model(tmp, state, model_config_json(model))
            best = min(best, time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------- peak


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 FLOP/s of an n x n @ n x n torch.mm on this CPU."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)  # warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


# --------------------------------------------------------------------------- main


def steady(batches: SyntheticBatches, warmup: int) -> tuple[float, int]:
    """Seconds and steps between the batch fetch of step `warmup` and that of the last step."""
    s = batches.stamps
    return s[-1] - s[warmup], len(s) - 1 - warmup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per run (default 30)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--warmup", type=int, default=3, help="steps left out of the steady window (default 3)")
    ap.add_argument("--profile", action="store_true", help="afterwards, cProfile one run of each method")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps < args.warmup + 2:
        ap.error("--steps must be at least --warmup + 2")
    preset = PRESETS[args.preset]
    mcfg, T, B = preset["model"], preset["seq_len"], preset["batch_size"]
    batches = SyntheticBatches(mcfg.vocab_size, B, T)
    probe = make_model(mcfg)
    fpt = probe.flops_per_token(T)
    tokens_per_step = B * T

    peak = matmul_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; matmul peak (2048^2 fp32 mm): {peak / 1e9:.1f} GFLOP/s")
    print(
        f"preset {args.preset}: {mcfg.flavour}, {mcfg.n_layer} layers, d_model {mcfg.d_model}, vocab {mcfg.vocab_size}, "
        f"{probe.num_params() / 1e6:.2f}M params; seq_len {T}, batch {B} ({tokens_per_step} tokens/step); "
        f"{fpt / 1e6:.1f} MFLOP/token; {args.steps} steps x {args.rounds} rounds, steady window leaves out {args.warmup} steps"
    )

    methods = {"reference": run_reference, "lmforge": run_lmforge}
    for fn in methods.values():  # untimed warm-up of both (allocator, kernels, imports)
        fn(preset, batches, min(args.steps, 5))
    rates: dict[str, list[float]] = {m: [] for m in methods}  # steady tokens/s
    whole: dict[str, list[float]] = {m: [] for m in methods}  # tokens/s over the whole call
    for r in range(args.rounds):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))  # alternate who goes first
        for name in order:
            secs = methods[name](preset, batches, args.steps)
            dt, n = steady(batches, args.warmup)
            rates[name].append(tokens_per_step * n / dt)
            whole[name].append(tokens_per_step * args.steps / secs)
        print(f"round {r + 1}: " + ", ".join(f"{m} {rates[m][-1]:.0f} tok/s (whole call {whole[m][-1]:.0f})" for m in methods), flush=True)
    ckpt_s = time_final_checkpoint(preset, batches)
    peak = max(peak, matmul_peak())

    def row(label, tps):
        return f"| {label} | {tps:,.0f} | {tps * fpt / peak:.1%} | {1000 * tokens_per_step / tps:.1f} |"

    print()
    print(f"best of {args.rounds} rounds (median in the notes); MFU against the measured {peak / 1e9:.1f} GFLOP/s")
    print("| method | tokens/s | MFU | ms/step |\n|---|---:|---:|---:|")
    print(row("reference (plain loop), steady", max(rates["reference"])))
    print(row("lmforge train(), steady", max(rates["lmforge"])))
    print(row("reference, whole call", max(whole["reference"])))
    print(row("lmforge train(), whole call incl. set-up + final checkpoint", max(whole["lmforge"])))
    if not probe.cfg.tied:  # flops_per_token's 6N counts the input embedding, a lookup rather than a matmul
        emb = 6 * probe.tok_emb.weight.numel()
        print(f"(note: model.flops_per_token counts 6 x the untied input embedding, {emb / 1e6:.1f} of {fpt / 1e6:.1f} MFLOP/token, "
              f"which no matmul computes; without it the best MFU is reference {max(rates['reference']) * (fpt - emb) / peak:.1%}, "
              f"lmforge {max(rates['lmforge']) * (fpt - emb) / peak:.1%})")  # fmt: skip
    med = {m: statistics.median(rates[m]) for m in methods}
    print(f"\nmedian steady tokens/s: reference {med['reference']:,.0f}, lmforge {med['lmforge']:,.0f}")
    print(f"one final checkpoint (checkpoint + final model, as train() writes at the end): {ckpt_s * 1000:.0f} ms "
          f"= {ckpt_s / (args.steps * tokens_per_step / max(rates['lmforge'])):.1%} of a {args.steps}-step run")  # fmt: skip
    ref, lmf = max(rates["reference"]), max(rates["lmforge"])
    ratio = lmf / ref
    if ratio >= TOLERANCE:
        print(f"verdict: lmforge is not slower (steady tokens/s {ratio:.1%} of the reference; tolerance: >= {TOLERANCE:.0%})")
    else:
        print(f"verdict: lmforge is slower: steady tokens/s {ratio:.1%} of the reference ({1 - ratio:.1%} slower; tolerance: >= {TOLERANCE:.0%})")

    if args.profile:
        for name, fn in methods.items():
            prof = cProfile.Profile()
            prof.enable()
            fn(preset, batches, args.steps)
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
            print(f"\n---- cProfile: {name}, {args.steps} steps (sorted by own time) ----")
            print(buf.getvalue())


if __name__ == "__main__":
    main()
