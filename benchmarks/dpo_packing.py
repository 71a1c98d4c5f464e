"""DPO throughput: each batch's sequences (prompt + answer) packed into shared rows, or one a row.

    python benchmarks/dpo_packing.py [--comparisons RUN/labels/rankings.jsonl] [--steps N] [--rounds N]

Data: by default the built-in world's ranked comparisons (benchmarks/rm_packing.py's, seed 0, up
to 9 answers a prompt); `--comparisons` reads a run's own (the default preset trains DPO on
`labels/rankings.jsonl`: four sampled answers a prompt, ranked by the labelers). Rendered with
the chat template as `lmforge dpo` renders them, every pair of a ranking kept (`pairs: all`).
Model: recipes/small.yaml's GPT (llama flavour, 4 layers, d=192), freshly initialised; the
reference log-probs are computed once beforehand, as `lmforge dpo` stores them. Each method
trains `--steps` batches of 8 rankings (the default preset's) with the DPO loss, AdamW and
gradient clipping, on the same batches:

  packed     sequences first-fit into rows as wide as the batch's longest, positions from 0 and
             block-diagonal attention (a boolean mask to scaled_dot_product_attention)
  one-a-row  each sequence right-padded to the longest; plain causal attention, no mask

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
import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from lmforge.data.comparisons import read_comparisons  # noqa: E402
from lmforge.tokenizer import Tokenizer  # noqa: E402
from lmforge.train.dpo import DPOConfig, collate, dpo_objective, encode_pairs, reference_logps  # noqa: E402

# rm_packing.py's data, model and step loop (loaded by path: this folder is off sys.path, its
# tokenize.py would shadow the standard library's)
_spec = importlib.util.spec_from_file_location("rm_packing", os.path.join(_HERE, "rm_packing.py"))
rm_packing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rm_packing)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comparisons", default="", help="a JSONL of ranked comparisons (default: the built-in world's)")
    ap.add_argument("--tokenizer", default="", help="with --comparisons: the run's tokenizer.json (default: RUN/base/tokenizer.json)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.comparisons:
        path = Path(args.comparisons)
        tok = Tokenizer.load(args.tokenizer or path.parent.parent / "base")
    else:
        sft_path, tok = rm_packing.world_data()
        path = sft_path.parent / "comparisons.jsonl"
    comparisons, _ = read_comparisons(path)
    data, _ = encode_pairs(comparisons, tok, max_len=256, chat=True)
    reference_logps(rm_packing.small_model(tok.vocab_size), data)  # stored beforehand, as the stage does
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, pack in (("packed", True), ("one-a-row", False)):
            r = rm_packing.run(data, rm_packing.small_model(tok.vocab_size), dpo_objective(DPOConfig(init="-")), collate, tok.pad_id, pack=pack, steps=args.steps)
            if name not in best or r["tokens_per_s"] > best[name]["tokens_per_s"]:
                best[name] = r
    seqs = sum(len(d.seqs) for d in data)
    print(f"{path}: {len(data)} rankings, {seqs} sequences ({sum(len(s) for d in data for s in d.seqs) / seqs:.1f} tokens each); {torch.get_num_threads()} threads")
    print("| method | s / step | real tokens/s | padding | rows / batch |")
    print("|---|---:|---:|---:|---:|")
    for name, r in best.items():
        print(f"| {name} | {r['s_per_step']:.3f} | {r['tokens_per_s']:,.0f} | {100 * r['padding']:.0f}% | {r['rows']:.1f} |")


if __name__ == "__main__":
    main()
