"""`lmforge classify`: a classes head fine-tuned on an encoder or a GPT, a probe on frozen
embeddings, the scores and their intervals, and bad input."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from lmforge.classify import ClassBatches, scores

from .test_cli import assert_clean_failure

ROOT = Path(__file__).parent.parent
WORDS = ["red", "green", "blue", "cat", "dog", "tree", "house", "river", "stone", "cloud"]


def _texts(n: int, seed: int) -> list[dict]:
    """Texts of random words, labelled by which of two marker words they hold."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["sunny", "rainy"])
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
        words.insert(rng.randrange(len(words)), "sun" if label == "sunny" else "rain")
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("cls")
    for name, n, seed in (("train", 240, 0), ("test", 80, 1)):
        (base / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _texts(n, seed)))
    return base


@pytest.fixture(scope="module")
def bodies(shards, tmp_path_factory):
    """A tiny encoder and a tiny GPT (40 steps each)."""
    from lmforge.cli import main

    base = tmp_path_factory.mktemp("bodies")
    tiny = str(ROOT / "recipes" / "tiny.yaml")
    assert main(["pretrain", tiny, "objective=mlm", "model.flavour=llama", f"data.shards={shards}", "train.steps=40", "--out", str(base / "encoder")]) == 0
    assert main(["pretrain", tiny, f"data.shards={shards}", "train.steps=40", "--out", str(base / "gpt")]) == 0
    return base


@pytest.mark.parametrize("body", ["encoder", "gpt"])
def test_a_fine_tuned_head_learns_the_labels_and_evaluates(cli, data, bodies, tmp_path, body):
    out = tmp_path / "clf"
    code, _, err = cli("classify", "train", f"init={bodies / body}", f"data.train={data / 'train.jsonl'}", f"data.val={data / 'test.jsonl'}",
                       "epochs=6", "train.optim.lr=3e-3", "--out", out)  # fmt: skip
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["head"] == "classes" and config["labels"] == ["rainy", "sunny"]
    assert config["pooling"] == ("mean" if body == "encoder" else "last")
    code, stdout, err = cli("classify", "eval", "--model", out, "--data", data / "test.jsonl", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["examples"] == 80 and result["accuracy"] >= 0.9, result
    lo, hi = result["accuracy_interval"]
    assert lo <= result["accuracy"] <= hi


def test_a_probe_on_frozen_embeddings(cli, data, bodies):
    code, stdout, err = cli("classify", "probe", "--model", bodies / "encoder", "--train", data / "train.jsonl", "--test", data / "test.jsonl", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert result["examples"] == 80 and 0.0 <= result["accuracy"] <= 1.0 and "probe" in result["way"]


def test_scores_match_scikit_learn_and_the_interval_holds_the_point():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 3, 200))
    s = scores(y, pred, 3, bootstrap=300)
    assert s["accuracy"] == pytest.approx(accuracy_score(y, pred)) and s["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    for key in ("accuracy", "macro_f1"):
        lo, hi = s[f"{key}_interval"]
        assert lo < s[key] < hi and hi - lo < 0.2


def test_batches_resume_where_they_stopped():
    rows, ys = [[i + 1, i + 2] for i in range(50)], [i % 2 for i in range(50)]
    a = ClassBatches(rows, ys, 8, 0, seed=3)
    for _ in range(9):
        next(a)
    b = ClassBatches(rows, ys, 8, 0, seed=3)
    b.load_state_dict(a.state_dict())
    for x, y in zip(next(a), next(b)):
        assert (x == y).all()


def test_bad_classify_input_exits_2_naming_the_file_and_field(cli, data, bodies, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "sun red", "label": "sunny"}\n{"text": "rain"}\n')
    assert_clean_failure(cli("classify", "train", f"init={bodies / 'encoder'}", f"data.train={bad}", "--out", tmp_path / "x"), f"{bad}:2", "label")
    one = tmp_path / "one.jsonl"
    one.write_text('{"text": "sun red", "label": "sunny"}\n{"text": "sun", "label": "sunny"}\n')
    assert_clean_failure(cli("classify", "train", f"init={bodies / 'encoder'}", f"data.train={one}", "--out", tmp_path / "x"), str(one), "2 classes")
    assert_clean_failure(cli("classify", "train", f"init={bodies / 'gpt'}", f"data.train={data / 'train.jsonl'}", "pooling=cls", "--out", tmp_path / "x"), "pooling")
    assert_clean_failure(cli("classify", "eval", "--model", bodies / "gpt", "--data", data / "test.jsonl"), "not a classifier")
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "snow", "label": "snowy"}\n')
    assert_clean_failure(cli("classify", "probe", "--model", bodies / "encoder", "--train", data / "train.jsonl", "--test", other), str(other), "snowy")
    assert not (tmp_path / "x" / "model.safetensors").exists()


def test_the_worlds_sets_split_by_text_and_serve_every_command(cli, chain, tmp_path):
    """world:sentiment and world:genre, from the world next to the model: disjoint train and test
    splits, sentiment without its rating line; a probe and a head run on them."""
    from lmforge.classify import world_labelled

    world = chain / "base" / "world"
    train_texts, train_labels = world_labelled("world:sentiment", world, "train")
    test_texts, test_labels = world_labelled("world:sentiment", world, "test")
    assert set(train_labels) == set(test_labels) == {"negative", "positive"}
    assert not set(train_texts) & set(test_texts) and not any("Rating:" in t for t in train_texts + test_texts)
    g_train, g_labels = world_labelled("world:genre", world, "train")
    g_test, _ = world_labelled("world:genre", world, "test")
    assert len(set(g_labels)) >= 5 and 0.1 < len(g_test) / (len(g_train) + len(g_test)) < 0.3
    base = chain / "base"
    code, stdout, err = cli("classify", "probe", "--model", base, "--train", "world:genre", "--test", "world:genre", "--json")
    assert code == 0, err
    assert json.loads(stdout)["examples"] == len(g_test)
    code, _, err = cli("classify", "train", f"init={base}", "epochs=1", "--out", tmp_path / "clf")  # world:sentiment by default
    assert code == 0, err
    code, stdout, err = cli("classify", "eval", "--model", tmp_path / "clf", "--data", "world:sentiment", "--json")
    assert code == 0, err
    assert json.loads(stdout)["examples"] == len(test_texts)
    assert_clean_failure(cli("classify", "eval", "--model", tmp_path / "clf", "--data", "world:topic"), "world:topic", "world:sentiment")
