"""`lmforge compare`: n-grams, an RNN and a GPT scored on the same held-out documents."""

import json
import math

import numpy as np
import pytest
import torch

from lmforge.compare import split_documents
from lmforge.data.shards import TokenShards

from .test_cli import assert_clean_failure

TINY = [
    "data.seq_len=32",
    "data.eval_batches=2",
    "ngram.orders=[1, 2, 3]",
    "rnn.model.cell=gru",
    "rnn.model.d_embed=32",
    "rnn.model.d_hidden=32",
    "rnn.model.n_layer=1",
    "rnn.train.steps=40",
    "rnn.train.batch_size=8",
    "rnn.train.optim.lr=0.01",
    "rnn.train.schedule.warmup_steps=5",
    "rnn.train.eval_every=0",
    "rnn.train.save_every=0",
    "gpt.model.n_layer=1",
    "gpt.model.n_head=2",
    "gpt.model.d_model=32",
    "gpt.model.max_seq_len=64",
    "gpt.train.steps=40",
    "gpt.train.batch_size=8",
    "gpt.train.optim.lr=0.01",
    "gpt.train.schedule.warmup_steps=5",
    "gpt.train.eval_every=0",
    "gpt.train.save_every=0",
]


@pytest.fixture(scope="module")
def compared(shards, tmp_path_factory):
    from lmforge.cli import main

    out = tmp_path_factory.mktemp("cmp") / "run"
    assert main(["compare", f"data.shards={shards}", *TINY, "--out", str(out)]) == 0
    return out


def rows_of(path):
    return {r["name"]: r for r in json.loads(path.read_text())["models"]}


