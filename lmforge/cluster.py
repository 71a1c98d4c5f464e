"""Clustering documents to find their topics: k-means, agglomerative (Ward) or HDBSCAN on document
vectors (from `lmforge embed`, or TF-IDF bag-of-words, the representation that came before).

- The vectors are L2-normalised first, so that Euclidean k-means and Ward follow cosine similarity,
  the measure both embeddings and TF-IDF are compared by.
- Each cluster is described by its top words under class-based TF-IDF (c-TF-IDF; Grootendorst
  2022, BERTopic, eq. 1): the cluster's documents joined into one, a word's frequency in it times
  log(1 + A / f_w), A the average number of words per cluster and f_w the word's count over all
  clusters: words frequent in one cluster and rare in the others.
- With known labels (`labels`: a field of the documents' records) the clustering is scored against
  them: normalised mutual information and adjusted Rand index (scikit-learn's), and purity (the
  share of documents in their cluster's most common label).
- A 2-D picture: PCA of the vectors (UMAP when the `umap-learn` package is installed), a colour per
  cluster.

The work is scikit-learn's; this module connects it to lmforge's files and reports what a user of
the lectures asks for.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .data.readers import read_texts
from .errors import ConfigError, InputError
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text

Method = Literal["kmeans", "agglomerative", "hdbscan"]


@dataclass
class ClusterConfig:
    k: int = 8  # clusters (k-means, agglomerative); HDBSCAN finds its own number
    method: Method = "kmeans"
    vectors: Literal["embeddings", "tfidf"] = "embeddings"  # tfidf: bag-of-words vectors of the documents
    labels: str = ""  # a field of the records to score the clusters against
    text_field: str = "text"
    top_words: int = 8
    min_cluster_size: int = 5  # HDBSCAN's smallest cluster
    seed: int = 0

    def validate(self) -> None:
        if self.method not in ("kmeans", "agglomerative", "hdbscan"):
            raise ConfigError(f"must be kmeans, agglomerative or hdbscan, got {self.method!r}", field="method")
        if self.k < 2 and self.method != "hdbscan":
            raise ConfigError(f"must be at least 2, got {self.k}", field="k")


def tfidf_vectors(texts: list[str]) -> np.ndarray:
    """Bag-of-words TF-IDF (sublinear term frequency, English stop words out), dense."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=2 if len(texts) > 20 else 1).fit_transform(texts).toarray()


def assign(vectors: np.ndarray, cfg: ClusterConfig) -> np.ndarray:
    """A cluster id per row (HDBSCAN: -1 for the points it leaves as noise)."""
    from sklearn.preprocessing import normalize

    x = normalize(vectors)
    if cfg.method == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=cfg.k, n_init=10, random_state=cfg.seed).fit_predict(x)
    if cfg.method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        return AgglomerativeClustering(n_clusters=cfg.k, linkage="ward").fit_predict(x)
    from sklearn.cluster import HDBSCAN

    return HDBSCAN(min_cluster_size=cfg.min_cluster_size, copy=True).fit_predict(x)


def top_words(texts: list[str], clusters: np.ndarray, n: int) -> dict[int, list[str]]:
    """Each cluster's n words of highest class-based TF-IDF (BERTopic's eq. 1)."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(stop_words="english")
    try:
        counts = vec.fit_transform(texts)
    except ValueError:  # no word at all (empty or stop-word-only documents)
        return {int(c): [] for c in np.unique(clusters)}
    words = vec.get_feature_names_out()
    ids = sorted(int(c) for c in np.unique(clusters))
    per_class = np.vstack([np.asarray(counts[clusters == c].sum(0)).ravel() for c in ids]).astype(np.float64)
    tf = per_class / np.maximum(per_class.sum(1, keepdims=True), 1)
    idf = np.log(1 + per_class.sum(1).mean() / np.maximum(per_class.sum(0), 1))
    score = tf * idf
    return {c: [str(words[j]) for j in np.argsort(-score[i])[:n] if per_class[i, j] > 0] for i, c in enumerate(ids)}


def agreement(labels: list[str], clusters: np.ndarray) -> dict:
    """NMI and ARI (scikit-learn) and purity of the clusters against known labels."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    purity = sum(Counter(np.asarray(labels)[clusters == c].tolist()).most_common(1)[0][1] for c in np.unique(clusters)) / len(labels)
    return {"nmi": float(normalized_mutual_info_score(labels, clusters)), "ari": float(adjusted_rand_score(labels, clusters)), "purity": float(purity)}


