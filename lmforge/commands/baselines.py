"""The baselines' commands: `ngram` language models, and `compare` (n-gram, RNN and GPT models side by
side on one corpus)."""

from __future__ import annotations

import sys

from ..errors import InputError
from .common import DATA_HELP

TITLE = "baselines"


def add_arguments(sub, fmt) -> None:
    add_ngram(sub, fmt)
    add_compare(sub, fmt)


def _ngram_sentences(args, query: bool = False):
    """Sentences of words: KenLM's line-per-sentence whitespace split (lmplz's for training, query's
    with `query`), or a tokenizer's tokens."""
    from pathlib import Path

    from ..data.readers import iter_documents
    from ..models.ngram import read_sentences, split_query_words, split_words

    if args.tokenize == "whitespace" and Path(args.data).is_file() and Path(args.data).suffix.lower() in (".txt", ".text", ".md"):
        return read_sentences(args.data, query=query)  # exactly as lmplz/query read a file
    if args.tokenize == "tokenizer":
        from ..tokenizer import Tokenizer

        if not args.tokenizer:
            raise InputError("--tokenize tokenizer needs --tokenizer PATH")
        tok = Tokenizer.load(args.tokenizer)
        return [[str(i) for i in tok.encode(doc)] for doc in iter_documents(args.data, text_field=args.text_field)]
    split = split_query_words if query else split_words
    return [split(line) for doc in iter_documents(args.data, text_field=args.text_field) for line in doc.split("\n")]


def cmd_ngram_train(args) -> int:
    from pathlib import Path

    from ..models.ngram import FALLBACK, estimate

    npz = Path(args.out).suffix.lower() == ".npz"
    if args.smoothing != "kn" and not npz:  # say so before counting, not after
        raise InputError(f"--smoothing {args.smoothing} models cannot be written as ARPA (they do not back off); give --out a .npz path", field="out")
    lm = estimate(
        _ngram_sentences(args),
        args.order,
        smoothing=args.smoothing,
        k=args.k,
        discount_fallback=FALLBACK if args.discount_fallback else None,
        skip_symbols=args.skip_symbols,
    )
    if npz:
        lm.save(args.out)
    else:
        lm.write_arpa(args.out)
    sizes = ", ".join(f"{k + 1}-grams {len(o.keys)}" for k, o in enumerate(lm.orders))
    print(f"order {args.order} {args.smoothing}: {sizes} -> {args.out}")
    return 0


def cmd_ngram_eval(args) -> int:
    from ..io import json_text
    from ..models.ngram import load

    lm = load(args.model)
    result = lm.evaluate(_ngram_sentences(args, query=True))
    if args.json:
        print(json_text(result))  # an infinite perplexity (MLE gave a token probability 0) is null
    else:
        zero = f", zero-probability tokens {result['zero_prob_tokens']}" if result["zero_prob_tokens"] else ""
        print(f"perplexity {result['perplexity']:.4f} (excluding OOVs {result['perplexity_excluding_oov']:.4f}), OOVs {result['oov']}, tokens {result['tokens']}{zero}")
    return 0


def cmd_ngram_generate(args) -> int:
    import numpy as np

    from ..models.ngram import load, sample, split_words

    lm = load(args.model)
    rng = np.random.default_rng(args.seed)
    if args.tokenizer:  # the model's words are token ids (trained with --tokenize tokenizer)
        from ..tokenizer import Tokenizer

        tok = Tokenizer.load(args.tokenizer)
        if not all(w.isdigit() and int(w) < tok.vocab_size for w in lm.vocab[3:]):
            raise InputError("the model's words are not this tokenizer's ids (was it trained with --tokenize tokenizer and this --tokenizer?)", path=args.model)
        context = [str(i) for i in tok.encode(args.prompt or "")]
        for _ in range(args.n):
            print(tok.decode([int(w) for w in context + sample(lm, rng, args.max_words, context)]))
        return 0
    for _ in range(args.n):
        context = split_words(args.prompt or "")
        print(" ".join(context + sample(lm, rng, args.max_words, context)))
    return 0


def _ngram_data(p) -> None:
    p.add_argument("--data", required=True, metavar="PATH", help=f"text: {DATA_HELP}; with --tokenize whitespace each line is a sentence")
    p.add_argument("--tokenize", choices=["whitespace", "tokenizer"], default="whitespace", help="words split on whitespace as KenLM does, or the tokens of --tokenizer (one document a sentence)")
    p.add_argument("--tokenizer", default=None, metavar="PATH", help="tokenizer.json for --tokenize tokenizer")
    p.add_argument("--text-field", default="text", metavar="NAME", help="field holding the text in JSONL/Parquet records")


