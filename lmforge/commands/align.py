"""The alignment stage's commands: `sft`, `sample` and `label` (answers and their rankings), `rm` (the
reward model), `ppo` and `rl` (RLHF) and `dpo`."""

from __future__ import annotations

import json
import sys

from ..errors import InputError
from .common import print_json, print_run_result, stage_args

TITLE = "align"


def add_arguments(sub, fmt) -> None:
    add_sft(sub, fmt)
    add_sample(sub, fmt)
    add_label(sub, fmt)
    add_rm(sub, fmt)
    add_rl(sub, fmt)
    add_dpo(sub, fmt)


def cmd_sft(args) -> int:
    from ..config import load_config
    from ..train.sft import SFTConfig, run_sft

    cfg = load_config(SFTConfig, args.recipe, args.overrides)
    result = run_sft(cfg, args.out)
    data = result.pop("data")
    mix = data.pop("groups", None)
    held = data.pop("held_out", None)
    for path, s in data.items():
        print(f"{path}: {s['examples']} examples, {s['answer_tokens']} answer tokens of {s['tokens']}; {s['truncated']} truncated, {s['skipped']} skipped", file=sys.stderr)
    if held is not None:
        print(f"held out for validation: {held['examples']} of the examples ({held['val_fraction']:g} of them, by a hash of each; data.val=PATH for a file of your own)", file=sys.stderr)
    if mix:
        print(f"mixed by {mix['group_by']} at temperature {mix['temperature']:g}: " + ", ".join(f"{g} {r['examples']} examples, {100 * r['share']:.1f}% -> {100 * r['sampled_share']:.1f}%" for g, r in mix["groups"].items()), file=sys.stderr)
    selection = result.pop("selection", None)
    if selection is not None and not args.json:
        for t in selection["trials"]:
            print(f"lr {t['lr']:g}: held-out loss " + " ".join(f"{c['loss']:.4f}" for c in t["curve"]) + f" (every {cfg.select.every:g} epochs); lowest {t['loss']:.4f} at epoch {t['epoch']:g}", file=sys.stderr)
        c = selection["chosen"]
        print(f"chosen by held-out loss: lr {c['lr']:g}, epoch {c['epoch']:g}" + (" (the last evaluated: more epochs might help)" if selection["stopped_at_the_end"] else ""), file=sys.stderr)
    return print_run_result(result, args)


def add_sft(sub, fmt) -> None:
    p = sub.add_parser(
        "sft",
        help="supervised fine-tuning: teach a base model to answer from demonstrations (InstructGPT step 1)",
        formatter_class=fmt,
        description="Fine-tune a base model on demonstrations rendered with the chat template, the loss on the answers only (by default). "
        "Data: TRL's 'messages' or 'prompt'/'completion' records; 'world' means the built-in world's sft.jsonl. Settings come from the "
        "recipe (see recipes/sft.yaml), then KEY=VALUE overrides. Keys: init (the base model, required), data.{train,val,temperature,system,"
        "seq_len,long,pack,world_seed}, prompt_loss_weight, epochs, train.{steps,batch_size,grad_accum,optim.*,schedule.*,eval_every,"
        "log_every,save_every,keep_last,seed,nan_policy,compile,device,precision,parallel,tensorboard,wandb}, select.{val_loss,lr,every} "
        "(select.val_loss=true: train up to `epochs` at each learning rate in select.lr and keep the weights of the lowest held-out loss). "
        "Running again on the same --out resumes.",
    )
    stage_args(p, example="init=runs/small epochs=5")
    p.set_defaults(func=cmd_sft)


def _tick(bar, done: int, total: int) -> None:
    bar.total = total
    bar.update(done - bar.n)


def cmd_sample(args) -> int:
    from ..sample import SampleConfig, run_sample
    from ..tracking import progress

    cfg = SampleConfig(
        k=args.k, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
        batch_size=args.batch_size, seed=args.seed, limit=args.limit, chat=args.chat, long=args.long, device=args.device,
    )  # fmt: skip
    with progress(desc="sampling", unit="prompt") as bar:
        summary = run_sample(args.model, args.prompts, args.out, cfg, progress=lambda done, total: _tick(bar, done, total))
    if args.json:
        print_json(summary)
    else:
        s = summary
        skipped = f", {s['skipped']} skipped (too long)" if s["skipped"] else ""
        print(f"{s['prompts']} prompts x {s['k']} = {s['samples']} answers{skipped}; finished {100 * s['finished_rate']:.1f}%, "
              f"{s['mean_tokens']:.1f} tokens on average, {s['distinct_per_prompt']:.2f} distinct of {s['k']} per prompt; {s['seconds']:.1f} s")  # fmt: skip
        print(f"-> {args.out}")
    return 0


