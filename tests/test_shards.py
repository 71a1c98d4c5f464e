import json

import numpy as np
import pytest
import torch

from lmforge.data.readers import iter_text_pieces
from lmforge.data.shards import BatchLoader, ShardConfig, StreamLoader, TokenShards, write_shards
from lmforge.errors import InputError


def shard(corpus, tok, out, **cfg):
    return write_shards(iter_text_pieces(corpus), tok, out, ShardConfig(**cfg))


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_documents_end_with_eos_and_decode_back(corpus_jsonl, bpe, tmp_path):
    index = shard(corpus_jsonl, bpe, tmp_path / "s")
    ids = np.fromfile(tmp_path / "s" / "train-00000.bin", dtype=np.uint16)
    docs = [t for t, _ in iter_text_pieces(corpus_jsonl)]
    assert index["splits"]["train"]["documents"] == len(docs) == int((ids == bpe.eos_id).sum())
    first = ids[: list(ids).index(bpe.eos_id)]
    assert bpe.decode(first.tolist()) == docs[0]
    assert index["splits"]["train"]["bytes"] == sum(len(d.encode()) for d in docs)


def test_shards_are_byte_identical_across_runs_and_worker_counts(corpus_jsonl, bpe, tmp_path):
    shard(corpus_jsonl, bpe, tmp_path / "a", shard_tokens=1000, val_fraction=0.1, batch_docs=7)
    shard(corpus_jsonl, bpe, tmp_path / "b", shard_tokens=1000, val_fraction=0.1, batch_docs=7)
    shard(corpus_jsonl, bpe, tmp_path / "c", shard_tokens=1000, val_fraction=0.1, batch_docs=7, num_proc=2)
    a = files(tmp_path / "a")
    assert len([n for n in a if n.startswith("train-")]) > 3  # several shards were written
    assert any(n.startswith("val-") for n in a)
    assert a == files(tmp_path / "b") == files(tmp_path / "c")


def test_shard_sizes_and_split_counts(corpus_jsonl, bpe, tmp_path):
    index = shard(corpus_jsonl, bpe, tmp_path / "s", shard_tokens=500, val_fraction=0.2)
    for split in index["splits"].values():
        sizes = [s["tokens"] for s in split["shards"]]
        assert all(n == 500 for n in sizes[:-1]) and 0 < sizes[-1] <= 500
        assert sum(sizes) == split["tokens"]
    n_val = index["splits"]["val"]["documents"]
    assert 0.1 < n_val / (n_val + index["splits"]["train"]["documents"]) < 0.3


def test_uint32_for_large_vocabularies(corpus_jsonl, bpe, tmp_path, monkeypatch):
    monkeypatch.setattr(type(bpe), "vocab_size", property(lambda self: 70000))
    index = shard(corpus_jsonl, bpe, tmp_path / "s")
    assert index["dtype"] == "uint32"
    assert TokenShards(tmp_path / "s").arrays[0].dtype == np.uint32


def test_existing_output_is_not_replaced_without_overwrite(corpus_jsonl, bpe, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(InputError, match="--overwrite"):
        shard(corpus_jsonl, bpe, out)
    assert (out / "keep.txt").read_text() == "precious"


def test_failure_midway_leaves_nothing_behind(tmp_path, bpe):
    work = tmp_path / "work"
    work.mkdir()
    f = work / "c.jsonl"
    f.write_text('{"text": "fine"}\n' * 2000 + '{"text": oops}\n')
    with pytest.raises(InputError):
        shard(f, bpe, work / "out", batch_docs=16)
    assert sorted(p.name for p in work.iterdir()) == ["c.jsonl"]


# ------------------------------------------------------------------ loader


@pytest.fixture
def shards(corpus_jsonl, bpe, tmp_path):
    shard(corpus_jsonl, bpe, tmp_path / "s", shard_tokens=700)
    return TokenShards(tmp_path / "s")


def take(loader, n):
    return [next(loader) for _ in range(n)]


def test_batches_are_next_token_pairs_from_the_corpus(shards):
    x, y = next(BatchLoader(shards, batch_size=4, seq_len=16, seed=1))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    flat = np.concatenate([np.asarray(a) for a in shards.arrays])
    row = x[0].numpy()
    starts = np.flatnonzero(flat[:-16] == row[0])
    assert any((flat[s : s + 16] == row).all() for s in starts)


def test_same_seed_same_batches_other_seed_other_batches(shards):
    a = take(BatchLoader(shards, 4, 16, seed=1), 5)
    b = take(BatchLoader(shards, 4, 16, seed=1), 5)
    c = take(BatchLoader(shards, 4, 16, seed=2), 5)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(a, c))


def test_resumed_loader_yields_exactly_the_uninterrupted_batches(shards):
    full = BatchLoader(shards, 4, 16, seed=3)
    per_epoch = full.batches_per_epoch
    n = 2 * per_epoch + 5  # cross epoch boundaries
    expected = take(full, n)
    first = BatchLoader(shards, 4, 16, seed=3)
    got = take(first, per_epoch + 3)
    state = json.loads(json.dumps(first.state_dict()))  # as saved in trainer_state.json
    resumed = BatchLoader(shards, 4, 16, seed=3)
    resumed.load_state_dict(state)
    got += take(resumed, n - len(got))
    assert all(torch.equal(e[0], g[0]) and torch.equal(e[1], g[1]) for e, g in zip(expected, got))


