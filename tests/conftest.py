"""Shared test helpers: run the CLI in-process, make small corpora."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lmforge.cli import main

ROOT = Path(__file__).parent.parent

WORDS = "the a cat dog bird sat ran flew on over under mat hill tree red big small quickly home back and then".split()


def pytest_configure(config):
    """One intra-op thread: the tests' models are tiny, and two threads on two cores spend more
    time synchronising than multiplying (tests/test_sft.py and test_dpo.py: 47 s against 103 s on
    a busy 2-core host). LMFORGE_TEST_THREADS=N to try otherwise."""
    import os

    import torch

    torch.set_num_threads(int(os.environ.get("LMFORGE_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch):
    monkeypatch.setenv("LMFORGE_PROGRESS", "0")


@pytest.fixture
def cli(capsys):
    """Run `lmforge ARGS...` in this process; returns (exit code, stdout, stderr)."""

    def run(*args: str):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's own usage errors
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def make_docs(n: int = 200, seed: int = 0, words: int = 40) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        sentences = []
        for _ in range(rng.randint(1, 4)):
            s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, words // 2)))
            sentences.append(s[0].upper() + s[1:] + rng.choice([".", "!", "?"]))
        docs.append(" ".join(sentences))
    return docs


@pytest.fixture
def corpus_jsonl(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in make_docs()), encoding="utf-8")
    return path


@pytest.fixture
def corpus_txt(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(make_docs()) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def bpe(corpus_jsonl):
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    return train_tokenizer(make_docs(), TokenizerConfig(kind="bpe", vocab_size=400, min_frequency=1))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A prepared tiny corpus (tokenizer + shards with a val split), shared by a test module."""
    from lmforge.data.prepare import CorpusConfig, PrepareConfig, run_prepare
    from lmforge.data.shards import ShardConfig
    from lmforge.tokenizer import TokenizerConfig

    base = tmp_path_factory.mktemp("data")
    corpus = base / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in make_docs(600, words=60)))
    prep = PrepareConfig(data=CorpusConfig(path=str(corpus)), tokenizer=TokenizerConfig(vocab_size=300, min_frequency=1), shards=ShardConfig(val_fraction=0.1))
    run_prepare(prep, base / "prep")
    return base / "prep"


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    """A tiny world, its base model, SFT model and reward model (shared by the RLHF and DPO tests)."""
    from lmforge.world.build import WorldConfig, build_world

    root = tmp_path_factory.mktemp("rlhf")
    base = root / "base"
    build_world(WorldConfig(seed=5, entities=12, documents=400, rm_prompts=80, sft_prompts=60, sft_val_prompts=10, ppo_prompts=40, eval_prompts=20, calibration_prompts=100), base / "world")
    assert main(["pretrain", str(ROOT / "recipes" / "tiny.yaml"), f"data.corpus={base / 'world' / 'pretrain.jsonl'}", "model.max_seq_len=160", "data.seq_len=128",
                 "train.steps=20", "train.eval_every=0", "--out", str(base)]) == 0  # fmt: skip
    assert main(["sft", f"init={base}", "epochs=1", "train.batch_size=4", "--out", str(root / "sft")]) == 0
    assert main(["rm", f"init={root / 'sft'}", "epochs=1", "train.batch_size=4", "--out", str(root / "rm")]) == 0
    return root
