"""Encoding throughput: lmforge's shard writer against Hugging Face `tokenizers` called directly.

What it measures. MB/s of UTF-8 input text (1 MB = 10^6 bytes of the documents' text, not of
the JSONL file) turned into token ids, by

  - direct encode_batch_fast: the documents already in memory as a list of str (loading is not
    timed), `tok.hf.encode_batch_fast(batch, add_special_tokens=False)` on batches of 512
    documents, taking `.ids` of every encoding. This is the baseline: the least any pipeline
    built on `tokenizers` can cost.
  - direct encode_batch: the same with `encode_batch`, which also computes offsets.
  - lmforge write_shards (num_proc=N): `write_shards(iter_text_pieces(corpus.jsonl), tok, out,
    ShardConfig(num_proc=N))`, i.e. the whole pipeline: reading the file, parsing JSON,
    encoding, converting ids to numpy, writing shards, checksumming them, writing the index.

Each is timed by wall clock, best of `--repeats` runs; the runs are interleaved (every method once
per round) so that drift in the machine's speed reaches all methods alike. Overhead = 1 - lmforge MB/s / direct
fast MB/s; the verdict line says whether lmforge's best row is under 15%. tokens/s counts
content tokens (the end-of-text token write_shards adds after each document is not counted),
so it is comparable across rows.

The corpus is synthetic and seeded: English-like prose from a Zipf-distributed vocabulary of
common and invented words, with punctuation, paragraphs, numbers and a little non-ASCII, one
`{"text": ...}` document (a few hundred to a few thousand characters) per JSONL line. It and a
byte-level BPE tokenizer (vocabulary 8192, trained on its first ~5 MB) are cached in
`benchmarks/.cache/` and reused.

Run (from the repository root, in the project's virtualenv):

    python benchmarks/tokenize.py                     # 50 MB, lmforge with num_proc 1 and 2
    python benchmarks/tokenize.py --mb 10 --num-proc 1 2 4 --repeats 2
"""

import os
import sys

# This file is named like the standard library's `tokenize`, which `inspect` and `linecache`
# (so torch, tracebacks, ...) import. Run as a script, its folder comes first on sys.path and
# would shadow that module: take it off before importing anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

CACHE = Path(_HERE) / ".cache"
CORPUS_VERSION = 1  # bump when the generator changes, so stale caches are not reused
THRESHOLD = 0.15  # the overhead lmforge should stay under
MB = 1_000_000


# --------------------------------------------------------------------------- corpus

COMMON = (
    "the of and to a in is that it was for on are as with his they at be this from I have or by "
    "one had not but what all were when we there can an your which their said if do will each "
    "about how up out them then she many some so these would other into has more her two like "
    "him see time could no make than first been its who now people my made over did down only "
    "way find use may water long little very after words called just where most know get through "
    "back much before go good new write our used me man too any day same right look think also "
    "around another came come work three word must because does part even place well such here "
    "take why things help put years different away again off went old number great tell men say "
    "small every found still between name should home big give air line set own under read last "
    "never us left end along while might next sound below saw something thought both few those "
    "always looked show large often together asked house world going want school important until "
    "form food keep children feet land side without boy once animals life enough took sometimes "
    "four head above kind began almost live page got earth need far hand high year mother light "
    "parts country father let night following picture being study second eyes soon times story "
    "boys since white days ever paper hard near sentence better best across during today others "
    "however sure means knew try told young miles sun ways thing whole hear example heard several "
    "change answer room sea against top turned learn point city play toward five using himself "
    "usually money seen car morning river system data model market process theory government"
).split()

NON_ASCII = (
    "café naïve résumé façade über Zürich São Paulo München Ångström jalapeño piñata coöperate "
    "déjà vu Москва Київ Αθήνα 東京 北京 서울 Köln Malmö Ærø Łódź Škoda Dvořák Erdős Gödel "
    "crème brûlée smörgåsbord fiancée rôle señor año niño über-cool 100€ 20°C ±3 ×2 → ≈ — – … "
    "“quoted” ‘single’ «guillemets» naïveté Ελλάδα Ñandú 🙂 👍 🚀"
).split()

