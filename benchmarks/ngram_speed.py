"""n-gram LM speed and memory: build time and peak memory for orders 3 and 5, query speed.

    python benchmarks/ngram_speed.py [--million-words 10] [--orders 3 5]

Makes a synthetic corpus of Zipf-distributed words (seeded, cached in benchmarks/.cache/),
builds each order with lmforge, measures peak resident memory of the build (in a child
process, so each number stands alone; the memory the imports alone take is shown beside it) and
scores a held-out tenth, read as KenLM's query reads it. If KenLM's `lmplz` and
`query` are on the PATH, they are timed on the same files, and their perplexity is printed
beside lmforge's (they are not a dependency: build them from the kenlm source release).
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

CACHE = Path(_HERE) / ".cache"


def corpus(million_words: float, seed: int = 0) -> tuple[Path, Path]:
    CACHE.mkdir(exist_ok=True)
    train, test = CACHE / f"ngram-{million_words}M-train.txt", CACHE / f"ngram-{million_words}M-test.txt"
    if train.exists() and test.exists():
        return train, test
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(50000)])
    n = int(million_words * 1e6 * 1.1)
    # a Zipf vocabulary with a little local structure: a word often repeats a recent one's neighbour
    ranks = np.minimum(rng.zipf(1.2, n) - 1, len(vocab) - 1)
    sticky = rng.random(n) < 0.3
    ranks[1:][sticky[1:]] = (ranks[:-1][sticky[1:]] + 1) % len(vocab)
    words = vocab[ranks]
    lengths = rng.integers(5, 30, size=n // 5)
    ends = np.cumsum(lengths)
    ends = ends[ends < n]
    lines = [" ".join(words[a:b]) for a, b in zip(np.concatenate([[0], ends[:-1]]), ends)]
    cut = int(len(lines) * 10 / 11)
    train.write_text("\n".join(lines[:cut]) + "\n")
    test.write_text("\n".join(lines[cut:]) + "\n")
    return train, test


CHILD = """
import json, resource, sys, time
from lmforge.models.ngram import estimate, read_sentences
train, test, order = sys.argv[1], sys.argv[2], int(sys.argv[3])
import_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter(); sents = read_sentences(train); t_read = time.perf_counter() - t0
t0 = time.perf_counter(); lm = estimate(sents, order); t_build = time.perf_counter() - t0
words = sum(len(s) + 1 for s in sents)
test_s = read_sentences(test, query=True)
t0 = time.perf_counter(); r = lm.evaluate(test_s); t_query = time.perf_counter() - t0
print(json.dumps({"read_s": t_read, "build_s": t_build, "query_s": t_query, "train_tokens": words, "test_tokens": r["tokens"],
                  "perplexity": r["perplexity"], "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "import_mb": import_mb,
                  "ngrams": [len(o.keys) for o in lm.orders]}))
"""


def kenlm(train: Path, test: Path, order: int) -> dict | None:
    lmplz, query = shutil.which("lmplz"), shutil.which("query")
    if not (lmplz and query):
        return None
    arpa = CACHE / f"kenlm-{order}.arpa"
    t0 = time.perf_counter()
    with open(train) as fin, open(arpa, "w") as fout:
        subprocess.run([lmplz, "-o", str(order), "-S", "2G", "--discount_fallback"], stdin=fin, stdout=fout, stderr=subprocess.DEVNULL, check=True)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    with open(test) as fin:
        out = subprocess.run([query, "-v", "summary", str(arpa)], stdin=fin, capture_output=True, text=True, check=True).stdout
    t_query = time.perf_counter() - t0  # includes loading the ARPA file
    ppl = float(next(line.split("\t")[1] for line in out.splitlines() if line.startswith("Perplexity including OOVs")))
    return {"build_s": t_build, "query_s_incl_load": t_query, "perplexity": ppl}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--million-words", type=float, default=10.0)
    ap.add_argument("--orders", type=int, nargs="+", default=[3, 5])
    args = ap.parse_args()
    train, test = corpus(args.million_words)
    print(f"corpus: {train.name} ({train.stat().st_size / 1e6:.0f} MB), cores: {os.cpu_count()}")
    print("| model | train tokens | build s | peak MB | query tokens/s | perplexity |\n|---|---:|---:|---:|---:|---:|")
    for order in args.orders:
        env = {**os.environ, "PYTHONPATH": str(Path(_HERE).parent)}
        r = json.loads(subprocess.run([sys.executable, "-c", CHILD, str(train), str(test), str(order)], capture_output=True, text=True, check=True, env=env).stdout)
        print(f"| lmforge order {order} | {r['train_tokens']:,} | {r['build_s']:.1f} (+{r['read_s']:.1f} read) | {r['peak_mb']:.0f} ({r['import_mb']:.0f} imports) | {r['test_tokens'] / r['query_s']:,.0f} | {r['perplexity']:.4f} |")
        k = kenlm(train, test, order)
        if k:
            print(f"| KenLM lmplz/query order {order} | | {k['build_s']:.1f} | | (query incl. load {k['query_s_incl_load']:.1f} s) | {k['perplexity']:.4f} |")


if __name__ == "__main__":
    main()
