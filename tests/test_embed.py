"""`lmforge embed`: pooled hidden states as document vectors, batched with padding exactly as one at
a time, long documents averaged over windows, the files it writes, and its bad inputs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforge.embed import (
    EmbedConfig,
    embed_documents,
    layer_states,
    pool,
    read_embeddings,
)
from lmforge.errors import InputError
from lmforge.models.transformer import ModelConfig, Transformer

from .conftest import make_docs
from .test_cli import assert_clean_failure

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_a_padded_batch_embeds_as_one_document_at_a_time(bpe, causal, pooling):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(flavour="llama", vocab_size=bpe.vocab_size, n_layer=3, n_head=2, d_model=32, max_seq_len=64, causal=causal)).eval()
    texts = make_docs(12, seed=1, words=30)
    for layers in (1, 2):
        cfg = EmbedConfig(pooling=pooling, layers=layers, batch_size=5)
        batched, _ = embed_documents(model, bpe, texts, cfg)
        alone = np.concatenate([embed_documents(model, bpe, [t], EmbedConfig(pooling=pooling, layers=layers, batch_size=1))[0] for t in texts])
        np.testing.assert_allclose(batched, alone, atol=2e-5)
        assert np.allclose(batched[0], batched[1]) == (causal and pooling == "cls")  # a causal first token sees itself only


def test_a_long_document_is_its_windows_average_weighted_by_tokens(bpe):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(flavour="gpt2", vocab_size=bpe.vocab_size, n_layer=2, n_head=2, d_model=32, max_seq_len=64, causal=False)).eval()
    text = " ".join(make_docs(6, seed=2))
    ids = bpe.document_ids(text)
    assert len(ids) > 40
    vectors, windows = embed_documents(model, bpe, [text], EmbedConfig(window=16))
    assert windows == -(-len(ids) // 16)
    parts, weights = [], []
    with torch.no_grad():
        for lo in range(0, len(ids), 16):
            piece = torch.tensor([ids[lo : lo + 16]])
            mask = torch.ones_like(piece, dtype=torch.bool)
            parts.append(pool(layer_states(model, piece, mask), mask, "mean")[0].numpy())
            weights.append(piece.shape[1])
    np.testing.assert_allclose(vectors[0], np.average(parts, axis=0, weights=weights), atol=1e-5)


@pytest.fixture(scope="module")
def tiny_model(shards, tmp_path_factory):
    from lmforge.cli import main

    out = tmp_path_factory.mktemp("run") / "encoder"
    assert main(["pretrain", str(ROOT / "recipes" / "tiny.yaml"), "objective=mlm", "model.flavour=llama", f"data.shards={shards}", "train.steps=5", "--out", str(out)]) == 0
    return out


def test_embed_writes_parquet_and_npy_that_read_back(cli, tiny_model, tmp_path):
    docs = tmp_path / "docs.jsonl"
    texts = make_docs(9, seed=3)
    docs.write_text("".join(json.dumps({"id": f"d{i}", "body": t}) + "\n" for i, t in enumerate(texts)))
    code, out, err = cli("embed", "--model", tiny_model, "--data", docs, "--text-field", "body", "--out", tmp_path / "e.parquet", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["documents"] == 9 and summary["dim"] == 64 and summary["causal"] is False
    ids, matrix = read_embeddings(tmp_path / "e.parquet")
    assert ids == [f"d{i}" for i in range(9)] and matrix.shape == (9, 64)
    code, _, err = cli("embed", "--model", tiny_model, "--data", docs, "--text-field", "body", "--out", tmp_path / "e.npy", "--pooling", "cls", "--layers", "2")
    assert code == 0, err
    ids, cls = read_embeddings(tmp_path / "e.npy")
    assert ids == [str(i) for i in range(9)] and cls.shape == (9, 64) and not np.allclose(cls, matrix)


def test_bad_embed_input_exits_2_naming_the_file_and_field(cli, tiny_model, shards, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "one"}\n{"body": "two"}\n')
    assert_clean_failure(cli("embed", "--model", tiny_model, "--data", docs, "--out", tmp_path / "e.npy"), f"{docs}:2", "text")
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "one"}\n')
    assert_clean_failure(cli("embed", "--model", tiny_model, "--data", good, "--out", tmp_path / "e.csv"), "e.csv", ".parquet")
    assert_clean_failure(cli("embed", "--model", tiny_model, "--data", good, "--out", tmp_path / "e.npy", "--layers", "9"), "layers")
    gpt = tmp_path / "gpt"
    assert cli("pretrain", ROOT / "recipes" / "tiny.yaml", f"data.shards={shards}", "train.steps=2", "--out", gpt)[0] == 0
    assert_clean_failure(cli("embed", "--model", gpt, "--data", good, "--out", tmp_path / "e.npy", "--pooling", "cls"), "pooling", "mean or last")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_clean_failure(cli("embed", "--model", tiny_model, "--data", empty, "--out", tmp_path / "e.npy"), str(empty))
    assert not (tmp_path / "e.npy").exists()


def test_read_embeddings_refuses_what_is_not_a_matrix(tmp_path):
    for name, array in (("flat.npy", np.zeros(5, np.float32)), ("ints.npy", np.zeros((3, 2), np.int64)), ("nan.npy", np.full((2, 2), np.nan, np.float32))):
        np.save(tmp_path / name, array)
        with pytest.raises(InputError) as e:
            read_embeddings(tmp_path / name)
        assert e.value.field == "vector" and name in str(e.value)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="bad.npy"):
        read_embeddings(tmp_path / "bad.npy")
