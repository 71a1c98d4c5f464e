"""Nash learning from human feedback on a one-token game: the formulas by hand, and Nash-MD's last
iterate at the closed-form equilibrium of an intransitive game, where plain self-play cycles."""

import math

import numpy as np
import pytest

from lmforge.train.nash import (
    bradley_terry_fit,
    check_preferences,
    cyclic_game,
    exploitability,
    geometric_mixture,
    nash_md,
    nash_md_step,
    preference_against,
    regularised_gap,
    rlhf_optimum,
    total_variation,
)


def test_one_update_by_hand():
    P = np.array([[0.5, 0.8], [0.2, 0.5]])
    pi, mu = np.array([0.25, 0.75]), np.array([0.5, 0.5])
    eta, tau = 0.5, 0.4  # beta = eta * tau = 0.2
    # mixture: 0.25^0.8 = 0.3299, 0.75^0.8 = 0.7944 (mu uniform cancels) -> 0.2934, 0.7066
    mix = geometric_mixture(pi, mu, eta * tau)
    assert mix == pytest.approx([0.25**0.8 * 0.5**0.2 / (0.25**0.8 * 0.5**0.2 + 0.75**0.8 * 0.5**0.2), 0.75**0.8 / (0.25**0.8 + 0.75**0.8)])
    assert mix[0] == pytest.approx(0.2934, abs=1e-4)
    # P(y > mix): 0.5 * 0.2934 + 0.8 * 0.7066 = 0.7120; 0.2 * 0.2934 + 0.5 * 0.7066 = 0.4120
    against = preference_against(P, mix)
    assert against == pytest.approx([0.7120, 0.4120], abs=1e-4)
    w = mix * np.exp(eta * against)
    assert nash_md_step(pi, mu, P, eta, tau) == pytest.approx(w / w.sum())
    assert geometric_mixture(pi, mu, 0.0) == pytest.approx(pi) and geometric_mixture(pi, mu, 1.0) == pytest.approx(mu)


def test_the_cyclic_games_closed_form_equilibrium():
    P, nash = cyclic_game(0.6, 0.2, 0.9)
    assert nash == pytest.approx(np.array([0.9, 0.2, 0.6]) / 1.7)
    assert P @ nash == pytest.approx([0.5, 0.5, 0.5])  # every answer only ties against it: no answer is preferred to it
    assert P[0, 1] > 0.5 and P[1, 2] > 0.5 and P[2, 0] > 0.5  # 0 > 1 > 2 > 0: no reward orders these


def test_nash_md_reaches_the_equilibrium_where_self_play_cycles():
    P, nash = cyclic_game(0.6, 0.2, 0.9)
    mu, start = np.ones(3) / 3, np.array([0.8, 0.1, 0.1])
    pi = nash_md(P, mu, tau=0.005, eta=0.1, steps=20000, pi0=start)
    assert total_variation(pi, nash) < 0.02  # the target
    assert regularised_gap(P, mu, pi, 0.005) < 1e-3  # at the regularised equilibrium itself
    # the same updates without the mixture and the regularisation (multiplicative weights in
    # self-play): the last iterate circles the equilibrium and never settles
    pi, far = start.copy(), []
    for t in range(20000):
        pi = nash_md_step(pi, mu, P, 0.1, 0.0)
        if t >= 19000:
            far.append(total_variation(pi, nash))
    assert max(far) > 0.2


def test_a_transitive_game_goes_to_its_best_answer_and_tau_keeps_it_near_the_reference():
    r = np.array([0.0, 1.0, 2.0])  # Bradley-Terry rewards: P(i > j) = sigmoid(r_i - r_j)
    P = 1 / (1 + np.exp(-(r[:, None] - r[None, :])))
    mu = np.array([0.6, 0.3, 0.1])
    sharp = nash_md(P, mu, tau=0.01, eta=0.5, steps=5000)
    assert sharp[2] > 0.95
    loose = nash_md(P, mu, tau=2.0, eta=0.1, steps=5000)
    assert regularised_gap(P, mu, loose, 2.0) < 1e-3  # a step of size eta leaves a bias of order eta * tau
    assert total_variation(loose, mu) < total_variation(sharp, mu)
    assert math.isclose(loose.sum(), 1.0)


