"""`lmforge study rlhf-gain`: when does learning from rankings beat imitating demonstrations?

RLHF exists because people judge answers more reliably than they write them (AlpacaFarm, Dubois
et al. 2023: PPO about 10 points of win rate above SFT with simulated annotators, best-of-n
second). This study measures that on the built-in world, where the writing/judging gap is a
property of the labelers (`lmforge.world.writing`), against the strongest SFT baseline the same
demonstrations allow (chosen by held-out loss):

  quality   the demonstrations' writers, from perfect (the tasks' reference answers) through
            careful labelers (their habits' rates halved), the default labelers, to careless ones
            (rates doubled); the rankings the same.
  budget    at equal labeler time, the share of a labeling budget spent on demonstrations, the
            rest on rankings of the SFT model's samples. Budget = demonstrations x cost_ratio +
            ranked prompts, in units of ranking one prompt's K answers; the default run's split
            (sft_prompts demonstrations, samples.limit ranked prompts) is one point.

At every point: a world whose demonstrations the point's writers wrote (the same prompts, corpus,
comparisons and evaluation prompts: only sft.jsonl changes), the best SFT model on them, its
samples ranked by the labelers, a reward model, PPO, DPO and best-of-n, all from one base model;
then their win rates against that point's best SFT on the held-out prompts, sampled and greedy,
with 95% bootstrap intervals over prompts. DIR/study.json, DIR/rlhf_gain.png, DIR/report.md.

The cost ratio is an assumption, stated where it is used: ranking a prompt's answers takes about
as long as comparing pairs (AlpacaFarm's crowdworkers: 36.8 s and $0.30 a pairwise comparison,
alpaca_eval's annotator table); we know of no published timing for writing a demonstration, and
take one demonstration to cost `cost_ratio` (default 1) ranked prompts. Change it with
study.cost_ratio=R.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import InputError
from .io import atomic_write_text
from .pipeline import Run, run_pipeline

# the stages a point runs itself; the base model comes from one shared run
POINT_STAGES = ("world", "sft", "samples", "labels", "rm", "ppo", "dpo")


def points(cfg) -> list[dict]:
    """The study's points: {name, sweep, demonstrations, ranked, writers, care}."""
    s = cfg.study
    n_demo, n_rank = cfg.world.sft_prompts, cfg.samples.limit or cfg.world.ppo_prompts
    out = []
    if s.reference:
        out.append({"name": "reference", "sweep": "quality", "writers": "reference", "care": 0.0, "demonstrations": n_demo, "ranked": n_rank})
    for c in s.care:
        out.append({"name": f"care{c:g}", "sweep": "quality", "writers": "labelers", "care": c, "demonstrations": n_demo, "ranked": n_rank})
    budget = n_demo * s.cost_ratio + n_rank
    for share in s.demo_share:
        d = max(2, round(share * budget / s.cost_ratio))
        r = max(2, round((1 - share) * budget))
        out.append({"name": f"share{share:g}", "sweep": "budget", "writers": "labelers", "care": 1.0, "demonstrations": d, "ranked": r})
    for p in out:
        p["demo_share"] = round(p["demonstrations"] * s.cost_ratio / (p["demonstrations"] * s.cost_ratio + p["ranked"]), 4)
    return out


def _point_config(cfg, point: dict, pdir: Path, base: Path):
    from .world.writing import WritingHabits

    c = copy.deepcopy(cfg)
    c.world_dir = ""
    c.world.sft_prompts = point["demonstrations"]
    c.world.demonstrations = "reference" if point["writers"] == "reference" else "labelers"
    if point["writers"] != "reference":
        c.world.writing = WritingHabits(**{k: v for k, v in vars(cfg.world.writing).items()}).scaled(point["care"])
    c.samples.limit = point["ranked"]
    # the shared base model; the point's own demonstrations (its other world files equal the base run's)
    c.sft.init = str(base / "base")
    c.sft.data.train = [str(pdir / "world" / "sft.jsonl")]
    c.sft.data.val = str(pdir / "world" / "sft_val.jsonl")
    c.rm.data.normalize = str(pdir / "world" / "sft.jsonl")
    if c.world.sft_prompts > cfg.world.ppo_prompts * 10:
        raise ConfigError("too many demonstrations for this world", field="study.demo_share")
    return c


