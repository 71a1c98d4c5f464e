"""Load on `lmforge serve`: throughput and latency of concurrent requests, by scheduler.

    python benchmarks/serve_load.py [--model DIR] [--requests 600] [--concurrency 300] [--max-tokens 32]
    python benchmarks/serve_load.py --memory 5000     # resident memory over 5,000 requests, continuous batching

The server runs in this process (uvicorn on a thread, the model on the batcher's worker
thread); clients are threads sending /v1/completions (or /v1/chat/completions for a chat model)
at once. Without --model the model is recipes/small.yaml's shape (llama, 4 layers, d_model 192)
with random weights behind a byte-level tokenizer (300 tokens) trained here on a few lines, and
sampling at temperature 1: an answer ends at the end-of-text token or after --max-tokens.

One table row a scheduler, each with the server's default limits (`Limits()`, what `lmforge
serve` starts with): continuous batching (requests join the running batch at each decode step;
the default), the same with the decode step compiled (`--compile`), waves (the scheduler it replaced: a batch runs until its last answer ends), waves
with the queue of 64 requests that was its default, and off (one request at a time). Requests
answered, refused (429) and failed, decode steps (waves: batches), wall time, requests and
tokens per second, p50 / p99 latency.
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
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lmforge.serve.app import BackgroundServer, Limits, Served, create_app, load_served  # noqa: E402
from lmforge.serve.batcher import Batcher  # noqa: E402


def random_model(limits: Limits):
    from lmforge.models.transformer import ModelConfig, Transformer
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    texts = ["The Zorblat lives in Xifi and eats berries.", "What is 2 + 3? It is 5.", "Sort these words: b, a, c."] * 50
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=300, min_frequency=1))
    torch.manual_seed(0)
    model = Transformer(ModelConfig(flavour="llama", vocab_size=tok.vocab_size, n_layer=4, n_head=4, n_kv_head=2, d_model=192, max_seq_len=256)).eval()
    batcher = Batcher(model, pad_id=tok.pad_id, max_batch=limits.max_batch, max_queue=limits.max_queue, max_tokens_in_flight=limits.max_tokens_in_flight, mode=limits.batching, compile=limits.compile)
    return {"random": Served("random", model, tok, batcher, int(time.time()))}


def one(url: str, body: dict, route: str):
    t0 = time.perf_counter()
    req = urllib.request.Request(url + route, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            reply = json.loads(r.read())
            return 200, time.perf_counter() - t0, reply["usage"]["completion_tokens"]
    except urllib.error.HTTPError as e:
        return e.code, time.perf_counter() - t0, 0
    except OSError:
        return -1, time.perf_counter() - t0, 0


def serve(args, limits: Limits):
    served = load_served({"model": args.model}, limits) if args.model else random_model(limits)
    name, s = next(iter(served.items()))
    if s.is_chat:
        route, body = "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "Tell me about the Zorblat."}]}
    else:
        route, body = "/v1/completions", {"model": name, "prompt": "The Zorblat"}
    body.update(max_tokens=args.max_tokens, temperature=1.0)
    return served, s, route, body


def run(args, label: str, limits: Limits) -> dict:
    served, s, route, body = serve(args, limits)
    with BackgroundServer(create_app(served, limits=limits)) as url:
        one(url, body, route)  # warm up
        steps0 = s.batcher.waves
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            results = list(pool.map(lambda _: one(url, body, route), range(args.requests)))
        wall = time.perf_counter() - t0
        steps = s.batcher.waves - steps0
    codes = [c for c, _, _ in results]
    lat = np.array([t for c, t, _ in results if c == 200])
    tokens = sum(n for _, _, n in results)
    return {
        "mode": label,
        "answered": codes.count(200), "refused": sum(c in (429, 503) for c in codes), "failed": sum(c not in (200, 429, 503) for c in codes),
        "wall_s": wall, "req_s": codes.count(200) / wall, "tok_s": tokens / wall, "steps": steps,
        "p50_s": float(np.percentile(lat, 50)) if len(lat) else float("nan"), "p99_s": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
    }  # fmt: skip


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def memory(args) -> None:
    """Resident memory after each tenth of `args.memory` requests, continuous batching."""
    limits = Limits(timeout_s=600)
    served, s, route, body = serve(args, limits)
    chunk = max(1, args.memory // 10)
    print(f"{args.memory} requests, {args.concurrency} at once, {args.max_tokens} tokens each, continuous batching")
    print(f"{'requests':>9}{'answered':>9}{'RSS MB':>8}{'in flight':>10}")
    with BackgroundServer(create_app(served, limits=limits)) as url, ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        done = ok = 0
        while done < args.memory:
            codes = [c for c, _, _ in pool.map(lambda _: one(url, body, route), range(chunk))]
            done, ok = done + chunk, ok + codes.count(200)
            print(f"{done:>9}{ok:>9}{rss_mb():>8.0f}{s.batcher.in_flight:>10}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a model directory (default: a random small model)")
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--concurrency", type=int, default=300)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--modes", default="continuous,compiled,waves,waves-queue64,off", help="which rows to run")
    ap.add_argument("--memory", type=int, default=0, metavar="N", help="instead: resident memory over N requests")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.memory:
        return memory(args)
    limits = {
        "continuous": Limits(timeout_s=600),
        "compiled": Limits(timeout_s=600, compile=True),
        "waves": Limits(timeout_s=600, batching="waves"),
        "waves-queue64": Limits(timeout_s=600, batching="waves", max_queue=64),
        "off": Limits(timeout_s=600, batching="off"),
    }
    rows = [run(args, m, limits[m]) for m in args.modes.split(",")]
    print(f"{args.requests} requests, {args.concurrency} at once, {args.max_tokens} tokens each, max batch {Limits().max_batch}, {torch.get_num_threads()} threads")
    print(f"{'scheduler':<15}{'answered':>9}{'refused':>8}{'failed':>7}{'steps':>7}{'wall s':>8}{'req/s':>8}{'tok/s':>8}{'p50 s':>8}{'p99 s':>8}")
    for r in rows:
        print(f"{r['mode']:<15}{r['answered']:>9}{r['refused']:>8}{r['failed']:>7}{r['steps']:>7}{r['wall_s']:>8.1f}{r['req_s']:>8.1f}{r['tok_s']:>8.0f}{r['p50_s']:>8.2f}{r['p99_s']:>8.2f}")


if __name__ == "__main__":
    main()
