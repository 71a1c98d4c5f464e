"""Scaling laws: the FLOP count, the fits against known answers, and a tiny study killed and resumed."""

import json
import math

import numpy as np
import pytest
import torch

from lmforge.eval.scaling_laws import (
    fit_parametric,
    flops_per_token_curve,
    isoflop_minimum,
    optimal_allocation,
    parametric_loss,
)
from lmforge.models.transformer import ModelConfig, Transformer

from .test_cli import assert_clean_failure

KNOWN = {"alpha": 0.34, "beta": 0.28, "E": 1.69, "A": 406.4, "B": 410.7}  # Chinchilla's fit


def test_flop_count_against_a_hand_count():
    cfg = ModelConfig(flavour="gpt2", vocab_size=512, n_layer=2, n_head=2, d_model=64, max_seq_len=64)
    model = Transformer(cfg)
    d, L, V, T = 64, 2, 512, 64
    block = 3 * d * d + 3 * d + d * d + d + 4 * d * d + 4 * d + 4 * d * d + d + 2 * 2 * d  # qkv, out, mlp up, down, two layer norms
    n = L * block + 2 * d + V * d  # final norm; the tied embedding is the head's matrix
    assert model.num_params(non_embedding=True) == n
    assert model.flops_per_token(T) == 6 * n + 12 * L * d * T  # Kaplan et al. 2020, table 1
    # and against PyTorch's own count of the forward pass's matrix products (x3 for training; its
    # counter does not see the CPU's fused attention, so the scores' 12 L d T are added by hand)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, T, dtype=torch.long))
    counted = 3 * counter.get_total_flops() / T
    assert counted == 6 * (L * 12 * d * d + V * d)  # the weight matrices' multiply-adds, 2 forward and 4 backward
    assert counted + 12 * L * d * T == pytest.approx(model.flops_per_token(T), rel=0.02)  # biases and norms are the difference


def test_the_parametric_fit_recovers_known_parameters():
    n, d = np.meshgrid(np.logspace(5, 9, 6), np.logspace(8, 11, 6))
    rng = np.random.default_rng(0)
    loss = parametric_loss(KNOWN, n.ravel(), d.ravel()) * np.exp(rng.normal(0, 1e-4, n.size))
    fit = fit_parametric(n.ravel(), d.ravel(), loss)
    for k, v in KNOWN.items():
        assert fit[k] == pytest.approx(v, rel=0.05), k


def test_the_isoflop_minimum_of_a_parabola():
    n = np.exp(np.linspace(math.log(1e4), math.log(1e8), 7))
    loss = 2.0 + 0.1 * (np.log(n) - math.log(3e6)) ** 2
    m = isoflop_minimum(n, loss)
    assert m["n_opt"] == pytest.approx(3e6, rel=1e-6) and m["loss_opt"] == pytest.approx(2.0) and m["inside"]
    assert isoflop_minimum(n, -loss) is None and isoflop_minimum(n[:2], loss[:2]) is None  # no minimum; too few runs


def test_the_optimal_allocation_matches_chinchillas_closed_form():
    # with FLOPs per token exactly 6N, the numeric optimum is Chinchilla's eq. 4
    fpt = flops_per_token_curve([(1e6, 6e6), (1e9, 6e9)])
    c = 1e21
    got = optimal_allocation(KNOWN, c, fpt)
    a, b = KNOWN["beta"] / (KNOWN["alpha"] + KNOWN["beta"]), KNOWN["alpha"] / (KNOWN["alpha"] + KNOWN["beta"])
    g = (KNOWN["alpha"] * KNOWN["A"] / (KNOWN["beta"] * KNOWN["B"])) ** (1 / (KNOWN["alpha"] + KNOWN["beta"]))
    assert got["n"] == pytest.approx(g * (c / 6) ** a, rel=0.01) and got["d"] == pytest.approx((c / 6) ** b / g, rel=0.01)
    assert not got["data_limited"]
    # a corpus with half the optimum's tokens: the model that spends the budget in them (D = C / 6N)
    short = optimal_allocation(KNOWN, c, fpt, max_tokens=got["d"] / 2)
    assert short["data_limited"] and short["d"] == pytest.approx(got["d"] / 2, rel=0.01) and short["n"] == pytest.approx(2 * got["n"], rel=0.01)
    assert short["loss"] > got["loss"]
    assert optimal_allocation(KNOWN, c, fpt, max_tokens=got["d"] * 2) == got  # enough data: no change


