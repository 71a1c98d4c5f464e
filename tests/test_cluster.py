"""`lmforge cluster`: the agreement scores against hand-computed ones, class-based TF-IDF, the
command end to end on embeddings and on TF-IDF, and its bad inputs."""

import json
import math
import random
from collections import Counter

import numpy as np
import pytest

from lmforge.cluster import ClusterConfig, agreement, run_cluster, top_words

from .test_cli import assert_clean_failure


def _entropy(counts):
    n = sum(counts)
    return -sum(c / n * math.log(c / n) for c in counts if c)


def test_nmi_ari_and_purity_match_their_formulas():
    labels = ["a", "a", "a", "b", "b", "c", "c", "c", "c", "a"]
    clusters = np.array([0, 0, 1, 1, 1, 2, 2, 2, 0, 0])
    n = len(labels)
    joint = Counter(zip(labels, clusters.tolist()))
    h_l, h_c = _entropy(Counter(labels).values()), _entropy(Counter(clusters.tolist()).values())
    mi = sum(c / n * math.log((c / n) / (labels.count(l) / n * (clusters == k).sum() / n)) for (l, k), c in joint.items())
    nmi = mi / ((h_l + h_c) / 2)  # arithmetic normalisation (scikit-learn's default)
    pairs = lambda x: x * (x - 1) / 2
    index = sum(pairs(c) for c in joint.values())
    a, b = sum(pairs(c) for c in Counter(labels).values()), sum(pairs(c) for c in Counter(clusters.tolist()).values())
    expected = a * b / pairs(n)
    ari = (index - expected) / ((a + b) / 2 - expected)  # Hubert & Arabie 1985
    purity = (3 + 2 + 3) / n  # cluster 0: a a c a -> 3; 1: a b b -> 2; 2: c c c -> 3
    got = agreement(labels, clusters)
    assert got["nmi"] == pytest.approx(nmi) and got["ari"] == pytest.approx(ari) and got["purity"] == pytest.approx(purity)


def test_class_based_tfidf_prefers_a_clusters_own_words():
    texts = ["apple banana fruit", "apple cherry fruit", "fruit salad apple", "dog cat fruit", "dog bone", "cat dog"]
    words = top_words(texts, np.array([0, 0, 0, 1, 1, 1]), 2)
    assert words[0][0] == "apple" and words[1][0] == "dog"
    assert "fruit" not in words[1]  # frequent in cluster 0, rare in 1


TOPICS = {
    "sea": "boat wave sail harbour fish tide anchor shore",
    "space": "rocket orbit planet star moon launch comet galaxy",
    "kitchen": "bread oven flour butter knife soup pepper onion",
}


@pytest.fixture
def docs(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "docs.jsonl"
    rows = []
    for i in range(60):
        topic = list(TOPICS)[i % 3]
        words = TOPICS[topic].split()
        rows.append({"text": " ".join(rng.choice(words) for _ in range(12)), "topic": topic})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, rows


def test_cluster_tfidf_finds_the_topics_and_writes_its_files(cli, docs, tmp_path):
    path, _ = docs
    code, out, err = cli("cluster", "--data", path, "--vectors", "tfidf", "--k", 3, "--labels", "topic", "--out", tmp_path / "c", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["scores"] == {"nmi": pytest.approx(1.0), "ari": pytest.approx(1.0), "purity": pytest.approx(1.0)}
    for c in result["clusters"]:
        topic = next(iter(c["labels"]))
        assert set(c["top_words"][:3]) <= set(TOPICS[topic].split())
    assert (tmp_path / "c" / "clusters.png").stat().st_size > 1000
    assert len((tmp_path / "c" / "clusters.jsonl").read_text().splitlines()) == 60


@pytest.mark.parametrize("method", ["kmeans", "agglomerative", "hdbscan"])
def test_cluster_embeddings_by_each_method(docs, tmp_path, method):
    path, rows = docs
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    vectors = np.stack([centres[list(TOPICS).index(r["topic"])] + rng.normal(size=16) for r in rows]).astype(np.float32)
    np.save(tmp_path / "e.npy", vectors)
    result = run_cluster(str(path), str(tmp_path / "e.npy"), ClusterConfig(k=3, method=method, labels="topic"))
    assert result["scores"]["nmi"] > 0.9, result
    without_data = run_cluster(None, str(tmp_path / "e.npy"), ClusterConfig(k=3, method=method))
    assert without_data["documents"] == 60 and "scores" not in without_data


def test_bad_cluster_input_exits_2_naming_the_file_and_field(cli, docs, tmp_path):
    path, _ = docs
    np.save(tmp_path / "short.npy", np.zeros((5, 4), np.float32))
    assert_clean_failure(cli("cluster", "--embeddings", tmp_path / "short.npy", "--data", path), "short.npy", "vector", "5 vectors", "60 documents")
    np.save(tmp_path / "flat.npy", np.zeros(60, np.float32))
    assert_clean_failure(cli("cluster", "--embeddings", tmp_path / "flat.npy"), "flat.npy", "vector", "shape")
    assert_clean_failure(cli("cluster", "--data", path, "--vectors", "tfidf", "--k", 61), str(path), "k", "61 clusters of 60")
    assert_clean_failure(cli("cluster", "--data", path, "--vectors", "tfidf", "--labels", "colour"), f"{path}:1", "colour")
    assert_clean_failure(cli("cluster", "--vectors", "tfidf"), "data")
    assert_clean_failure(cli("cluster", "--data", path), "embeddings")
    assert_clean_failure(cli("cluster", "--embeddings", tmp_path / "nope.npy"), "nope.npy", "not found")
