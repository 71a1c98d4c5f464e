"""Direct preference optimisation: each loss against its paper's formula, the gradient's direction,
DPO's optimum on a problem with a known answer, the stored vs online reference, and the stage."""

import json
import math

import numpy as np
import pytest
import torch

from lmforge.data.comparisons import ComparisonLoader
from lmforge.models import model_config_json
from lmforge.models.transformer import ModelConfig, Transformer
from lmforge.errors import ConfigError
from lmforge.train.dpo import DPOConfig, PrefItem, answer_logps, collate, dpo_objective, kto_loss, likelihood_displacement, preference_loss, reference_logps
from lmforge.train.loop import TrainConfig, train

from .test_cli import assert_clean_failure
from .test_ppo import action_probs, bandit_policy  # the same one-token policy as PPO's known-answer test


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# fixed log-probs of two pairs: (policy chosen, policy rejected, reference chosen, reference rejected)
PC, PR, RC, RR = torch.tensor([-5.0, -12.0]), torch.tensor([-7.0, -10.0]), torch.tensor([-6.0, -11.0]), torch.tensor([-6.5, -9.0])
NC, NR = torch.tensor([4.0, 8.0]), torch.tensor([5.0, 2.0])  # answer tokens
BETA = 0.2


def deltas():
    return [(pc - rc) - (pr - rr) for pc, pr, rc, rr in zip(PC.tolist(), PR.tolist(), RC.tolist(), RR.tolist())]


@pytest.mark.parametrize("loss", ["dpo", "cdpo", "ipo", "hinge"])
def test_each_pairwise_loss_equals_its_formula(loss):
    eps = 0.15
    want = []
    for i, d in enumerate(deltas()):
        if loss == "dpo":  # Rafailov et al. eq. 7
            want.append(-math.log(sig(BETA * d)))
        elif loss == "cdpo":  # labels flipped with probability eps
            want.append(-(1 - eps) * math.log(sig(BETA * d)) - eps * math.log(sig(-BETA * d)))
        elif loss == "hinge":  # SLiC
            want.append(max(0.0, 1 - BETA * d))
        else:  # IPO, Azar et al. eq. 17, log-ratios averaged per token
            lw = (PC[i] - RC[i]).item() / NC[i].item()
            ll = (PR[i] - RR[i]).item() / NR[i].item()
            want.append((lw - ll - 1 / (2 * BETA)) ** 2)
    got, rw, rl = preference_loss(PC, PR, RC, RR, loss=loss, beta=BETA, label_smoothing=eps, chosen_tokens=NC, rejected_tokens=NR)
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    assert rw.tolist() == pytest.approx((BETA * (PC - RC)).tolist()) and rl.tolist() == pytest.approx((BETA * (PR - RR)).tolist())
    # the gradient raises the chosen answer's log-prob relative to the rejected one's
    pc, pr = PC.clone().requires_grad_(), PR.clone().requires_grad_()
    preference_loss(pc, pr, RC, RR, loss=loss, beta=BETA, label_smoothing=eps, chosen_tokens=NC, rejected_tokens=NR)[0].sum().backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all(), (pc.grad, pr.grad)


def test_cdpo_with_no_smoothing_is_dpo_and_ipo_needs_lengths():
    a = preference_loss(PC, PR, RC, RR, loss="dpo", beta=BETA)[0]
    b = preference_loss(PC, PR, RC, RR, loss="cdpo", beta=BETA, label_smoothing=0.0)[0]
    assert torch.allclose(a, b)
    with pytest.raises(ValueError, match="per token"):
        preference_loss(PC, PR, RC, RR, loss="ipo", beta=BETA)


def test_kto_loss_equals_its_formula_with_a_detached_clamped_reference_point():
    logps = torch.tensor([-5.0, -12.0, -3.0], requires_grad=True)
    ref = torch.tensor([-6.0, -11.0, -3.5])
    desirable = torch.tensor([True, False, False])
    kl = torch.tensor(0.3, requires_grad=True)
    lam_d, lam_u = 1.0, 1.5
    losses, rewards = kto_loss(logps, ref, desirable, kl, beta=BETA, desirable_weight=lam_d, undesirable_weight=lam_u)
    r = [1.0, -1.0, 0.5]  # log pi - log pi_ref
    want = [lam_d * (1 - sig(BETA * (r[0] - 0.3))), lam_u * (1 - sig(BETA * (0.3 - r[1]))), lam_u * (1 - sig(BETA * (0.3 - r[2])))]
    assert losses.tolist() == pytest.approx(want, rel=1e-6)
    assert rewards.tolist() == pytest.approx([BETA * x for x in r])
    losses.sum().backward()
    assert kl.grad is None  # z is not back-propagated
    assert logps.grad[0] < 0 and logps.grad[1] > 0 and logps.grad[2] > 0  # desirable up, undesirable down
    negative = kto_loss(logps.detach(), ref, desirable, torch.tensor(-2.0), beta=BETA)[0]
    zero = kto_loss(logps.detach(), ref, desirable, torch.tensor(0.0), beta=BETA)[0]
    assert torch.allclose(negative, zero)  # z is clamped at 0


