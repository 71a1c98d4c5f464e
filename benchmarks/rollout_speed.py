"""Rollouts of mixed-length answers (PPO's, best-of-n's): the continuous batch against one padded batch.

    python benchmarks/rollout_speed.py [--model DIR --prompts FILE] [--n 64] [--max-new-tokens 64] [--rounds 3]

PPO samples an answer to each of a batch of prompts, best-of-n samples n; the answers end at
different lengths. Two ways `lmforge.engine` decodes such a batch:

  padded       `_generate_padded`: one left-padded batch through `stream` (how every transformer
               decoded before continuous batching); a row that has ended still rides along in
               every forward pass until the longest answer ends
  continuous   `generate`: a ContinuousBatch; a row leaves the batch the step its answer ends
               (and with --max-batch, the next prompt takes its place)

Without --model: recipes/small.yaml's shape with random weights and 300 tokens, where 20 token
ids count as stop tokens, so that answers end after about 15 tokens on average (geometric
lengths, capped at --max-new-tokens). With --model DIR --prompts FILE: a chat model and prompts
from a JSONL file of {"prompt": ...} (the world's ppo_prompts.jsonl), stopping at its end-of-turn.
Sampling at temperature 1, seeded, the same for both. Tokens per second count answer tokens.
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize` (see its header).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompts", default=None, help="a JSONL file with a prompt field (with --model)")
    ap.add_argument("--n", type=int, default=64, help="answers in the rollout")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-batch", type=int, default=0, help="continuous: rows at once (0: all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lmforge.engine import SamplingParams, _generate_padded, generate

    if args.model:
        from lmforge.data import chat
        from lmforge.models import load_model
        from lmforge.tokenizer import Tokenizer

        model, folder = load_model(args.model)
        tok = Tokenizer.load(folder)
        texts = [json.loads(line)["prompt"] for line in open(args.prompts, encoding="utf-8")][: args.n]
        prompts = [chat.prompt_ids(tok, [{"role": "user", "content": t}]) for t in texts]
        stops, pad = chat.stop_ids(tok), tok.pad_id
    else:
        from lmforge.models.transformer import ModelConfig, Transformer

        torch.manual_seed(0)
        model = Transformer(ModelConfig(flavour="llama", vocab_size=300, n_layer=4, n_head=4, n_kv_head=2, d_model=192, max_seq_len=256))
        g = torch.Generator().manual_seed(0)
        prompts = [torch.randint(20, 300, (8 + i % 16,), generator=g).tolist() for i in range(args.n)]
        stops, pad = list(range(20)), 0
    model.eval()
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, stop_ids=stops, seed=0)
    methods = {
        "padded": lambda: _generate_padded(model, prompts, params, pad_id=pad),
        "continuous": lambda: generate(model, prompts, params, pad_id=pad, max_batch=args.max_batch or None),
    }
    best, lengths = {}, {}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            out = fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
            lengths[name] = [len(g.tokens) for g in out]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.model or 'random small model'}; {len(prompts)} prompts, temperature 1, up to {args.max_new_tokens} new tokens; best of {args.rounds} rounds")
    print("\n| method | answer tokens | mean / longest answer | seconds | answer tokens/s |\n|---|---:|---:|---:|---:|")
    for name in methods:
        n = sum(lengths[name])
        print(f"| {name} | {n} | {n / len(prompts):.1f} / {max(lengths[name])} | {best[name]:.2f} | {n / best[name]:,.0f} |")
    print(f"\ncontinuous: {best['padded'] / best['continuous']:.2f}x the padded batch's speed")


if __name__ == "__main__":
    main()
