"""The reward model: pairs from rankings, the loss of Ouyang et al. eq. 1, rewards at the last
token, learning a preference, normalisation, evaluation, and bad comparison data."""

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforge.data.comparisons import Encoded, collate, encode_comparisons, ranking_pairs, read_comparisons
from lmforge.errors import InputError
from lmforge.models.transformer import ModelConfig, Transformer
from lmforge.train.reward import pairwise_loss, rewards_at_last

from .test_cli import assert_clean_failure

ROOT = Path(__file__).parent.parent


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def ranked(prompt, completions, ranking, **extra):
    return {"prompt": prompt, "completions": completions, "ranking": ranking, **extra}


def test_a_split_that_would_hold_out_nothing_holds_out_one_prompt():
    """By a hash of the prompt, as always; but 3 prompts at 5% (hashes 0.60, 0.12, 0.18) would
    leave no validation at all: the prompt of the lowest hash is held out instead, with every
    comparison of it. One prompt alone stays in training."""
    from lmforge.data.comparisons import Comparison, split_by_prompt

    cs = [Comparison(p, ["x", "y"], [(0, 1)], [True, True]) for p in ("a?", "b?", "c?", "b?")]
    train, val = split_by_prompt(cs, 0.05)
    assert [c.prompt for c in val] == ["b?", "b?"] and [c.prompt for c in train] == ["a?", "c?"]
    assert split_by_prompt(cs, 0.0) == (cs, [])
    assert split_by_prompt(cs[:1], 0.05) == (cs[:1], [])
    from lmforge.data.sft import hash_split

    assert hash_split([b"b?", b"a?", b"b?"], 0.05) == [True, False, True]  # every copy of the held-out item


def test_a_ranking_of_k_gives_its_k_choose_2_pairs():
    assert ranking_pairs([2, 0, 1]) == [(2, 0), (2, 1), (0, 1)]
    for k in range(2, 10):
        pairs = ranking_pairs(list(range(k)))
        assert len(pairs) == math.comb(k, 2) and all(w < l for w, l in pairs)


def test_loss_is_eq_1_averaged_per_prompt():
    # two prompts: K = 3 (rewards 1.0, 0.2, -0.5 ranked 0 > 1 > 2) and K = 2 (0.3 ranked below -0.1)
    r = torch.tensor([1.0, 0.2, -0.5, 0.3, -0.1])
    pairs = torch.tensor([[0, 1], [0, 2], [1, 2], [4, 3]])
    group = torch.tensor([0, 0, 0, 1])
    margins = torch.zeros(4)

    def nls(x):
        return -math.log(1 / (1 + math.exp(-x)))

    first = (nls(0.8) + nls(1.5) + nls(0.7)) / 3  # -1/C(3,2) sum log sigmoid(r_w - r_l)
    second = nls(-0.4)
    loss, acc, gap = pairwise_loss(r, pairs, group, margins)
    assert float(loss) == pytest.approx((first + second) / 2)  # each prompt one batch element
    assert float(acc) == 0.75 and float(gap) == pytest.approx((0.8 + 1.5 + 0.7 - 0.4) / 4)
    # a margin m: log sigmoid(r_w - r_l - m), from the config and from the pair
    loss_m, _, _ = pairwise_loss(r, pairs, group, torch.tensor([0.0, 0.0, 0.0, 0.5]), margin=0.25)
    want = ((nls(0.55) + nls(1.25) + nls(0.45)) / 3 + nls(-1.15)) / 2
    assert float(loss_m) == pytest.approx(want)
    # centering: + eta * mean((r_w + r_l)^2)
    loss_c, _, _ = pairwise_loss(r, pairs, group, margins, center=0.01)
    sums = torch.tensor([1.2, 0.5, -0.3, 0.2])
    assert float(loss_c) == pytest.approx((first + second) / 2 + 0.01 * float((sums**2).mean()))