ONSETS = ["", "b", "br", "c", "ch", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n", "p", "pl",
          "pr", "qu", "r", "s", "sh", "sk", "sl", "st", "t", "th", "tr", "v", "w", "z"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "io", "ou", "y"]
CODAS = ["", "", "", "", "", "n", "r", "s", "t", "l", "m", "nd", "ng", "nt", "rk", "st", "x"]

# (separator, probability): what follows a word that does not end its sentence...
IN_SENTENCE = [(" ", 0.90), (", ", 0.075), ("; ", 0.008), (": ", 0.007), (" - ", 0.005), (" (", 0.005)]
# ...and one that does.
SENTENCE_END = [(". ", 0.72), ("? ", 0.05), ("! ", 0.03), (".\n", 0.05), (".\n\n", 0.15)]


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    """Zipf-ranked words: common English first, then invented ones, non-ASCII sprinkled in."""
    words = list(dict.fromkeys(COMMON))
    seen = set(words)
    while len(words) < size - len(NON_ASCII):
        n_syl = int(rng.choice([1, 2, 2, 2, 3]))
        w = "".join(
            ONSETS[rng.integers(len(ONSETS))] + VOWELS[rng.integers(len(VOWELS))] + CODAS[rng.integers(len(CODAS))]
            for _ in range(n_syl)
        )
        if len(w) >= 2 and w not in seen:
            seen.add(w)
            words.append(w)
    # Non-ASCII words at random ranks from 40 on: a few are frequent, most are rare.
    for w, rank in zip(NON_ASCII, rng.integers(40, len(words), size=len(NON_ASCII))):
        words.insert(int(rank), w)
    return words


def _cdf(probs: list[float]) -> np.ndarray:
    c = np.cumsum(probs)
    return c / c[-1]


def generate_corpus(path: Path, mb: int, seed: int, vocab_size: int = 4000) -> dict:
    """Write at least `mb` MB of UTF-8 text as JSONL documents; returns the corpus facts."""
    rng = np.random.default_rng(seed)
    words = _vocabulary(rng, vocab_size)
    ranks = np.arange(1, len(words) + 1)
    word_cdf = _cdf(1.0 / (ranks + 2.7) ** 1.05)  # Zipf-Mandelbrot
    lower = np.array(words, dtype=object)
    upper = np.array([w[:1].upper() + w[1:] for w in words], dtype=object)
    numbers = np.array(
        [str(n) for n in rng.integers(0, 100, 300)]
        + [str(n) for n in rng.integers(1800, 2030, 300)]
        + [f"{n:,}" for n in rng.integers(1000, 10**7, 200)]
        + [f"{x:.2f}" for x in rng.random(200) * 100]
        + [f"{n}%" for n in rng.integers(1, 100, 100)],
        dtype=object,
    )
    seps_in = np.array([s for s, _ in IN_SENTENCE], dtype=object)
    seps_end = np.array([s for s, _ in SENTENCE_END], dtype=object)
    cdf_in, cdf_end = _cdf([p for _, p in IN_SENTENCE]), _cdf([p for _, p in SENTENCE_END])

    target = mb * MB
    text_bytes = docs = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        while text_bytes < target:
            # A block of documents, each 50 to 650 words long (log-uniform).
            lengths = np.exp(rng.uniform(np.log(50), np.log(650), size=1000)).astype(np.int64)
            n = int(lengths.sum())
            toks = lower[np.searchsorted(word_cdf, rng.random(n))]
            ends = rng.random(n) < 1 / 14  # sentences of ~14 words
            doc_last = np.cumsum(lengths) - 1
            ends[doc_last] = True
            starts = np.roll(ends, 1)  # a word after a sentence end starts a sentence
            starts[0] = True
            toks = np.where(starts, upper[np.searchsorted(word_cdf, rng.random(n))], toks)
            is_num = rng.random(n) < 0.015
            toks[is_num] = numbers[rng.integers(len(numbers), size=int(is_num.sum()))]
            seps = np.where(
                ends,
                seps_end[np.searchsorted(cdf_end, rng.random(n))],
                seps_in[np.searchsorted(cdf_in, rng.random(n))],
            )
            seps[doc_last] = "."
            # Interleave word, separator, word, separator, ... and cut at document ends.
            flat = np.empty(2 * n, dtype=object)
            flat[0::2], flat[1::2] = toks, seps
            bounds = np.concatenate([[0], 2 * (doc_last + 1)])
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                text = "".join(flat[a:b].tolist()).replace("( ", "(")
                fh.write(json.dumps({"text": text}, ensure_ascii=False))
                fh.write("\n")
                text_bytes += len(text.encode("utf-8"))
                docs += 1
                if text_bytes >= target:
                    break
    os.replace(tmp, path)
    return {"version": CORPUS_VERSION, "mb": mb, "seed": seed, "documents": docs, "text_bytes": text_bytes, "file_bytes": path.stat().st_size}


