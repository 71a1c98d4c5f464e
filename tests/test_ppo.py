"""RLHF: the formulas (per-token KL rewards, GAE, returns, whitening, the adaptive KL controller),
the KL-regularised optimum reached on a bandit with a known answer, and the stage end to end."""

import json
import math
from pathlib import Path

import pytest
import torch

from lmforge.models.transformer import ModelConfig, Transformer
from lmforge.train.ppo import ActorCritic, AdaptiveKL, PromptItem, RLConfig, detect_reward_hacking, gae, kl_rewards, returns_to_go, run_rl, whiten

from .test_cli import assert_clean_failure

ROOT = Path(__file__).parent.parent


def test_per_token_kl_reward_with_the_score_on_the_last_token():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-0.3, -1.7, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    r = kl_rewards(logp, ref, mask, torch.tensor([2.0, -1.0]), beta=0.1)
    want = torch.tensor([[-0.1 * 0.5, -0.1 * -1.0, 0.0 + 2.0], [0.0, -0.1 * 1.0 - 1.0, 0.0]])
    assert torch.allclose(r, want)


def test_gae_against_a_hand_computation():
    rewards = torch.tensor([[0.1, -0.2, 1.0], [0.5, 0.0, 0.0]])
    values = torch.tensor([[0.3, 0.4, 0.2], [0.1, 9.0, 9.0]])  # values past the end are ignored
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    g, lam = 0.9, 0.8
    # row 0: deltas from the end (V after the last token is 0)
    d2 = 1.0 + g * 0.0 - 0.2
    d1 = -0.2 + g * 0.2 - 0.4
    d0 = 0.1 + g * 0.4 - 0.3
    a2, a1 = d2, d1 + g * lam * d2
    a0 = d0 + g * lam * a1
    adv, ret = gae(rewards, values, mask, g, lam)
    assert torch.allclose(adv[0], torch.tensor([a0, a1, a2]))
    assert torch.allclose(ret[0], torch.tensor([a0 + 0.3, a1 + 0.4, a2 + 0.2]))
    assert torch.allclose(adv[1], torch.tensor([0.5 - 0.1, 0.0, 0.0]))  # one token: r - V
    assert torch.allclose(returns_to_go(rewards, mask), torch.tensor([[0.9, 0.8, 1.0], [0.5, 0.0, 0.0]]))


