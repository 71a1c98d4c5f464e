"""A scaling study's results: the fits of `lmforge.eval.scaling_laws` on its runs, the held-out
check, the compute-optimal sizes, the plots and the report (DIR/fit.json, DIR/runs.json,
DIR/plots/*.png, DIR/report.md)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..io import atomic_write_text
from .scaling_laws import (
    PASSES_WORTH_NEW,
    bootstrap_parametric,
    fit_parametric,
    flops_per_token_curve,
    isoflop_minimum,
    optimal_allocation,
    parametric_loss,
    power_law,
)

CHINCHILLA = {"alpha": 0.34, "beta": 0.28, "E": 1.69, "A": 406.4, "B": 410.7}  # Hoffmann et al. 2022, approach 3


def _parametric(runs: list[dict], bootstrap: int) -> dict:
    n, d, loss = ([r[k] for r in runs] for k in ("non_embedding", "tokens", "loss"))
    fit = fit_parametric(n, d, loss)
    fit["intervals"] = bootstrap_parametric(n, d, loss, fit, samples=bootstrap) if bootstrap else {}
    return fit


def _isoflops(runs: list[dict], fpt) -> dict:
    """Approach 2: each budget's parabola, and N_opt, D_opt against C."""
    by_budget = defaultdict(list)
    for r in runs:
        by_budget[r["budget"]].append(r)
    profiles = {}
    for budget, rs in sorted(by_budget.items()):
        m = isoflop_minimum([r["non_embedding"] for r in rs], [r["loss"] for r in rs])
        if m is not None:
            m["d_opt"] = float(budget / fpt(m["n_opt"]))
        profiles[f"{budget:.3g}"] = m
    good = [(float(c), m) for c, m in profiles.items() if m is not None and m["inside"]]
    out = {"profiles": profiles}
    if len(good) >= 2:
        out["n_opt_exponent"] = power_law([c for c, _ in good], [m["n_opt"] for _, m in good])["p"]
        out["d_opt_exponent"] = power_law([c for c, _ in good], [m["d_opt"] for _, m in good])["p"]
    return out


def _held_out(runs: list[dict], fpt) -> dict | None:
    """Fit on every budget but the largest, predict the largest budget's best loss."""
    budgets = sorted({r["budget"] for r in runs})
    if len(budgets) < 3:
        return None
    last = budgets[-1]
    train = [r for r in runs if r["budget"] < last]
    test = [r for r in runs if r["budget"] == last]
    if len(train) < 5:
        return None
    fit = _parametric(train, 0)
    best = min(test, key=lambda r: r["loss"])
    predicted = optimal_allocation(fit, last, fpt)
    per_run = [{"name": r["name"], "loss": r["loss"], "predicted": float(parametric_loss(fit, r["non_embedding"], r["tokens"]))} for r in test]
    return {
        "budget": last,
        "fit_on": sorted({r["budget"] for r in train}),
        "fit": {k: fit[k] for k in ("alpha", "beta", "E", "A", "B")},
        "best_loss": best["loss"],
        "best_run": best["name"],
        "predicted_best_loss": predicted["loss"],
        "relative_error": abs(predicted["loss"] - best["loss"]) / best["loss"],
        "runs": per_run,
    }


def write_study(cfg, out: Path, results: list[dict], skipped: list[dict]) -> dict:
    """Fit, check, plot and report a finished study; returns fit.json's content."""
    from ..config import to_dict

    runs = sorted(results, key=lambda r: (r["budget"], r["non_embedding"]))
    fpt = flops_per_token_curve(sorted({(r["non_embedding"], r["flops_per_token"]) for r in runs}))
    fit = _parametric(runs, cfg.study.bootstrap)
    budgets = sorted({r["budget"] for r in runs} | set(cfg.study.optimal_for))
    # the corpus the study read, and the passes over it worth making: an optimum past them is
    # not one this corpus can give (optimal_allocation's max_tokens)
    corpus = next((r["tokens"] / r["epochs"] for r in runs if r.get("epochs")), 0)
    max_tokens = PASSES_WORTH_NEW * corpus if corpus else None
    summary = {
        **{k: fit[k] for k in ("alpha", "beta", "E", "A", "B")},
        "intervals": fit["intervals"],
        "objective": fit["objective"],
        "runs": len(runs),
        "isoflop": _isoflops(runs, fpt),
        "held_out": _held_out(runs, fpt),
        "optimal": {f"{c:.3g}": optimal_allocation(fit, c, fpt, max_tokens=max_tokens) for c in budgets},
        "train_tokens": corpus,
        "chinchilla": CHINCHILLA,
        "skipped": [{"name": r["name"], "why": r["skip"]} for r in skipped],
        "compute": "the models' own FLOP count (Transformer.flops_per_token: 6 per non-embedding parameter plus attention), N non-embedding parameters, D training tokens, loss in nats per token",
    }
    atomic_write_text(out / "runs.json", json.dumps(runs, indent=1) + "\n")
    atomic_write_text(out / "fit.json", json.dumps(summary, indent=1) + "\n")
    (out / "plots").mkdir(exist_ok=True)
    plot_frontier(runs, fit, fpt, out / "plots" / "loss_vs_compute.png")
    plot_isoflops(runs, summary["isoflop"], out / "plots" / "isoflops.png")
    plot_surface(runs, fit, fpt, out / "plots" / "fitted_surface.png")
    atomic_write_text(out / "report.md", _markdown(summary, runs, to_dict(cfg)))
    return summary


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.5, 4.5))


