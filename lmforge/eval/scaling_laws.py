"""Scaling laws fitted to measured runs: how held-out loss falls with parameters N, tokens D and
compute C, and the compute-optimal N and D for a budget.

Two of Chinchilla's three approaches (Hoffmann et al. 2022, section 3):

  isoFLOP profiles (approach 2)  for each compute budget, the loss of the runs at that budget
                                 against log N is fitted by a parabola; its minimum is the
                                 budget's optimal N (and D = C / FLOPs per token at that N).
                                 Across budgets, N_opt ~ C^a and D_opt ~ C^b (a, b near 0.5 for
                                 Chinchilla).
  parametric loss (approach 3)   L(N, D) = E + A / N^alpha + B / D^beta (their eq. 2), fitted by
                                 minimising the Huber loss (delta 1e-3) between the predicted and
                                 the measured log loss with L-BFGS from a grid of starting points
                                 (their appendix D.2: log A, log B, log E as a, b, e and the
                                 log-sum-exp form); intervals by bootstrap over runs. Chinchilla:
                                 alpha 0.34, beta 0.28, E 1.69 (nats per token of MassiveText).

Compute is the models' own count (`Transformer.flops_per_token`: 6 per non-embedding parameter
and the attention scores), not Chinchilla's 6ND: for the small models a CPU trains, attention is
a third of the work. The optimal allocation for a budget is therefore found numerically along the
study's family of shapes (`fpt`, FLOPs per token as a function of N, interpolated between the
measured sizes), not by the closed form of Chinchilla's eq. 4.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

HUBER_DELTA = 1e-3


# --------------------------------------------------------------------------- approach 3


def parametric_loss(params: dict, n, d):
    """L(N, D) = E + A / N^alpha + B / D^beta."""
    n, d = np.asarray(n, float), np.asarray(d, float)
    return params["E"] + params["A"] / n ** params["alpha"] + params["B"] / d ** params["beta"]


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float):
    """Sum of Huber(LSE(a - alpha log N, b - beta log D, e) - log L) and its gradient."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    w = np.exp(terms - top)
    total = w.sum(axis=0)
    lse = top + np.log(total)
    w /= total  # d lse / d term
    r = lse - log_l
    small = np.abs(r) <= delta
    loss = np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)).sum()
    g = np.where(small, r, delta * np.sign(r))  # d huber / d r
    grad = np.array([(g * w[0]).sum(), (g * w[1]).sum(), (g * w[2]).sum(), -(g * w[0] * log_n).sum(), -(g * w[1] * log_d).sum()])
    return loss, grad


def _grid() -> np.ndarray:
    """Chinchilla's grid of initial (a, b, e, alpha, beta) (appendix D.2): 6 x 6 x 5 x 5 x 5."""
    axes = [np.arange(0, 26, 5.0), np.arange(0, 26, 5.0), np.arange(-1, 1.01, 0.5), np.arange(0, 2.01, 0.5), np.arange(0, 2.01, 0.5)]
    return np.array(list(itertools.product(*axes)))


def _grid_objective(grid: np.ndarray, log_n, log_d, log_l, delta: float) -> np.ndarray:
    """The Huber objective at every grid point at once."""
    a, b, e, alpha, beta = (grid[:, i : i + 1] for i in range(5))
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.broadcast_to(e, (len(grid), len(log_n)))])
    r = np.logaddexp.reduce(terms, axis=0) - log_l
    return np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)).sum(axis=1)


def fit_parametric(n, d, loss, *, delta: float = HUBER_DELTA, starts: list[tuple] | None = None, best_of_grid: int = 16) -> dict:
    """Approach 3 on runs with N parameters, D training tokens and held-out loss L (nats per
    token): {alpha, beta, E, A, B, objective}. L-BFGS from each start (default: the
    `best_of_grid` points of Chinchilla's grid with the lowest objective, the whole grid scored at
    once); the lowest objective wins."""
    from scipy.optimize import minimize

    log_n, log_d, log_l = (np.log(np.asarray(x, float)) for x in (n, d, loss))
    if len(log_l) < 5:
        raise ValueError(f"the parametric fit has 5 parameters and needs at least 5 runs, got {len(log_l)}")
    if starts is None:
        grid = _grid()
        starts = grid[np.argsort(_grid_objective(grid, log_n, log_d, log_l, delta))[:best_of_grid]]
    best = None
    for start in starts:
        res = minimize(_objective, np.array(start, float), args=(log_n, log_d, log_l, delta), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
        if best is None or res.fun < best.fun:
            best = res
    a, b, e, alpha, beta = best.x
    return {"alpha": float(alpha), "beta": float(beta), "E": float(math.exp(e)), "A": float(math.exp(a)), "B": float(math.exp(b)), "objective": float(best.fun)}


def bootstrap_parametric(n, d, loss, fit: dict, *, samples: int = 200, seed: int = 0) -> dict:
    """95% intervals of each parameter over `samples` refits on runs drawn with replacement, each
    started from the full fit and a few nearby points."""
    rng = np.random.default_rng(seed)
    n, d, loss = (np.asarray(x, float) for x in (n, d, loss))
    center = (math.log(fit["A"]), math.log(fit["B"]), math.log(fit["E"]), fit["alpha"], fit["beta"])
    starts = [center] + [tuple(c * f for c in center) for f in (0.7, 1.3)]
    draws = {k: [] for k in ("alpha", "beta", "E", "A", "B")}
    for _ in range(samples):
        idx = rng.integers(0, len(loss), len(loss))
        if len(set(idx.tolist())) < 5:
            continue
        f = fit_parametric(n[idx], d[idx], loss[idx], starts=starts)
        for k, values in draws.items():
            values.append(f[k])
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in draws.items() if v}


