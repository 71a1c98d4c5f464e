"""An arena: models answer the same held-out prompts, simulated labelers judge every pair of
models on every prompt (a round robin), and a Bradley-Terry model turns the verdicts into
ratings, on the Elo scale with bootstrap 95% intervals, as Chatbot Arena reports them
(Chiang et al. 2024).

Bradley-Terry: P(i beats j) = sigmoid(theta_i - theta_j). The strengths theta are the maximum
of the battles' log-likelihood (ties count half a win each way) with a small L2 penalty, which
keeps an undefeated model's rating finite; Newton's method, fixed at mean 0. Elo scale:
rating = 1000 + 400 * theta / ln(10), so 400 points are 10:1 odds. The intervals are the
2.5th and 97.5th percentiles of the ratings refitted on battles resampled with replacement.

Judges: the world's labelers (each battle judged by one, in turn), who see the oracle's scores
through their own noise and biases; never the training code. `lmforge arena` runs it.
"""

from __future__ import annotations

import math
import random

import numpy as np

from ..errors import InputError

ELO_BASE, ELO_SCALE = 1000.0, 400.0 / math.log(10.0)


def bradley_terry(n_models: int, battles: np.ndarray, *, l2: float = 1e-3, iterations: int = 100) -> np.ndarray:
    """Strengths theta (mean 0) from battles, rows (i, j, s): model i against j, s = 1 if i won,
    0 if j won, 0.5 a tie."""
    theta = np.zeros(n_models)
    if len(battles) == 0:
        return theta
    i, j, s = battles[:, 0].astype(int), battles[:, 1].astype(int), battles[:, 2].astype(float)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(theta[i] - theta[j])))
        g = np.zeros(n_models)
        np.add.at(g, i, s - p)
        np.add.at(g, j, p - s)
        g -= l2 * theta
        w = p * (1 - p)
        H = np.zeros((n_models, n_models))
        np.add.at(H, (i, i), -w)
        np.add.at(H, (j, j), -w)
        np.add.at(H, (i, j), w)
        np.add.at(H, (j, i), w)
        H -= l2 * np.eye(n_models)
        step = np.linalg.solve(H, g)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return theta - theta.mean()


def elo(theta: np.ndarray) -> np.ndarray:
    return ELO_BASE + ELO_SCALE * theta


def ratings(names: list[str], battles: np.ndarray, *, bootstrap: int = 200, seed: int = 0) -> dict:
    """{name: {rating, ci_low, ci_high, battles, win_rate}} from the battles."""
    point = elo(bradley_terry(len(names), battles))
    rng = np.random.default_rng(seed)
    samples = np.array([elo(bradley_terry(len(names), battles[rng.integers(0, len(battles), len(battles))])) for _ in range(bootstrap)]) if bootstrap else point[None]
    out = {}
    for k, name in enumerate(names):
        mine = (battles[:, 0] == k) | (battles[:, 1] == k)
        won = np.where(battles[:, 0] == k, battles[:, 2], 1 - battles[:, 2])[mine]
        out[name] = {
            "rating": float(point[k]),
            "ci_low": float(np.percentile(samples[:, k], 2.5)),
            "ci_high": float(np.percentile(samples[:, k], 97.5)),
            "battles": int(mine.sum()),
            "win_rate": float(won.mean()) if mine.any() else float("nan"),
        }
    return out


def run_arena(models: dict[str, str], prompts: str = "world", *, limit: int = 0, max_new_tokens: int = 48, world: str | None = None, bootstrap: int = 200, seed: int = 0, shots: dict[str, int] | None = None, temperature: float = 0.0, top_p: float = 1.0) -> dict:
    """Round robin on held-out prompts, judged by the world's labelers; Elo-scaled ratings."""
    from .policy import answer_prompts

    if len(models) < 2:
        raise InputError("an arena needs at least two models", field="model")
    world_dir, items, answers = answer_prompts(models, prompts, limit=limit, max_new_tokens=max_new_tokens, world=world, shots=shots, seed=seed, temperature=temperature, top_p=top_p)
    return arena_of_answers(world_dir, items, answers, bootstrap=bootstrap, seed=seed)


def arena_of_answers(world_dir, items, answers: dict, *, bootstrap: int = 200, seed: int = 0) -> dict:
    """The round robin over answers already written ({name: (texts, finished)}, as
    `answer_prompts` returns them): every pair of models on every prompt, judged by the world's
    labelers in turn."""
    from ..world.build import load_world

    world_obj, labelers, _ = load_world(world_dir)
    names = list(answers)
    battles = []
    turn = 0
    for n, item in enumerate(items):
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                labeler = labelers[turn % len(labelers)]
                turn += 1
                (ta, fa), (tb, fb) = (answers[names[a]][0][n], answers[names[a]][1][n]), (answers[names[b]][0][n], answers[names[b]][1][n])
                if ta == tb and fa == fb:
                    battles.append((a, b, 0.5))  # the same answer: a tie, whoever judges
                    continue
                rng = random.Random(f"{seed}:{labeler.name}:{n}:{a}:{b}")
                order = labeler.rank(world_obj, item.task, item.meta or {}, [ta, tb], [fa, fb], rng)
                battles.append((a, b, 1.0 if order[0] == 0 else 0.0))
    table = ratings(names, np.array(battles, dtype=float), bootstrap=bootstrap, seed=seed)
    return {"prompts": len(items), "battles": len(battles), "judges": [lab.name for lab in labelers], "ratings": table}