def _is_the_run_itself(cfg, point: dict) -> bool:
    """Whether a point is `lmforge run`'s own setting: the default writers and budget."""
    n_rank = cfg.samples.limit or cfg.world.ppo_prompts
    return point["writers"] == "labelers" and point["care"] == 1.0 and point["demonstrations"] == cfg.world.sft_prompts and point["ranked"] == n_rank


def _finished_as_configured(run, stages: tuple[str, ...]) -> bool:
    """Whether `run` finished every stage of `stages` with the settings it is given now."""
    done = run.state()["stages"]
    return all(stage in done and done[stage].get("hash") == run._hash(stage) for stage in stages)


def run_rlhf_gain(cfg, out: str | Path, *, base: str | None = None, log: Callable[[str], None] | None = None) -> dict:
    """The study into `out`; `base`: a finished `lmforge run` directory whose base model to share
    (the same seed and world); without it the pipeline's stages up to pretrain run into out/base."""
    from .eval.pipeline import evaluate_run
    from .world.build import load_world

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    cfg.study.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if base is None:
        base_dir = out / "base_run"
        run_pipeline(cfg, base_dir, until="pretrain", log=lambda m: log("base: " + m))
    else:
        base_dir = Path(base)
        if not (base_dir / "base" / "config.json").exists() or not (base_dir / "world" / "world.json").exists():
            raise InputError("not a run directory with a trained base model (base/) and its world (world/); run `lmforge run --until pretrain` first", path=base_dir, field="base")
        seed = load_world(base_dir / "world")[0].seed
        if seed != cfg.seed:
            raise InputError(f"the base run's world has seed {seed}, the study's config {cfg.seed}; give --seed {seed}", path=base_dir, field="seed")
    results = []
    own = _finished_as_configured(Run(cfg, base_dir), POINT_STAGES + ("eval",))
    for point in points(cfg):
        pdir = out / "points" / point["name"]
        if own and _is_the_run_itself(cfg, point):
            # the base run already trained and evaluated this point: same settings, same seed
            log(f"{point['name']}: the base run's own models ({base_dir})")
            pdir = base_dir
        pcfg = _point_config(cfg, point, pdir, base_dir)
        run = Run(pcfg, pdir, log=lambda m, n=point["name"]: log(f"{n}: {m}"))
        if pdir != base_dir:
            run.execute(only=POINT_STAGES)
        done = pdir / "eval" / "eval.json"
        if not done.exists():
            log(f"{point['name']}: eval")
            ev = evaluate_run(run, pcfg.eval, base_models=False)
            done.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(done, json.dumps(ev, indent=2))
        ev = json.loads(done.read_text(encoding="utf-8"))
        manifest = json.loads((pdir / "world" / "manifest.json").read_text(encoding="utf-8"))
        results.append({**point, "demonstration_quality": manifest.get("demonstrations", {}).get("oracle_score", {}), "sft": ev.get("sft", {}).get("chosen", {}), **_summary(ev)})
    study = {"seed": cfg.seed, "cost_ratio": cfg.study.cost_ratio, "prompts": results[0]["prompts"] if results else 0, "points": results}
    atomic_write_text(out / "study.json", json.dumps(study, indent=2))
    plot_study(study, out / "rlhf_gain.png")
    atomic_write_text(out / "report.md", _markdown(study))
    return study


def _summary(ev: dict) -> dict:
    m, g = ev["models"], ev.get("greedy", {})
    win = {}
    for name in m:
        if name == "sft" or name.startswith("base"):  # a base run's eval also holds the base models
            continue
        win[name] = {"sampled": m[name]["win_rate_vs_sft"], "sampled_ci": m[name]["win_rate_vs_sft_ci"], "oracle_score": m[name]["oracle_score"]}
        if name in g:
            win[name].update(greedy=g[name]["win_rate_vs_sft"], greedy_ci=g[name]["win_rate_vs_sft_ci"], greedy_oracle_score=g[name]["oracle_score"])
    return {"prompts": ev["prompts"], "sft_oracle_score": m["sft"]["oracle_score"], "sft_greedy_oracle_score": g.get("sft", {}).get("oracle_score"), "win_rate_vs_sft": win, "rm_acc_oracle": ev.get("rm", {}).get("acc_oracle")}


