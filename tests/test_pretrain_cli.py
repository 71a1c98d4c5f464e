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
