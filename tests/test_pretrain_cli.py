"""`lmforge pretrain`, `generate` and `eval ppl` end to end on a tiny corpus, and their bad inputs."""

import json
import math
from pathlib import Path

import pytest

from lmforge.tracking import read_metrics

from .test_cli import assert_clean_failure

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
    from lmforge.cli import main

    out = tmp_path_factory.mktemp("run") / "tiny"
    code = main(["pretrain", str(ROOT / "recipes" / "tiny.yaml"), f"data.shards={shards}", "train.steps=80", "train.eval_every=20", "--out", str(out)])
    assert code == 0
    return out


def test_pretrain_run_directory_and_falling_loss(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"config.yaml", "config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl", "checkpoints"} <= names
    evals = [r["eval/bpb"] for r in read_metrics(trained) if "eval/bpb" in r]
    assert len(evals) == 4 and evals[-1] < evals[0]
    train_losses = [r["loss"] for r in read_metrics(trained) if "loss" in r]
    assert train_losses[-1] < train_losses[0] - 1.0


def test_generate_and_eval_ppl(cli, trained, shards):
    code, out, err = cli("generate", "--model", trained, "--prompt", "The cat", "--temperature", 0, "--max-new-tokens", 8, "--json")
    assert code == 0, err
    assert json.loads(out)["completions"][0]["text"]
    code, out, _ = cli("generate", "--model", trained, "--prompt", "The cat", "--beams", 3, "--max-new-tokens", 5, "--json")
    assert code == 0 and len(json.loads(out)["completions"]) == 3
    corpus = next(Path(shards).parent.glob("*.jsonl"))
    code, out, err = cli("eval", "ppl", "--model", trained, "--data", corpus, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"])) and 0 < r["bpb"] < 8


def test_generate_bad_inputs(cli, trained, tmp_path):
    assert_clean_failure(cli("generate", "--model", tmp_path / "nothing", "--prompt", "x"), "model not found")
    assert_clean_failure(cli("generate", "--model", trained, "--prompt", "x", "--top-p", 1.5), "top_p")
    assert_clean_failure(cli("generate", "--model", trained, "--prompt", "x", "--top-p", 0), "top_p")
    assert_clean_failure(cli("generate", "--model", trained, "--prompt", "x", "--temperature", -1), "temperature")
    assert_clean_failure(cli("generate", "--model", trained, "--prompt", "the cat sat " * 100), "context")


def test_truncated_final_weights(cli, trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy, ignore=shutil.ignore_patterns("checkpoints"))
    f = copy / "model.safetensors"
    f.write_bytes(f.read_bytes()[:500])
    assert_clean_failure(cli("generate", "--model", copy, "--prompt", "x"), str(f), "truncated or corrupt safetensors")


def test_nan_loss_through_the_cli(cli, shards, tmp_path):
    result = cli("pretrain", ROOT / "recipes" / "tiny.yaml", f"data.shards={shards}", "train.steps=30", "train.optim.lr=1e6", "train.optim.grad_clip=0", "train.schedule.warmup_steps=1", "--out", tmp_path / "r")
    assert_clean_failure(result, "field 'loss'", "nan_policy=skip")


def test_resuming_with_another_config_is_refused(cli, trained, shards):
    assert_clean_failure(cli("pretrain", ROOT / "recipes" / "tiny.yaml", f"data.shards={shards}", "train.steps=80", "model.n_layer=3", "--out", trained), "another config")


def test_one_text_file_gets_a_validation_loss_and_a_trained_tokenizer_is_reused(cli, tmp_path):
    """nanoGPT's case: one text file is one document, too few for a split by document; the last
    val_fraction of its tokens is held out instead. A tokenizer from `lmforge tokenizer train` is
    reused as data.tokenizer=DIR (or data.tokenizer_path=DIR)."""
    import pydoc_data.topics

    text = "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))[:60_000]
    corpus = tmp_path / "docs.txt"
    corpus.write_text(text, encoding="utf-8")
    code, _, err = cli("tokenizer", "train", "--data", corpus, "--vocab-size", 400, "--out", tmp_path / "tok")
    assert code == 0, err
    out = tmp_path / "run"
    code, _, err = cli("pretrain", ROOT / "recipes" / "tiny.yaml", f"data.corpus={corpus}", f"data.tokenizer={tmp_path / 'tok'}", "data.val_fraction=0.1",
                       "train.steps=4", "train.eval_every=2", "--out", out)  # fmt: skip
    assert code == 0, err
    index = json.loads((out / "data" / "shards" / "index.json").read_text())
    train, val = index["splits"]["train"], index["splits"]["val"]
    assert val["by_position"] and abs(val["tokens"] / (train["tokens"] + val["tokens"]) - 0.1) < 0.01
    assert train["bytes"] + val["bytes"] == len(text.encode("utf-8"))  # byte-level BPE: the bytes split exactly
    assert len([r for r in read_metrics(out) if "eval/loss" in r]) == 2
    assert (out / "tokenizer.json").read_text() == (tmp_path / "tok" / "tokenizer.json").read_text()
    # no validation at all: one warning, and training goes on
    with pytest.warns(UserWarning, match="no validation split"):
        code, _, err = cli("pretrain", ROOT / "recipes" / "tiny.yaml", f"data.corpus={corpus}", f"data.tokenizer_path={tmp_path / 'tok'}", "data.val_fraction=0",
                           "train.steps=2", "train.eval_every=1", "--out", tmp_path / "noval")  # fmt: skip
    assert code == 0, err