# --------------------------------------------------------------------------- approach 2


def isoflop_minimum(n, loss) -> dict:
    """The parabola in log N through one budget's runs and its minimum: {n_opt, loss_opt,
    coeffs (of log N: c0 + c1 x + c2 x^2), inside (the minimum lies within the runs' sizes)}; None
    where the parabola opens downward or fewer than 3 runs."""
    x, y = np.log(np.asarray(n, float)), np.asarray(loss, float)
    if len(x) < 3:
        return None
    c2, c1, c0 = np.polyfit(x, y, 2)
    if c2 <= 0:
        return None
    x_opt = -c1 / (2 * c2)
    return {"n_opt": float(math.exp(x_opt)), "loss_opt": float(c0 + c1 * x_opt + c2 * x_opt**2), "coeffs": [float(c0), float(c1), float(c2)], "inside": bool(x.min() <= x_opt <= x.max())}


def power_law(x, y) -> dict:
    """y = k x^p fitted in log space: {p, k}."""
    p, log_k = np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)
    return {"p": float(p), "k": float(math.exp(log_k))}


# --------------------------------------------------------------------------- the optimum


def flops_per_token_curve(sizes: list[tuple[float, float]]):
    """FLOPs per token as a function of N, interpolated in log-log space between the study's
    (N, FLOPs per token) sizes and extended along the end segments' slopes."""
    pts = sorted(sizes)
    xs = np.log([p[0] for p in pts])
    ys = np.log([p[1] for p in pts])
    if len(xs) == 1:
        return lambda n: pts[0][1] * np.asarray(n, float) / pts[0][0]

    def fpt(n):
        x = np.log(np.asarray(n, float))
        lo = ys[0] + (x - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
        hi = ys[-1] + (x - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return np.exp(np.where(x < xs[0], lo, np.where(x > xs[-1], hi, np.interp(x, xs, ys))))

    return fpt


# Passes over a corpus worth nearly as much as new tokens: Muennighoff et al. (2023, "Scaling
# data-constrained language models") find up to about 4 epochs almost as good as unique data, and
# returns falling fast after. A compute-optimal size that needs more is limited by the data.
PASSES_WORTH_NEW = 4.0


def optimal_allocation(params: dict, budget: float, fpt, n_range: tuple[float, float] = (1e3, 1e12), max_tokens: float | None = None) -> dict:
    """The N that minimises the fitted L(N, D) at `budget` FLOPs, D = budget / fpt(N): {n, d,
    loss, tokens_per_parameter, data_limited}, by a search over log N.

    max_tokens: the tokens the data can give (a corpus's tokens times the passes worth making);
    where the unconstrained optimum wants more, the best N among those that read at most that
    many is the smallest such N (L falls in D along the budget's line there; Muennighoff et al.
    2023 on data-constrained scaling), and `data_limited` is true."""
    grid = np.exp(np.linspace(math.log(n_range[0]), math.log(n_range[1]), 4001))
    d = budget / fpt(grid)
    losses = parametric_loss(params, grid, d)
    i = int(np.argmin(losses))
    limited = bool(max_tokens and d[i] > max_tokens)
    if limited:
        within = np.flatnonzero(d <= max_tokens)
        i = int(within[np.argmin(losses[within])]) if len(within) else len(grid) - 1
    return {"n": float(grid[i]), "d": float(d[i]), "loss": float(losses[i]), "tokens_per_parameter": float(d[i] / grid[i]), "data_limited": limited}
