"""The report of `lmforge run`: DIR/results.json, DIR/report.md and its plots in DIR/plots/.

results.json (the stable, machine-read part):

    models[name][metric]   name: base, base_fewshot, base_large_fewshot, sft (the best SFT: epochs
                           and learning rate chosen by held-out loss), best_of_4, best_of_16, ppo,
                           dpo; metric: win_rate_vs_sft (and its 95% interval, _ci),
                           task_accuracy, false_claim_rate, rude_rate, question_rate,
                           mean_length, oracle_score, finished; for ppo and dpo also
                           win_rate_vs_base_large_fewshot and win_rate_vs_best_of_<n>[_ci]
    greedy[name][metric]   sft, ppo, dpo answering greedily, the same metrics
    sft                    the best SFT's chosen lr, epoch and held-out loss
    by_task[name][task]    prompts, task_accuracy, oracle_score, win_rate_vs_sft of each model on
                           each of the world's tasks
    lm[family]             bpb, perplexity, params; family: ngram, rnn, gpt (the policy's base
                           model), gpt_large (the larger base model)
    rm                     acc_labelers, acc_oracle, labeler_agreement (held-out comparisons)
    arena[name]            rating, ci_low, ci_high (Bradley-Terry on the Elo scale, 95% bootstrap)
    targets                each target of the default preset: measured, reached (and refused: why
                           the larger-base target cannot be marked)
    seconds[stage]         wall-clock seconds of each stage (the only part that differs between
                           two runs of the same seed)

report.md holds the tables, whether each target was reached, and the plots: pretraining loss
curves, bits per byte by family, reward-model accuracy, PPO's reward/oracle/KL curves, win
rates against SFT with intervals, arena ratings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .io import atomic_write_text
from .tracking import read_metrics


def duration(seconds: float) -> str:
    """"12.3 s" or "4 min 5 s"."""
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"

# (description, how to measure it from results, the test) — InstructGPT's pattern against the
# strongest baselines the same data allows, the targets of the default preset on the built-in world
TARGETS = [
    ("PPO's win rate against the best SFT >= 0.60, sampled", lambda r: r["models"]["ppo"]["win_rate_vs_sft"], lambda v: v >= 0.60),
    ("PPO's win rate against the best SFT >= 0.55, greedy", lambda r: r["greedy"]["ppo"]["win_rate_vs_sft"], lambda v: v >= 0.55),
    ("DPO's win rate against the best SFT >= 0.55, sampled", lambda r: r["models"]["dpo"]["win_rate_vs_sft"], lambda v: v >= 0.55),
    ("PPO's win rate against best-of-4 >= 0.50", lambda r: r["models"]["ppo"]["win_rate_vs_best_of_4"], lambda v: v >= 0.50),
    ("PPO's win rate against the larger base model prompted few-shot >= 0.75 (a target only when that model has 3x the parameters or more and lower bits per byte)",
     lambda r: r["models"]["ppo"]["win_rate_vs_base_large_fewshot"], lambda v: v >= 0.75),
    ("the base model's question rate zero-shot >= 0.3", lambda r: r["models"]["base"]["question_rate"], lambda v: v >= 0.3),
    ("PPO's question rate <= 0.05", lambda r: r["models"]["ppo"]["question_rate"], lambda v: v <= 0.05),
    ("PPO's false-claim rate below the base model's and the best SFT's", lambda r: (r["models"]["ppo"]["false_claim_rate"], r["models"]["base"]["false_claim_rate"], r["models"]["sft"]["false_claim_rate"]), lambda v: v[0] < min(v[1:])),
    ("PPO's rude-word rate below the base model's and the best SFT's", lambda r: (r["models"]["ppo"]["rude_rate"], r["models"]["base"]["rude_rate"], r["models"]["sft"]["rude_rate"]), lambda v: v[0] < min(v[1:])),
    ("reward-model accuracy against the oracle >= 0.75", lambda r: r["rm"]["acc_oracle"], lambda v: v >= 0.75),
    ("the GPT's bits per byte below the n-gram's", lambda r: (r["lm"]["gpt"]["bpb"], r["lm"]["ngram"]["bpb"]), lambda v: v[0] < v[1]),
]  # fmt: skip
LARGER_BASE = 4  # the index of the target that needs a larger, better language model
MIN_SIZE_RATIO = 3.0


def larger_base_refusal(results: dict) -> str | None:
    """Why the larger-base target cannot be marked (None: it can): the larger model must be the
    better language model (strictly lower held-out bits per byte) with 3x the parameters or more,
    or "small aligned beats large base" claims nothing."""
    lm = results.get("lm", {})
    small, large = lm.get("gpt"), lm.get("gpt_large")
    if not small or not large:
        return "the larger base model's bits per byte were not measured"
    if not large["bpb"] < small["bpb"]:
        return f"the larger base model is not the better language model (bits per byte {large['bpb']:.4f} against the policy's base model's {small['bpb']:.4f})"
    if small.get("params") and large.get("params") and large["params"] < MIN_SIZE_RATIO * small["params"]:
        return f"the larger base model has only {large['params'] / small['params']:.2f}x the parameters (a target needs {MIN_SIZE_RATIO:g}x)"
    return None


NAMES = {
    "base": "base, zero-shot",
    "base_fewshot": "base, few-shot",
    "base_large_fewshot": "larger base, few-shot",
    "sft": "best SFT",
    "best_of_4": "best-of-4 (SFT + RM)",
    "best_of_16": "best-of-16 (SFT + RM)",
    "ppo": "PPO",
    "dpo": "DPO",
}
METRICS = ["win_rate_vs_sft", "oracle_score", "task_accuracy", "false_claim_rate", "rude_rate", "question_rate", "mean_length", "finished"]


def check_targets(results: dict) -> list[dict]:
    out = []
    for i, (text, measure, test) in enumerate(TARGETS):
        try:
            value = measure(results)
        except KeyError:
            out.append({"target": text, "measured": None, "reached": False})
            continue
        row = {"target": text, "measured": value, "reached": bool(test(value))}
        if i == LARGER_BASE and (why := larger_base_refusal(results)) is not None:
            row.update(reached=False, refused=why)
        out.append(row)
    return out


def build_results(run) -> dict:
    ev = json.loads((run.path("eval") / "eval.json").read_text(encoding="utf-8"))
    state = run.state()
    results = {
        "seed": run.cfg.seed,
        "prompts": ev["prompts"],
        "models": ev["models"],
        "greedy": ev.get("greedy", {}),
        "sft": ev.get("sft", {}).get("chosen", {}),
        "by_task": ev.get("by_task", {}),  # an eval stage from before the split has none
        **({"by_language": ev["by_language"]} if "by_language" in ev else {}),
        "lm": ev["lm"],
        "rm": ev["rm"],
        "arena": {name: {k: r[k] for k in ("rating", "ci_low", "ci_high", "win_rate", "battles")} for name, r in ev["arena"]["ratings"].items()},
        # PPO's held-out evaluation before and after, and whether it hacked the reward model (not its
        # timings: results.json is the same for two runs of a seed, but for `seconds`)
        "ppo": {k: _untimed(ev["ppo"][k]) for k in ("reward_hacking", "initial_eval", "last") if k in ev["ppo"]},
        "seconds": {stage: s["seconds"] for stage, s in state["stages"].items()},
    }
    results["targets"] = check_targets(results)
    return results


def _untimed(d):
    return {k: v for k, v in d.items() if not k.startswith("time")} if isinstance(d, dict) else d


def write_report(run) -> dict:
    """results.json, the plots and report.md for a finished pipeline run; returns the results."""
    if not run.cfg.uses_world():  # a user's own data: no oracle, other numbers
        from .eval.own_data import write_own_data_report

        return write_own_data_report(run)
    results = build_results(run)
    plots = run.out / "plots"
    tmp = run.out / ".plots.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    made = _plots(run, results, tmp)
    shutil.rmtree(plots, ignore_errors=True)
    tmp.rename(plots)
    ev = json.loads((run.path("eval") / "eval.json").read_text(encoding="utf-8"))
    atomic_write_text(run.out / "report.md", _markdown(run, results, ev, made))
    atomic_write_text(run.out / "results.json", json.dumps(results, indent=2))
    return results


# --------------------------------------------------------------------------- plots


def _plots(run, results: dict, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = {}

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        made[name.removesuffix(".png")] = f"plots/{name}"

    # pretraining loss curves
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    curves = [("GPT (policy size)", run.path("pretrain")), ("GPT, larger", run.path("pretrain_large")), ("RNN", run.path("baselines") / "rnn")]
    for label, d in curves:
        rows = read_metrics(d) if (d / "metrics.jsonl").exists() else []
        train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        val = [(r["step"], r["eval/bpb"]) for r in rows if "eval/bpb" in r]
        if train:
            axes[0].plot(*zip(*train), label=label)
        if val:
            axes[1].plot(*zip(*val), "o-", label=label)
    for family in ("ngram",):
        if family in results["lm"]:
            axes[1].axhline(results["lm"][family]["bpb"], color="gray", linestyle=":", label=f"best n-gram ({results['lm'][family]['name']})")
    axes[0].set(xlabel="step", ylabel="training loss (nats a token)", title="pretraining")
    axes[1].set(xlabel="step", ylabel="held-out bits per byte", title="held out")
    for ax in axes:
        ax.legend(fontsize=8)
    save(fig, "pretraining.png")

    # bits per byte by family
    table = json.loads((run.path("baselines") / "comparison.json").read_text(encoding="utf-8"))
    rows = table["models"]
    fig, ax = plt.subplots(figsize=(8, 4))
    colours = {"ngram": "#8c8c8c", "rnn": "#55a868", "gpt": "#4c72b0"}
    ax.bar([r["name"] for r in rows], [r["bpb"] for r in rows], color=[colours.get(r["family"], "#dd8452") for r in rows])
    ax.set(ylabel="held-out bits per byte", title="language models on the world's corpus")
    ax.tick_params(axis="x", rotation=30)
    save(fig, "bpb.png")

    # reward model
    rm = results["rm"]
    keys = [k for k in ("acc_labelers", "acc_oracle", "labeler_agreement") if k in rm]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(["RM vs labelers", "RM vs oracle", "labeler vs labeler"][: len(keys)], [rm[k] for k in keys], color=["#4c72b0", "#dd8452", "#8c8c8c"][: len(keys)])
    ax.axhline(0.5, color="black", linewidth=0.8, linestyle=":")
    ax.set(ylim=(0.4, 1.0), ylabel="pairwise accuracy (held-out comparisons)", title="reward model")
    save(fig, "reward_model.png")

    # PPO curves (drawn by the PPO stage)
    if (run.path("ppo") / "rl_curves.png").exists():
        shutil.copy(run.path("ppo") / "rl_curves.png", out / "ppo.png")
        made["ppo"] = "plots/ppo.png"

    # win rates against SFT with their intervals
    names = [n for n in NAMES if n in results["models"]]
    wr = [results["models"][n]["win_rate_vs_sft"] for n in names]
    ci = [results["models"][n].get("win_rate_vs_sft_ci", [w, w]) for n, w in zip(names, wr)]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([NAMES[n] for n in names], wr, yerr=[[w - c[0] for w, c in zip(wr, ci)], [c[1] - w for w, c in zip(wr, ci)]], capsize=4, color="#4c72b0")
    ax.axhline(0.5, color="black", linewidth=0.8, linestyle=":")
    ax.set(ylim=(0, 1), ylabel="win rate against SFT (oracle, ties half)", title="held-out prompts, 95% bootstrap intervals")
    ax.tick_params(axis="x", rotation=20)
    save(fig, "win_rates.png")

    # arena
    arena = sorted(results["arena"].items(), key=lambda kv: kv[1]["rating"])
    fig, ax = plt.subplots(figsize=(7, 4))
    y = range(len(arena))
    ax.errorbar([r["rating"] for _, r in arena], list(y), xerr=[[r["rating"] - r["ci_low"] for _, r in arena], [r["ci_high"] - r["rating"] for _, r in arena]], fmt="o", capsize=4)
    ax.set_yticks(list(y), [NAMES.get(n, n) for n, _ in arena])
    ax.set(xlabel="rating (Bradley-Terry, Elo scale)", title="arena, 95% bootstrap intervals")
    save(fig, "arena.png")
    return made


# --------------------------------------------------------------------------- markdown


def _f(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        return " vs ".join(_f(x) for x in v)
    return str(v)


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _how_answered(ev) -> str:
    if ev.temperature <= 0:
        return "one greedy answer a prompt"
    return f"one answer a prompt sampled at temperature {ev.temperature:g}" + (f", top-p {ev.top_p:g}" if ev.top_p < 1 else "")


# below this task accuracy a model is taken not to be able to do a task at all
CANNOT = 0.1


def _by_task(by_task: dict) -> list[str]:
    """The "By task" section: SFT's, PPO's and DPO's task accuracy and win rates on each task, and
    which tasks neither SFT nor PPO can do (won only on form: they hold the overall win rate
    toward one half whatever the alignment did)."""
    names = [n for n in ("sft", "ppo", "dpo") if n in by_task]
    if "sft" not in names:
        return []
    tasks = list(by_task["sft"])
    wins = [n for n in names if n != "sft"]
    lines = ["", "## By task", "", "| task | prompts | " + " | ".join(f"{NAMES[n]} accuracy" for n in names) + "".join(f" | {NAMES[n]} win rate vs SFT" for n in wins) + " |",
             "|---|---:|" + "---:|" * (len(names) + len(wins))]  # fmt: skip
    for task in tasks:
        row = [task, str(by_task["sft"][task]["prompts"])] + [_f(by_task[n][task]["task_accuracy"]) for n in names] + [_f(by_task[n][task].get("win_rate_vs_sft")) for n in wins]
        lines.append("| " + " | ".join(row) + " |")
    able = [n for n in ("sft", "ppo") if n in by_task]
    hard = [t for t in tasks if all(by_task[n][t]["task_accuracy"] < CANNOT for n in able)]
    if hard:
        n_hard, n_all = sum(by_task["sft"][t]["prompts"] for t in hard), sum(by_task["sft"][t]["prompts"] for t in tasks)
        lines += ["", f"{' and '.join(NAMES[n] for n in able)} {'both ' if len(able) > 1 else ''}answer fewer than {CANNOT:.0%} of the prompts correctly "
                  f"in {', '.join(hard)} ({n_hard} of the {n_all} prompts): there an answer can beat SFT's only on form (stopping, tone, not asking back), which holds "
                  "the overall win rate toward one half."]  # fmt: skip
    return lines


def _by_language(by_language: dict, lm: dict) -> list[str]:
    """The "By language" section of a multilingual world's run (MEGA's table, Ahuja et al. 2023):
    each model's task accuracy in each language with its 95% interval, the share of its answers in
    another language than the prompt's, the win rates against SFT, and the base models' bits per
    byte on the same held-out documents in each language."""
    if not by_language:
        return []
    from .world.languages import NAMES as LANGUAGE_NAMES  # noqa: N811

    names = [n for n in NAMES if n in by_language]
    langs = list(by_language[names[0]])
    lines = ["", "## By language", "", "Task accuracy on the same held-out prompts in each language [95% interval]; in brackets after it, the share of answers in another language.", "",
             "| model | " + " | ".join(f"{LANGUAGE_NAMES.get(c, c)} ({c})" for c in langs) + " |", "|---|" + "---|" * len(langs)]  # fmt: skip
    for n in names:
        cells = [f"{r['task_accuracy']:.3f} [{r['task_accuracy_ci'][0]:.2f}, {r['task_accuracy_ci'][1]:.2f}] ({r['wrong_language']:.2f})" for r in (by_language[n][c] for c in langs)]
        lines.append(f"| {NAMES.get(n, n)} | " + " | ".join(cells) + " |")
    wins = [n for n in names if n != "sft" and "win_rate_vs_sft" in by_language[n][langs[0]]]
    if wins:
        lines += ["", "Win rate against SFT in each language:", "", "| model | " + " | ".join(langs) + " |", "|---|" + "---:|" * len(langs)]
        lines += [f"| {NAMES.get(n, n)} | " + " | ".join(_f(by_language[n][c]["win_rate_vs_sft"]) for c in langs) + " |" for n in wins]
    bpb = {f: lm[f]["bpb_by_language"] for f in ("gpt", "gpt_large") if "bpb_by_language" in lm.get(f, {})}
    if bpb:
        lines += ["", "Bits per byte on the held-out documents, each in every language:", "", "| model | " + " | ".join(langs) + " |", "|---|" + "---:|" * len(langs)]
        lines += [f"| {'base' if f == 'gpt' else 'larger base'} | " + " | ".join(f"{v[c]:.4f}" if c in v else "-" for c in langs) + " |" for f, v in bpb.items()]
    return lines


def _markdown(run, results: dict, ev: dict, plots: dict[str, str]) -> str:
    cfg = run.cfg
    m, g = results["models"], results.get("greedy", {})
    lm = results.get("lm", {})
    sizes = ""
    if lm.get("gpt", {}).get("params") and lm.get("gpt_large", {}).get("params"):
        sizes = f" ({lm['gpt_large']['params'] / lm['gpt']['params']:.1f}x the parameters, bits per byte {lm['gpt_large']['bpb']:.4f} against {lm['gpt']['bpb']:.4f})"
    chosen = results.get("sft") or {}
    how_sft = f"lr {chosen['lr']:g} and {chosen['epoch']:g} epochs, chosen by held-out loss {chosen['loss']:.4f}" if chosen else "trained as configured"
    lines = [
        "# lmforge run",
        "",
        f"Seed {cfg.seed}; {results['prompts']} held-out prompts, {_how_answered(cfg.eval)} by each model, scored by the world's oracle "
        f"(its ground truth). The baseline is the best SFT model the demonstrations give ({how_sft}); PPO and DPO start from it.",
        "",
        "## Against the best SFT",
        "",
        "| model | win rate vs best SFT, sampled | 95% interval | greedy | 95% interval |",
        "|---|---:|---|---:|---|",
    ]
    for name in ("ppo", "dpo", "best_of_4", "best_of_16"):
        if name in m:
            row = [NAMES[name], _f(m[name]["win_rate_vs_sft"]), _ci(m[name].get("win_rate_vs_sft_ci"))]
            row += [_f(g[name]["win_rate_vs_sft"]), _ci(g[name].get("win_rate_vs_sft_ci"))] if name in g else ["", ""]
            lines.append("| " + " | ".join(row) + " |")
    vs = [f"{NAMES[k]} {_f(m['ppo'][f'win_rate_vs_{k}'])} {_ci(m['ppo'].get(f'win_rate_vs_{k}_ci'))}" for k in ("best_of_4", "best_of_16") if f"win_rate_vs_{k}" in m.get("ppo", {})]
    if vs:
        lines += ["", "PPO against best-of-n (sampled): " + "; ".join(vs) + "."]
    lines += [
        "",
        "Win rate: the share of prompts whose answer the oracle scores above the best SFT's, ties half; intervals are 95% bootstrap intervals over prompts. "
        f"Also asked: the base model zero-shot and behind a prefix of {cfg.eval.shots} demonstrations (Q:/A: pairs), and the larger base model behind the same prefix{sizes}.",
        "",
        "## Targets",
        "",
        "| target | measured | reached |",
        "|---|---|---|",
    ]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {_f(t['measured'])} | {'yes' if t['reached'] else ('refused: ' + t['refused'] if t.get('refused') else '**no**')} |")
    missed = [t for t in results["targets"] if not t["reached"]]
    lines += ["", f"{len(results['targets']) - len(missed)} of {len(results['targets'])} targets reached. The targets are set for the default preset on the built-in world; a tiny run checks the plumbing only."]
    lines += ["", "## The models on held-out prompts", "", "| model | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for name, label in NAMES.items():
        m = results["models"].get(name)
        if m:
            lines.append(f"| {label} | " + " | ".join(_f(m.get(k)) for k in METRICS) + " |")
    lines += ["", f"PPO against the larger base model prompted few-shot: {_f(results['models']['ppo']['win_rate_vs_base_large_fewshot'])}; "
              f"DPO: {_f(results['models']['dpo']['win_rate_vs_base_large_fewshot'])}."]  # fmt: skip
    if g:
        lines += ["", "Greedy answers:", "", "| model | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
        for name in ("sft", "ppo", "dpo"):
            if name in g:
                lines.append(f"| {NAMES[name]} | " + " | ".join(_f(g[name].get(k)) for k in METRICS) + " |")
    if "win_rates" in plots:
        lines += ["", f"![win rates]({plots['win_rates']})"]
    lines += _by_task(results.get("by_task", {}))
    lines += _by_language(results.get("by_language", {}), results.get("lm", {}))
    lines += ["", "## Arena", "", "Every pair of models on every prompt, judged by the simulated labelers in turn; Bradley-Terry ratings on the Elo scale with 95% bootstrap intervals.", "", "| model | rating | 95% interval | win rate |", "|---|---:|---|---:|"]
    for name, r in sorted(results["arena"].items(), key=lambda kv: -kv[1]["rating"]):
        lines.append(f"| {NAMES.get(name, name)} | {r['rating']:.0f} | [{r['ci_low']:.0f}, {r['ci_high']:.0f}] | {r['win_rate']:.3f} |")
    if "arena" in plots:
        lines += ["", f"![arena]({plots['arena']})"]
    rm = results["rm"]
    lines += ["", "## Reward model", "", f"On {rm.get('comparisons', '?')} held-out comparisons of the world ({rm.get('pairs', '?')} pairs): accuracy against the labelers' rankings "
              f"{_f(rm.get('acc_labelers'))}, against the oracle {_f(rm.get('acc_oracle'))}; two labelers agree on {_f(rm.get('labeler_agreement'))} of pairs."]  # fmt: skip
    if "reward_model" in plots:
        lines += ["", f"![reward model]({plots['reward_model']})"]
    ppo = results.get("ppo", {})
    lines += ["", "## PPO", ""]
    hack = ppo.get("reward_hacking", {})
    if hack.get("detected"):
        lines.append(f"Reward hacking detected: from iteration {hack['oracle_peak_iteration']} the reward model's score rose by {hack['rm_rise_since_peak']:.3f} while the oracle's fell by {hack['oracle_drop_since_peak']:.3f}.")
    elif hack.get("checked"):
        lines.append("No reward hacking detected (the oracle's score did not fall while the reward model's rose).")
    if "initial_eval" in ppo and "last" in ppo:
        a, b = ppo["initial_eval"], ppo["last"]
        keys = [k for k in ("score", "oracle_score", "kl", "finished") if k in a and ("eval/" + k in b or k in b)]
        lines.append("Held-out greedy answers before and after: " + ", ".join(f"{k} {_f(a[k])} -> {_f(b.get('eval/' + k, b.get(k)))}" for k in keys) + ".")
    if "ppo" in plots:
        lines += ["", f"![PPO]({plots['ppo']})"]
    lines += ["", "## Language models", "", "| family | best model | bits per byte | perplexity |", "|---|---|---:|---:|"]
    for family, r in results["lm"].items():
        lines.append(f"| {family} | {r['name']} | {r['bpb']:.3f} | {r['perplexity']:.2f} |")
    for key, title in (("pretraining", "pretraining"), ("bpb", "bits per byte")):
        if key in plots:
            lines += ["", f"![{title}]({plots[key]})"]
    lines += ["", "## Example answers", ""]
    for ex in ev.get("examples", [])[:5]:
        prompt = ex["prompt"] if isinstance(ex["prompt"], str) else ex["prompt"][-1]["content"]
        lines += [f"**{prompt}** ({ex['task']})", ""]
        for name, label in NAMES.items():
            if name in ex:
                lines.append(f"- {label} ({ex[name]['oracle']:.2f}): {ex[name]['answer'].strip()[:200]!r}")
        lines.append("")
    lines += ["## Time", "", "| stage | time |", "|---|---:|"]
    for stage, s in results["seconds"].items():
        lines.append(f"| {stage} | {duration(s)} |")
    lines.append(f"| all | {duration(sum(results['seconds'].values()))} |")
    return "\n".join(lines) + "\n"