# --------------------------------------------------------------------------- presentation

LINES = {"ppo": ("PPO", "#c44e52"), "dpo": ("DPO", "#4c72b0"), "best_of_4": ("best-of-4", "#55a868"), "best_of_16": ("best-of-16", "#8172b2")}


def plot_study(study: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    default = [p for p in study["points"] if p["name"] == "care1"]
    for ax, sweep in zip(axes, ("quality", "budget")):
        pts = [p for p in study["points"] if p["sweep"] == sweep] + (default if sweep == "budget" else [])
        key = (lambda p: p["demonstration_quality"].get("written", 0.0)) if sweep == "quality" else (lambda p: p["demo_share"])
        pts.sort(key=key)
        for i, (name, (label, colour)) in enumerate(LINES.items()):
            have = [p for p in pts if name in p["win_rate_vs_sft"]]
            if not have:
                continue
            x = [key(p) + (i - 1.5) * 0.002 for p in have]  # a little apart, so the intervals can be told
            y = [p["win_rate_vs_sft"][name]["sampled"] for p in have]
            ci = [p["win_rate_vs_sft"][name]["sampled_ci"] for p in have]
            ax.errorbar(x, y, yerr=[[v - c[0] for v, c in zip(y, ci)], [c[1] - v for v, c in zip(y, ci)]], fmt="o-", capsize=3, color=colour, label=label)
        ax.axhline(0.5, color="black", linewidth=0.8, linestyle=":")
        if sweep == "quality":
            for p in pts:
                ax.annotate(p["name"], (key(p), 0.02), fontsize=7, ha="center", xycoords=("data", "axes fraction"))
            ax.set(xlabel="the demonstrations' mean oracle score (who wrote them)", title="demonstration quality")
        else:
            ax.set(xlabel=f"share of the labeling budget spent on demonstrations (1 demonstration = {study['cost_ratio']:g} ranked prompts)", title="equal labeler time")
    axes[0].set(ylabel="win rate against the best SFT (sampled, 95% CI)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"When does RLHF beat the best SFT? (seed {study['seed']}, {study['prompts']} held-out prompts)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _markdown(study: dict) -> str:
    def wr(p, name, kind):
        w = p["win_rate_vs_sft"].get(name)
        if not w or kind not in w:
            return ""
        ci = w[kind + "_ci"]
        return f"{w[kind]:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"

    lines = [
        "# When does RLHF beat the best SFT?",
        "",
        (f"Seed {study['seed']}; each point's PPO, DPO and best-of-n against that point's best SFT (epochs and learning rate chosen by held-out loss), "
        f"{study['prompts']} held-out prompts, win rates by the oracle with 95% bootstrap intervals. One demonstration is taken to cost "
        f"{study['cost_ratio']:g} ranked prompts of labeler time (see lmforge/study.py)."),
        "",
        "| point | demonstrations | ranked prompts | demo share | demos' oracle score | best SFT oracle (sampled / greedy) | PPO sampled | PPO greedy | DPO sampled | best-of-4 | best-of-16 |",
        "|---|---:|---:|---:|---:|---|---|---|---|---|---|",
    ]
    for p in study["points"]:
        q = p["demonstration_quality"].get("written")
        g = p.get("sft_greedy_oracle_score")
        lines.append(
            f"| {p['name']} | {p['demonstrations']} | {p['ranked']} | {p['demo_share']:.2f} | {q:.3f} | {p['sft_oracle_score']:.3f} / {g:.3f} | "
            if q is not None and g is not None
            else f"| {p['name']} | {p['demonstrations']} | {p['ranked']} | {p['demo_share']:.2f} | | {p['sft_oracle_score']:.3f} | "
        )
        lines[-1] += " | ".join([wr(p, "ppo", "sampled"), wr(p, "ppo", "greedy"), wr(p, "dpo", "sampled"), wr(p, "best_of_4", "sampled"), wr(p, "best_of_16", "sampled")]) + " |"
    lines += ["", "![RLHF gain](rlhf_gain.png)", ""]
    return "\n".join(lines)