def picture(vectors: np.ndarray, clusters: np.ndarray, path: Path, title: str) -> str:
    """A 2-D scatter of the documents, a colour per cluster; returns the projection used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.preprocessing import normalize

    x = normalize(vectors)
    try:
        import umap  # optional: umap-learn

        xy, how = umap.UMAP(random_state=0).fit_transform(x), "UMAP"
    except ImportError:
        from sklearn.decomposition import PCA

        xy, how = PCA(n_components=2, random_state=0).fit_transform(x), "PCA"
    fig, ax = plt.subplots(figsize=(6, 5))
    for c in np.unique(clusters):
        at = clusters == c
        ax.scatter(xy[at, 0], xy[at, 1], s=6, alpha=0.7, label="noise" if c < 0 else str(c))
    ax.set_title(f"{title} ({how})")
    ax.legend(markerscale=2, fontsize=7, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return how


def load_vectors(embeddings: str | None, texts: list[str] | None, data: str | None, cfg: ClusterConfig) -> np.ndarray:
    """The documents' vectors: TF-IDF of the texts, or the embeddings file checked against them."""
    if cfg.vectors == "tfidf":
        if texts is None:
            raise InputError("TF-IDF vectors are made from the documents: give --data", field="data")
        return tfidf_vectors(texts)
    if not embeddings:
        raise InputError("give --embeddings FILE (from lmforge embed) or --vectors tfidf", field="embeddings")
    from .embed import read_embeddings

    _, matrix = read_embeddings(embeddings)
    if texts is None:
        return matrix
    if len(matrix) != len(texts):
        raise InputError(f"holds {len(matrix)} vectors, the data {len(texts)} documents: embed the same data", path=embeddings, field="vector")
    if str(embeddings).endswith(".parquet"):
        import pyarrow.parquet as pq

        columns = pq.read_schema(embeddings).names
        if "text_sha256" in columns:
            hashes = pq.read_table(embeddings, columns=["text_sha256"]).column(0).to_pylist()
            for i, (h, t) in enumerate(zip(hashes, texts)):
                if h != hashlib.sha256(t.encode("utf-8")).hexdigest():
                    raise InputError(f"row {i} was embedded from another text than document {i} of {data}: embed the same data", path=embeddings, field="text_sha256")
    return matrix


def run_cluster(data: str | None, embeddings: str | None, cfg: ClusterConfig, out: str | Path | None = None) -> dict:
    """Cluster the documents (the rows of `embeddings`, or the records of `data` as TF-IDF vectors);
    `data` also gives the top words and the labels. With `out`, write clusters.jsonl, summary.json
    and clusters.png there."""
    cfg.validate()
    if cfg.labels and data is None:
        raise InputError("the labels are a field of the documents' records: give --data", field="labels")
    texts, labels = read_texts(data, cfg.text_field, cfg.labels) if data is not None else (None, None)
    vectors = load_vectors(embeddings, texts, data, cfg)
    if cfg.method != "hdbscan" and cfg.k > len(vectors):
        raise InputError(f"asks for {cfg.k} clusters of {len(vectors)} documents", path=data or embeddings, field="k")
    clusters = assign(vectors, cfg)
    words = top_words(texts, clusters, cfg.top_words) if texts is not None else {}
    result: dict = {
        "documents": len(vectors), "vectors": cfg.vectors if cfg.vectors == "tfidf" else str(embeddings), "dim": int(vectors.shape[1]),
        "method": cfg.method, "clusters": [],
    }
    for c in sorted(int(c) for c in np.unique(clusters)):
        entry = {"cluster": c, "size": int((clusters == c).sum()), "top_words": words.get(c, [])}
        if labels is not None:
            entry["labels"] = dict(Counter(np.asarray(labels)[clusters == c].tolist()).most_common(3))
        result["clusters"].append(entry)
    if labels is not None:
        result["scores"] = agreement(labels, clusters)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "clusters.jsonl", "".join(f'{{"document": {i}, "cluster": {int(c)}}}\n' for i, c in enumerate(clusters)))
        result["picture"] = picture(vectors, clusters, out / "clusters.png", f"{cfg.method}, {len(result['clusters'])} clusters")
        atomic_write_json(out / "summary.json", result)
    return result