def test_likelihood_displacement_is_reported():
    found = likelihood_displacement({"eval/logratio_chosen": -3.0, "eval/logratio_rejected": -9.0}, "dpo")
    assert found["detected"] and "fell by 3.00 nats" in found["message"]
    assert not likelihood_displacement({"eval/logratio_chosen": 0.5, "eval/logratio_rejected": -2.0}, "dpo")["detected"]
    assert likelihood_displacement({}, "dpo") == {}


# --------------------------------------------------------------------------- a problem with a known answer

SCORES = [1.0, 0.0, 0.5, -0.5, 0.2, -1.0]
OPT_BETA = 0.5


def bt_pairs(per_pair: int = 200) -> list[PrefItem]:
    """Bradley-Terry preferences generated from SCORES: for each two actions a, b, per_pair
    comparisons of which a round(per_pair * sigmoid(r_a - r_b)) prefer a."""
    items = []
    for a in range(6):
        for b in range(a + 1, 6):
            wins = round(per_pair * sig(SCORES[a] - SCORES[b]))
            for k in range(per_pair):
                w, l_ = (a, b) if k < wins else (b, a)
                items.append(PrefItem([np.array([0, w]), np.array([0, l_])], [1, 1], np.array([[0, 1]])))
    return items


def test_dpo_reaches_the_kl_regularised_optimum(tmp_path):
    # one prompt, one-token answers: the policy maximising E[r] - beta KL(pi || pi_ref) is
    # pi*(y) proportional to pi_ref(y) exp(r(y) / beta), and DPO on Bradley-Terry preferences from
    # r has the same optimum (Rafailov et al. section 4)
    policy, ref = bandit_policy(), bandit_policy()
    p_ref = action_probs(ref)
    target = p_ref * torch.exp(torch.tensor(SCORES) / OPT_BETA)
    target /= target.sum()
    items = bt_pairs()
    reference_logps(ref, items)  # stored with the data; the reference is not used again
    cfg = DPOConfig(init="-", beta=OPT_BETA)
    batches = ComparisonLoader(items, 250, seed=0, collate_fn=collate)
    tc = TrainConfig(steps=400, batch_size=250, log_every=50, save_every=0, eval_every=0)
    tc.optim.lr, tc.optim.weight_decay, tc.schedule.kind, tc.schedule.warmup_steps = 0.03, 0.0, "constant", 0
    train(policy, dpo_objective(cfg), batches, tc, tmp_path / "run", model_config=model_config_json(policy))
    tv = 0.5 * float((action_probs(policy) - target).abs().sum())
    start = 0.5 * float((p_ref - target).abs().sum())
    print(f"DPO optimum: total variation {start:.3f} -> {tv:.4f}")
    assert start > 0.3 and tv < 0.02, (start, tv, action_probs(policy), target)


def test_stored_and_online_reference_give_the_same_loss_and_gradients():
    policy, ref = bandit_policy(), bandit_policy()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    items = bt_pairs(3)
    reference_logps(ref, items)
    batch = collate(items, 0)
    for loss in ("dpo", "ipo"):
        cfg = DPOConfig(init="-", loss=loss, beta=0.3)
        grads = []
        for objective in (dpo_objective(cfg), dpo_objective(cfg, ref_model=ref)):
            policy.zero_grad()
            value, metrics = objective(policy, batch)
            value.backward()
            grads.append((float(value.detach()), [p.grad.clone() for p in policy.parameters()]))
        assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1]))