def test_one_table_of_all_three_families(compared, shards):
    result = json.loads((compared / "comparison.json").read_text())
    rows = rows_of(compared / "comparison.json")
    # the sections keep the defaults of a CPU run where the overrides leave them: a llama-flavoured GPT
    assert set(rows) == {"ngram-1", "ngram-2", "ngram-3", "rnn-gru", "gpt-llama"}
    val = TokenShards(shards / "shards", "val").index["splits"]["val"]
    assert result["val"]["bytes"] == val["bytes"] and result["val"]["tokens"] == val["tokens"]
    for r in rows.values():
        # every model predicts every held-out token once, </s> standing for the end-of-text token
        assert r["tokens"] == val["tokens"] and r["same_tokenizer"]
        assert math.isfinite(r["bpb"]) and r["perplexity"] > 1 and r["params"] > 0 and r["train_seconds"] >= 0
    # more context helps a count model on this corpus; 40 steps take the neural models well below a uniform guess
    assert rows["ngram-3"]["bpb"] < rows["ngram-2"]["bpb"] < rows["ngram-1"]["bpb"]
    vocab = TokenShards(shards / "shards", "val").index["vocab_size"]
    uniform = math.log2(vocab) * val["tokens"] / val["bytes"]
    assert rows["gpt-llama"]["bpb"] < 0.8 * uniform and rows["rnn-gru"]["bpb"] < 0.8 * uniform
    assert result["best"]["ngram"]["name"] == "ngram-3"
    assert (compared / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def val_docs(shards):
    split = TokenShards(shards / "shards", "val")
    return split_documents(split.read_all(), split.index["eos_id"])


def test_each_row_is_its_models_own_score(compared, shards):
    from lmforge.eval.perplexity import score_stream
    from lmforge.models import load_model
    from lmforge.models.ngram import FALLBACK, estimate

    rows = rows_of(compared / "comparison.json")
    train = TokenShards(shards / "shards", "train")
    eos = train.index["eos_id"]
    docs = [[str(t) for t in d] for d in split_documents(train.read_all(), eos)]
    lm = estimate(docs, 2, discount_fallback=FALLBACK)
    assert rows["ngram-2"]["perplexity"] == pytest.approx(lm.evaluate([[str(t) for t in d] for d in val_docs(shards)])["perplexity"], rel=1e-9)
    # the GPT: sliding windows of the 32 tokens it was trained on, 16 new ones a pass
    gpt, _ = load_model(compared / "gpt")
    assert json.loads((compared / "gpt" / "config.json").read_text())["trained_seq_len"] == 32 == gpt.trained_seq_len
    stream = torch.from_numpy(np.concatenate([[eos], TokenShards(shards / "shards", "val").read_all()]))
    n_bytes = json.loads((compared / "comparison.json").read_text())["val"]["bytes"]
    r = score_stream(gpt.eval(), stream, n_bytes=n_bytes, window=32, stride=16)
    assert rows["gpt-llama"]["bpb"] == pytest.approx(r["bpb"], rel=1e-9)
    # the RNN: its state carried through the whole stream
    rnn, _ = load_model(compared / "rnn")
    r = score_stream(rnn.eval(), stream, n_bytes=n_bytes, window=10_000)
    assert rows["rnn-gru"]["bpb"] == pytest.approx(r["bpb"], rel=1e-6)


def test_rerun_reuses_trained_models_and_loads_others(cli, compared, shards, tmp_path):
    code, out, err = cli("compare", f"data.shards={shards}", *TINY, "--out", compared, "--json")
    assert code == 0, err
    assert "reusing" in err
    again = {r["name"]: r for r in json.loads(out)["models"]}
    first = rows_of(compared / "comparison.json")
    assert again["gpt-llama"]["bpb"] == first["gpt-llama"]["bpb"]
    assert again["rnn-gru"]["train_seconds"] == first["rnn-gru"]["train_seconds"]
    # other settings for a trained model are refused, not silently scored with the old one
    assert_clean_failure(cli("compare", f"data.shards={shards}", *TINY, "rnn.model.d_hidden=48", "--out", compared), "another config")
    # a model loaded from elsewhere is scored, not trained
    code, out, err = cli("compare", f"data.shards={shards}", "ngram.orders=[]", "rnn.enabled=false", f"gpt.load={compared / 'gpt'}", "--out", tmp_path / "c", "--json")
    assert code == 0, err
    (row,) = json.loads(out)["models"]
    assert row["name"] == "gpt-loaded" and row["train_seconds"] is None
    assert row["bpb"] == pytest.approx(first["gpt-llama"]["bpb"], rel=1e-9)


def test_loaded_model_with_another_tokenizer_is_scored_on_the_same_text(cli, compared, shards, tmp_path):
    from lmforge.data.prepare import CorpusConfig, PrepareConfig, run_prepare
    from lmforge.data.shards import ShardConfig
    from lmforge.eval.perplexity import score_stream
    from lmforge.models import load_model
    from lmforge.tokenizer import Tokenizer, TokenizerConfig

    # the same corpus under another tokenizer: the first run's GPT is scored on this run's held-out text
    other = tmp_path / "other"
    corpus = shards.parent / "c.jsonl"
    run_prepare(PrepareConfig(data=CorpusConfig(path=str(corpus)), tokenizer=TokenizerConfig(vocab_size=280, min_frequency=1), shards=ShardConfig(val_fraction=0.1)), other)
    code, out, err = cli("compare", f"data.shards={other}", "ngram.orders=[2]", "rnn.enabled=false", f"gpt.load={compared / 'gpt'}", "--out", tmp_path / "c", "--json")
    assert code == 0, err
    result = json.loads(out)
    rows = {r["name"]: r for r in result["models"]}
    assert not rows["gpt-loaded"]["same_tokenizer"] and rows["ngram-2"]["same_tokenizer"]
    # what it must equal: the held-out documents as text, encoded by the GPT's own tokenizer
    theirs, mine = Tokenizer.load(other / "shards"), Tokenizer.load(compared / "gpt")
    texts = [theirs.decode(d.tolist()) for d in val_docs(other)]
    assert sum(len(t.encode()) for t in texts) == result["val"]["bytes"]
    ids = [mine.eos_id] + [i for t in texts for i in mine.encode(t) + [mine.eos_id]]
    gpt, _ = load_model(compared / "gpt")
    r = score_stream(gpt.eval(), torch.tensor(ids), n_bytes=result["val"]["bytes"], window=32, stride=16)
    assert rows["gpt-loaded"]["bpb"] == pytest.approx(r["bpb"], rel=1e-9) and rows["gpt-loaded"]["tokens"] == len(ids) - 1


def test_bad_settings_fail_cleanly_before_any_work(cli, compared, shards, tmp_path, corpus_jsonl):
    assert_clean_failure(cli("compare", f"data.shards={shards}", "rnn.modle.cell=gru", "--out", tmp_path / "a"), "rnn.model.cell")
    assert_clean_failure(cli("compare", f"data.shards={shards}", "ngram.orders=[0]", "--out", tmp_path / "b"), "ngram.orders")
    assert_clean_failure(cli("compare", f"data.shards={shards}", "ngram.orders=[]", "rnn.enabled=false", "gpt.enabled=false", "--out", tmp_path / "c"), "nothing to compare")
    assert_clean_failure(cli("compare", f"data.shards={shards}", "data.seq_len=512", "--out", tmp_path / "d"), "data.seq_len", "gpt.model.max_seq_len")
    for name in "abcd":
        assert not (tmp_path / name).exists()
    # a loaded model of the wrong family, an n-gram over other words
    assert_clean_failure(cli("compare", f"data.shards={shards}", "ngram.orders=[]", "gpt.enabled=false", f"rnn.load={compared / 'gpt'}", "--out", tmp_path / "e"), "rnn.load", "transformer")
    words = tmp_path / "words.arpa"
    assert cli("ngram", "train", "--order", 2, "--data", shards.parent / "c.jsonl", "--out", words, "--discount-fallback")[0] == 0
    assert_clean_failure(cli("compare", f"data.shards={shards}", f"ngram.load=[{words}]", "ngram.orders=[]", "rnn.enabled=false", "gpt.enabled=false", "--out", tmp_path / "f"), "ngram.load", "token ids")
    # shards with no held-out split
    from lmforge.data.prepare import CorpusConfig, PrepareConfig, run_prepare
    from lmforge.tokenizer import TokenizerConfig

    no_val = tmp_path / "noval"
    run_prepare(PrepareConfig(data=CorpusConfig(path=str(corpus_jsonl)), tokenizer=TokenizerConfig(vocab_size=280, min_frequency=1)), no_val)
    assert_clean_failure(cli("compare", f"data.shards={no_val}", "--out", tmp_path / "g"), "no val split")
    assert not (tmp_path / "g").exists()
    # a run directory made from other data
    assert_clean_failure(cli("compare", f"data.shards={no_val}", *TINY, "--out", compared), "other data settings")
