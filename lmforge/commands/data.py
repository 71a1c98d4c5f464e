"""The data stage's commands: `world` (the built-in world), `tokenizer`, `data` (record validation,
token shards) and `prepare` (tokenizer and shards from one recipe)."""

from __future__ import annotations

import json
import sys

from ..errors import InputError
from .common import DATA_HELP, add_corpus_args, print_json

TITLE = "data"


def add_arguments(sub, fmt) -> None:
    add_world(sub, fmt)
    add_tokenizer(sub, fmt)
    add_data(sub, fmt)
    add_prepare(sub, fmt)


def cmd_world(args) -> int:
    if args.words[:1] == ["stats"]:
        if len(args.words) != 2:
            raise InputError("usage: lmforge world stats DIR")
        from ..world.build import world_stats

        stats = world_stats(args.words[1], agreement_prompts=args.agreement_prompts)
        if args.json:
            print_json(stats)
        else:
            _print_world_stats(stats)
        return 0
    from ..config import load_config
    from ..tracking import progress
    from ..world.build import WorldConfig, build_world

    if args.out is None:
        raise InputError("--out DIR is required to generate a world (or use: lmforge world stats DIR)")
    recipe = args.words[0] if args.words and "=" not in args.words[0] else None
    overrides = args.words[1:] if recipe else list(args.words)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.entities is not None:
        overrides.append(f"entities={args.entities}")
    cfg = load_config(WorldConfig, recipe, overrides)
    with progress(total=5, desc="world", unit="part") as bar:
        manifest = build_world(cfg, args.out, overwrite=args.overwrite, progress=lambda part: (bar.set_postfix_str(part), bar.update()))
    if args.json:
        print_json(manifest)
    else:
        print(", ".join(f"{k} {v}" for k, v in manifest["counts"].items()))
        print(f"labeler temperature {manifest['labeler_temperature']:.4f} -> {args.out}")
    return 0


def _print_world_stats(s: dict) -> None:
    plural = {"creature": "creatures", "person": "people", "town": "towns", "product": "products"}
    print(f"seed {s['seed']}: " + ", ".join(f"{n} {plural.get(k, k)}" for k, n in s["entities"].items()) + f", {s['facts']} facts")
    p = s["pretrain"]
    print(f"pretraining corpus: {p['documents']} documents, {p['bytes']} bytes, {p['words']} words, vocabulary {p['vocabulary']} words")
    print("  genres: " + ", ".join(f"{g} {100 * v:.1f}%" for g, v in p["genres"].items()))
    if "languages" in p:
        from ..world.languages import NAMES

        print("  languages: " + ", ".join(f"{NAMES.get(c, c)} ({c}) {100 * v['share']:.1f}% of documents, {v['bytes']} bytes" for c, v in p["languages"].items()))
    print("splits: " + ", ".join(f"{k} {v}" for k, v in s["splits"].items()))
    for name, c in s["tasks"].items():
        print(f"  {name} tasks: " + ", ".join(f"{t} {n}" for t, n in c.items()))
    print("comparisons by K: " + ", ".join(f"K={k}: {n}" for k, n in s["comparisons_k"].items()))
    a = s["labeler_agreement"]
    if a["measured"] is not None:
        print(f"labeler agreement ({a['labelers'][0]} vs {a['labelers'][1]}): measured {a['measured']:.3f}, target {a['target']}")
    d = s.get("demonstrations") or {}
    if d:
        q = d["oracle_score"]
        print(f"demonstrations (by {d['written_by']}): mean oracle score {q['written']:.3f}; the reference answers' {q['reference']:.3f}, the best the tasks admit {q['best']:.3f}; "
              f"{100 * d['below_best']:.0f}% below the best")
        r = d["rates"]
        print("  task answered in full {:.0%}, false claims {:.1%}, rude {:.1%}, asks back {:.1%}; flaws: ".format(r["task_correct"], r["false_claim"], r["rude"], r["asks"])
              + ", ".join(f"{f} {100 * r[f]:.1f}%" for f in ("terse", "padding", "slip", "hedge", "rumour", "rude", "question", "ramble") if f in r and f != "rude"))


