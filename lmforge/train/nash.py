"""Nash learning from human feedback (Munos et al. 2023, "Nash Learning from Human Feedback"):
learn a preference model P(y > y' | x) rather than a reward, and look for the policy that no
other policy is preferred to, kept near a reference policy mu.

A reward model assumes the preferences are transitive (Bradley-Terry: each answer has a score);
a population of people whose majority prefers A to B, B to C and C to A has no such score, and
the best a reward model can do is wrong somewhere. A preference model can represent the cycle,
and the game it defines always has a solution: the regularised Nash equilibrium

  pi*_tau = argmax_pi min_pi' [ P(pi > pi') - tau KL(pi || mu) + tau KL(pi' || mu) ]   (section 3)

which satisfies pi*(y) proportional to mu(y) exp(P(y > pi*) / tau), P(y > pi) = E_{y'~pi} P(y > y').

Nash-MD (section 6, eq. 6-7) finds it by mirror descent in self-play against a geometric mixture
of the current policy and the reference:

  pi_t^mu(y)   proportional to  pi_t(y)^(1 - eta tau) mu(y)^(eta tau)
  pi_t+1(y)    proportional to  pi_t^mu(y) exp(eta P(y > pi_t^mu))

and its last iterate converges (Theorem 1: KL(pi*, pi_t) shrinks by a factor (1 - eta tau) a step,
down to a floor of order eta / tau), where plain self-play by multiplicative weights (the update
without the mixture) circles the equilibrium of an intransitive game and never settles.

This module is the update on a finite set of answers (a one-token game), exactly: the reference
the sampled language-model version is checked against, and the place the formulas are written
once; and `GeometricMixture`, the opponent a language model plays against, for the engine to
sample from. Policies are 1-D probability vectors; P is a matrix with P[i, j] = P(answer i > answer j)
and P + P.T = 1.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import expit, softmax
from torch import nn


def check_preferences(P: np.ndarray) -> np.ndarray:
    """P as a float matrix, checked: square, entries in [0, 1], P[i, j] + P[j, i] = 1."""
    P = np.asarray(P, float)
    if P.ndim != 2 or P.shape[0] != P.shape[1]:
        raise ValueError(f"a preference matrix is square; got shape {P.shape}")
    if (P < 0).any() or (P > 1).any() or not np.allclose(P + P.T, 1.0):
        raise ValueError("a preference matrix has entries in [0, 1] and P[i, j] + P[j, i] = 1")
    return P


def preference_against(P: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """P(y > pi) for every answer y: the probability y is preferred to an answer drawn from pi."""
    return P @ pi


def geometric_mixture(pi: np.ndarray, mu: np.ndarray, beta: float) -> np.ndarray:
    """pi^(1 - beta) mu^beta, normalised (computed in log space)."""
    return softmax((1 - beta) * np.log(pi) + beta * np.log(mu))


def nash_md_step(pi: np.ndarray, mu: np.ndarray, P: np.ndarray, eta: float, tau: float) -> np.ndarray:
    """One Nash-MD update (eq. 6-7): the mixture pi_t^mu with beta = eta * tau, then a
    multiplicative step of size eta towards the answers preferred to it."""
    mix = geometric_mixture(pi, mu, eta * tau)
    return softmax(np.log(mix) + eta * preference_against(P, mix))


def nash_md(P, mu, *, tau: float, eta: float, steps: int, pi0=None) -> np.ndarray:
    """`steps` Nash-MD updates from pi0 (default mu); the last iterate."""
    P = check_preferences(P)
    mu = np.asarray(mu, float)
    pi = mu.copy() if pi0 is None else np.asarray(pi0, float)
    for _ in range(steps):
        pi = nash_md_step(pi, mu, P, eta, tau)
    return pi


def regularised_gap(P, mu, pi, tau: float) -> float:
    """How far pi is from the regularised equilibrium: the total variation between pi and its
    own best response softmax(log mu + P(y > pi) / tau), which is zero exactly at pi*_tau."""
    best_response = softmax(np.log(np.asarray(mu, float)) + preference_against(check_preferences(P), pi) / tau)
    return total_variation(pi, best_response)


def exploitability(P, pi) -> float:
    """max_y P(y > pi): how strongly the best single answer is preferred to a policy. 1/2 at a
    Nash equilibrium of the unregularised game (no answer is preferred to it) and above 1/2 for
    any other policy; the measure on which Nash learning beats a reward model, since against the
    equilibrium of a cycle every answer only ties (P(y > pi*) = 1/2), so the equilibrium is not
    preferred to an arbitrary policy, only never beaten."""
    return float(preference_against(check_preferences(P), np.asarray(pi, float)).max())


def total_variation(p, q) -> float:
    return float(0.5 * np.abs(np.asarray(p, float) - np.asarray(q, float)).sum())


def cyclic_game(a: float, b: float, c: float) -> tuple[np.ndarray, np.ndarray]:
    """A three-answer intransitive game (weighted rock-paper-scissors): answer 0 beats 1 by a,
    1 beats 2 by c, 2 beats 0 by b (P = 1/2 + payoff / 2), and its Nash equilibrium in closed
    form: the payoff matrix is antisymmetric, so pi* solves payoff @ pi* = 0, which gives
    pi* proportional to (c, b, a) - each answer played in proportion to the margin of the
    duel it is not in."""
    payoff = np.array([[0.0, a, -b], [-a, 0.0, c], [b, -c, 0.0]])
    nash = np.array([c, b, a], float)
    return 0.5 + 0.5 * payoff, nash / nash.sum()


def bradley_terry_fit(P, mu) -> np.ndarray:
    """The reward a Bradley-Terry reward model learns from this population, exactly: the r that
    maximises the expected log-likelihood sum_ij mu_i mu_j P[i, j] log sigmoid(r_i - r_j) of
    comparisons between answers drawn from mu (InstructGPT's loss, Ouyang et al. 2022 eq. 1, in
    the limit of infinite data), centred. When P is intransitive no r reproduces it."""
    P, mu = check_preferences(P), np.asarray(mu, float)
    w = np.outer(mu, mu) * P

    def loss(r):
        d = r[:, None] - r[None, :]
        g = w * expit(-d)  # d/dd of log sigmoid(d) = 1 - sigmoid(d)
        return -(w * -np.logaddexp(0.0, -d)).sum(), -(g.sum(1) - g.sum(0))

    r = minimize(loss, np.zeros(len(mu)), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15}).x
    return r - r.mean()


def rlhf_optimum(reward, mu, beta: float) -> np.ndarray:
    """The policy RLHF converges to against a reward with a KL penalty of beta to mu:
    pi(y) proportional to mu(y) exp(r(y) / beta) (the closed form of the KL-regularised objective;
    Rafailov et al. 2023, eq. 4), what PPO and DPO approximate."""
    return softmax(np.log(np.asarray(mu, float)) + np.asarray(reward, float) / beta)


# --------------------------------------------------------------------------- the mixture, for language models


class _PairCache:
    """The KV caches of the policy and the reference, advanced together."""

    def __init__(self, policy_cache, ref_cache):
        self.policy, self.ref = policy_cache, ref_cache


class GeometricMixture(nn.Module):
    """A model the one inference engine (`lmforge.engine`) can sample from whose next-token
    log-probabilities are the token-level geometric mixture of a policy and a reference

        log pi^mu(a | s) = (1 - beta) log pi(a | s) + beta log mu(a | s) - log Z(s)

    the approximation of the sequence-level mixture pi^(1 - beta) mu^beta that Nash-MD's
    language-model experiments sample their opponents from (Munos et al. 2023, section 7). Both
    models keep their own KV cache; the logits it returns are the mixture's log-probabilities."""

    def __init__(self, policy, ref, beta: float):
        super().__init__()
        if policy.cfg.vocab_size != ref.cfg.vocab_size:
            raise ValueError(f"the policy and the reference share a vocabulary; got {policy.cfg.vocab_size} and {ref.cfg.vocab_size} tokens")
        self.policy, self.ref, self.beta = policy, ref, float(beta)
        self.cfg = policy.cfg

    def new_cache(self, batch: int, max_len: int, device, dtype) -> _PairCache:
        return _PairCache(self.policy.new_cache(batch, max_len, device, dtype), self.ref.new_cache(batch, max_len, device, dtype))

    def forward(self, idx: torch.Tensor, *, positions=None, pad_mask=None, cache: _PairCache | None = None) -> torch.Tensor:
        lp = self.policy(idx, positions=positions, pad_mask=pad_mask, cache=cache.policy if cache else None).float().log_softmax(-1)
        lr = self.ref(idx, positions=positions, pad_mask=pad_mask, cache=cache.ref if cache else None).float().log_softmax(-1)
        return ((1 - self.beta) * lp + self.beta * lr).log_softmax(-1)
