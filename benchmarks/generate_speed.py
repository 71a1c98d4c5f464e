"""Generation throughput of lmforge's engine: KV cache against no cache, batched against one at a time.

    python benchmarks/generate_speed.py [--new-tokens N] [--rounds N] [--batch B] [--profile]

The model is recipes/small.yaml's (llama flavour, 4 layers, 4 heads, 2 KV heads, d_model 192,
vocab 2048) with random weights, built with max_seq_len 512 so that a ~16-token prompt has
room for 256 new tokens. Decoding is greedy (temperature 0) with stop_ids=[] so every method
produces exactly the requested number of tokens.

  (a) kv cache        `lmforge.engine.generate` on one 16-token prompt
  (b) no cache        a naive loop: the full forward over the whole sequence for every new
                      token, argmax of the last position (the same model, under no_grad)
  (c) batched         one `generate` call with B prompts of different lengths (left padded)
  (d) sequential      the same B prompts, one `generate` call each (cache on)

Methods are run in interleaved rounds (a, b, c, d, then again) and the best round of each is
kept, because this VM is noisy. Greedy outputs are compared as a sanity check: (a) against
(b), and (c) against (d), token for token.
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize` (see its header).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from lmforge.engine import SamplingParams, generate  # noqa: E402
from lmforge.models.transformer import ModelConfig, Transformer  # noqa: E402

REQUIRED_CACHE_SPEEDUP = 5.0


def small_model(max_seq_len: int) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(flavour="llama", vocab_size=2048, n_layer=4, n_head=4, n_kv_head=2, d_model=192, max_seq_len=max_seq_len)
    return Transformer(cfg).eval()


def params(n: int) -> SamplingParams:
    return SamplingParams(max_new_tokens=n, temperature=0.0, stop_ids=[])


@torch.no_grad()
def no_cache(model: Transformer, prompt: list[int], n: int) -> list[int]:
    """Re-run the whole sequence through the model for every new token."""
    seq = torch.tensor([prompt], dtype=torch.long)
    out = []
    for _ in range(n):
        tok = model(seq)[:, -1].argmax(-1)
        out.append(int(tok))
        seq = torch.cat([seq, tok[:, None]], 1)
    return out


def agreement(a: list[list[int]], b: list[list[int]]) -> str:
    same = sum(x == y for x, y in zip(a, b))
    # where greedy decoding first differs (float ties can flip an argmax; then the rest follows)
    first = [next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), None) for x, y in zip(a, b)]
    diverged = [f for f in first if f is not None]
    detail = "" if not diverged else f" (first differing token at step {min(diverged)})"
    return f"{same}/{len(a)} sequences identical{detail}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8, help="prompts in the batched/sequential comparison")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--profile", action="store_true", help="afterwards, cProfile a cached generate call (1 prompt, then the batch)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    N = args.new_tokens
    model = small_model(args.max_seq_len)
    V = model.cfg.vocab_size
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(1, V, (args.prompt_len,), generator=g).tolist()
    # B prompts of different lengths, 4..4B tokens (32 for B = 8), the longest fitting the context
    lengths = [min(4 * (i + 1), args.max_seq_len - N) for i in range(args.batch)]
    prompts = [torch.randint(1, V, (n,), generator=g).tolist() for n in lengths]
    if args.prompt_len + N > args.max_seq_len or max(lengths) + N > args.max_seq_len:
        ap.error("prompt + new tokens exceed --max-seq-len")

    def run_cache():
        return [generate(model, [prompt], params(N))[0].tokens]

    def run_no_cache():
        return [no_cache(model, prompt, N)]

    def run_batched():
        return [r.tokens for r in generate(model, prompts, params(N))]

    def run_sequential():
        return [generate(model, [p], params(N))[0].tokens for p in prompts]

    methods = {
        "(a) kv cache, 1 prompt": (run_cache, N),
        "(b) no cache (full forward per token), 1 prompt": (run_no_cache, N),
        f"(c) batched, {args.batch} prompts in one generate call": (run_batched, N * args.batch),
        f"(d) sequential, the same {args.batch} prompts one at a time (cache)": (run_sequential, N * args.batch),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores")
    print(
        f"model: small (llama, 4 layers, d_model 192, vocab {V}, {model.num_params() / 1e6:.2f}M params), random weights, "
        f"max_seq_len {args.max_seq_len}; greedy, {N} new tokens; prompt {args.prompt_len} tokens; "
        f"batch prompt lengths {lengths}; best of {args.rounds} interleaved rounds"
    )
    # warm-up, untimed (short)
    generate(model, [prompt], params(8))
    generate(model, prompts, params(8))
    no_cache(model, prompt, 8)

    best = {m: float("inf") for m in methods}
    outputs: dict[str, list[list[int]]] = {}
    for r in range(args.rounds):
        for name, (fn, n_tokens) in methods.items():
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
            best[name] = min(best[name], dt)
            outputs[name] = out
            assert sum(len(x) for x in out) == n_tokens, (name, [len(x) for x in out])
        print(f"round {r + 1}: " + ", ".join(f"{m.split(')')[0]}) {best[m]:.2f}s" for m in methods), flush=True)

    names = list(methods)
    a, b, c, d = names
    speedup = {a: f"{best[b] / best[a]:.1f}x vs (b)", b: "1.0x (baseline for a)", c: f"{best[d] / best[c]:.1f}x vs (d)", d: "1.0x (baseline for c)"}
    print()
    print("| method | new tokens | seconds | tokens/s | speed-up |\n|---|---:|---:|---:|---:|")
    for name, (_, n_tokens) in methods.items():
        print(f"| {name} | {n_tokens} | {best[name]:.2f} | {n_tokens / best[name]:,.0f} | {speedup[name]} |")
    print()
    cache_x = best[b] / best[a]
    ok = "meets" if cache_x >= REQUIRED_CACHE_SPEEDUP else "FAILS"
    print(f"verdict: KV cache speed-up over no cache: {cache_x:.1f}x ({ok} the >= {REQUIRED_CACHE_SPEEDUP:.0f}x requirement); outputs: {agreement(outputs[a], outputs[b])}")
    bx = best[d] / best[c]
    print(f"verdict: batched ({args.batch} prompts in one call) vs sequential: {bx:.1f}x {'faster' if bx >= 1 else 'slower'}; outputs: {agreement(outputs[c], outputs[d])}")

    if args.profile:
        for label, fn in (("generate, 1 prompt", run_cache), (f"generate, {args.batch} prompts batched", run_batched)):
            prof = cProfile.Profile()
            prof.enable()
            fn()
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
            print(f"\n---- cProfile: {label}, {N} new tokens (sorted by own time) ----")
            print(buf.getvalue())


if __name__ == "__main__":
    main()