def add_world(sub, fmt) -> None:
    p = sub.add_parser(
        "world",
        help="generate the built-in world (corpus, tasks, comparisons, held-out prompts), or describe one",
        formatter_class=fmt,
        usage="lmforge world --out DIR [--seed N] [--entities N] [RECIPE] [KEY=VALUE ...]\n       lmforge world stats DIR [--json]",
        description="Generate the built-in world: a small universe with a known truth, its pretraining corpus, SFT demonstrations, "
        "ranked comparisons, RL prompts and held-out evaluation prompts, all deterministic for a seed. "
        "'lmforge world stats DIR' describes a generated world and measures its labelers' agreement. "
        "Config keys (KEY=VALUE): seed, entities, documents, genres.{encyclopedia,story,worksheet,qa,quiz,forum,rumour,review}, qa_good (share of good answers on Q&A and question pages), "
        "sft_prompts, sft_val_prompts, rm_prompts, ppo_prompts, eval_prompts, k_min, k_max, labelers, agreement, calibration_prompts, "
        "languages (e.g. [en,xv,xt]: English, Velish and Torin, generated languages telling the same world), language_shares (one per language; default 0.80/0.15/0.05).",
    )
    p.add_argument("words", nargs="*", metavar="ARGS", help="'stats DIR', or an optional recipe and KEY=VALUE overrides")
    p.add_argument("--out", default=None, metavar="DIR", help="folder to write the world into")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="random seed (default 0): same seed, same world, byte for byte")
    p.add_argument("--entities", type=int, default=None, metavar="N", help="number of entities (default 48)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")
    p.add_argument("--agreement-prompts", type=int, default=1000, metavar="N", help="stats: prompts whose response pairs two labelers judge")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_world)


def _pieces(args):
    from ..data.readers import iter_text_pieces

    return iter_text_pieces(args.data, text_field=args.text_field, sample_by=args.sample_by, split=args.split)


def cmd_tokenizer_train(args) -> int:
    from ..io import atomic_output_dir
    from ..tokenizer import TokenizerConfig, token_stats, train_tokenizer
    from ..tracking import progress_enabled

    cfg = TokenizerConfig(kind=args.kind, vocab_size=args.vocab_size, min_frequency=args.min_frequency, max_train_bytes=args.max_train_bytes)
    cfg.validate()
    with atomic_output_dir(args.out, args.overwrite) as tmp:
        tok = train_tokenizer((t for t, _ in _pieces(args)), cfg, show_progress=progress_enabled())
        tok.save(tmp)
    print(f"trained a {tok.kind} tokenizer with {tok.vocab_size} tokens -> {args.out}/tokenizer.json")
    if args.stats:
        from ..tokenizer import Tokenizer

        print_json(token_stats(Tokenizer.load(args.out), (t for t, _ in _pieces(args))))
    return 0


def cmd_tokenizer_encode(args) -> int:
    from ..data.readers import iter_documents
    from ..tokenizer import Tokenizer

    tok = Tokenizer.load(args.tokenizer)
    if (args.text is None) == (args.data is None):
        raise InputError("give exactly one of --text or --data")
    texts = [args.text] if args.text is not None else iter_documents(args.data, text_field=args.text_field, sample_by=args.sample_by, split=args.split)
    for text in texts:
        ids = tok.encode(text)
        if args.json:
            print(json.dumps({"ids": ids, "tokens": [tok.id_to_token(i) for i in ids]}, ensure_ascii=False))
        elif args.tokens:
            print(" ".join(tok.id_to_token(i) for i in ids))
        else:
            print(" ".join(map(str, ids)))
    return 0


def cmd_tokenizer_stats(args) -> int:
    from ..tokenizer import Tokenizer, token_stats

    tok = Tokenizer.load(args.tokenizer)
    if args.reference and not args.by:
        raise InputError("--reference names a group of --by FIELD; give --by too", field="reference")
    if args.by:
        from ..data.readers import read_texts

        texts, groups = read_texts(args.data, args.text_field, args.by)
        stats = token_stats(tok, texts, by=groups, reference=args.reference)
    else:
        stats = token_stats(tok, (t for t, _ in _pieces(args)))
    if args.json:
        print_json(stats)
    else:
        print(f"kind {stats['kind']}, vocabulary {stats['vocab_size']}")
        print(f"{stats['documents']} texts, {stats['bytes']} bytes, {stats['tokens']} tokens")
        print(f"bytes per token {stats['bytes_per_token']:.3f}, tokens per word {stats['tokens_per_word']:.3f}")
        if "by" in stats:
            print(f"{'by ' + args.by:<16} {'texts':>8} {'words':>10} {'tokens':>10} {'bytes/token':>12} {'tokens/word':>12} {'premium':>8}")
            for name, g in stats["by"].items():
                print(f"{name:<16} {g['documents']:>8} {g['words']:>10} {g['tokens']:>10} {g['bytes_per_token']:>12.3f} {g['tokens_per_word']:>12.3f} {g['premium']:>8.2f}")
        print(f"vocabulary used {stats['vocab_used']} ({100 * stats['vocab_use']:.1f}%), unknown {100 * stats['unk_rate']:.2f}% of tokens")
        print("most frequent: " + ", ".join(f"{t['token']!r} {t['count']}" for t in stats["top_tokens"]))
    return 0