def test_nll_coef_adds_the_chosen_answers_per_token_nll_rpo():
    # RPO (Pang et al. 2024, eq. 2): each pair's loss gains alpha * -log pi(chosen) / |chosen|,
    # and a prompt's pairs are averaged as for DPO alone
    torch.manual_seed(0)
    mcfg = ModelConfig(vocab_size=30, n_layer=1, n_head=2, d_model=16, max_seq_len=32)
    model = Transformer(mcfg)
    rng = np.random.default_rng(1)
    items = []
    for _ in range(3):
        prompt = rng.integers(3, 30, 4).tolist()
        seqs = [np.array(prompt + rng.integers(3, 30, n).tolist()) for n in (2, 5, 3)]
        items.append(PrefItem(seqs, [4, 4, 4], np.array([[0, 1], [0, 2], [1, 2]])))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    reference_logps(Transformer(mcfg), items)
    b = collate(items, 0)
    with torch.no_grad():
        lp, tokens = answer_logps(model, b)
        plain = float(dpo_objective(DPOConfig(init="-", beta=0.2))(model, b)[0])
        rpo = float(dpo_objective(DPOConfig(init="-", beta=0.2, nll_coef=0.5))(model, b)[0])
    expected_nll = np.mean([np.mean([-float(lp[3 * i + w]) / float(tokens[3 * i + w]) for w, _ in it.pairs]) for i, it in enumerate(items)])
    assert rpo == pytest.approx(plain + 0.5 * expected_nll, rel=1e-5)
    with pytest.raises(ConfigError, match="kto"):
        DPOConfig(init="-", loss="kto", nll_coef=0.1).validate()


def test_answer_mask_covers_the_answer_tokens_only():
    item = PrefItem([np.array([5, 6, 7, 8, 9]), np.array([5, 6, 7, 3])], [3, 3], np.array([[0, 1]]))
    b = collate([item], pad_id=0, pack=False)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, 3, 0]]
    # targets are ids[1:]: the answer tokens 8, 9 (and 3) are targets 2, 3 (and 2)
    assert b["answer_mask"].tolist() == [[0, 0, 1, 1], [0, 0, 1, 0]]
    assert b["owner"][1, :3].tolist() == [1, 1, 1]
    # packed: two short sequences share a row as wide as the longest; each target stays its own
    short = PrefItem([np.array([5, 6, 7, 8, 9, 4, 4, 4]), np.array([5, 6, 3]), np.array([5, 2])], [2, 2, 1], np.array([[0, 1], [1, 2]]))
    b = collate([short], pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9, 4, 4, 4], [5, 6, 3, 5, 2, 0, 0, 0]]
    assert b["segments"].tolist()[1] == [1, 1, 1, 2, 2, 0, 0, 0] and b["positions"].tolist()[1][:5] == [0, 1, 2, 0, 1]
    # row 1: target 3 (of sequence 1) at column 1, target 2 (of sequence 2) at column 3; the
    # column between them (sequence 1's last token predicting sequence 2's first) is not a target
    assert b["answer_mask"].tolist()[1] == [0, 1, 0, 1, 0, 0, 0]
    assert b["owner"].tolist()[1][:2] == [1, 1] and b["owner"].tolist()[1][3] == 2 and b["lengths"].tolist() == [8, 3, 2]


