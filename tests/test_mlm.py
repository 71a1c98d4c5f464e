"""Masked-LM pretraining (BERT's objective): the masking's statistics, an encoder's attention seeing
both ways, `lmforge pretrain objective=mlm` end to end, its resumption and its bad settings."""

from pathlib import Path

import pytest
import torch

from lmforge.models.transformer import ModelConfig, Transformer
from lmforge.tokenizer import MASK_TOKEN, Tokenizer
from lmforge.tracking import read_metrics
from lmforge.train.mlm import (
    IGNORE,
    MaskedBatches,
    MLMConfig,
    mask_tokens,
    special_mask,
)

from .test_cli import assert_clean_failure
from .test_train import assert_killed_run_resumes_bitwise, pretrain_args

ROOT = Path(__file__).parent.parent


def test_masking_follows_berts_rates_and_spares_special_tokens():
    """15% of the ordinary positions selected; of those 80% masked, 10% a random token, 10% kept
    (Devlin et al. 2019, 3.1); specials never selected and never drawn. Tolerances: 5 standard errors."""
    V, special_ids, mask_id = 500, [0, 1, 2, 3], 499
    special = special_mask(V, special_ids + [mask_id])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 499, (400, 512), generator=g)
    ids[:, ::16] = 2  # an end-of-text every 16 tokens: never selected
    cfg = MLMConfig()
    inputs, labels = mask_tokens(ids, cfg, mask_id, special, g)
    selected = labels != IGNORE
    ordinary = ids != 2
    n = int(ordinary.sum())
    share = selected.sum().item() / n
    assert abs(share - 0.15) < 5 * (0.15 * 0.85 / n) ** 0.5
    assert not selected[~ordinary].any() and torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])  # nothing else is touched
    k = int(selected.sum())
    masked = (inputs[selected] == mask_id).float().mean().item()
    swapped = selected & (inputs != ids) & (inputs != mask_id)
    kept = (inputs[selected] == ids[selected]).float().mean().item()
    # a random replacement draws the original token again with probability 1/(V - 5)
    expect_swap = 0.1 * (1 - 1 / (V - 5))
    for observed, p in ((masked, 0.8), (swapped.sum().item() / k, expect_swap), (kept, 1 - 0.8 - expect_swap)):
        assert abs(observed - p) < 5 * (p * (1 - p) / k) ** 0.5, (observed, p)
    assert not special[inputs[swapped]].any()


def test_masking_selects_at_least_one_position_and_refuses_a_batch_of_specials():
    special = special_mask(50, [0, 1])
    g = torch.Generator().manual_seed(0)
    _, labels = mask_tokens(torch.full((1, 4), 7), MLMConfig(probability=1e-9), 49, special, g)
    assert (labels != IGNORE).sum() == 1
    from lmforge.errors import InputError

    with pytest.raises(InputError, match="only special tokens"):
        mask_tokens(torch.zeros((2, 4), dtype=torch.long), MLMConfig(), 49, special, g)


def test_the_same_data_position_draws_the_same_masks():
    class Loader:
        epoch, batch, rank, world_size = 0, 0, 0, 1

        def __next__(self):
            self.batch += 1
            return torch.arange(10, 74).view(2, 32), None

    special = special_mask(100, [0])
    a = MaskedBatches(Loader(), MLMConfig(), 99, special, seed=3)
    b = MaskedBatches(Loader(), MLMConfig(), 99, special, seed=3)
    first, second = next(a), next(a)
    assert all(torch.equal(x, y) for x, y in zip(first, next(b)))
    assert not torch.equal(first[1], second[1])  # the next batch its own masks


@pytest.mark.parametrize("causal", [True, False])
def test_an_encoder_sees_the_tokens_after_a_position_and_a_decoder_does_not(causal):
    torch.manual_seed(0)
    for flavour in ("gpt2", "llama"):
        model = Transformer(ModelConfig(flavour=flavour, vocab_size=64, n_layer=2, n_head=2, d_model=32, max_seq_len=16, causal=causal)).eval()
        x = torch.randint(0, 64, (1, 12))
        y = x.clone()
        y[0, 8] = (x[0, 8] + 1) % 64  # change the token at position 8
        with torch.no_grad():
            a, b = model(x), model(y)
        before = torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
        assert before == causal, flavour  # positions before 8 see it only without the causal mask
        assert not torch.allclose(a[0, 8:], b[0, 8:])


NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]