def corpus(mb: int, seed: int) -> tuple[Path, dict]:
    """The cached corpus for (mb, seed), generated if missing or not the expected size."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"corpus-{mb}mb-seed{seed}-v{CORPUS_VERSION}.jsonl"
    meta_path = path.with_suffix(".meta.json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == CORPUS_VERSION and meta.get("file_bytes") == path.stat().st_size and meta.get("text_bytes", 0) >= mb * MB:
            print(f"- corpus: reusing {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
            return path, meta
    t0 = time.perf_counter()
    meta = generate_corpus(path, mb, seed)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"- corpus: generated {path.name} in {time.perf_counter() - t0:.1f}s")
    return path, meta


def tokenizer_for(corpus_path: Path, vocab_size: int = 8192, train_mb: int = 5):
    """A byte-level BPE tokenizer trained on the first `train_mb` MB of the corpus, cached."""
    from lmforge.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer

    path = CACHE / f"tokenizer-{corpus_path.stem}-bpe{vocab_size}-{train_mb}mb.json"
    if path.exists():
        print(f"- tokenizer: reusing {path.name}")
        return Tokenizer.load(path)

    def texts():
        with open(corpus_path, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)["text"]

    t0 = time.perf_counter()
    tok = train_tokenizer(texts(), TokenizerConfig(kind="bpe", vocab_size=vocab_size, max_train_bytes=train_mb * MB))
    path.write_text(tok.to_json(), encoding="utf-8")
    print(f"- tokenizer: trained {path.name} in {time.perf_counter() - t0:.1f}s")
    return tok


# --------------------------------------------------------------------------- measurements


def timed(fn) -> tuple[float, object]:
    """Wall-clock seconds of one call of fn(), and its result."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def direct(hf, docs: list[str], batch: int, fast: bool) -> int:
    """Encode every document with tokenizers, keeping each one's ids; returns the token count."""
    encode = hf.encode_batch_fast if fast else hf.encode_batch
    tokens = 0
    for i in range(0, len(docs), batch):
        ids = [e.ids for e in encode(docs[i : i + batch], add_special_tokens=False)]
        tokens += sum(map(len, ids))
    return tokens