def test_packed_batches_give_the_same_log_probs_loss_and_gradients():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=40, n_layer=2, n_head=2, n_kv_head=1, d_model=32, max_seq_len=64))
    rng = np.random.default_rng(0)
    items = []
    for _ in range(4):  # K answers of very different lengths to one prompt each, as a ranking's
        prompt = rng.integers(3, 40, rng.integers(3, 9)).tolist()
        seqs = [np.array(prompt + rng.integers(3, 40, n).tolist()) for n in (1, 3, 12, 20)]
        items.append(PrefItem(seqs, [len(prompt)] * 4, np.array([[0, 1], [2, 3], [0, 3]])))
    reference_logps(model, items)
    one, packed = collate(items, 0, pack=False), collate(items, 0)
    assert packed["input_ids"].shape[0] < one["input_ids"].shape[0]
    cfg = DPOConfig(init="-", loss="ipo", beta=0.3)  # IPO also uses each answer's token count
    results = []
    for b in (one, packed):
        model.zero_grad()
        loss, _ = dpo_objective(cfg)(model, b)
        loss.backward()
        results.append((float(loss), [p.grad.clone() for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(results[0][1], results[1][1]))
    # the stored reference (made packed) equals an unpacked pass of the same model
    with torch.no_grad():
        assert torch.allclose(answer_logps(model, one)[0], one["ref"], atol=1e-4)


# --------------------------------------------------------------------------- the stage


def test_dpo_stage_end_to_end(cli, chain):
    out = chain / "dpo"
    code, stdout, err = cli("dpo", f"init={chain / 'sft'}", "train.batch_size=4", "train.steps=6", "epochs=0", "train.eval_every=3", "eval.limit=6",
                            "eval.max_new_tokens=12", "--out", out, "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(stdout)
    assert {"rewards/accuracy", "rewards/margin", "logps/chosen", "logps/rejected", "eval/reward_accuracy", "eval/accuracy", "eval/logratio_chosen", "eval/oracle_score"} <= set(result)
    summary = json.loads((out / "dpo_summary.json").read_text())
    assert summary["data"]["reference"] == "computed" and summary["data"]["train_pairs"] > summary["data"]["train_items"]
    assert summary["initial_eval"]["reward_accuracy"] == 0.5 and abs(summary["initial_eval"]["margin"]) < 1e-4  # the policy is its reference
    assert (out / "reference_logps.npz").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["chat_template"] == "lmforge"
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval/loss" in r]
    assert [r["step"] for r in evals] == [3, 6]
    # a longer run in the same directory resumes, and reads the stored reference instead of recomputing it
    code, stdout, err = cli("dpo", f"init={chain / 'sft'}", "train.batch_size=4", "train.steps=6", "epochs=0", "train.eval_every=3", "eval.limit=6",
                            "eval.max_new_tokens=12", "--out", out, "--json")  # fmt: skip
    assert code == 0 and json.loads((out / "dpo_summary.json").read_text())["data"]["reference"] == "stored", err


@pytest.mark.parametrize("loss", ["ipo", "hinge", "kto"])
def test_other_losses_run_through_the_stage(cli, chain, loss, tmp_path):
    code, stdout, err = cli("dpo", "--loss", loss, f"init={chain / 'sft'}", "reference=online", "data.pairs=best_worst", "train.batch_size=4",
                            "train.steps=3", "epochs=0", "eval.prompts=", "--out", tmp_path / loss, "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(stdout)
    assert math.isfinite(result["loss"])
    assert ("rewards/desirable" in result or "rewards/undesirable" in result) if loss == "kto" else "rewards/accuracy" in result
    assert not (tmp_path / loss / "reference_logps.npz").exists()  # online: nothing stored


def test_kto_reads_trl_unpaired_records(cli, chain, tmp_path):
    data = tmp_path / "unpaired.jsonl"
    rows = [{"prompt": f"What is {i} plus {i}?", "completion": str(2 * i) if i % 2 else "I do not know.", "label": bool(i % 2)} for i in range(24)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, stdout, err = cli("dpo", "--loss", "kto", f"init={chain / 'sft'}", f"data.train=[{data}]", "data.val_fraction=0.2", "train.batch_size=4",
                            "train.steps=2", "epochs=0", "eval.prompts=", "--out", tmp_path / "kto", "--json")  # fmt: skip
    assert code == 0, err
    s = json.loads((tmp_path / "kto" / "dpo_summary.json").read_text())["data"]
    assert s["desirable"] + s["undesirable"] == s["train_items"] and s["desirable"] > 0 and s["undesirable"] > 0


def test_a_users_pairs_are_never_judged_by_the_world(cli, chain, tmp_path):
    """DPO from an SFT model that has a world beside it, on a user's own pairs: no oracle metrics
    (the world's prompts are not this data's) and a share of the pairs held out even when the
    hash would hold out none (40 pairs at 5%)."""
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Which module reads {w} files?", "chosen": f"The {w} module.", "rejected": "I cannot say."} for w in
            ["csv", "json", "zip", "tar", "gzip", "bz2", "lzma", "wave", "plist", "mailbox", "netrc", "shelve", "dbm", "sqlite3", "xml", "html",
             "toml", "configparser", "pickle", "marshal", "struct", "array", "mmap", "io", "codecs", "base64", "binascii", "quopri", "uu", "email",
             "mimetypes", "imghdr", "sndhdr", "chunk", "aifc", "sunau", "colorsys", "locale", "gettext", "tokenize"]]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, stdout, err = cli("dpo", f"init={chain / 'sft'}", f"data.train=[{data}]", "train.batch_size=4", "train.steps=2", "epochs=0", "train.eval_every=2",
                            "--out", tmp_path / "dpo", "--json")  # fmt: skip
    assert code == 0 and "not the world's" in err, err
    assert not [k for k in json.loads(stdout) if "oracle" in k]
    metrics = (tmp_path / "dpo" / "metrics.jsonl").read_text()
    assert "oracle" not in metrics and "eval/reward_accuracy" in metrics
    summary = json.loads((tmp_path / "dpo" / "dpo_summary.json").read_text())["data"]
    assert summary["val_items"] >= 1 and summary["world_prompts"] is False


def test_bad_inputs_are_refused_before_any_work(cli, chain, tmp_path):
    from lmforge.checkpoint import save_model
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    common = (f"init={chain / 'sft'}", "train.steps=1", "epochs=0", "eval.prompts=")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "completion": "b", "label": True}) + "\n" + json.dumps({"prompt": "a", "completion": "b", "label": "yes"}) + "\n")
    assert_clean_failure(cli("dpo", "--loss", "kto", *common, f"data.train=[{bad}]", "--out", tmp_path / "a"), f"{bad}:2", "label")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n" + json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    assert_clean_failure(cli("dpo", *common, f"data.train=[{pairs}]", "--out", tmp_path / "b"), f"{pairs}:2", "rejected")
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n" + json.dumps({"prompt": "x " * 300, "chosen": "b", "rejected": "c"}) + "\n")
    assert_clean_failure(cli("dpo", *common, f"data.train=[{long}]", "data.long=error", "--out", tmp_path / "c"), f"{long}:2", "seq_len")
    assert_clean_failure(cli("dpo", *common, "loss=cdpo", "label_smoothing=0", "--out", tmp_path / "d"), "label_smoothing")
    other = train_tokenizer(["some other text entirely"] * 50, TokenizerConfig(vocab_size=300, min_frequency=1))
    lm = Transformer(ModelConfig(vocab_size=other.vocab_size, n_layer=1, n_head=2, d_model=16, max_seq_len=64))
    save_model(tmp_path / "other", lm.state_dict(), model_config_json(lm), other)
    assert_clean_failure(cli("dpo", *common, f"ref={tmp_path / 'other'}", "--out", tmp_path / "e"), "tokenizer differs")
    assert_clean_failure(cli("dpo", *common, f"init={chain / 'rm'}", "--out", tmp_path / "f"), "not one")
    for name in "abcdef":
        assert not (tmp_path / name).exists()


def test_eval_policy_win_rates(cli, chain):
    code, stdout, err = cli("eval", "policy", "--model", f"sft={chain / 'sft'}", "--model", f"base={chain / 'base'}", "--baseline", "sft",
                            "--limit", 6, "--max-new-tokens", 12, "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(stdout)
    assert result["prompts"] == 6 and result["models"]["sft"]["win_rate_vs_sft"] == 0.5  # against itself: all ties
    for metrics in result["models"].values():
        assert {"oracle_score", "task_accuracy", "false_claim_rate", "rude_rate", "question_rate", "mean_length", "finished"} <= set(metrics)
    # split by task: the per-task counts add up, and each task's accuracy is its share of the whole
    tasks = result["by_task"]["base"]
    assert sum(r["prompts"] for r in tasks.values()) == 6 and set(tasks) == set(result["by_task"]["sft"])
    acc = sum(r["task_accuracy"] * r["prompts"] for r in tasks.values()) / 6
    assert acc == pytest.approx(result["models"]["base"]["task_accuracy"])
    assert all(r["win_rate_vs_sft"] == 0.5 for r in result["by_task"]["sft"].values())
    assert_clean_failure(cli("eval", "policy", "--model", f"sft={chain / 'sft'}", "--baseline", "nope"), "baseline")


def test_by_task_splits_accuracy_score_and_win_rate():
    from types import SimpleNamespace

    from lmforge.eval.policy import by_task

    items = [SimpleNamespace(task=t) for t in ("sort", "fact", "sort", "fact", None)]

    def scores(helpful, total):
        return [{"helpful": h, "total": t} for h, t in zip(helpful, total)]

    per = {"sft": scores([0, 1, 0, 0, 1], [0.5, 1.0, 0.5, 0.6, 1.0]), "ppo": scores([0, 1, 0, 1, 0], [0.7, 1.0, 0.4, 1.0, 0.0])}
    out = by_task(items, per, baseline="sft")
    assert set(out["ppo"]) == {"fact", "sort"}  # the prompt without a task is left out
    assert out["ppo"]["sort"] == {"prompts": 2, "task_accuracy": 0.0, "oracle_score": pytest.approx(0.55), "win_rate_vs_sft": 0.5}  # a win, a loss
    assert out["ppo"]["fact"] == {"prompts": 2, "task_accuracy": 1.0, "oracle_score": 1.0, "win_rate_vs_sft": 0.75}  # a tie, a win
    assert out["sft"]["fact"]["task_accuracy"] == 0.5 and "win_rate_vs_sft" not in by_task(items, per)["sft"]["fact"]


# --------------------------------------------------------------------------- the arena


def test_bradley_terry_recovers_known_strengths_with_intervals():
    from lmforge.eval.arena import ELO_SCALE, bradley_terry, ratings

    true = np.array([0.8, 0.0, -0.8])
    rng = np.random.default_rng(0)
    battles = []
    for _ in range(6000):
        i, j = rng.choice(3, 2, replace=False)
        battles.append((i, j, float(rng.random() < 1 / (1 + np.exp(-(true[i] - true[j]))))))
    battles = np.array(battles)
    theta = bradley_terry(3, battles)
    assert np.abs(theta - true).max() < 0.1, theta
    table = ratings(["a", "b", "c"], battles, bootstrap=50)
    assert table["a"]["rating"] - table["c"]["rating"] == pytest.approx(ELO_SCALE * (theta[0] - theta[2]))
    for r in table.values():
        assert r["ci_low"] < r["rating"] < r["ci_high"] and r["battles"] > 3000
    # ties count half each way: all ties leave everyone equal; an undefeated model stays finite
    assert np.allclose(bradley_terry(2, np.array([[0, 1, 0.5]] * 10)), 0)
    assert np.isfinite(bradley_terry(2, np.array([[0, 1, 1.0]] * 10))).all()


def test_arena_through_the_cli(cli, chain):
    code, stdout, err = cli("arena", "--model", f"sft={chain / 'sft'}", "--model", f"base={chain / 'base'}", "--model", f"again={chain / 'sft'}",
                            "--limit", 6, "--max-new-tokens", 12, "--bootstrap", 20, "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(stdout)
    assert result["prompts"] == 6 and result["battles"] == 18 and len(result["judges"]) == 5
    assert set(result["ratings"]) == {"sft", "base", "again"}
    for r in result["ratings"].values():
        assert r["ci_low"] <= r["rating"] <= r["ci_high"] and r["battles"] == 12 and 0 <= r["win_rate"] <= 1
    assert_clean_failure(cli("arena", "--model", f"sft={chain / 'sft'}"), "at least two")


def test_eval_policy_asks_base_models_few_shot_and_samples_when_told(cli, chain):
    from lmforge.eval.fewshot import Item
    from lmforge.eval.policy import fewshot_prompt_ids
    from lmforge.sample import read_prompts
    from lmforge.tokenizer import Tokenizer

    tok = Tokenizer.load(chain / "base")
    items = read_prompts(chain / "base" / "world" / "eval.jsonl", 5)
    pool = [Item(f"question {i}?", f"answer {i}.", "fact") for i in range(10)]
    ids = fewshot_prompt_ids(tok, items, pool, 3, room=16, context=160, seed=1)
    text = tok.decode(ids[0][1:])
    # one fixed prefix of three demonstrations (any task), then the prompt in the same Q:/A: form
    assert text.count("Q: question") == 3 and text.endswith(f"Q: {items[0].prompt}\nA:")
    assert all(tok.decode(i[1:]).startswith(text[: text.index(items[0].prompt)]) for i in ids)
    tight = fewshot_prompt_ids(tok, items, pool, 3, room=16, context=len(ids[0]) + 15, seed=1)
    assert all(len(i) + 16 <= len(ids[0]) + 15 for i in tight)  # demonstrations dropped to fit

    args = ["eval", "policy", "--model", f"sft={chain / 'sft'}", "--model", f"fs={chain / 'base'}", "--shots", "fs=2", "--baseline", "sft", "--max-new-tokens", "16", "--json"]
    code, stdout, err = cli(*args)
    assert code == 0, err
    greedy = json.loads(stdout)["models"]
    sampled = [json.loads(cli(*args, "--temperature", "1.0", "--seed", str(s))[1])["models"] for s in (0, 0, 1)]
    assert sampled[0] == sampled[1]  # seeded
    assert sampled[0] != sampled[2] or sampled[0] != greedy
    assert_clean_failure(cli("eval", "policy", "--model", f"sft={chain / 'sft'}", "--shots", "sft=2"), "chat model")
    assert_clean_failure(cli("eval", "policy", "--model", f"sft={chain / 'sft'}", "--shots", "nope=2"), "shots")
