"""The whole pipeline: `run` (world to report, resumable) and `study` (studies that run it many times)."""

from __future__ import annotations

from .common import print_json

RUN_STAGES = ("world", "tokenizer", "pretrain", "pretrain_large", "baselines", "sft", "sft_rm", "samples", "labels", "rm", "ppo", "dpo", "eval", "report")  # lmforge.pipeline.STAGES (not imported: --help stays fast)

TITLE = "pipeline"


def add_arguments(sub, fmt) -> None:
    add_run(sub, fmt)
    add_study(sub, fmt)


def cmd_run(args) -> int:
    from ..pipeline import MODELS, load_run_config, run_pipeline

    cfg = load_run_config(args.recipe, args.preset, args.overrides, seed=args.seed)
    results = run_pipeline(cfg, args.out, start=args.from_stage, until=args.until)  # an unknown --from is refused before any work
    if not results:
        print(f"stopped after {args.until}; run again without --until to go on -> {args.out}")
        return 0
    if args.json:
        print_json(results)
        return 0
    if results.get("oracle") is False:  # a run on the user's own data
        print(f"{results['prompts']} held-out prompts; no oracle: win rates against SFT as each judge saw them")
        for judge, by_model in results["judges"].items():
            agree = results["agreement"].get(judge, {}).get("accuracy")
            cells = "  ".join(f"{m} {w['win_rate_vs_sft']:.3f}" for m, w in by_model.items())
            print(f"judged by the {judge.replace('_', ' ')}" + (f" (agrees with {agree:.3f} of the held-out preferences)" if agree is not None else "") + f": {cells}")
        print(f"-> {args.out}/report.md, {args.out}/results.json")
        return 0
    names = [n for n in MODELS if n in results["models"]] + [n for n in results["models"] if n not in MODELS]
    keys = ["win_rate_vs_sft", "oracle_score", "task_accuracy", "false_claim_rate", "rude_rate", "question_rate", "mean_length"]
    width = max(len(n) for n in names)
    t = cfg.eval.temperature
    print(f"{results['prompts']} held-out prompts, {'greedy answers' if t == 0 else f'one answer sampled at temperature {t:g}'}, scored by the oracle; win rates against the best SFT")
    print(" " * width + "  " + "  ".join(keys))
    for name in names:
        r = results["models"][name]
        print(name.ljust(width) + "  " + "  ".join(f"{r[k]:.3f}".rjust(len(k)) for k in keys))
    for name, r in results.get("greedy", {}).items():
        print(f"{name} greedy".ljust(width) + "  " + "  ".join(f"{r[k]:.3f}".rjust(len(k)) for k in keys))
    reached = sum(t["reached"] for t in results["targets"])
    print(f"targets reached: {reached} of {len(results['targets'])}")
    for t in results["targets"]:
        if not t["reached"]:
            print(f"  {'refused' if t.get('refused') else 'not reached'}: {t['target']}" + (f" ({t['refused']})" if t.get("refused") else ""))
    print(f"-> {args.out}/report.md, {args.out}/results.json")
    return 0


def add_run(sub, fmt) -> None:
    p = sub.add_parser(
        "run",
        help="the whole pipeline on the built-in world (or your recipe): world to report, resumable",
        formatter_class=fmt,
        description="world -> tokenizer -> base models (the policy's size and a larger, better one) -> n-gram and RNN baselines -> SFT -> samples "
        "-> labels -> reward model -> PPO -> DPO -> evaluation -> report (DIR/report.md, DIR/results.json). Each stage writes its folder "
        "of DIR; running again skips finished stages and resumes an interrupted one; --from redoes a stage and every later one.",
    )
    p.add_argument("recipe", nargs="?", default=None, help="a YAML recipe over the preset: any stage's section (pretrain:, sft:, rm:, ppo:, dpo:, eval: ...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override any key of the run's config, e.g. ppo.iterations=50")
    p.add_argument("--preset", choices=["tiny", "default"], default="default", help="tiny: every stage in about a minute (plumbing); default: the calibrated CPU run")
    p.add_argument("--out", default="runs/run", metavar="DIR", help="the run directory")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="the world's seed and every stage's (default: the recipe's, else 0)")
    p.add_argument("--from", dest="from_stage", default=None, metavar="STAGE", help="redo this stage and every later one: " + ", ".join(RUN_STAGES))
    p.add_argument("--until", default=None, metavar="STAGE", help="stop after this stage (a later run goes on from there)")
    p.add_argument("--json", action="store_true", help="print results.json's content")
    p.set_defaults(func=cmd_run)


def cmd_study_rlhf_gain(args) -> int:
    from ..pipeline import load_run_config
    from ..study import run_rlhf_gain

    cfg = load_run_config(args.recipe, args.preset, args.overrides, seed=args.seed)
    study = run_rlhf_gain(cfg, args.out, base=args.base)
    if args.json:
        print_json(study)
        return 0
    print(f"seed {study['seed']}, {study['prompts']} held-out prompts; win rate against each point's best SFT, sampled (greedy)")
    for p in study["points"]:
        w = p["win_rate_vs_sft"]
        cells = [f"{k} {w[k]['sampled']:.3f}" + (f" ({w[k]['greedy']:.3f})" if "greedy" in w[k] else "") for k in ("ppo", "dpo", "best_of_4", "best_of_16") if k in w]
        print(f"{p['name']:<12} demos {p['demonstrations']:>5} ranked {p['ranked']:>5}  " + "  ".join(cells))
    print(f"-> {args.out}/report.md, {args.out}/study.json, {args.out}/rlhf_gain.png")
    return 0