def test_each_epoch_visits_every_window_once_in_a_new_order(shards):
    loader = BatchLoader(shards, 2, 16, seed=0)
    epoch0 = [next(loader)[0] for _ in range(loader.batches_per_epoch)]
    epoch1 = [next(loader)[0] for _ in range(loader.batches_per_epoch)]
    rows0 = sorted(map(tuple, torch.cat(epoch0).tolist()))
    rows1 = sorted(map(tuple, torch.cat(epoch1).tolist()))
    assert rows0 == rows1 and len(set(rows0)) > 0.9 * len(rows0)
    assert not torch.equal(torch.cat(epoch0), torch.cat(epoch1))


def test_ranks_split_the_global_batch(shards):
    single = take(BatchLoader(shards, 6, 8, seed=5), 3)
    ranks = [take(BatchLoader(shards, 3, 8, seed=5, rank=r, world_size=2), 3) for r in range(2)]
    for i in range(3):
        assert torch.equal(torch.cat([ranks[0][i][0], ranks[1][i][0]]), single[i][0])


def test_resume_with_other_settings_is_refused(shards):
    state = BatchLoader(shards, 4, 16).state_dict()
    with pytest.raises(InputError) as e:
        BatchLoader(shards, 4, 32).load_state_dict(state)
    assert e.value.field == "data.seq_len"


def test_too_small_corpus_for_a_batch(shards):
    with pytest.raises(InputError, match="too few for one batch"):
        BatchLoader(shards, 10_000, 64)


def test_truncated_shard_is_detected(shards):
    f = shards.folder / "train-00000.bin"
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(InputError, match="truncated"):
        TokenShards(shards.folder)


def test_stream_rows_continue_across_batches_and_shards(shards):
    assert len(shards.arrays) > 2
    loader = StreamLoader(shards, batch_size=4, seq_len=16)
    flat = torch.from_numpy(np.concatenate([np.asarray(a) for a in shards.arrays]).astype(np.int64))
    x1, y1 = next(loader)
    assert loader.fresh
    x2, _ = next(loader)
    assert not loader.fresh
    assert torch.equal(x2[:, 0], y1[:, -1])  # row r of batch 2 starts where row r of batch 1 ended
    for r in range(4):
        start = r * loader.stretch
        assert torch.equal(x1[r], flat[start : start + 16]) and torch.equal(y1[r], flat[start + 1 : start + 17])
    # every batch of an epoch, row by row, is the row's stretch read in order
    loader = StreamLoader(shards, batch_size=4, seq_len=16)
    rows = torch.cat([next(loader)[0] for _ in range(loader.batches_per_epoch)], dim=1)
    assert loader.epoch == 1 and loader.batch == 0
    for r in range(4):
        assert torch.equal(rows[r], flat[r * loader.stretch : r * loader.stretch + rows.size(1)])
    # two ranks read disjoint rows of the same global layout
    a = next(StreamLoader(shards, 2, 16, rank=0, world_size=2))[0]
    b = next(StreamLoader(shards, 2, 16, rank=1, world_size=2))[0]
    assert torch.equal(torch.cat([a, b]), x1)


def test_stream_loader_resumes_with_its_carried_state(shards):
    loader = StreamLoader(shards, batch_size=2, seq_len=8)
    take(loader, 3)
    loader.carry = (torch.randn(1, 2, 5), torch.randn(1, 2, 5))
    state = json.loads(json.dumps(loader.state_dict()))
    again = StreamLoader(shards, batch_size=2, seq_len=8)
    again.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(again.carry, loader.carry))
    assert torch.equal(next(again)[0], next(loader)[0]) and not again.fresh
    with pytest.raises(InputError, match="seq_len"):
        StreamLoader(shards, batch_size=2, seq_len=4).load_state_dict(state)
    with pytest.raises(InputError, match="too few"):
        StreamLoader(shards, batch_size=64, seq_len=512)


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
def test_one_document_is_split_by_position_wherever_its_hash_falls(bpe, tmp_path, fraction):
    """A single document goes to train or to val by its hash; either way the split is by position:
    train its first tokens, val its last `fraction`, together the document and its end."""
    text = " ".join(f"word{i % 37} and more" for i in range(600))
    index = write_shards([(text, True)], bpe, tmp_path / "s", ShardConfig(val_fraction=fraction, shard_tokens=200))
    train, val = TokenShards(tmp_path / "s", "train").read_all(), TokenShards(tmp_path / "s", "val").read_all()
    assert index["splits"]["val"]["by_position"] and len(train) >= 2 and len(val) >= 2
    assert abs(len(val) / (len(train) + len(val)) - fraction) < 0.01
    assert list(train) + list(val) == bpe.encode(text) + [bpe.eos_id]