def test_bradley_terry_fit_recovers_a_reward_and_rlhf_optimum_by_hand():
    r = np.array([0.0, 1.0, 2.5])
    P = 1 / (1 + np.exp(-(r[:, None] - r[None, :])))
    assert bradley_terry_fit(P, np.array([0.5, 0.3, 0.2])) == pytest.approx(r - r.mean(), abs=1e-4)
    # pi proportional to mu exp(r / beta): mu (0.5, 0.5), r (0, 1), beta 0.5 -> (1, e^2) / (1 + e^2)
    assert rlhf_optimum([0.0, 1.0], [0.5, 0.5], 0.5) == pytest.approx([1 / (1 + math.e**2), math.e**2 / (1 + math.e**2)])


def _condorcet_game(profiles):
    """The Condorcet population's (lmforge.world.labelers) preferences over answers with these
    (helpful, truthful, well-formed) scores, all harmless."""
    from lmforge.world.labelers import condorcet_labelers, preference_matrix

    scored = [{"helpful": h, "truthful": t, "well_formed": w, "harmless": 1.0, "total": 0.0} for h, t, w in profiles]
    return preference_matrix(condorcet_labelers(0.15, 6), scored)


def test_where_the_population_is_no_reward_the_reward_models_optimum_can_be_beaten_and_nash_mds_cannot():
    """The world's Condorcet population (three groups, helpful, truthful or well-formed first) on
    four answers that trade dimensions. A Bradley-Terry reward model fitted to its preferences
    (exactly, infinite data), then RLHF's optimum against it (beta 0.05), beside Nash-MD's
    equilibrium of the same preferences: some answer is preferred to the RLHF policy, none to
    Nash-MD's. Against it the RLHF policy never wins (P(nash > rlhf) >= 1/2); it loses outright
    when the population has a winner the reward model does not rank first."""
    mu = np.ones(4) / 4
    # answers good in two dimensions of three: the majority cycles
    P = _condorcet_game([(0, 1, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)])
    assert P[1, 3] > 0.5 and P[3, 2] > 0.5 and P[2, 1] > 0.5  # (0,1,1) > (1,1,0) > (1,0,1) > (0,1,1)
    rlhf = rlhf_optimum(bradley_terry_fit(P, mu), mu, 0.05)
    nash = nash_md(P, mu, tau=0.002, eta=0.1, steps=20000)
    assert nash[1:] == pytest.approx([1 / 3] * 3, abs=0.01) and rlhf[2] < 0.1  # the reward ranks (1,0,1) last of the three
    assert exploitability(P, rlhf) > 0.51 and exploitability(P, nash) < 0.5005  # (1,0,1) beats the RLHF policy
    assert nash @ P @ rlhf == pytest.approx(0.5, abs=1e-3)  # but the equilibrium of a cycle only ties it
    # transitive by majority ((0,1,1) beats every answer), yet no reward: the reward model ranks
    # (1,1,0) first and RLHF puts most of its mass there; Nash-MD finds the majority's winner
    P = _condorcet_game([(1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 1, 1)])
    assert (P[3, :3] > 0.5).all()
    r = bradley_terry_fit(P, mu)
    rlhf, nash = rlhf_optimum(r, mu, 0.05), nash_md(P, mu, tau=0.002, eta=0.1, steps=20000)
    assert r.argmax() == 2 and rlhf[2] > 0.7 and nash[3] > 0.99
    assert nash @ P @ rlhf > 0.52  # the population prefers Nash-MD's policy


def test_a_matrix_that_is_not_a_preference_is_refused():
    with pytest.raises(ValueError, match="P\\[i, j\\] \\+ P\\[j, i\\] = 1"):
        check_preferences([[0.5, 0.7], [0.7, 0.5]])
    with pytest.raises(ValueError, match="square"):
        check_preferences([[0.5, 0.5]])


