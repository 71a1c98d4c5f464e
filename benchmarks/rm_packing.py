"""Reward-model throughput: each batch's answers packed into shared rows, or one answer a row.

    python benchmarks/rm_packing.py [--steps N] [--rounds N]

Data: the built-in world's ranked comparisons (seed 0, up to 9 answers a prompt, cached in
benchmarks/.cache/ with the 2048-token BPE tokenizer of benchmarks/sft_packing.py), rendered
with the chat template as `lmforge rm` renders them. Model: recipes/small.yaml's GPT (llama
flavour, 4 layers, d=192) with the scalar head, freshly initialised. Each method trains
`--steps` batches of 8 comparisons (the default preset's) with `rm_loss`, AdamW and gradient
clipping, on the same batches:

  packed     answers first-fit into rows as wide as the batch's longest answer, positions from
             0 and block-diagonal attention (a boolean mask to scaled_dot_product_attention)
  one-a-row  each answer right-padded to the longest; plain causal attention, no mask

Reported: seconds a step, real (non-padding) tokens per second, the share of computed positions
that are padding, rows a batch. Rounds are interleaved; the best round of each is kept.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
os.environ.setdefault("LMFORGE_PROGRESS", "0")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lmforge.data.comparisons import collate, encode_comparisons, read_comparisons  # noqa: E402
from lmforge.models.transformer import ModelConfig, Transformer  # noqa: E402
from lmforge.train.reward import rm_loss  # noqa: E402


def world_data():
    """benchmarks/sft_packing.py's cached world and tokenizer (this folder is off sys.path: its
    tokenize.py would shadow the standard library's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sft_packing", os.path.join(_HERE, "sft_packing.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.world_data()


def small_model(vocab_size: int, head: str = "lm") -> Transformer:
    """recipes/small.yaml's GPT, freshly initialised (speed does not depend on the weights)."""
    torch.manual_seed(0)
    return Transformer(ModelConfig(flavour="llama", vocab_size=vocab_size, n_layer=4, n_head=4, n_kv_head=2, d_model=192, max_seq_len=256), head=head)


def run(data, model, objective, collate_fn, pad_id: int, *, pack: bool, steps: int, batch_size: int = 8) -> dict:
    """`steps` optimizer steps of `objective` on batches of `data` made by `collate_fn` (the
    same batches whether packed or not, wrapping around the data if it runs out)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    order = np.random.default_rng(0).permutation(len(data))
    real = computed = rows = 0
    t0 = time.perf_counter()
    for step in range(steps):
        lo = (step * batch_size) % (len(data) - batch_size + 1)
        items = [data[i] for i in order[lo : lo + batch_size]]
        batch = collate_fn(items, pad_id, pack=pack)
        loss, _ = objective(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        real += sum(len(seq) for item in items for seq in item.seqs)
        computed += batch["input_ids"].numel()
        rows += batch["input_ids"].shape[0]
    seconds = time.perf_counter() - t0
    return {"s_per_step": seconds / steps, "tokens_per_s": real / seconds, "padding": 1 - real / computed, "rows": rows / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sft_path, tok = world_data()
    comparisons, _ = read_comparisons(sft_path.parent / "comparisons.jsonl")
    data, _ = encode_comparisons(comparisons, tok, max_len=128, chat=True)
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, pack in (("packed", True), ("one-a-row", False)):
            r = run(data, small_model(tok.vocab_size, head="scalar"), rm_loss(), collate, tok.pad_id, pack=pack, steps=args.steps)
            if name not in best or r["tokens_per_s"] > best[name]["tokens_per_s"]:
                best[name] = r
    answers = sum(len(d.seqs) for d in data)
    print(f"{len(data)} comparisons, {answers} answers ({sum(len(s) for d in data for s in d.seqs) / answers:.1f} tokens an answer); {torch.get_num_threads()} threads")
    print("| method | s / step | real tokens/s | padding | rows / batch |")
    print("|---|---:|---:|---:|---:|")
    for name, r in best.items():
        print(f"| {name} | {r['s_per_step']:.3f} | {r['tokens_per_s']:,.0f} | {100 * r['padding']:.0f}% | {r['rows']:.1f} |")


if __name__ == "__main__":
    main()