def test_a_tiny_study_killed_and_resumed_skips_finished_runs(cli, tmp_path, monkeypatch):
    from lmforge import scaling

    out = tmp_path / "study"
    real, done = scaling._one_run, []

    def dies_after_two(cfg, run, shards, folder):
        if len(done) == 2:
            raise KeyboardInterrupt  # the study is killed during its third run
        done.append(run["name"])
        return real(cfg, run, shards, folder)

    monkeypatch.setattr(scaling, "_one_run", dies_after_two)
    cfg = scaling.load_scaling_config(None, "tiny", [])
    with pytest.raises(KeyboardInterrupt):
        scaling.run_scaling(cfg, out, log=lambda m: None)
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/scaling.json")}
    assert sorted(finished) == sorted(done)

    monkeypatch.setattr(scaling, "_one_run", real)
    # resumed as two shards (as two torchrun processes or machines would): the second shard trains
    # its share and leaves the fit to the first, which trains the rest and fits
    code, stdout, err1 = cli("scaling", "--preset", "tiny", "--shard", "1/2", "--out", out)
    assert code == 0 and "run again to fit" in err1 and not (out / "fit.json").exists(), err1
    code, stdout, err = cli("scaling", "--preset", "tiny", "--shard", "0/2", "--out", out)
    assert code == 0, err
    trained = [line.split("] ")[1].split(":")[0] for e in (err1, err) for line in e.splitlines() if line.startswith("[")]
    assert sorted(trained) == sorted(set(trained)) and not set(trained) & set(finished)  # each run once, none again
    assert {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/scaling.json") if p.parent.name in finished} == finished
    fit = json.loads((out / "fit.json").read_text())
    runs = json.loads((out / "runs.json").read_text())
    assert len(runs) == fit["runs"] >= 9 and all(math.isfinite(r["loss"]) for r in runs)
    assert all(k in fit and k in fit["intervals"] for k in ("alpha", "beta", "E", "A", "B"))
    assert fit["held_out"]["fit_on"] == sorted(cfg.study.budgets)[:-1]
    for r in runs:  # each run trained as many steps as its budget buys, its schedule sized to them
        assert r["flops"] == pytest.approx(r["budget"], rel=0.1) and r["flops"] == r["tokens"] * r["flops_per_token"]
        saved = (out / "runs" / r["name"] / "config.yaml").read_text()
        assert f"steps: {r['steps']}" in saved
    for name in ("loss_vs_compute.png", "isoflops.png", "fitted_surface.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    assert "Held-out check" in (out / "report.md").read_text() and "alpha" in stdout

    # the study sizes a model for a training time: the fitted optimum's nearest shape, and the steps that time buys
    code, _, err = cli("pretrain", "recipes/tiny.yaml", f"data.shards={out / 'data'}", "size=optimal", f"scaling={out}", "minutes=0.02", "--out", tmp_path / "sized")
    assert code == 0, err
    sizing = json.loads((tmp_path / "sized" / "sizing.json").read_text())
    assert sizing["size"] in cfg.study.sizes and sizing["budget"] == pytest.approx(sizing["flops_per_second"] * 1.2)
    # the optimum reads the run's corpus at most 4 times; at that limit it is data-limited
    limit = 4 * sizing["train_tokens"]
    assert sizing["optimal_d"] == pytest.approx(limit, rel=0.01) if sizing["data_limited"] else sizing["optimal_d"] <= limit
    saved = (tmp_path / "sized" / "config.yaml").read_text()
    d_model, n_layer = (int(x) for x in sizing["size"].split("x"))
    assert f"d_model: {d_model}" in saved and f"n_layer: {n_layer}" in saved and f"steps: {sizing['steps']}" in saved
    assert_clean_failure(cli("pretrain", "recipes/tiny.yaml", "size=optimal", "--out", tmp_path / "x"), "size", "scaling=DIR")


def test_bad_study_settings_are_clear_errors(cli, tmp_path):
    assert_clean_failure(cli("scaling", "--preset", "tiny", "--sizes", "64by2", "--out", tmp_path / "a"), "study.sizes", "d_model x n_layer")
    assert_clean_failure(cli("scaling", "--preset", "tiny", "--budget", "-5", "--out", tmp_path / "b"), "study.budgets", "positive")
    assert_clean_failure(cli("scaling", "--preset", "tiny", "--shard", "2/2", "--out", tmp_path / "c"), "shard", "I/N")
    assert not (tmp_path / "a" / "runs").exists() and not (tmp_path / "b" / "runs").exists()


def test_the_plan_skips_runs_too_short_too_far_from_the_optimum_or_repeating_the_data():
    from lmforge.scaling import load_scaling_config, plan

    cfg = load_scaling_config(None, "default", ["study.min_tokens_per_param=1"])
    runs = {r["name"]: r for r in plan(cfg, 1213, train_tokens=1_000_000)}
    assert len(runs) == len(cfg.study.sizes) * len(cfg.study.budgets)
    why = {name: (r["skip"] or "").split(" (")[0] for name, r in runs.items()}
    assert "steps" in why["C5e11-192x4"]  # a budget too small for the size
    assert "tokens a parameter" in why["C5e11-96x4"]  # 0.2 tokens a parameter
    assert "passes over the training data" in why["C1.5e13-64x3"]  # 9M tokens of a 1M-token corpus
    assert "more than study.max_tokens_per_param" in runs["C1.5e13-16x1"]["skip"]  # 3,800 tokens a parameter
    for r in runs.values():
        assert r["tokens"] == r["steps"] * 16 * 128 and r["epochs"] == r["tokens"] / 1_000_000
        tpp = r["tokens"] / r["non_embedding"]
        assert bool(r["skip"]) == (r["steps"] < 50 or tpp < 1 or tpp > 200 or r["epochs"] > 1)
