"""Decoding speed of lmforge's engine against Hugging Face `transformers`' `generate`, same weights.

    python benchmarks/decode_vs_hf.py [--model DIR] [--new-tokens 128] [--batches 1,16] [--rounds 3] [--threads N]

The model is a lmforge model directory (default: recipes/small.yaml's shape with random weights,
saved to a temporary folder); `lmforge.interop.hf.export_hf` writes the same weights as a Hugging
Face folder, which `transformers.AutoModelForCausalLM` loads. Each method decodes greedily
(temperature 0, no stop token, exactly --new-tokens new tokens) from the same prompts (B prompts
of 13 to 17 tokens, left padded for `transformers`):

  lmforge            `lmforge.engine.generate` (the continuous batch, eager)
  lmforge compiled   the same with compile=True (torch.compile of the decode step; compiled
                     before timing, its compile time printed apart)
  transformers       `model.generate(..., do_sample=False)` with its default (dynamic) KV cache

Methods run in interleaved rounds and the best round of each is kept (the host is noisy).
lmforge's greedy tokens are checked against the full recompute (no cache, the whole sequence
through the model for every token), and transformers' against lmforge's.
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize` (see its header).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402


def random_model_dir(out: Path) -> Path:
    """recipes/small.yaml's shape with random weights and a byte-level tokenizer, saved as a lmforge model."""
    from lmforge.checkpoint import save_model
    from lmforge.models import model_config_json
    from lmforge.models.transformer import ModelConfig, Transformer
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    tok = train_tokenizer(["The Zorblat lives in Xifi and eats berries.", "What is 2 + 3? It is 5."] * 50, TokenizerConfig(vocab_size=300, min_frequency=1))
    torch.manual_seed(0)
    model = Transformer(ModelConfig(flavour="llama", vocab_size=tok.vocab_size, n_layer=4, n_head=4, n_kv_head=2, d_model=192, max_seq_len=256)).eval()
    return save_model(out, model.state_dict(), model_config_json(model), tok)


@torch.no_grad()
def full_recompute(model, prompt: list[int], n: int) -> list[int]:
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(prompt) :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a lmforge model directory (default: a random small model)")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from lmforge.engine import SamplingParams, generate
    from lmforge.interop.hf import export_hf
    from lmforge.models import load_model

    tmp = Path(tempfile.mkdtemp())
    src = Path(args.model) if args.model else random_model_dir(tmp / "model")
    export_hf(src, tmp / "hf")
    model, _ = load_model(src)
    model.eval()
    hf = AutoModelForCausalLM.from_pretrained(tmp / "hf").eval()
    N, batches = args.new_tokens, [int(b) for b in args.batches.split(",")]
    g = torch.Generator().manual_seed(0)
    V = model.cfg.vocab_size
    prompts = [torch.randint(1, V, (13 + i % 5,), generator=g).tolist() for i in range(max(batches))]
    params = SamplingParams(max_new_tokens=N, temperature=0, stop_ids=[])

    @torch.no_grad()
    def run_hf(batch):
        T = max(len(p) for p in batch)
        ids, mask = torch.zeros(len(batch), T, dtype=torch.long), torch.zeros(len(batch), T, dtype=torch.long)
        for i, p in enumerate(batch):
            ids[i, T - len(p) :], mask[i, T - len(p) :] = torch.tensor(p), 1
        out = hf.generate(ids, attention_mask=mask, max_new_tokens=N, min_new_tokens=N, do_sample=False, eos_token_id=None, pad_token_id=0)
        return [row[T:].tolist() for row in out]

    methods = {
        "lmforge": lambda b: [x.tokens for x in generate(model, b, params)],
        "lmforge compiled": lambda b: [x.tokens for x in generate(model, b, params, compile=True)],
        "transformers": run_hf,
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; model {src} ({model.num_params() / 1e6:.2f}M parameters, {model.cfg.flavour}); greedy, {N} new tokens; best of {args.rounds} rounds")
    rows = []
    for B in batches:
        batch = prompts[:B]
        t0 = time.perf_counter()
        methods["lmforge compiled"](batch)  # compiles this batch size's graph
        compile_s = time.perf_counter() - t0
        best, outs = {}, {}
        for _ in range(args.rounds):
            for name, fn in methods.items():
                t0 = time.perf_counter()
                outs[name] = fn(batch)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
        exact = outs["lmforge"] == outs["lmforge compiled"] == [full_recompute(model, p, N) for p in batch]
        hf_same = sum(a == b for a, b in zip(outs["transformers"], outs["lmforge"]))
        rows.append((B, best, compile_s, exact, hf_same))
    print("\n| batch | lmforge tok/s | lmforge compiled tok/s | transformers tok/s | lmforge / transformers | compiled / transformers | lmforge = full recompute | transformers = lmforge | compile s |")
    print("|---:|---:|---:|---:|---:|---:|---|---|---:|")
    for B, best, compile_s, exact, hf_same in rows:
        tps = {k: B * N / v for k, v in best.items()}
        print(
            f"| {B} | {tps['lmforge']:,.0f} | {tps['lmforge compiled']:,.0f} | {tps['transformers']:,.0f} | {tps['lmforge'] / tps['transformers']:.2f}x | "
            f"{tps['lmforge compiled'] / tps['transformers']:.2f}x | {'yes' if exact else 'NO'} | {hf_same}/{B} sequences | {compile_s:.1f} |"
        )


if __name__ == "__main__":
    main()