def test_rewards_are_read_at_each_rows_last_token(bpe):
    torch.manual_seed(0)
    rm = Transformer(ModelConfig(flavour="llama", vocab_size=bpe.vocab_size, n_layer=1, n_head=2, d_model=16, max_seq_len=64), head="scalar").eval().requires_grad_(False)
    seqs = [[5, 9, 12], [5, 9, 12, 40, 41, 42, 43], [7]]
    ids = torch.zeros(3, 7, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
    got = rewards_at_last(rm, ids, torch.tensor([i * 7 + len(s) - 1 for i, s in enumerate(seqs)]))
    for i, s in enumerate(seqs):
        alone = rm(torch.tensor([s]))[0, -1]
        assert float(got[i]) == pytest.approx(float(alone), abs=1e-5)


def test_bad_comparisons_are_errors_or_counted_skips(tmp_path):
    def read(records):
        return read_comparisons(write_jsonl(tmp_path / "c.jsonl", records))

    good = ranked("Q?", ["a", "b", "c"], [1, 0, 2])
    with pytest.raises(InputError, match="permutation") as e:
        read([good, ranked("Q?", ["a", "b", "c"], [0, 0, 1])])
    assert e.value.line == 2 and e.value.field == "ranking"
    with pytest.raises(InputError, match="at least 2") as e:
        read([good, ranked("Q?", ["a"], [0])])
    assert e.value.field == "completions"
    with pytest.raises(InputError, match="finished"):
        read([ranked("Q?", ["a", "b"], [0, 1], finished=[True])])
    # duplicates: the pairs between identical answers are skipped and counted
    with pytest.warns(UserWarning, match="1 pairs of identical answers"):
        comps, stats = read([good, ranked("Q?", ["a", "a", "b"], [0, 2, 1])])
    assert stats["skipped_pairs"] == 1 and comps[1].pairs == [(0, 2), (2, 1)] and stats["pairs"] == 3 + 2
    # a preference pair whose chosen equals its rejected teaches nothing: skipped, counted
    with pytest.warns(UserWarning):
        comps, stats = read([{"prompt": "Q?", "chosen": "yes", "rejected": "no"}, {"prompt": "Q?", "chosen": "same", "rejected": "same"}])
    assert len(comps) == 1 and stats["skipped_comparisons"] == 1
    with pytest.raises(InputError, match="no comparisons to learn from"):
        read([{"prompt": "Q?", "chosen": "same", "rejected": "same"}])
    with pytest.raises(InputError, match="ranking or preference records"):
        read([{"text": "hello"}])


def test_collate_pairs_index_the_flattened_answers(bpe, tmp_path):
    comps, _ = read_comparisons(write_jsonl(tmp_path / "c.jsonl", [ranked("A?", ["x", "yy", "zzz"], [2, 0, 1]), ranked("B?", ["p", "q"], [0, 1])]))
    data, skipped = encode_comparisons(comps, bpe, max_len=64, chat=True)
    b = collate(data, pack=False)
    assert skipped == 0 and b["input_ids"].shape[0] == 5
    assert b["pairs"].tolist() == [[2, 0], [2, 1], [0, 1], [3, 4]] and b["group"].tolist() == [0, 0, 0, 1]
    # the last index is each answer's own last token (flat over rows): its <|end|>
    assert all(int(b["input_ids"].reshape(-1)[b["last"][i]]) == bpe.special_id("end_of_turn") for i in range(5))
    packed = collate(data)  # the same answers, several to a row
    assert packed["pairs"].tolist() == b["pairs"].tolist()
    assert all(int(packed["input_ids"].reshape(-1)[packed["last"][i]]) == bpe.special_id("end_of_turn") for i in range(5))
    # an answer that did not finish has no <|end|>, and one longer than max_len drops its comparison
    comps[0].finished = [True, False, True]
    data, _ = encode_comparisons(comps, bpe, max_len=64, chat=True)
    assert data[0].seqs[1][-1] != bpe.special_id("end_of_turn")
    assert encode_comparisons(comps, bpe, max_len=8, chat=True)[1] == 2


@pytest.mark.parametrize("flavour", ["llama", "gpt2"])
def test_packed_answers_score_as_they_do_one_a_row(bpe, flavour):
    torch.manual_seed(0)
    rm = Transformer(ModelConfig(flavour=flavour, vocab_size=bpe.vocab_size, n_layer=2, n_head=2, d_model=16, max_seq_len=64), head="scalar").eval().requires_grad_(False)
    rng = np.random.default_rng(0)
    data = [Encoded([list(rng.integers(10, 200, size=n)) for n in sizes], np.array([[0, 1]]), np.zeros(1), None) for sizes in ([3, 30, 1, 12], [25, 5], [8, 8, 9])]
    one, packed = collate(data, pack=False), collate(data)
    assert packed["input_ids"].shape[0] < one["input_ids"].shape[0]  # fewer rows, no wider
    assert packed["input_ids"].shape[1] == one["input_ids"].shape[1] == 30
    a = rewards_at_last(rm, one["input_ids"], one["last"])
    b = rewards_at_last(rm, packed["input_ids"], packed["last"], packed["positions"], packed["segments"])
    assert torch.allclose(a, b, atol=1e-5)


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def base(shards, tmp_path_factory):
    from lmforge.cli import main

    out = tmp_path_factory.mktemp("base") / "run"
    assert main(["pretrain", str(ROOT / "recipes" / "tiny.yaml"), f"data.shards={shards}", "train.steps=30", "train.eval_every=0", "--out", str(out)]) == 0
    return out


def shorter_is_better(n, seed):
    """Rankings by a labeler who prefers shorter answers."""
    rng = random.Random(seed)
    words = "the cat dog sat ran on a mat big red small".split()
    records = []
    for i in range(n):
        answers = list(dict.fromkeys(" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(rng.randint(2, 4))))
        if len(answers) < 2:
            continue
        order = sorted(range(len(answers)), key=lambda j: (len(answers[j].split()), j))
        records.append(ranked(f"Say something {i}.", answers, order))
    return records


def base_of(rm_dir):
    import yaml

    return yaml.safe_load((Path(rm_dir) / "config.yaml").read_text())["init"]


def test_a_reward_model_learns_a_synthetic_preference(cli, base, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", shorter_is_better(160, 0))
    val = write_jsonl(tmp_path / "val.jsonl", shorter_is_better(60, 1))
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"prompt": f"Say something {i}.", "completion": " the cat"} for i in range(20)])
    out = tmp_path / "rm"
    code, stdout, err = cli(
        "rm", f"init={base}", f"data.train=[{train}]", f"data.val={val}", f"data.normalize={ref}",
        "epochs=2", "train.batch_size=8", "train.optim.lr=1e-3", "--out", out, "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(stdout)
    assert result["eval/accuracy"] > 0.9
    config = json.loads((out / "config.json").read_text())
    assert config["head"] == "scalar" and config["chat_template"] is None
    # after training, the reference answers score 0 on average
    from lmforge.models import load_model
    from lmforge.tokenizer import Tokenizer
    from lmforge.train.reward import reward_scores

    rm, folder = load_model(out)
    scores = reward_scores(rm.eval(), Tokenizer.load(folder), [f"Say something {i}." for i in range(20)], [" the cat"] * 20)
    assert abs(float(scores.mean())) < 1e-4 and result["normalize_offset"] != 0
    # a reward model as init is trained further, its head kept (a later round of labeling):
    # at a learning rate of ~0 it scores as before
    again = tmp_path / "rm_again"
    code, _, err = cli("rm", f"init={out}", f"data.train=[{train}]", "data.normalize=", "epochs=0", "train.steps=2", "train.optim.lr=1e-12", "--out", again)
    assert code == 0, err
    rm2, _ = load_model(again)
    assert torch.allclose(reward_scores(rm2.eval(), Tokenizer.load(folder), [f"Say something {i}." for i in range(20)], [" the cat"] * 20), scores, atol=1e-5)
    # scored on the file it trained on (no separate val file), it scores the prompts training held out
    from lmforge.data.comparisons import split_by_prompt

    held = split_by_prompt(read_comparisons(train)[0], 0.1)[1]
    code, stdout, err = cli("eval", "rm", "--model", again, "--data", train, "--json")
    assert code == 0, err
    assert json.loads(stdout)["comparisons"] == len(held) > 0 and "held-out prompts" in err
    code, stdout, err = cli("eval", "rm", "--model", again, "--data", train, "--all", "--json")
    assert code == 0, err
    assert json.loads(stdout)["comparisons"] == len(read_comparisons(train)[0]) and "held-out" not in err
    # evaluation on the held-out rankings agrees with the training's own
    code, stdout, err = cli("eval", "rm", "--model", out, "--data", val, "--json")
    assert code == 0, err
    ev = json.loads(stdout)
    assert ev["acc_labelers"] == pytest.approx(result["eval/accuracy"], abs=1e-6) and 0 <= ev["ece"] <= 1
    assert sum(b["pairs"] for b in ev["calibration"]) == ev["pairs"] and "acc_oracle" not in ev
    # the reward model as a labeler: it ranks the short answer first
    samples = write_jsonl(tmp_path / "samples.jsonl", [{"prompt": "Say something 7.", "completions": ["the big red dog sat on a mat by the cat", "the cat"]}])
    code, _, err = cli("label", "--samples", samples, "--labeler", f"rm:{out}", "--out", tmp_path / "ranked.jsonl")
    assert code == 0, err
    record = json.loads((tmp_path / "ranked.jsonl").read_text())
    assert record["ranking"] == [1, 0] and record["labeler"] == f"rm:{out}"
    assert_clean_failure(cli("label", "--samples", samples, "--labeler", f"rm:{base_of(out)}", "--out", tmp_path / "x.jsonl"), "not a reward model")


def test_a_reward_model_on_a_users_pairs_never_reads_a_world(cli, base, tmp_path, monkeypatch):
    """No world unless asked: with the user's comparisons only, the default normalisation is the
    mean reward of their own best answers, not the world's demonstrations."""
    import lmforge.world.build as build

    def no_world(*args, **kwargs):
        raise AssertionError("the built-in world was looked for")

    monkeypatch.setattr(build, "find_world", no_world)
    monkeypatch.setattr(build, "build_world", no_world)
    train = write_jsonl(tmp_path / "train.jsonl", shorter_is_better(40, 0))
    out = tmp_path / "rm"
    code, stdout, err = cli("rm", f"init={base}", f"data.train=[{train}]", "epochs=1", "train.batch_size=8", "--out", out, "--json")
    assert code == 0, err
    from lmforge.data.comparisons import read_comparisons, split_by_prompt
    from lmforge.models import load_model
    from lmforge.tokenizer import Tokenizer
    from lmforge.train.reward import _best_answers, reward_scores

    prompts, answers = _best_answers(split_by_prompt(read_comparisons(train)[0], 0.1)[0])  # the training split's best answers
    rm, folder = load_model(out)
    assert json.loads(stdout)["normalize_offset"] != 0 and len(answers) >= 30
    assert abs(float(reward_scores(rm.eval(), Tokenizer.load(folder), prompts, answers).mean())) < 1e-4


def test_fewer_comparisons_than_one_batch_train_in_a_smaller_batch(cli, base, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", shorter_is_better(4, 0))
    with pytest.warns(UserWarning, match="too few for one batch of 16; batches of"):
        code, _, err = cli("rm", f"init={base}", f"data.train=[{train}]", "data.val_fraction=0", "data.normalize=", "epochs=1", "train.batch_size=16", "--out", tmp_path / "rm")
    assert code == 0, err
    assert "batch_size: 4\n" in (tmp_path / "rm" / "config.yaml").read_text()


def test_reward_model_on_a_world_against_the_oracle(cli, tmp_path):
    from lmforge.cli import main
    from lmforge.world.build import WorldConfig, build_world

    base = tmp_path / "base"  # a tiny base model of a tiny world (in its run directory, where stages look for it)
    world = base / "world"
    build_world(WorldConfig(seed=3, entities=12, documents=400, rm_prompts=120, sft_prompts=40, sft_val_prompts=10, ppo_prompts=10, eval_prompts=20, calibration_prompts=100), world)
    assert main(["pretrain", str(ROOT / "recipes" / "tiny.yaml"), f"data.corpus={world / 'pretrain.jsonl'}", "train.steps=20", "train.eval_every=0", "--out", str(base)]) == 0
    out = tmp_path / "rm"
    code, _, err = cli("rm", f"init={base}", "epochs=1", "train.batch_size=8", "--out", out)  # 'world' data: the base model's world
    assert code == 0, err
    code, stdout, err = cli("eval", "rm", "--model", out, "--limit", 40, "--json")  # the world's comparisons it did not train on
    assert code == 0, err
    ev = json.loads(stdout)
    assert {"acc_labelers", "acc_oracle", "labeler_agreement", "oracle_vs_labels", "ece", "calibration", "by_task"} <= set(ev)
    # the oracle orders the labels better than chance, and labelers agree with each other far from always
    assert 0.6 < ev["oracle_vs_labels"] <= 1 and 0.55 < ev["labeler_agreement"] < 0.95
    # the tasks' breakdown partitions the pairs the oracle orders, and its accuracies average to the total
    tasks = ev["by_task"]
    assert len(tasks) >= 2 and sum(t["oracle_pairs"] for t in tasks.values()) == ev["oracle_pairs"]
    assert abs(sum(t["acc_oracle"] * t["oracle_pairs"] for t in tasks.values()) / ev["oracle_pairs"] - ev["acc_oracle"]) < 1e-9
    # the labels order those pairs as the oracle does better than chance (they are the oracle plus noise)
    labels = sum(t["labels_acc_oracle"] * t["oracle_pairs"] for t in tasks.values()) / ev["oracle_pairs"]
    assert 0.6 < labels <= 1
    code, stdout, err = cli("eval", "rm", "--model", out, "--limit", 40)
    assert code == 0, err
    for task, t in tasks.items():
        assert f"{task}" in stdout and f"({t['oracle_pairs']} pairs)" in stdout


def test_rm_bad_inputs_fail_cleanly(cli, base, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [ranked("Q?", ["a", "b"], [0, 1]), ranked("Q?", ["a", "b", "c"], [0, 1, 1])])
    assert_clean_failure(cli("rm", f"init={base}", f"data.train=[{bad}]", "data.normalize=", "--out", tmp_path / "a"), f"{bad}:2", "ranking", "permutation")
    assert not (tmp_path / "a").exists()
    assert_clean_failure(cli("rm", f"data.train=[{bad}]", "--out", tmp_path / "b"), "init")
    assert_clean_failure(cli("eval", "rm", "--model", base, "--data", bad), "neither a reward model nor a judge")


@pytest.mark.parametrize("pack", [True, False])
def test_the_lm_regulariser_targets_the_top_answer_after_the_shared_prompt(pack):
    from lmforge.train.reward import best_answer_targets

    # comparison 1: prompt [1, 2, 3], answers 0 > 1 > 2 (answer 0 = tokens 7, 8, 9);
    # comparison 2: prompt [4, 5], answers ranked 1 > 0, both beginning with 6 (shared: no target)
    c1 = [np.array([1, 2, 3, 7, 8, 9]), np.array([1, 2, 3, 10]), np.array([1, 2, 3, 11, 12])]
    c2 = [np.array([4, 5, 6, 13]), np.array([4, 5, 6, 14, 15])]
    batch = collate([Encoded(c1, np.array([[0, 1], [0, 2], [1, 2]]), np.zeros(3), None), Encoded(c2, np.array([[1, 0]]), np.zeros(1), None)], pack=pack)
    targets = best_answer_targets(batch)
    flat, width = batch["input_ids"].reshape(-1), batch["input_ids"].shape[1]
    got = {}
    for i in torch.nonzero(targets != -100)[:, 0].tolist():
        row = i // width
        got.setdefault(row, []).append((int(flat[i]), int(targets[i])))  # (token seen, token to predict)
    assert sorted(got.values()) == sorted([[(3, 7), (7, 8), (8, 9)], [(6, 14), (14, 15)]])
    # each target is the next token of its own sequence
    for i in torch.nonzero(targets != -100)[:, 0].tolist():
        assert int(targets[i]) == int(flat[i + 1])


def test_a_reward_model_with_the_lm_regulariser(cli, base, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", shorter_is_better(80, 0))
    out = tmp_path / "rm"
    code, stdout, err = cli("rm", f"init={base}", f"data.train=[{train}]", "data.normalize=", "lm_coef=0.5", "epochs=2", "train.batch_size=8", "train.log_every=1", "--out", out, "--json")
    assert code == 0, err
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    lm = [r["lm_loss"] for r in logs if "lm_loss" in r]
    assert len(lm) >= 10 and all(math.isfinite(x) and x > 0 for x in lm)
    assert sum(lm[-5:]) < sum(lm[:5])  # the top answers' next-token loss falls as it trains
    from lmforge.models import load_model

    rm, _ = load_model(out)  # saved as a plain reward model: no unembedding in it
    assert rm.head_kind == "scalar" and not hasattr(rm, "lm_head")
    # a reward model has no unembedding to regularise through
    assert_clean_failure(cli("rm", f"init={out}", f"data.train=[{train}]", "data.normalize=", "lm_coef=0.5", "--out", tmp_path / "again"), "lm_coef", "unembedding")
    assert_clean_failure(cli("rm", f"init={base}", f"data.train=[{train}]", "lm_coef=-1", "--out", tmp_path / "neg"), "lm_coef")


@pytest.mark.parametrize("pack", [False, True])
def test_the_answer_prior_adds_a_linear_term_in_the_lm_likelihood_of_each_answer(pack):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, n_layer=1, n_head=2, d_model=16, max_seq_len=64)
    rm = Transformer(cfg, head="scalar", prior=cfg).eval()
    rm.prior.weight.data = torch.tensor([1.0, -2.0, 3.0, 0.5])
    rm.prior.mean.copy_(torch.tensor([-10.0, -3.0, -6.0, 5.0]))
    rm.prior.std.copy_(torch.tensor([4.0, 1.0, 2.0, 3.0]))
    rng = np.random.default_rng(0)
    # (answer lengths with the prompt, where the answers start): the 5-token one of the first has no answer token
    data = [Encoded([rng.integers(3, 50, size=n) for n in sizes], np.array([[0, 1]]), np.zeros(1), None, start) for sizes, start in (([9, 30, 5, 12], 6), ([25, 7], 7), ([8, 8, 9], 3))]
    b = collate(data, pack=pack)
    got = rewards_at_last(rm, b["input_ids"], b["last"], b.get("positions"), b.get("segments"), b["starts"])
    want = []
    with torch.no_grad():
        for e in data:
            for s in e.seqs:
                x = torch.tensor(s)[None]
                lp = rm.prior.lm(x)[0, :-1].log_softmax(-1).gather(1, x[0, 1:, None])[:, 0][e.start - 1 :]  # the answer's tokens, each from the position before it
                f = torch.tensor([lp.sum(), lp.mean(), lp.min(), len(lp)]) if len(lp) else torch.zeros(4)
                want.append(rm(x)[0, -1] + ((f - rm.prior.mean) / rm.prior.std) @ rm.prior.weight)
    assert torch.allclose(got, torch.stack(want), atol=1e-4)
    with pytest.raises(ValueError, match="starts"):
        rewards_at_last(rm, b["input_ids"], b["last"], b.get("positions"), b.get("segments"))
    with pytest.raises(Exception, match="scalar head"):
        Transformer(cfg, head="lm", prior=cfg)


def test_a_reward_model_with_an_answer_prior(cli, base, tmp_path):
    from lmforge.models import load_model
    from lmforge.tokenizer import Tokenizer
    from lmforge.train.reward import reward_scores

    train = write_jsonl(tmp_path / "train.jsonl", shorter_is_better(120, 0))
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"prompt": f"Say something {i}.", "completion": " the cat"} for i in range(20)])
    out = tmp_path / "rm"
    code, stdout, err = cli("rm", f"init={base}", f"data.train=[{train}]", f"data.normalize={ref}", "prior=true", "epochs=1", "train.batch_size=8", "--out", out, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    # the prior starts at the fit of its four features alone: fewer tokens win, and the fit finds it
    stats = json.loads((out / "reward_stats.json").read_text())
    assert stats["prior_fit_accuracy"] > 0.85 and stats["prior_weight"][3] < 0
    assert result["eval/accuracy"] > 0.8  # the held-out tenth (chance 0.5)
    rm, folder = load_model(out)
    lm, _ = load_model(base)
    assert rm.prior is not None and json.loads((out / "config.json").read_text())["prior"]["d_model"] == lm.cfg.d_model
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in rm.prior.lm.state_dict().items())  # the language model stayed frozen
    assert (rm.prior.std != 1).all() and (rm.prior.mean != 0).all()  # its standardisation is saved with it
    assert rm.num_params() == sum(p.numel() for n, p in rm.named_parameters() if not n.startswith("prior.lm."))
    tok = Tokenizer.load(folder)
    prompts = [f"Say something {i}." for i in range(20)]
    assert abs(float(reward_scores(rm.eval(), tok, prompts, [" the cat"] * 20).mean())) < 1e-4  # normalised with the prior in the reward
    short, long_ = reward_scores(rm, tok, ["Say something 3."] * 2, [" the cat", " the big red dog sat on a mat by the small cat"])
    assert short > long_
    # without the prior term the same weights score differently: it is part of the reward
    plain = Transformer(rm.cfg, head="scalar")
    plain.load_state_dict({k: v for k, v in rm.state_dict().items() if not k.startswith("prior.")})
    assert not torch.allclose(reward_scores(plain.eval(), tok, prompts, [" the cat"] * 20), reward_scores(rm, tok, prompts, [" the cat"] * 20))
    code, stdout, err = cli("eval", "rm", "--model", out, "--data", train, "--json")
    assert code == 0 and json.loads(stdout)["acc_labelers"] == pytest.approx(result["eval/accuracy"]), err  # the same held-out prompts
    # trained further as a later round, the prior comes with it; a reward model has no LM to add as one
    code, _, err = cli("rm", f"init={out}", f"data.train=[{train}]", "data.normalize=", "prior=true", "epochs=0", "train.steps=1", "train.optim.lr=1e-12", "--out", tmp_path / "again")
    assert code == 0, err
    again, _ = load_model(tmp_path / "again")
    assert torch.allclose(again.prior.weight, rm.prior.weight, atol=1e-6)
    plain_dir = tmp_path / "plain"
    assert cli("rm", f"init={base}", f"data.train=[{train}]", "data.normalize=", "epochs=0", "train.steps=1", "--out", plain_dir)[0] == 0
    assert_clean_failure(cli("rm", f"init={plain_dir}", f"data.train=[{train}]", "data.normalize=", "prior=true", "--out", tmp_path / "bad"), "prior", "language model")
