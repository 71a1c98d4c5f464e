"""DPO step throughput with the reference's log-probs precomputed (stored with the data) vs
computed on the fly by a reference model kept in memory, for the `small` recipe's model.

    python benchmarks/dpo_speed.py [--pairs 8] [--prompt-len 40] [--answer-len 60] [--rounds 5]

Model: recipes/small.yaml's GPT (llama flavour, 4 layers, d=192, vocab 2048), freshly initialised
(speed does not depend on the weights). A batch is --pairs comparisons of two answers each, every
sequence --prompt-len + --answer-len tokens. A step is what the training loop does: the
objective (forward over the batch, the DPO loss), backward, gradient clipping and AdamW.

  precompute   the batch carries the reference log-probs (lmforge dpo's default)
  online       reference=online: a frozen copy of the model scores the batch inside each step
  reference    the one-time pass that precompute pays instead, per batch of the same size

tokens/s counts every token of the batch (prompt and answers). Rounds are interleaved; the best
of each is kept. Peak memory is the process's resident set at the end (CPU).
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
os.environ.setdefault("LMFORGE_PROGRESS", "0")

import argparse  # noqa: E402
import copy  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lmforge.models.transformer import ModelConfig, Transformer  # noqa: E402
from lmforge.train.dpo import DPOConfig, PrefItem, collate, dpo_objective, reference_logps  # noqa: E402
from lmforge.train.loop import param_groups  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=40)
    ap.add_argument("--answer-len", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    cfg = ModelConfig(flavour="llama", vocab_size=2048, n_layer=4, n_head=4, n_kv_head=2, d_model=192, max_seq_len=256)
    policy = Transformer(cfg).to(device)
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    rng = np.random.default_rng(0)
    items = []
    for _ in range(args.pairs):
        prompt = rng.integers(3, 2048, args.prompt_len)
        seqs = [np.concatenate([prompt, rng.integers(3, 2048, args.answer_len)]) for _ in range(2)]
        items.append(PrefItem(seqs, [args.prompt_len] * 2, np.array([[0, 1]])))
    reference_logps(ref, items, device=device)
    batch = {k: v.to(device) for k, v in collate(items, 0).items()}
    tokens = int(batch["input_ids"].numel())
    dcfg = DPOConfig(init="-")
    objectives = {"precompute": dpo_objective(dcfg), "online": dpo_objective(dcfg, ref_model=ref)}
    opt = torch.optim.AdamW(param_groups(policy, 0.0), lr=1e-6)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(objective):
        loss, _ = objective(policy, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def reference_pass():
        reference_logps(ref, items, batch_size=len(items), device=device)

    runs = {"precompute": lambda: step(objectives["precompute"]), "online": lambda: step(objectives["online"]), "reference": reference_pass}
    for fn in runs.values():  # warm up
        fn()
    best = {name: float("inf") for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - t)

    print(f"DPO step, small model, {args.pairs} pairs x 2 answers, {args.prompt_len}+{args.answer_len} tokens each ({tokens} tokens), {device}")
    print(f"{'':<34}{'s/step':>10}{'tokens/s':>12}")
    for name, label in (("precompute", "precomputed reference (default)"), ("online", "reference model each step"), ("reference", "one-time reference pass (batch)")):
        print(f"{label:<34}{best[name]:>10.3f}{tokens / best[name]:>12,.0f}")
    print(f"online / precompute: {best['online'] / best['precompute']:.2f}x the time per step")
    try:
        import resource

        print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