def add_ngram(sub, fmt) -> None:
    np_ = sub.add_parser(
        "ngram",
        help="n-gram language models: modified Kneser-Ney (KenLM-compatible ARPA), add-k, maximum likelihood",
        description="n-gram LMs: Kneser-Ney estimated as KenLM's lmplz does (ARPA files), or add-k / maximum likelihood (.npz files).",
    )
    nsub = np_.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = nsub.add_parser(
        "train",
        help="estimate an n-gram model and write it as ARPA (Kneser-Ney) or .npz",
        formatter_class=fmt,
        description="Interpolated modified Kneser-Ney (Chen & Goodman 1998) as lmplz computes it, or add-k / maximum likelihood from the same counts.",
    )
    p.add_argument("--order", type=int, required=True, metavar="N", help="the n-gram order")
    _ngram_data(p)
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.arpa (Kneser-Ney only) or FILE.npz (any smoothing)")
    p.add_argument("--smoothing", choices=["kn", "addk", "mle"], default="kn", help="kn: modified Kneser-Ney; addk: (c(hw) + k) / (c(h) + k|V|); mle: c(hw) / c(h)")
    p.add_argument("--k", type=float, default=1.0, metavar="K", help="k for --smoothing addk (1 is Laplace's add-one)")
    p.add_argument("--discount-fallback", action="store_true", help="use D = 0.5, 1, 1.5 where count-of-counts make a discount undefined (lmplz's --discount_fallback)")
    p.add_argument("--skip-symbols", action="store_true", help="read <s>, </s> and <unk> in the text as whitespace instead of refusing them (lmplz's --skip_symbols)")
    p.set_defaults(func=cmd_ngram_train)

    p = nsub.add_parser("eval", help="perplexity of an n-gram model on text (as KenLM's query reports it)", formatter_class=fmt, description="Perplexity with and without OOVs; </s> and OOV words count as tokens.")
    p.add_argument("--model", required=True, metavar="FILE", help="an ARPA file (lmforge's or KenLM's) or an lmforge .npz")
    _ngram_data(p)
    p.add_argument("--json", action="store_true", help='print {"perplexity", "perplexity_excluding_oov", "oov", "tokens", "log10_prob", "zero_prob_tokens"}')
    p.set_defaults(func=cmd_ngram_eval)

    p = nsub.add_parser("generate", help="sample sentences from an n-gram model", formatter_class=fmt, description="Draw words one at a time from p(w | context) until </s>.")
    p.add_argument("--model", required=True, metavar="FILE", help="an ARPA file or an lmforge .npz")
    p.add_argument("--prompt", default="", metavar="TEXT", help="words to start from")
    p.add_argument("--tokenizer", default=None, metavar="PATH", help="for a model trained with --tokenize tokenizer: encode the prompt and decode the samples with this tokenizer")
    p.add_argument("--n", type=int, default=1, metavar="N", help="number of sentences")
    p.add_argument("--max-words", type=int, default=40, metavar="N", help="most words (or tokens) per sentence")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed")
    p.set_defaults(func=cmd_ngram_generate)


def cmd_compare(args) -> int:
    from ..compare import CompareConfig, format_table, run_compare
    from ..config import load_config
    from ..io import json_text

    cfg = load_config(CompareConfig, args.recipe, args.overrides)
    result = run_compare(cfg, args.out, log=lambda msg: print(msg, file=sys.stderr))
    if args.json:
        print(json_text(result))
    else:
        print(format_table(result))
        print(f"-> {args.out}/comparison.json, {args.out}/comparison.png")
    return 0


def add_compare(sub, fmt) -> None:
    p = sub.add_parser(
        "compare",
        help="n-gram, RNN and GPT language models side by side on one corpus (bits per byte, perplexity, size, time)",
        formatter_class=fmt,
        description="Train (or load) n-gram models with Kneser-Ney smoothing, a recurrent LM and a GPT on the same corpus and score them "
        "on the same held-out documents: bits per byte, perplexity per token, size, training time; saved as DIR/comparison.json and "
        "DIR/comparison.png. Settings come from the recipe (see recipes/compare.yaml), then KEY=VALUE overrides. Sections: "
        "data.{shards,corpus,world_seed,tokenizer.*,val_fraction,seq_len,eval_batches}, ngram.{orders,discount_fallback,load}, "
        "rnn.{enabled,load,model.{cell,d_embed,d_hidden,n_layer,dropout,tie_embeddings},train.*}, gpt.{enabled,load,model.*,train.*}. "
        "Running again on the same --out reuses finished runs.",
    )
    p.add_argument("recipe", nargs="?", default=None, metavar="RECIPE", help="a YAML recipe")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--out", default="runs/compare", metavar="DIR", help="run directory (models, comparison.json, comparison.png)")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    p.set_defaults(func=cmd_compare)