def cmd_study_feedback(args) -> int:
    from ..feedback import label, run_feedback
    from ..pipeline import load_run_config

    cfg = load_run_config(args.recipe, args.preset, args.overrides, seed=args.seed)
    study = run_feedback(cfg, args.out, base=args.base)
    if args.json:
        print_json(study)
        return 0
    print(f"seed {study['seed']}, {study['prompts']} held-out prompts; win rate against the best SFT by the oracle, sampled (greedy); minutes")
    for name, m in study["sampled"].items():
        if name == "sft":
            continue
        g = study["greedy"].get(name, {}).get("win_rate_vs_sft")
        minutes = study["methods"].get(name, {}).get("seconds", 0.0) / 60
        print(f"{label(name):<27} {m['win_rate_vs_sft']:.3f}" + (f" ({g:.3f})" if g is not None else "") + f"  {minutes:.1f} min")
    j = study.get("judge") or {}
    if j.get("judge"):
        print(f"judge agrees with the oracle {j['judge']['acc_oracle']:.3f} (reward model {j['rm']['acc_oracle']:.3f}, the labels {j['rm']['oracle_vs_labels']:.3f})")
    print(f"-> {args.out}/report.md, {args.out}/study.json")
    return 0


def add_study(sub, fmt) -> None:
    p = sub.add_parser("study", help="studies that run the pipeline many times: rlhf-gain, feedback", formatter_class=fmt)
    study_sub = p.add_subparsers(dest="action", required=True, metavar="STUDY")
    p = study_sub.add_parser(
        "rlhf-gain",
        help="when does RLHF beat the best SFT: demonstration quality and the labeling budget's split",
        formatter_class=fmt,
        description="From one base model, for each point (demonstrations by perfect, careful, default and careless writers; at equal labeler "
        "time, more or fewer demonstrations against ranked samples): the best SFT model by held-out loss, the labelers' rankings of its "
        "samples, a reward model, PPO, DPO and best-of-n, and their win rates against that point's best SFT with 95% intervals. "
        "Settings: the run's config (preset, recipe, key=value) and its study section: study.{reference,care,demo_share,cost_ratio}. "
        "The point with the base run's own settings reuses its models and evaluation when that run finished them. Writes DIR/study.json, DIR/rlhf_gain.png, DIR/report.md; running again resumes.",
    )
    _study_args(p, example="study.cost_ratio=2", tiny="seconds (plumbing); default: about 11 minutes a point on 2 CPU cores", out="runs/rlhf_gain",
                base="share the base model of this run directory (same seed); without it the study pretrains its own", func=cmd_study_rlhf_gain)
    p = study_sub.add_parser(
        "feedback",
        help="beyond one reward model: an AI judge, RLAIF-PPO, expert iteration and Nash-MD against the best SFT",
        formatter_class=fmt,
        description="On a finished run (--base: its SFT model, rankings, reward model, PPO and DPO; without it the run is made in DIR/run): a judge "
        "fine-tuned on the labelers' rankings and its agreement with the oracle on the SFT model's held-out answer pairs; RLAIF (the judge ranks "
        "fresh samples, a reward model learns them, PPO); expert iteration (rounds of sample, pick the best, SFT); Nash-MD against the judge. "
        "Each against the best SFT on the held-out prompts, with 95% intervals, the labeler population's vote, time and labeler cost. "
        "Settings: the run's config and its feedback section: feedback.{methods,judge_pairs,judge_epochs,judge_lr,rounds,picker,round_epochs,round_lr,preference}. "
        "Writes DIR/study.json, DIR/report.md; running again resumes.",
    )
    _study_args(p, example="feedback.rounds=2", tiny="a minute (plumbing); default: the default run's models", out="runs/feedback",
                base="a run directory finished through dpo with the same settings and seed", func=cmd_study_feedback)


def _study_args(p, *, example: str, tiny: str, out: str, base: str, func) -> None:
    """The arguments every study takes: the run's config (recipe, overrides, preset, seed), --out, --base, --json."""
    p.add_argument("recipe", nargs="?", default=None, help="a YAML recipe over the preset (as for lmforge run)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help=f"override any key of the run's config, e.g. {example}")
    p.add_argument("--preset", choices=["tiny", "default"], default="default", help=f"tiny: {tiny}")
    p.add_argument("--out", default=out, metavar="DIR", help="the study's directory")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="the world's seed and every stage's")
    p.add_argument("--base", default=None, metavar="RUN_DIR", help=base)
    p.add_argument("--json", action="store_true", help="print study.json")
    p.set_defaults(func=func)