def test_whitening_and_the_adaptive_kl_controller():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    w = whiten(x, mask)
    real = w[mask.bool()]
    assert float(real.mean()) == pytest.approx(0.0, abs=1e-6) and float(real.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert float(w[1, 1]) == 0.0
    kl = AdaptiveKL(0.15, target=6.0, horizon=10000)
    kl.update(12.0, n=100)  # error clipped at +0.2: beta * (1 + 0.2 * 100 / 10000)
    assert kl.beta == pytest.approx(0.15 * (1 + 0.2 * 0.01))
    kl.update(5.4, n=100)  # error -0.1
    assert kl.beta == pytest.approx(0.15 * 1.002 * (1 - 0.1 * 0.01))


# --------------------------------------------------------------------------- a bandit with a known optimum

SCORES = torch.tensor([1.0, 0.0, 0.5, -0.5, 0.2, -1.0])
BETA = 0.5


def bandit_policy():
    torch.manual_seed(0)
    return Transformer(ModelConfig(flavour="gpt2", vocab_size=6, n_layer=1, n_head=1, d_model=8, max_seq_len=4))


@torch.no_grad()
def action_probs(policy):
    return policy(torch.tensor([[0]]))[0, -1].softmax(-1)


@pytest.mark.parametrize("algorithm, lr", [("ppo", 0.05), ("reinforce", 0.02), ("rloo", 0.05)])
def test_policy_gradient_reaches_the_kl_regularised_optimum(algorithm, lr, tmp_path):
    # one prompt, one action (a single token), reward SCORES[action]: the optimum of
    # E[r] - beta KL(pi || pi_ref) is pi*(y) proportional to pi_ref(y) exp(r(y) / beta)
    policy = bandit_policy()
    ref = bandit_policy()
    p_ref = action_probs(ref)
    target = p_ref * torch.exp(SCORES / BETA)
    target /= target.sum()
    cfg = RLConfig(algorithm=algorithm, iterations=200, value="head")
    cfg.rollout.batch_size, cfg.rollout.group_size = (64, 1) if algorithm != "rloo" else (16, 4)
    cfg.rollout.max_new_tokens, cfg.rollout.temperature, cfg.rollout.unfinished_reward = 1, 1.0, None
    cfg.kl.beta = BETA
    cfg.ppo.minibatches, cfg.ppo.epochs = (2, 2) if algorithm == "ppo" else (1, 1)
    cfg.ppo.vf_coef = 0.5
    cfg.eval.prompts = ""
    cfg.train.optim.lr = lr
    # a step size decaying to 5% (Robbins-Monro): at a constant one the policy keeps wandering
    # around the optimum by the sampling noise, and where it stands after 200 iterations depended
    # on the CPU's rounding (PPO: total variation 0.03 / 0.07 / 0.105 on two machines and seeds)
    cfg.train.schedule.kind, cfg.train.schedule.warmup_steps, cfg.train.schedule.min_lr_ratio = "cosine", 0, 0.05
    ac = ActorCritic(policy, value_head=algorithm == "ppo")

    def reward(items, answers, finished):
        return SCORES[torch.tensor([a[0] for a in answers])]

    run_rl(cfg, ac, ref, reward, [PromptItem([0])], tmp_path / algorithm, stop_ids=[], pad_id=0, model_config={"architecture": "actor_critic"})
    tv = 0.5 * float((action_probs(policy) - target).abs().sum())
    start = 0.5 * float((p_ref - target).abs().sum())
    # from 0.43 total variation away to within 0.05 (measured: ppo 0.004-0.009 at seeds 0-3,
    # reinforce 0.0004 and rloo 0.0001 or less at seeds 0-1)
    assert start > 0.3 and tv < 0.05, (algorithm, start, tv, action_probs(policy), target)


def test_reward_hacking_is_detected_when_the_oracle_falls_as_the_reward_rises():
    rising = [{"rollout/score": 0.1 * i, "monitor/oracle_score": 0.5 + 0.02 * min(i, 10) - 0.03 * max(0, i - 10)} for i in range(30)]
    found = detect_reward_hacking(rising)
    assert found["checked"] and found["detected"] and found["rm_rise_since_peak"] > 1.0
    honest = [{"rollout/score": 0.1 * i, "monitor/oracle_score": 0.5 + 0.01 * i} for i in range(30)]
    assert not detect_reward_hacking(honest)["detected"]
    assert not detect_reward_hacking([{"rollout/score": 0.0}] * 30)["checked"]  # no ground truth: nothing to check


# --------------------------------------------------------------------------- the stage


def test_ppo_stage_end_to_end(cli, chain):
    out = chain / "ppo"
    code, stdout, err = cli(
        "ppo", f"policy={chain / 'sft'}", f"reward={chain / 'rm'}", "iterations=3", "rollout.batch_size=8", "rollout.max_new_tokens=16",
        "ppo.minibatches=2", "eval.limit=8", "eval.every=1", "--out", out, "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(stdout)
    assert result["reward_hacking"] == {"checked": False}  # three iterations are too few to judge
    history = json.loads((out / "rl_history.json").read_text())
    assert [h["iteration"] for h in history] == [1, 2, 3]
    assert all({"rollout/score", "rollout/kl", "monitor/oracle_score", "value/explained_variance"} <= set(h) for h in history)
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval/score" in r]
    assert len(evals) == 3 and all("eval/oracle_score" in r and r["eval/kl"] >= 0 for r in evals)
    assert (out / "rl_curves.png").exists() and (out / "value" / "config.json").exists()
    # the result is a chat model of its own, for generate, eval and the next stages
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "transformer" and config["chat_template"] == "lmforge"
    code, stdout, err = cli("generate", "--model", out, "--prompt", "Hello?", "--max-new-tokens", 4, "--json")
    assert code == 0 and json.loads(stdout)["chat"], err
    # a second round goes on from this policy, held near the SFT model: its start is already away from it
    assert json.loads((out / "rl_initial_eval.json").read_text())["kl"] == 0
    code, _, err = cli("ppo", f"policy={chain / 'sft'}", f"init={out}", f"reward={chain / 'rm'}", "iterations=1", "rollout.batch_size=4",
                       "rollout.max_new_tokens=8", "ppo.minibatches=1", "eval.limit=8", "--out", chain / "ppo_round2")  # fmt: skip
    assert code == 0, err
    assert json.loads((chain / "ppo_round2" / "rl_initial_eval.json").read_text())["kl"] > 0
    # the same rollouts, another update
    code, _, err = cli("rl", "--algorithm", "grpo", f"policy={chain / 'sft'}", f"reward={chain / 'rm'}", "iterations=2", "rollout.batch_size=4",
                       "rollout.group_size=2", "rollout.max_new_tokens=8", "eval.prompts=", "--out", chain / "grpo")  # fmt: skip
    assert code == 0, err


def test_rl_on_a_users_prompts_is_not_evaluated_on_the_worlds(cli, chain, tmp_path):
    """A user's own rollout prompts: the world's held-out prompts are not asked, and no oracle
    watches (the policy's start has a world beside it; it is not this data's)."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Which module reads {w} files?"}) + "\n" for w in ["csv", "json", "zip", "tar", "gzip", "wave"]))
    with pytest.warns(UserWarning, match="not the world's"):
        code, stdout, err = cli("ppo", f"policy={chain / 'sft'}", f"reward={chain / 'rm'}", f"rollout.prompts={prompts}", "iterations=1", "rollout.batch_size=4",
                                "rollout.max_new_tokens=8", "ppo.minibatches=1", "--out", tmp_path / "ppo", "--json")  # fmt: skip
    assert code == 0, err
    assert "oracle" not in (tmp_path / "ppo" / "metrics.jsonl").read_text() and "monitor/" not in (tmp_path / "ppo" / "rl_history.json").read_text()


def test_bad_inputs_are_refused_before_any_work(cli, chain, tmp_path):
    from lmforge.checkpoint import save_model
    from lmforge.models import model_config_json
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    common = (f"policy={chain / 'sft'}", "iterations=1", "rollout.batch_size=4", "eval.prompts=")
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "hi"}) + "\n" + json.dumps({"prompt": " ".join(["word"] * 400)}) + "\n")
    assert_clean_failure(cli("ppo", *common, f"reward={chain / 'rm'}", f"rollout.prompts={long}", "--out", tmp_path / "a"), f"{long}:2", "context")
    assert not (tmp_path / "a").exists()
    # a reward model with another tokenizer
    other = train_tokenizer(["some other text entirely"] * 50, TokenizerConfig(vocab_size=300, min_frequency=1))
    rm = Transformer(ModelConfig(vocab_size=other.vocab_size, n_layer=1, n_head=2, d_model=16, max_seq_len=64), head="scalar")
    save_model(tmp_path / "other_rm", rm.state_dict(), model_config_json(rm), other)
    assert_clean_failure(cli("ppo", *common, f"reward={tmp_path / 'other_rm'}", "--out", tmp_path / "b"), "tokenizer differs")
    assert_clean_failure(cli("ppo", *common, f"reward={chain / 'sft'}", "--out", tmp_path / "c"), "not a reward model")
    assert_clean_failure(cli("ppo", *common, f"reward={chain / 'rm'}", f"init={chain / 'rm'}", "--out", tmp_path / "f"), "policy's start")
    assert_clean_failure(cli("rl", "--algorithm", "grpo", *common, f"reward={chain / 'rm'}", "--out", tmp_path / "d"), "group_size")
    assert_clean_failure(cli("ppo", "iterations=1", "--out", tmp_path / "e"), "policy")
    for name in "bcdef":
        assert not (tmp_path / name).exists()


def test_ppo_against_a_reward_model_with_an_answer_prior(cli, chain, tmp_path):
    rm = tmp_path / "rm_prior"
    code, _, err = cli("rm", f"init={chain / 'sft'}", "prior=true", "epochs=0", "train.steps=2", "train.batch_size=4", "--out", rm)
    assert code == 0, err
    out = tmp_path / "ppo"
    code, stdout, err = cli("ppo", f"policy={chain / 'sft'}", f"reward={rm}", "iterations=1", "rollout.batch_size=4", "rollout.max_new_tokens=8",
                            "ppo.minibatches=1", "eval.limit=4", "--out", out, "--json")  # fmt: skip
    assert code == 0, err
    history = json.loads((out / "rl_history.json").read_text())
    assert math.isfinite(history[0]["rollout/score"])
    # the value model starts from the reward model's body and head; the prior is the reward's alone
    assert "prior" not in json.loads((out / "value" / "config.json").read_text())


def test_nash_md_plays_the_mixture_judged_by_a_judge_or_by_a_reward_models_preference(cli, chain, tmp_path):
    """`lmforge rl --algorithm nash-md`: the preference model is a judge (a chat model; here the SFT
    model, untrained as a judge, which is enough to run) or a reward model (sigmoid(r - r')). The
    first evaluation is the SFT model against itself: P = 1/2 exactly, by both orders."""
    common = (f"policy={chain / 'sft'}", "iterations=2", "rollout.batch_size=4", "rollout.max_new_tokens=8", "ppo.minibatches=1", "eval.limit=4", "eval.every=1")
    for name, judge in (("judge", chain / "sft"), ("bt", chain / "rm")):
        code, _, err = cli("rl", "--algorithm", "nash-md", *common, f"reward={judge}", "--out", tmp_path / name)
        assert code == 0, err
        history = json.loads((tmp_path / name / "rl_history.json").read_text())
        assert [h["iteration"] for h in history] == [1, 2] and all(0 <= h["rollout/score"] <= 1 and "monitor/oracle_score" in h for h in history)
        assert json.loads((tmp_path / name / "rl_initial_eval.json").read_text())["score"] == 0.5
        assert not (tmp_path / name / "value").exists()
    # a judge without a chat template; a judge whose context cannot hold a prompt and two answers
    assert_clean_failure(cli("rl", "--algorithm", "nash-md", *common, f"reward={chain / 'base'}", "--out", tmp_path / "a"), "chat template")
    code, _, err = cli("rl", "--algorithm", "nash-md", *common[:-1], "rollout.max_new_tokens=64", f"reward={chain / 'sft'}", "--out", tmp_path / "b")
    assert_clean_failure((code, "", err), "judge's context")
    assert_clean_failure(cli("rl", "--algorithm", "nash-md", *common, f"reward={chain / 'rm'}", "nash.mixture=1.5", "--out", tmp_path / "c"), "nash.mixture")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_a_judge_is_measured_as_a_reward_model_is(cli, chain):
    """`lmforge eval rm --model JUDGE`: a chat model asked each pair in both orders gives the same
    numbers a reward model does (against the labels, the oracle, a second labeler), so whether it
    can replace people is read off one table."""
    world = chain / "base" / "world"
    code, stdout, err = cli("eval", "rm", "--model", chain / "sft", "--data", world / "comparisons.jsonl", "--world", world, "--limit", 12, "--json")
    assert code == 0, err
    ev = json.loads(stdout)
    assert {"acc_labelers", "acc_oracle", "labeler_agreement", "oracle_vs_labels", "ece", "by_task"} <= set(ev) and "reward_mean" not in ev
    assert 0 <= ev["acc_labelers"] <= 1 and 0 <= ev["acc_oracle"] <= 1 and sum(b["pairs"] for b in ev["calibration"]) == ev["pairs"] > 0
