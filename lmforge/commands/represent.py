"""Representations: `embed` documents with an encoder or a GPT (lmforge.embed), `cluster` them
(lmforge.cluster), `classify` texts with a fine-tuned head or a probe (lmforge.classify)."""

from __future__ import annotations

from .common import DATA_HELP, print_json, print_run_result, stage_args

TITLE = "represent"


def add_arguments(sub, fmt) -> None:
    add_embed(sub, fmt)
    add_cluster(sub, fmt)
    add_classify(sub, fmt)


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


def cmd_classify_train(args) -> int:
    from ..classify import ClassifyConfig, run_classify_train
    from ..config import load_config

    cfg = load_config(ClassifyConfig, args.recipe, args.overrides)
    return print_run_result(run_classify_train(cfg, args.out), args)


def _print_scores(result: dict, args) -> int:
    if args.json:
        print_json(result)
        return 0
    a, f = result["accuracy_interval"], result["macro_f1_interval"]
    print(f"{result['way']}: {result['examples']} examples, accuracy {result['accuracy']:.3f} [{a[0]:.3f}, {a[1]:.3f}], "
          f"macro-F1 {result['macro_f1']:.3f} [{f[0]:.3f}, {f[1]:.3f}], {result['seconds']} s")
    return 0


def cmd_classify_eval(args) -> int:
    from ..classify import run_classify_eval

    return _print_scores(run_classify_eval(args.model, args.data, args.text_field, args.label_field), args)


def cmd_classify_probe(args) -> int:
    from ..classify import run_probe

    return _print_scores(run_probe(args.model, args.train, args.test, args.text_field, args.label_field, args.pooling, args.seed), args)


def add_classify(sub, fmt) -> None:
    cp = sub.add_parser(
        "classify",
        help="classify texts: fine-tune a head on an encoder or a GPT, or probe its frozen embeddings",
        description="Text classification two ways (the third, prompting, is lmforge eval fewshot): train|eval a classes head "
        "fine-tuned with the body, or probe: a logistic regression on the frozen model's document embeddings. Accuracy and macro-F1 "
        "with 95% bootstrap intervals.",
    )
    csub = cp.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = csub.add_parser(
        "train", help="fine-tune a pretrained model with a classes head", formatter_class=fmt,
        description="Keys: init (the pretrained model), data.{train,val,text_field,label_field,max_len} (data.train: a data PATH, or "
        "world:sentiment (the default) | world:genre from the world next to the model), pooling (auto|mean|cls|last; "
        "auto: mean for an encoder, last for a GPT), epochs, train.{batch_size,optim.*,schedule.*,seed,...}.",
    )
    stage_args(p, example="init=runs/encoder data.train=train.jsonl")
    p.set_defaults(func=cmd_classify_train)
    for name, helptext in (("eval", "a fine-tuned classifier on labelled texts"), ("probe", "a logistic regression on a frozen model's embeddings")):
        p = csub.add_parser(name, help=helptext, formatter_class=fmt, description=helptext[0].upper() + helptext[1:] + ": accuracy and macro-F1 with 95% bootstrap intervals, and time.")
        p.add_argument("--model", required=True, metavar="DIR", help="the classifier" if name == "eval" else "the frozen model (an encoder, a GPT or an imported BERT)")
        if name == "eval":
            p.add_argument("--data", required=True, metavar="PATH", help=f"labelled texts: {DATA_HELP}; or world:sentiment | world:genre (the test split)")
        else:
            p.add_argument("--train", required=True, metavar="PATH", help="labelled texts to fit on (a world set: its train split)")
            p.add_argument("--test", required=True, metavar="PATH", help="labelled texts to score on (a world set: its test split)")
            p.add_argument("--pooling", choices=["mean", "cls", "last"], default="mean", help="how a text's token states become one vector")
            p.add_argument("--seed", type=int, default=0, metavar="S", help="the regression's seed")
        p.add_argument("--text-field", default="text", metavar="NAME", help="the records' text field")
        p.add_argument("--label-field", default="label", metavar="NAME", help="the records' label field")
        p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
        p.set_defaults(func=cmd_classify_eval if name == "eval" else cmd_classify_probe)