def _save(fig, ax, path: Path) -> None:
    import matplotlib.pyplot as plt

    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _colors(n: int):
    import matplotlib.pyplot as plt

    return [plt.get_cmap("viridis")(i / max(1, n - 1)) for i in range(n)]


def plot_frontier(runs, fit, fpt, path: Path) -> None:
    """Loss against compute: every run, each size's runs joined, and the fitted frontier."""
    fig, ax = _figure()
    sizes = sorted({r["non_embedding"] for r in runs})
    for color, n in zip(_colors(len(sizes)), sizes):
        rs = sorted((r for r in runs if r["non_embedding"] == n), key=lambda r: r["flops"])
        ax.plot([r["flops"] for r in rs], [r["loss"] for r in rs], "o-", color=color, label=f"N = {n:,}")
    cs = np.exp(np.linspace(math.log(min(r["flops"] for r in runs)) - 0.5, math.log(max(r["flops"] for r in runs)) + 1.0, 60))
    ax.plot(cs, [optimal_allocation(fit, c, fpt)["loss"] for c in cs], "k--", label="fitted frontier")
    ax.set(xscale="log", xlabel="training FLOPs", ylabel="held-out loss (nats / token)", title="loss against compute")
    _save(fig, ax, path)


def plot_isoflops(runs, iso: dict, path: Path) -> None:
    """Each budget's runs against N, its parabola and its minimum (approach 2)."""
    fig, ax = _figure()
    budgets = sorted({r["budget"] for r in runs})
    for color, c in zip(_colors(len(budgets)), budgets):
        rs = sorted((r for r in runs if r["budget"] == c), key=lambda r: r["non_embedding"])
        ax.plot([r["non_embedding"] for r in rs], [r["loss"] for r in rs], "o", color=color, label=f"C = {c:.2g}")
        m = iso["profiles"].get(f"{c:.3g}")
        if m:
            x = np.linspace(math.log(rs[0]["non_embedding"]), math.log(rs[-1]["non_embedding"]), 50)
            c0, c1, c2 = m["coeffs"]
            ax.plot(np.exp(x), c0 + c1 * x + c2 * x**2, "-", color=color, lw=1)
            ax.plot([m["n_opt"]], [m["loss_opt"]], "*", color=color, ms=12)
    ax.set(xscale="log", xlabel="non-embedding parameters N", ylabel="held-out loss (nats / token)", title="isoFLOP profiles")
    _save(fig, ax, path)


def plot_surface(runs, fit, fpt, path: Path) -> None:
    """The fitted L(N, D) as contours, the runs on it, and the compute-optimal path."""
    ns = np.exp(np.linspace(math.log(min(r["non_embedding"] for r in runs) / 3), math.log(max(r["non_embedding"] for r in runs) * 3), 80))
    ds = np.exp(np.linspace(math.log(min(r["tokens"] for r in runs) / 3), math.log(max(r["tokens"] for r in runs) * 3), 80))
    grid_n, grid_d = np.meshgrid(ns, ds)
    fig, ax = _figure()
    cs = ax.contour(grid_n, grid_d, parametric_loss(fit, grid_n, grid_d), levels=14, cmap="viridis")
    ax.clabel(cs, fontsize=7, fmt="%.2f")
    ax.scatter([r["non_embedding"] for r in runs], [r["tokens"] for r in runs], c="k", s=14, label="runs")
    budgets = np.exp(np.linspace(math.log(min(r["flops"] for r in runs)) - 1, math.log(max(r["flops"] for r in runs)) + 1, 30))
    path_pts = [optimal_allocation(fit, c, fpt) for c in budgets]
    ax.plot([p["n"] for p in path_pts], [p["d"] for p in path_pts], "r-", label="compute-optimal")
    ax.set(xscale="log", yscale="log", xlabel="non-embedding parameters N", ylabel="training tokens D", title=f"L = {fit['E']:.2f} + {fit['A']:.3g}/N^{fit['alpha']:.2f} + {fit['B']:.3g}/D^{fit['beta']:.2f}")
    _save(fig, ax, path)


