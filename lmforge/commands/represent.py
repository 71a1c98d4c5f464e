"""Representations: `embed` documents with an encoder or a GPT (lmforge.embed)."""

from __future__ import annotations

from .common import DATA_HELP, print_json

TITLE = "represent"


def add_arguments(sub, fmt) -> None:
    add_embed(sub, fmt)


def cmd_embed(args) -> int:
    from ..embed import EmbedConfig, run_embed

    cfg = EmbedConfig(pooling=args.pooling, layers=args.layers, window=args.window, batch_size=args.batch_size, text_field=args.text_field, id_field=args.id_field)
    result = run_embed(args.model, args.data, args.out, cfg)
    if args.json:
        print_json(result)
    else:
        print(f"{result['documents']} documents ({result['windows']} windows) -> {result['dim']}-dimensional vectors, {result['pooling']} of the last {result['layers']} layer(s), {result['seconds']} s")
        print(f"-> {result['out']}")
    return 0


def add_embed(sub, fmt) -> None:
    p = sub.add_parser(
        "embed",
        help="a vector per document from an encoder (pretrain objective=mlm), a GPT or an imported model",
        formatter_class=fmt,
        description="Embed every document of --data: tokenized as the model reads a new document, cut into windows of its context, "
        "each window's token states pooled (mean, the first token's, or the last token's), averaged over the last --layers blocks; "
        "a long document is the average of its windows. Writes .parquet (id, text_sha256, vector) or .npy (the matrix).",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="a transformer's model folder, checkpoint or run directory")
    p.add_argument("--data", required=True, metavar="PATH", help=f"the documents: {DATA_HELP}")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the vectors: FILE.parquet or FILE.npy")
    p.add_argument("--pooling", choices=["mean", "cls", "last"], default="mean", help="how a window's token states become one vector")
    p.add_argument("--layers", type=int, default=1, metavar="K", help="average the last K layers' states")
    p.add_argument("--window", type=int, default=0, metavar="N", help="tokens per window (0: the length the model was trained on)")
    p.add_argument("--batch-size", type=int, default=16, metavar="B", help="windows per forward pass")
    p.add_argument("--text-field", default="text", metavar="NAME", help="the records' text field")
    p.add_argument("--id-field", default="id", metavar="NAME", help="the records' id field (without it: their order, 0, 1, ...)")
    p.add_argument("--json", action="store_true", help="print a summary as one JSON object")
    p.set_defaults(func=cmd_embed)