@pytest.fixture(scope="module")
def counting(tmp_path_factory):
    """Shards of documents that count in words from a random start ("seven eight nine ..."): a
    masked word follows from its neighbours on either side, and not from word frequencies."""
    import json
    import random

    from lmforge.data.prepare import CorpusConfig, PrepareConfig, run_prepare
    from lmforge.data.shards import ShardConfig
    from lmforge.tokenizer import TokenizerConfig

    rng = random.Random(0)
    base = tmp_path_factory.mktemp("counting")
    docs = []
    for _ in range(800):
        start = rng.randrange(len(NUMBERS))
        docs.append(" ".join(NUMBERS[(start + i) % len(NUMBERS)] for i in range(rng.randint(8, 30))))
    (base / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    prep = PrepareConfig(data=CorpusConfig(path=str(base / "c.jsonl")), tokenizer=TokenizerConfig(vocab_size=300, min_frequency=1), shards=ShardConfig(val_fraction=0.1))
    run_prepare(prep, base / "prep")
    return base / "prep"


@pytest.fixture(scope="module")
def encoder(counting, tmp_path_factory):
    from lmforge.cli import main

    out = tmp_path_factory.mktemp("run") / "encoder"
    args = ["pretrain", str(ROOT / "recipes" / "tiny.yaml"), "objective=mlm", "model.flavour=llama", f"data.shards={counting}", "train.steps=150", "train.eval_every=50", "--out", str(out)]
    assert main(args) == 0
    return out


def test_pretrain_objective_mlm_trains_an_encoder(encoder, counting):
    """Bidirectional, its tokenizer the shards' plus <|mask|> at the next id, and after 150 tiny
    steps masked-token accuracy far above the unigram guess. (Llama's rotary positions: with
    GPT-2's learned ones a model this small sits at the unigram guess for hundreds of steps,
    having to learn where its neighbours are before it can read them.)"""
    import json

    cfg = json.loads((encoder / "config.json").read_text())
    assert cfg["objective"] == "mlm" and cfg["model"]["causal"] is False
    tok, base = Tokenizer.load(encoder), Tokenizer.load(counting)
    assert tok.vocab_size == base.vocab_size + 1 and tok.mask_id == base.vocab_size and tok.id_to_token(tok.mask_id) == MASK_TOKEN
    assert cfg["model"]["vocab_size"] == tok.vocab_size
    evals = [r for r in read_metrics(encoder) if "eval/accuracy" in r]
    assert len(evals) == 3 and evals[-1]["eval/loss"] < evals[0]["eval/loss"]
    assert evals[-1]["eval/accuracy"] > evals[-1]["eval/unigram_accuracy"] + 0.3, evals[-1]
    assert len({r["eval/masked_tokens"] for r in evals}) == 1  # the same held-out positions each time


def test_two_ranks_mask_as_one_process_with_the_global_batch():
    special = special_mask(100, [0])
    ids = torch.randint(1, 99, (8, 32), generator=torch.Generator().manual_seed(0))
    whole = mask_tokens(ids, MLMConfig(), 99, special, torch.Generator().manual_seed(5))
    for rank in (0, 1):
        part = mask_tokens(ids[rank * 4 : rank * 4 + 4], MLMConfig(), 99, special, torch.Generator().manual_seed(5), rank=rank, world_size=2)
        assert all(torch.equal(a[rank * 4 : rank * 4 + 4], b) for a, b in zip(whole, part))


@pytest.mark.slow
def test_mlm_under_torchrun_matches_one_process(shards, tmp_path):
    import os
    import subprocess
    import sys

    from .test_train import losses, run_cli

    common = (f"data.shards={shards}", "objective=mlm", "train.steps=20", "train.save_every=0", "train.eval_every=0", "train.log_every=1")
    p = run_cli("pretrain", ROOT / "recipes" / "tiny.yaml", *common, "train.batch_size=8", "--out", tmp_path / "one")
    assert p.wait(timeout=300) == 0, p.stderr.read()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "lmforge",
           "pretrain", str(ROOT / "recipes" / "tiny.yaml"), *common, "train.batch_size=4", "--out", str(tmp_path / "two")]  # fmt: skip
    p = subprocess.run(cmd, env={**os.environ, "LMFORGE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == 20 and [s for s, _ in one] == [s for s, _ in two]
    # The same masked positions; each rank averages over its own (as BERT and Hugging Face do under
    # data parallelism), so the loss is the mean of the two halves' means, not the mean over all:
    # equal at the first step up to that weighting (about 0.003 here), and the runs stay close.
    assert one[0][1] == pytest.approx(two[0][1], abs=0.01)
    for (_, a), (_, b) in zip(one, two):
        assert a == pytest.approx(b, abs=0.05)


@pytest.mark.slow
def test_a_killed_mlm_run_resumes_bitwise(shards, tmp_path):
    assert_killed_run_resumes_bitwise(lambda out: pretrain_args(shards, out, "objective=mlm"), tmp_path, 50)


def test_bad_mlm_settings_are_refused(cli, shards, tmp_path):
    tiny = ROOT / "recipes" / "tiny.yaml"
    out = tmp_path / "x"
    assert_clean_failure(cli("pretrain", tiny, f"data.shards={shards}", "model.causal=false", "--out", out), "model.causal", "objective=mlm")
    assert_clean_failure(cli("pretrain", tiny, f"data.shards={shards}", "objective=mlm", "arch=rnn", "--out", out), "objective")
    assert_clean_failure(cli("pretrain", tiny, f"data.shards={shards}", "objective=mlm", "mlm.probability=1.5", "--out", out), "mlm.probability")
    assert_clean_failure(cli("pretrain", tiny, f"data.shards={shards}", "objective=mlm", "mlm.mask=0.95", "--out", out), "mlm.mask")
    assert not (out / "model.safetensors").exists()


def test_an_encoder_is_refused_where_text_is_generated_or_exported(cli, encoder, tmp_path):
    assert_clean_failure(cli("generate", "--model", encoder, "--prompt", "one two"), "causal", "lmforge embed")
    assert_clean_failure(cli("export", "hf", "--model", encoder, "--out", tmp_path / "hf"), "causal", "encoder")
    assert not (tmp_path / "hf").exists()