def add_sample(sub, fmt) -> None:
    p = sub.add_parser(
        "sample",
        help="sample K answers per prompt, for labelers to rank (InstructGPT step 2)",
        formatter_class=fmt,
        description="Ask a model for K answers to every prompt (batched, seeded) and write one JSON line per prompt: "
        '{"prompt", "completions", "finished", "model", "task"?, "meta"?}, ready for `lmforge label`. Prompts: evaluation records '
        '{"prompt", "task", "meta"} (the world\'s ppo_prompts.jsonl, eval.jsonl), {"prompt"} records (text or messages), or '
        '{"messages"} ending on a user turn. A chat model answers through the chat template; a base model continues the text.',
    )
    p.add_argument("--model", required=True, metavar="DIR", help="a model folder, checkpoint or run directory (usually the SFT model)")
    p.add_argument("--prompts", required=True, metavar="PATH", help="JSONL/Parquet of prompt records, or a folder of them")
    p.add_argument("--k", type=int, default=4, metavar="K", help="answers per prompt (InstructGPT ranked 4 to 9)")
    p.add_argument("--out", required=True, metavar="FILE", help="the samples file (JSONL), written atomically")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T", help="sampling temperature (0: greedy, every answer alike)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling: the smallest set of tokens with probability >= P")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="sample among the K likeliest tokens only")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="longest answer, in tokens; an answer cut here is marked unfinished")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the first N prompts only")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="sequences per generation batch (the K answers of N // K prompts)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed: the same seed and batch size give the same samples")
    p.add_argument("--chat", choices=["auto", "on", "off"], default="auto", help="ask through the chat template (auto: for a chat model) or continue the prompt as text")
    p.add_argument("--long", choices=["error", "skip"], default="error", help="a prompt that leaves no room for --max-new-tokens in the context: stop with an error, or skip it (counted)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="torch device (cpu, cuda)")
    p.add_argument("--json", action="store_true", help="print a summary as one JSON object (prompts, samples, finished rate, mean length, distinct answers, seconds)")
    p.set_defaults(func=cmd_sample)


def _need(args, *names: str) -> None:
    missing = [n for n in names if getattr(args, n) in (None, [])]
    if missing:
        action = f"label {args.action}" if args.action else "label"
        raise InputError(f"lmforge {action} needs " + ", ".join("--" + n for n in missing))


def cmd_label(args) -> int:
    from ..label import run_label
    from ..tracking import progress

    if args.action == "serve":
        return _label_serve(args)
    if args.action == "judge-data":
        return _judge_data(args)
    if args.action == "best-data":
        return _best_data(args)
    if args.action == "export":
        from ..serve.labeling import export

        _need(args, "db", "out")
        summary = export(args.db, args.out)
        if args.json:
            print_json(summary)
        else:
            by = ", ".join(f"{k} {v}" for k, v in summary["annotators"].items()) or "nobody yet"
            print(f"{summary['rankings']} rankings of {summary['samples']} samples ({by})\n-> {args.out}")
        return 0
    _need(args, "samples", "labeler", "out")
    from ..label import read_constitution

    constitution = read_constitution(args.constitution) if args.constitution else ""
    with progress(desc="labeling", unit="sample") as bar:
        summary = run_label(
            args.samples, args.labeler, args.out, world=args.world, each=args.each, seed=args.seed, limit=args.limit,
            batch_size=args.batch_size, device=args.device, constitution=constitution, progress=lambda done, total: _tick(bar, done, total),
        )  # fmt: skip
    if args.json:
        print_json(summary)
    else:
        s = summary
        by = ", ".join(f"{k} {v}" for k, v in s["labelers"].items())
        print(f"{s['rankings']} rankings of {s['samples']} samples ({by}); {s['skipped']} skipped; {s['seconds']:.1f} s")
        for name, reason in s.get("skip_reasons", {}).items():
            print(f"  skipped by {name} ({s['skipped_by'][name]}): {reason}")
        print(f"-> {args.out}")
    return 0


def _read_rankings(args):
    """judge-data's and best-data's input: --rankings (the first --limit), and read_comparisons' stats."""
    from ..data.comparisons import read_comparisons

    _need(args, "rankings", "out")
    comparisons, stats = read_comparisons(args.rankings)
    return (comparisons[: args.limit] if args.limit else comparisons), stats


def _write_records(args, records: list[dict], summary: dict, message: str) -> int:
    """Write SFT records to --out (atomically), then the summary (--json) or the message."""
    from ..io import atomic_write_text

    atomic_write_text(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    if args.json:
        print_json({**summary, "out": str(args.out)})
    else:
        print(message)
    return 0


def _judge_data(args) -> int:
    from ..label import judge_demonstrations

    comparisons, stats = _read_rankings(args)
    if not comparisons:
        raise InputError("no comparisons with a pair of different answers to learn from", path=args.rankings)
    records = judge_demonstrations(comparisons, pairs_per_comparison=args.pairs, seed=args.seed)
    summary = {"comparisons": len(comparisons), "conversations": len(records), "skipped_pairs": stats["skipped_pairs"]}
    return _write_records(args, records, summary,
                          f"{len(records)} judge conversations (each pair in both orders) from {len(comparisons)} comparisons -> {args.out}\n"
                          f"train a judge: lmforge sft init=SFT_MODEL data.train=[{args.out}] --out JUDGE_DIR; use it: --labeler judge:JUDGE_DIR")  # fmt: skip


def _best_data(args) -> int:
    from ..label import best_demonstrations

    comparisons, _ = _read_rankings(args)
    records, counts = best_demonstrations(comparisons)
    if not records:
        raise InputError(f"no ranking has a finished answer above all others ({counts['unfinished']} unfinished, {counts['empty']} empty, {counts['no_best']} without one best)", path=args.rankings)
    return _write_records(args, records, {"comparisons": len(comparisons), **counts},
                          f"{len(records)} demonstrations (the best of each ranking; {counts['unfinished']} unfinished, {counts['empty']} empty and {counts['no_best']} without one best left out) "
                          f"-> {args.out}\nfine-tune on them: lmforge sft init=POLICY data.train=[{args.out}] --out NEXT_POLICY (expert iteration: sample, rank, repeat)")  # fmt: skip


def _label_serve(args) -> int:
    _need(args, "db")
    try:
        import uvicorn

        from ..serve.labeling import create_label_app, open_store
    except ImportError as e:
        raise InputError(f"the labeling page needs the [serve] extra: pip install 'lmforge[serve]' ({e})") from None
    store = open_store(args.db, create=True)
    try:
        added = store.add_samples(args.samples, args.limit) if args.samples else 0
        counts = store.counts()
        if not counts["samples"]:
            raise InputError("the database holds no samples yet: give --samples FILE", path=args.db)
        print(f"{counts['samples']} samples ({added} new), {counts['rankings']} rankings so far; labeling page at http://{args.host}:{args.port}/", file=sys.stderr)
        uvicorn.run(create_label_app(store), host=args.host, port=args.port, log_level="warning")
    finally:
        store.close()
    return 0


def add_label(sub, fmt) -> None:
    p = sub.add_parser(
        "label",
        help="rank sampled answers with a labeler: the world's simulated labelers, a model judge, or a person's rankings",
        formatter_class=fmt,
        description="Rank the K answers of every sample (what `lmforge sample` writes) and write ranking records "
        '{"prompt", "completions", "ranking" (indices best first), "labeler", "finished", "task"?, "meta"?}, the form the reward model '
        "reads. Labelers: 'world' (the world's simulated labelers, one per sample in turn), 'world:NAME' (one of them), "
        "'judge:MODEL_DIR' (a language model compares each pair of answers, in both orders, by the log-probability of ' A' vs ' B'; "
        "answers ranked by wins), 'human:RANKINGS.jsonl' (rankings a person made, matched by prompt and completions; samples with "
        "none are skipped and counted). Several --labeler options share the samples in turn (or, with --each, all rank every one).",
    )
    p.add_argument("action", nargs="?", choices=["serve", "export", "judge-data", "best-data"], default=None,
                   help="serve: a web page where people rank the samples (stored in --db, SQLite); export: write --db's rankings to --out; "
                   "judge-data: turn --rankings into SFT conversations that teach a model to judge (each pair in both orders); "
                   "best-data: the best answer of each of --rankings as an SFT demonstration (expert iteration)")  # fmt: skip
    p.add_argument("--rankings", default=None, metavar="FILE", help="judge-data, best-data: rankings or preference pairs to learn from")
    p.add_argument("--pairs", type=int, default=0, metavar="N", help="judge-data: at most N pairs of each ranking, drawn at random (0: all)")
    p.add_argument("--samples", default=None, metavar="FILE", help="a samples file from `lmforge sample`")
    p.add_argument("--labeler", action="append", metavar="SPEC", help="world | world:NAME | judge:MODEL_DIR | human:RANKINGS.jsonl (repeatable)")
    p.add_argument("--out", default=None, metavar="FILE", help="the rankings file (JSONL), written atomically")
    p.add_argument("--db", default=None, metavar="FILE", help="serve, export: the labels database (SQLite; created by serve, resumed if it exists)")
    p.add_argument("--host", default="127.0.0.1", metavar="HOST", help="serve: address to bind (0.0.0.0 exposes the page to the network)")
    p.add_argument("--port", type=int, default=8001, metavar="PORT", help="serve: port to listen on")
    p.add_argument("--world", default=None, metavar="DIR", help="the world directory for world labelers (default: the world of the samples' model)")
    p.add_argument("--each", action="store_true", help="every labeler ranks every sample (one record each) instead of one labeler per sample")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="the first N samples only")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the simulated labelers' noise")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="judge: sequences per scoring batch")
    p.add_argument("--constitution", default=None, metavar="FILE", help="judge: principles (plain text) the judge is shown before each question (Constitutional AI)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="judge: torch device (cpu, cuda)")
    p.add_argument("--json", action="store_true", help="print a summary as one JSON object (rankings, skipped, per-labeler counts)")
    p.set_defaults(func=cmd_label)


def cmd_rm(args) -> int:
    from ..config import load_config
    from ..train.reward import RMConfig, run_rm

    cfg = load_config(RMConfig, args.recipe, args.overrides)
    result = run_rm(cfg, args.out)
    s = result.pop("data")
    print(
        f"{s['train_comparisons']} comparisons to train on, {s['val_comparisons']} held out ({s['pairs']} pairs read); skipped: "
        f"{s['skipped_pairs']} pairs of identical answers, {s['skipped_comparisons']} comparisons with no pair left, {s['skipped_too_long']} too long",
        file=sys.stderr,
    )
    return print_run_result(result, args)


def add_rm(sub, fmt) -> None:
    p = sub.add_parser(
        "rm",
        help="train a reward model on ranked comparisons (InstructGPT step 2)",
        formatter_class=fmt,
        description="Train a reward model: the init model (the SFT model) with a scalar head, the Bradley-Terry loss of Ouyang et al. "
        "eq. 1 over all C(K,2) pairs of each ranking, the pairs of one prompt in one batch element; afterwards its bias is set so the "
        "reference answers score 0 on average. Data: ranking records (prompt, completions, ranking best first) or TRL preference pairs; "
        "'world' means the world's comparisons.jsonl. Keys: init, data.{train,val,val_fraction,limit,seq_len,normalize,world_seed}, "
        "margin, center, epochs, lm_coef (GRM hidden-state regularisation), prior (true: add learned weights on the frozen init LM's "
        "log-likelihood of the answer), train.{steps,batch_size (comparisons),optim.*,schedule.*,...}. Running again on the same --out resumes.",
    )
    stage_args(p, example="init=runs/sft")
    p.set_defaults(func=cmd_rm)


def cmd_rl(args) -> int:
    from ..config import load_config
    from ..eval.monitor import oracle_monitor
    from ..train.ppo import RLConfig, run_ppo

    overrides = list(args.overrides)
    algorithm = getattr(args, "algorithm", None) or ("ppo" if args.command == "ppo" else None)
    if algorithm:
        overrides.append(f"algorithm={algorithm}")
    cfg = load_config(RLConfig, args.recipe, overrides)
    summary = run_ppo(cfg, args.out, monitor_factory=oracle_monitor)
    hacking = summary["reward_hacking"]
    if hacking.get("detected"):
        print(
            f"warning: reward hacking: since iteration {hacking['oracle_peak_iteration']} the reward model's score rose by "
            f"{hacking['rm_rise_since_peak']:.3f} while the oracle's fell by {hacking['oracle_drop_since_peak']:.3f}; "
            f"the policy at that iteration was better (see {args.out}/rl_history.json)",
            file=sys.stderr,
        )
    result = {**summary["last"], "reward_hacking": hacking}
    return print_run_result(result, args)


def add_rl(sub, fmt) -> None:
    rl_keys = (
        "Keys: policy (the SFT model), reward (the reward model; nash-md: the preference model), algorithm (ppo|reinforce|rloo|grpo|nash-md), "
        "value (model|head), nash.mixture, iterations, "
        "save_every, seed, rollout.{prompts,limit,batch_size,group_size,temperature,max_new_tokens,unfinished_reward}, "
        "kl.{beta,adaptive,target,horizon}, ppo.{epochs,minibatches,clip,value_clip,vf_coef,gamma,lam,whiten_advantages,entropy_coef,"
        "normalize_rewards,clip_rewards}, ptx.{coef,shards,batch_size,seq_len}, eval.{prompts,limit,every}, train.{optim.*,device,precision}. "
        "On the built-in world the oracle watches the answers (logged as monitor/*, never learned from) and reward hacking is reported. "
        "Writes the policy (a chat model), value/, rl_history.json, rl_summary.json and rl_curves.png."
    )
    p = sub.add_parser(
        "ppo",
        help="RLHF: PPO against the reward model with a KL penalty to the SFT model (InstructGPT step 3)",
        formatter_class=fmt,
        description="Optimise the SFT policy against the reward model with PPO (clipped policy and value losses, GAE), the reward "
        "r(x, y) - beta log(pi/pi_SFT) (Ouyang et al. eq. 2), optionally PPO-ptx. Settings: the recipe (see recipes/ppo.yaml), then "
        "KEY=VALUE overrides. " + rl_keys,
    )
    stage_args(p, example="policy=runs/sft reward=runs/rm iterations=50")
    p.set_defaults(func=cmd_rl)
    p = sub.add_parser(
        "rl",
        help="policy-gradient RLHF with the same rollouts: --algorithm ppo|reinforce|rloo|grpo|nash-md",
        formatter_class=fmt,
        description="The rollouts of `lmforge ppo` with another update: REINFORCE with a baseline, RLOO (leave-one-out baselines), "
        "GRPO (group-relative advantages, the KL as a loss term) or Nash-MD (Munos et al. 2023: no reward; each answer plays one from "
        "the geometric mixture of the policy and the SFT model, judged by a preference model: reward=JUDGE, a chat model trained on "
        "`lmforge label judge-data`, or a reward model as Bradley-Terry's preference). " + rl_keys,
    )
    stage_args(p, example="policy=runs/sft reward=runs/rm rollout.group_size=4")
    p.add_argument("--algorithm", choices=["ppo", "reinforce", "rloo", "grpo", "nash-md"], default=None, help="the update (default: the recipe's, else ppo)")
    p.set_defaults(func=cmd_rl)


def cmd_dpo(args) -> int:
    import warnings

    from ..config import load_config
    from ..eval.monitor import oracle_monitor
    from ..train.dpo import DPOConfig, run_dpo

    overrides = list(args.overrides)
    if args.loss:
        overrides.append(f"loss={args.loss}")
    cfg = load_config(DPOConfig, args.recipe, overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported below, once
        summary = run_dpo(cfg, args.out, monitor_factory=oracle_monitor)
    s = summary["data"]
    what = f"{s['desirable']} desirable and {s['undesirable']} undesirable answers" if cfg.loss == "kto" else f"{s['train_items']} comparisons ({s['train_pairs']} pairs)"
    print(f"trained on {what}, {s['val_items']} held out; {s['skipped_too_long']} skipped as too long; reference log-probs {s.get('reference', 'online')}", file=sys.stderr)
    if cfg.eval.prompts == "world" and s.get("world_prompts") is False:
        print("the world's held-out prompts were not answered: the training data is not the world's (eval.prompts=PATH for prompts of your own)", file=sys.stderr)
    displaced = summary.get("likelihood_displacement", {})
    if displaced.get("detected"):
        print("warning: " + displaced["message"], file=sys.stderr)
    return print_run_result(summary["last"], args)


def add_dpo(sub, fmt) -> None:
    p = sub.add_parser(
        "dpo",
        help="direct preference optimisation on comparisons: DPO, IPO, conservative DPO, hinge, KTO",
        formatter_class=fmt,
        description="Fine-tune the SFT model on comparisons with no reward model: the log-ratio to the reference (the SFT model) is "
        "an implicit reward (Rafailov et al. 2023). Losses: dpo, cdpo (label smoothing), ipo (per-token averaged log-ratios), hinge "
        "(SLiC), kto (unpaired desirable/undesirable answers). The reference's log-probs are computed once and stored "
        "(reference=precompute) or each step (reference=online). Data: rankings (all pairs, or data.pairs=best_worst), TRL preference "
        "pairs, TRL unpaired records for kto; 'world' means the world's comparisons.jsonl. Keys: init, ref, loss, beta, "
        "label_smoothing, nll_coef (RPO), desirable_weight, undesirable_weight, reference, epochs, data.{train,val,val_fraction,pairs,limit,seq_len,long}, "
        "eval.{prompts,limit,max_new_tokens}, train.{steps,batch_size (comparisons),eval_every,optim.*,schedule.*,...}. "
        "Writes the policy, dpo_summary.json, reference_logps.npz.",
    )
    stage_args(p, example="init=runs/sft beta=0.1")
    p.add_argument("--loss", choices=["dpo", "cdpo", "ipo", "hinge", "kto"], default=None, help="the loss (default: the recipe's, else dpo)")
    p.set_defaults(func=cmd_dpo)