def _ci(summary: dict, k: str) -> str:
    ci = summary["intervals"].get(k)
    return f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""


def _markdown(summary: dict, runs: list[dict], cfg: dict) -> str:
    lines = ["# Scaling study", "", f"{summary['runs']} runs; {summary['compute']}.", "", "## Runs", "",
             "| run | N (non-embedding) | tokens | tokens / N | passes over the data | FLOPs | held-out loss | seconds |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in runs:
        epochs = f"{r['epochs']:.2f}" if r.get("epochs") is not None else "-"
        lines.append(f"| {r['name']} | {r['non_embedding']:,} | {r['tokens']:,} | {r['tokens'] / r['non_embedding']:.1f} | {epochs} | {r['flops']:.3g} | {r['loss']:.4f} | {r['seconds']:.0f} |")
    lines += ["", "## The parametric fit (Chinchilla's approach 3)", "", "L(N, D) = E + A / N^alpha + B / D^beta, 95% bootstrap intervals over runs:", "",
              "| | fitted | Chinchilla |", "|---|---:|---:|"]  # fmt: skip
    for k in ("alpha", "beta", "E", "A", "B"):
        lines.append(f"| {k} | {summary[k]:.4g}{_ci(summary, k)} | {summary['chinchilla'][k]:g} |")
    iso = summary["isoflop"]
    lines += ["", "## IsoFLOP profiles (approach 2)", "", "| budget | N_opt | D_opt | loss at N_opt | minimum inside the sizes |", "|---:|---:|---:|---:|---|"]
    for c, m in iso["profiles"].items():
        lines.append(f"| {c} | {m['n_opt']:,.0f} | {m['d_opt']:,.0f} | {m['loss_opt']:.4f} | {'yes' if m['inside'] else 'no (extrapolated)'} |" if m else f"| {c} | - | - | - | no parabola (fewer than 3 runs, or no minimum) |")
    if "n_opt_exponent" in iso:
        lines.append(f"\nN_opt ~ C^{iso['n_opt_exponent']:.2f}, D_opt ~ C^{iso['d_opt_exponent']:.2f} (Chinchilla: 0.49, 0.51).")
    h = summary["held_out"]
    if h:
        check = (f"Fitted on the budgets {', '.join(f'{c:.3g}' for c in h['fit_on'])} only, the fit predicts the best loss at {h['budget']:.3g} FLOPs "
                 f"{h['predicted_best_loss']:.4f}; the best run there ({h['best_run']}) measured {h['best_loss']:.4f}: {100 * h['relative_error']:.2f}% off.")  # fmt: skip
        lines += ["", "## Held-out check", "", check]
    lines += ["", "## Compute-optimal sizes (from the parametric fit)", "", "| budget (FLOPs) | N | D | tokens / N | predicted loss |", "|---:|---:|---:|---:|---:|"]
    for c, o in summary["optimal"].items():
        lines.append(f"| {c} | {o['n']:,.0f} | {o['d']:,.0f}{' (data-limited)' if o.get('data_limited') else ''} | {o['tokens_per_parameter']:.1f} | {o['loss']:.4f} |")
    if any(o.get("data_limited") for o in summary["optimal"].values()):
        lines.append(f"\nData-limited: the unconstrained optimum would read the study's {summary['train_tokens']:,.0f} training tokens more than {PASSES_WORTH_NEW:g} times (beyond that repeated tokens are worth much less than new ones); the size given spends the budget in {PASSES_WORTH_NEW:g} passes.")
    if summary["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{s['name']} ({s['why']})" for s in summary["skipped"]) + "."]
    lines += ["", "![loss against compute](plots/loss_vs_compute.png)", "![isoFLOP profiles](plots/isoflops.png)", "![fitted surface](plots/fitted_surface.png)", "",
              "Settings:", "", "```json", json.dumps(cfg["study"], indent=1), "```", ""]  # fmt: skip
    return "\n".join(lines)