def test_the_geometric_mixture_samples_through_the_one_engine():
    import torch

    from lmforge.engine import SamplingParams, generate
    from lmforge.models.transformer import ModelConfig, Transformer
    from lmforge.train.nash import GeometricMixture

    cfg = ModelConfig(flavour="llama", vocab_size=50, n_layer=1, n_head=2, d_model=32, max_seq_len=64)
    torch.manual_seed(0)
    policy = Transformer(cfg).eval()
    torch.manual_seed(1)
    ref = Transformer(cfg).eval()
    prompts, greedy = [[1, 2, 3], [4, 5]], SamplingParams(max_new_tokens=8, temperature=0.0)
    for beta, same_as in ((0.0, policy), (1.0, ref)):  # the ends of the mixture are the models themselves
        assert [g.tokens for g in generate(GeometricMixture(policy, ref, beta), prompts, greedy)] == [g.tokens for g in generate(same_as, prompts, greedy)]
    mix = GeometricMixture(policy, ref, 0.3)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        want = (0.7 * policy(ids).log_softmax(-1) + 0.3 * ref(ids).log_softmax(-1)).log_softmax(-1)
        assert torch.allclose(mix(ids), want, atol=1e-6)
        # sampled with both KV caches: each token's log-probability is the full recompute's
        for p, g in zip(prompts, generate(mix, prompts, SamplingParams(max_new_tokens=6, temperature=1.0, seed=3))):
            lp = mix(torch.tensor([p + g.tokens]))[0, len(p) - 1 : -1].gather(1, torch.tensor(g.tokens)[:, None]).squeeze(1)
            assert torch.allclose(lp, torch.tensor(g.logprobs), atol=1e-5)
    with pytest.raises(ValueError, match="share a vocabulary"):
        GeometricMixture(policy, Transformer(ModelConfig(flavour="llama", vocab_size=60, n_layer=1, n_head=2, d_model=32, max_seq_len=64)), 0.5)


def test_nash_md_of_lmforge_rl_reaches_the_regularised_equilibrium_of_the_one_token_game(tmp_path):
    """`algorithm=nash-md` on a language model whose answer is one token of three, judged by the
    cyclic game's preference matrix (no reward exists: 0 beats 1, 1 beats 2, 2 beats 0). The
    regularised equilibrium pi*_tau, computed exactly by Nash-MD on the finite game, is where the
    sampled policy-gradient version must end. Its own fixed point, against a mixture of
    beta 0.125, is 0.009 from pi*_tau (solved in numpy); the policy starts 0.14 away and ends
    0.008-0.024 from it (seeds 0-3). At tau 0.1 the game's rotation outweighs the pull to the
    reference and the sampled steps spiral (0.02-0.13 at the same seeds)."""
    import torch

    from lmforge.models.transformer import ModelConfig, Transformer
    from lmforge.train.ppo import ActorCritic, PromptItem, RLConfig, run_rl

    def model():
        torch.manual_seed(0)
        return Transformer(ModelConfig(flavour="gpt2", vocab_size=3, n_layer=1, n_head=1, d_model=8, max_seq_len=4))

    def probs(m):
        with torch.no_grad():
            return m(torch.tensor([[0]]))[0, -1].softmax(-1).double().numpy()

    policy, ref = model(), model()
    P, _ = cyclic_game(0.6, 0.2, 0.9)
    tau, mu = 0.2, probs(ref)
    target = nash_md(P, mu, tau=tau, eta=0.05, steps=20000)
    assert regularised_gap(P, mu, target, tau) < 2e-3
    cfg = RLConfig(algorithm="nash-md", iterations=300)
    cfg.rollout.batch_size, cfg.rollout.max_new_tokens, cfg.rollout.unfinished_reward = 64, 1, None
    cfg.kl.beta, cfg.nash.mixture = tau, 0.125
    cfg.ppo.minibatches = 1
    cfg.eval.prompts = ""
    cfg.train.optim.lr = 0.02
    cfg.train.schedule.kind, cfg.train.schedule.warmup_steps, cfg.train.schedule.min_lr_ratio = "cosine", 0, 0.05
    Pt = torch.tensor(P, dtype=torch.float32)

    def preference(items, answers, finished, rivals, rivals_finished):
        return Pt[torch.tensor([a[0] for a in answers]), torch.tensor([b[0] for b in rivals])]

    _, rollouts = run_rl(cfg, ActorCritic(policy), ref, preference, [PromptItem([0])], tmp_path, stop_ids=[], pad_id=0, model_config={"architecture": "actor_critic"})
    start, tv = total_variation(mu, target), total_variation(probs(policy), target)
    assert start > 0.12 and tv < 0.05, (start, tv, probs(policy), target)
    assert abs(rollouts.history[-1]["rollout/score"] - 0.5) < 0.1  # near the equilibrium no answer beats the mixture by much
