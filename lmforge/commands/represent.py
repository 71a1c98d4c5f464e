"""Representations: `embed` documents with an encoder or a GPT (lmforge.embed), `cluster` them
(lmforge.cluster)."""

from __future__ import annotations

from .common import DATA_HELP, print_json

TITLE = "represent"


def add_arguments(sub, fmt) -> None:
    add_embed(sub, fmt)
    add_cluster(sub, fmt)


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


def cmd_cluster(args) -> int:
    from ..cluster import ClusterConfig, run_cluster

    cfg = ClusterConfig(k=args.k, method=args.method, vectors=args.vectors, labels=args.labels or "", text_field=args.text_field, top_words=args.top_words, min_cluster_size=args.min_cluster_size, seed=args.seed)
    result = run_cluster(args.data, args.embeddings, cfg, args.out)
    if args.json:
        print_json(result)
        return 0
    print(f"{result['documents']} documents, {len(result['clusters'])} clusters ({result['method']} on {result['vectors']})")
    for c in result["clusters"]:
        mix = ", ".join(f"{k} {v}" for k, v in c.get("labels", {}).items())
        print(f"  {c['cluster']:>3}  {c['size']:>6}  {' '.join(c['top_words'])}" + (f"   [{mix}]" if mix else ""))
    if "scores" in result:
        print("against --labels: " + ", ".join(f"{k} {v:.3f}" for k, v in result["scores"].items()))
    if args.out:
        print(f"-> {args.out}")
    return 0


def add_cluster(sub, fmt) -> None:
    p = sub.add_parser(
        "cluster",
        help="cluster documents by their embeddings (or TF-IDF): top words per cluster, NMI/ARI/purity against labels, a 2-D picture",
        formatter_class=fmt,
        description="Cluster document vectors (from `lmforge embed`, or --vectors tfidf for the bag-of-words baseline) with k-means, "
        "agglomerative (Ward) or HDBSCAN, after L2 normalisation. --data (the embedded documents, in the same order) adds each "
        "cluster's top words by class-based TF-IDF and, with --labels FIELD, NMI, ARI and purity against that field.",
    )
    p.add_argument("--embeddings", default=None, metavar="FILE", help="vectors from lmforge embed (.parquet or .npy)")
    p.add_argument("--data", default=None, metavar="PATH", help=f"the documents: {DATA_HELP}")
    p.add_argument("--k", type=int, default=8, metavar="K", help="number of clusters (kmeans, agglomerative)")
    p.add_argument("--method", choices=["kmeans", "agglomerative", "hdbscan"], default="kmeans", help="the clustering algorithm")
    p.add_argument("--vectors", choices=["embeddings", "tfidf"], default="embeddings", help="tfidf: cluster bag-of-words vectors of --data instead")
    p.add_argument("--labels", default=None, metavar="FIELD", help="score the clusters against this field of the records")
    p.add_argument("--text-field", default="text", metavar="NAME", help="the records' text field")
    p.add_argument("--top-words", type=int, default=8, metavar="N", help="words shown per cluster")
    p.add_argument("--min-cluster-size", type=int, default=5, metavar="N", help="HDBSCAN's smallest cluster")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="k-means' seed")
    p.add_argument("--out", default=None, metavar="DIR", help="write clusters.jsonl, summary.json and clusters.png here")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_cluster)