def add_tokenizer(sub, fmt) -> None:
    tp = sub.add_parser("tokenizer", help="train a tokenizer, encode text, measure a tokenizer", description="Tokenizers: byte-level BPE, character and word level (Hugging Face tokenizers).")
    tsub = tp.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = tsub.add_parser("train", help="train a tokenizer on a corpus", formatter_class=fmt, description="Train a tokenizer on a corpus and save it as DIR/tokenizer.json.")
    add_corpus_args(p)
    p.add_argument("--kind", choices=["bpe", "char", "word"], default="bpe", help="byte-level BPE, one token per character, or one per word")
    p.add_argument("--vocab-size", type=int, default=4096, metavar="N", help="vocabulary size, special tokens included")
    p.add_argument("--min-frequency", type=int, default=2, metavar="N", help="minimum count of a merge (bpe) or a character/word to enter the vocabulary")
    p.add_argument("--max-train-bytes", type=int, default=None, metavar="N", help="train on the first N bytes of the corpus only")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for tokenizer.json")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")
    p.add_argument("--stats", action="store_true", help="print the tokenizer's statistics on the corpus as JSON afterwards")
    p.set_defaults(func=cmd_tokenizer_train)

    p = tsub.add_parser("encode", help="print the token ids of a text", formatter_class=fmt, description="Encode --text, or each document of --data, and print the ids (one line per document).")
    p.add_argument("--tokenizer", required=True, metavar="PATH", help="tokenizer.json or a folder holding one")
    p.add_argument("--text", default=None, help="the text to encode")
    add_corpus_args(p, required=False)
    p.add_argument("--tokens", action="store_true", help="print the tokens instead of the ids")
    p.add_argument("--json", action="store_true", help="print one JSON object per text: ids and tokens")
    p.set_defaults(func=cmd_tokenizer_encode)

    p = tsub.add_parser(
        "stats",
        help="bytes per token and vocabulary use on a corpus",
        formatter_class=fmt,
        description="Measure a tokenizer on a corpus: bytes per token, tokens per word, share of the vocabulary used, unknown-token rate; "
        "with --by FIELD the same for each value of a record field (a language: how much more one costs than another).",
    )
    p.add_argument("--tokenizer", required=True, metavar="PATH", help="tokenizer.json or a folder holding one")
    add_corpus_args(p)
    p.add_argument("--by", default=None, metavar="FIELD", help="group the records by this field (e.g. language) and measure each group; its premium is its tokens per word over the reference group's "
                   "(for scripts written without spaces between words compare bytes per token instead)")
    p.add_argument("--reference", default=None, metavar="NAME", help="with --by: the group premiums are measured against (default: the one with the most texts)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_tokenizer_stats)


def cmd_data_validate(args) -> int:
    from pathlib import Path

    from ..data.schemas import validate
    from ..data.shards import TokenShards, read_index

    if (Path(args.data) / "index.json").exists():  # a shard folder: check it against its index
        index = read_index(args.data)
        report = {}
        for split in index["splits"]:
            shards = TokenShards(args.data, split)
            shards.verify()
            report[split] = {"tokens": shards.tokens, "shards": len(shards.arrays)}
        result = {"kind": "shards", "path": args.data, "splits": report, "ok": True}
    else:
        schema, n = validate(args.data, args.schema, split=args.split)
        result = {"kind": "records", "path": args.data, "schema": schema, "records": n, "ok": True}
    if args.json:
        print_json(result)
    elif result["kind"] == "shards":
        parts = ", ".join(f"{k}: {v['tokens']} tokens" for k, v in result["splits"].items())
        print(f"{args.data}: shards ok ({parts})")
    else:
        print(f"{args.data}: {result['records']} records, schema {result['schema']}, all valid")
    return 0


def cmd_data_shards(args) -> int:
    from ..data.readers import text_bytes
    from ..data.shards import ShardConfig, write_shards
    from ..tokenizer import Tokenizer
    from ..tracking import progress

    tok = Tokenizer.load(args.tokenizer)
    cfg = ShardConfig(shard_tokens=args.shard_tokens, val_fraction=args.val_fraction, num_proc=args.num_proc, batch_docs=args.batch_docs)
    cfg.validate()
    with progress(total=text_bytes(args.data), desc="encoding", unit="B") as bar:
        index = write_shards(_pieces(args), tok, args.out, cfg, overwrite=args.overwrite, progress=bar.update)
    for name, s in index["splits"].items():
        print(f"{name}: {s['documents']} documents, {s['tokens']} tokens in {len(s['shards'])} shard(s)")
    print(f"-> {args.out}")
    return 0


def add_data(sub, fmt) -> None:
    dp = sub.add_parser("data", help="validate datasets, encode a corpus into token shards", description="Data: record validation and token shards.")
    dsub = dp.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = dsub.add_parser(
        "validate",
        help="check every record of a dataset against its schema (or a shard folder against its checksums)",
        formatter_class=fmt,
        description="Check every record against a schema: text, messages, prompt_completion, preference, unpaired_preference, ranking, evaluation. "
        "Without --schema, the first record's keys decide. Given a shard folder, checks every shard's checksum instead.",
    )
    p.add_argument("--data", required=True, metavar="PATH", help=f"the dataset: {DATA_HELP}; or a shard folder")
    p.add_argument(
        "--schema",
        default=None,
        choices=["text", "messages", "prompt_completion", "preference", "unpaired_preference", "ranking", "evaluation"],
        help="the schema every record must follow (default: detected from the first record)",
    )
    p.add_argument("--split", default=None, metavar="NAME", help="split of a Hugging Face dataset (default: train)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_data_validate)

    p = dsub.add_parser("shards", help="encode a corpus into token shards", formatter_class=fmt, description="Encode a corpus once into numpy memmap shards, an end-of-text token after each document.")
    add_corpus_args(p)
    p.add_argument("--tokenizer", required=True, metavar="PATH", help="tokenizer.json or a folder holding one")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--val-fraction", type=float, default=0.0, metavar="F", help="share of documents (chosen by hash of their text) held out in a val split")
    p.add_argument("--shard-tokens", type=int, default=1 << 26, metavar="N", help="tokens per shard file")
    p.add_argument("--num-proc", type=int, default=1, metavar="N", help="encoding processes (1: this process, which tokenizers already runs on every core)")
    p.add_argument("--batch-docs", type=int, default=512, metavar="N", help="documents per encoding batch")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")
    p.set_defaults(func=cmd_data_shards)


def cmd_prepare(args) -> int:
    from ..config import load_config
    from ..data.prepare import PrepareConfig, run_prepare

    cfg = load_config(PrepareConfig, args.recipe, args.overrides)
    summary = run_prepare(cfg, args.out, overwrite=args.overwrite)
    if args.json:
        print_json(summary)
    else:
        t = summary["tokenizer"]
        print(f"tokenizer: {t['kind']}, {t['vocab_size']} tokens")
        for name, s in summary["splits"].items():
            print(f"{name}: {s['documents']} documents, {s['tokens']} tokens, {s['bytes_per_token']:.2f} bytes/token")
        if "sources" in summary:
            src = summary["sources"]
            print(f"sources by {src['group_by']}, temperature {src['temperature']:g}: " + ", ".join(
                f"{g} {100 * r['share']:.1f}% -> {100 * r['sampled_share']:.1f}% (x{r['factor']:.2f}, drawn {100 * r['drawn_share']:.1f}%)" for g, r in src["groups"].items()))
            uneven = [g for g, r in src["groups"].items() if abs(r["drawn_share"] - r["sampled_share"]) > 0.2 * r["sampled_share"]]
            if uneven:
                print(f"warning: {', '.join(uneven)} drawn more than 20% away from the planned share: each document is repeated or left out whole, "
                      "and these sources have few or very unequal documents (split long documents into smaller records to even it out)", file=sys.stderr)
        print(f"-> {args.out}")
    return 0


def add_prepare(sub, fmt) -> None:
    p = sub.add_parser(
        "prepare",
        help="the data stage: train a tokenizer on a corpus and write its token shards",
        formatter_class=fmt,
        description="The data stage of the pipeline: corpus -> tokenizer.json -> shards/. Settings come from the recipe, "
        "then from KEY=VALUE overrides (dotted keys, e.g. data.path=corpus.txt tokenizer.vocab_size=8192 shards.val_fraction=0.05). "
        "Keys: data.{path,text_field,sample_by,split}, tokenizer.{kind,vocab_size,min_frequency,max_train_bytes}, tokenizer_path, "
        "shards.{shard_tokens,val_fraction,num_proc,batch_docs}.",
    )
    p.add_argument("recipe", nargs="?", default=None, metavar="RECIPE", help="a YAML recipe (see recipes/)")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_prepare)