def lmforge_shards(corpus_path: Path, tok, num_proc: int, batch: int) -> dict:
    """The whole write_shards pipeline from the JSONL file to checksummed shards on disk."""
    from lmforge.data.readers import iter_text_pieces
    from lmforge.data.shards import ShardConfig, write_shards

    work = Path(tempfile.mkdtemp(prefix="shards-", dir=CACHE))
    try:
        cfg = ShardConfig(num_proc=num_proc, batch_docs=batch)
        return write_shards(iter_text_pieces(corpus_path), tok, work / "out", cfg, overwrite=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # not timed (the caller times this whole call; rmtree is
        # a few ms next to seconds of encoding)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=50, help="corpus size in MB (10^6 bytes) of UTF-8 text (default 50)")
    ap.add_argument("--num-proc", type=int, nargs="+", default=[1, 2], help="num_proc values for lmforge's rows (default: 1 2)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method; the best is kept (default 3)")
    ap.add_argument("--batch-docs", type=int, default=512, help="documents per encoding batch, for every method (default 512)")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    args = ap.parse_args(argv)

    import tokenizers
    import torch

    print("# lmforge encoding throughput")
    print()
    print(f"- machine: {platform.machine()}, {os.cpu_count()} logical cores (usable: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}), {platform.system()} {platform.release()}")
    print(f"- python {platform.python_version()}, torch {torch.__version__}, tokenizers {tokenizers.__version__}, numpy {np.__version__}")
    print(f"- TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', '(unset)')}, RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', '(unset)')}")
    path, meta = corpus(args.mb, args.seed)
    tok = tokenizer_for(path)
    with open(path, encoding="utf-8") as fh:
        docs = [json.loads(line)["text"] for line in fh]  # loading is not timed
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    assert n_bytes == meta["text_bytes"], "corpus metadata does not match the file; delete benchmarks/.cache"
    print(f"- corpus: {len(docs):,} documents, {n_bytes / MB:.1f} MB of text ({meta['file_bytes'] / MB:.1f} MB JSONL), seed {args.seed}")
    print(f"- tokenizer: byte-level BPE, vocabulary {tok.vocab_size}; batches of {args.batch_docs} documents; best of {args.repeats} runs")
    print()

    # Every method once per round, rounds repeated: slow drift of the machine (other tenants,
    # clock changes) then reaches all methods alike. Each keeps its best round.
    methods = {
        "direct encode_batch_fast": lambda: direct(tok.hf, docs, args.batch_docs, fast=True),
        "direct encode_batch": lambda: direct(tok.hf, docs, args.batch_docs, fast=False),
    }
    for p in args.num_proc:
        methods[f"lmforge write_shards (num_proc={p})"] = lambda p=p: lmforge_shards(path, tok, p, args.batch_docs)
    best = {name: float("inf") for name in methods}
    tokens = None
    for r in range(args.repeats):
        this_round = {}
        for name, fn in methods.items():
            t, result = timed(fn)
            this_round[name] = t
            best[name] = min(best[name], t)
            if isinstance(result, int):  # a direct method: the token count
                assert tokens in (None, result), (name, result, tokens)
                tokens = result
            else:  # write_shards' index: exactly the direct ids plus one end-of-text per document
                train = result["splits"]["train"]
                assert train["tokens"] == tokens + len(docs) and train["bytes"] == n_bytes, (name, train["tokens"], tokens)
        print(f"- round {r + 1}/{args.repeats}: " + ", ".join(f"{n.replace('lmforge write_shards ', 'lmforge ')} {t:.2f}s" for n, t in this_round.items()), flush=True)
    print()
    rows = [(name, t, tokens) for name, t in best.items()]  # (method, seconds, tokens)
    base_mbps = n_bytes / MB / rows[0][1]
    lmforge_rows = [r for r in rows if r[0].startswith("lmforge")]

    print("| method | seconds | MB/s | tokens/s | overhead vs direct fast |")
    print("|---|---:|---:|---:|---:|")
    for name, t, n in rows:
        mbps = n_bytes / MB / t
        overhead = "-" if name == rows[0][0] else f"{1 - mbps / base_mbps:+.1%}"
        print(f"| {name} | {t:.2f} | {mbps:.2f} | {n / t / 1e6:.2f}M | {overhead} |")
    print()

    name, t, _ = min(lmforge_rows, key=lambda r: r[1])
    overhead = 1 - (n_bytes / MB / t) / base_mbps
    ok = overhead < THRESHOLD
    print(
        f"verdict: {'PASS' if ok else 'FAIL'}: lmforge's best ({name}) overhead is {overhead:.1%}, "
        f"{'under' if ok else 'NOT under'} {THRESHOLD:.0%} "
        f"({n_bytes / MB / t:.2f} vs {base_mbps:.2f} MB/s direct encode_batch_fast)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
