"""The evaluation stage's commands: `eval` (perplexity, few-shot tasks, the oracle's scores, reward
models) and `arena`."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import InputError
from .common import add_corpus_args, load_model_and_tokenizer, named_models, print_json

TITLE = "evaluate"


def add_arguments(sub, fmt) -> None:
    add_eval(sub, fmt)
    add_arena(sub, fmt)


def add_eval(sub, fmt) -> None:
    ep = sub.add_parser("eval", help="evaluate a model", description="Evaluation commands; each prints one JSON object with --json.")
    esub = ep.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_eval_ppl(esub, fmt)
    add_eval_fewshot(esub, fmt)
    add_eval_policy(esub, fmt)
    add_eval_rm(esub, fmt)


def cmd_eval_ppl(args) -> int:
    from ..eval.perplexity import perplexity

    model, tok = load_model_and_tokenizer(args.model)
    result = perplexity(model, tok, args.data, text_field=args.text_field, sample_by=args.sample_by, split=args.split, batch_size=args.batch_size, window=args.window, stride=args.stride, by=args.by)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"perplexity {result['perplexity']:.3f}  bits/byte {result['bpb']:.4f}  loss {result['loss']:.4f}  ({result['tokens']} tokens, {result['bytes']} bytes)")
        for group, r in result.get("by", {}).items():
            print(f"  {args.by} {group}: perplexity {r['perplexity']:.3f}  bits/byte {r['bpb']:.4f}  ({r['documents']} documents, {r['tokens']} tokens, {r['bytes']} bytes)")
    return 0


def add_eval_ppl(esub, fmt) -> None:
    p = esub.add_parser("ppl", help="perplexity and bits per byte on held-out text", formatter_class=fmt, description="Perplexity per token and bits per byte of a model on a corpus (documents joined with the end-of-text token, scored in windows of the model's context).")
    p.add_argument("--model", required=True, metavar="DIR", help="a model folder, checkpoint or run directory")
    add_corpus_args(p)
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="transformers: windows per forward pass")
    p.add_argument("--window", type=int, default=None, metavar="N", help="tokens per window (default: the length the model was trained on, else its context; recurrent models: 512, state carried)")
    p.add_argument("--stride", type=int, default=None, metavar="N", help="transformers: score N new tokens per window, the rest being context only (default: the window, non-overlapping)")
    p.add_argument("--by", default=None, metavar="FIELD", help="also score each group of documents on its own: a record field (language, meta.language) or file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval_ppl)


def cmd_eval_fewshot(args) -> int:
    from ..eval.fewshot import FewShotConfig, evaluate, load_task, summary_text
    from ..io import json_text
    from ..tracking import progress

    cfg = FewShotConfig(shots=args.shots, format=args.format, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed, show=args.show)
    cfg.validate()
    if args.limit is not None and args.limit < 1:
        raise InputError(f"must be >= 1, got {args.limit}", field="limit")
    model, tok = load_model_and_tokenizer(args.model)
    task = load_task(args.task, world=args.world, model_path=args.model, demos=args.demos)
    task.items = task.items[: args.limit]
    with progress(desc=task.name, unit="it") as bar:

        def tick(done, total):
            bar.total = total
            bar.update(done - bar.n)

        result = evaluate(model, tok, task, cfg, progress=tick)
    result = {"model": args.model, **result}
    print(json_text(result, indent=2, ensure_ascii=False) if args.json else summary_text(result))
    return 0


def add_eval_fewshot(esub, fmt) -> None:
    p = esub.add_parser(
        "fewshot",
        help="in-context evaluation: a task asked zero- or k-shot, accuracy beside the chance baseline",
        formatter_class=fmt,
        description="Ask a model a task's held-out prompts, zero-shot or with K demonstrations in the prompt, and score the answers. "
        "Generative tasks are answered greedily and judged by the task's checker (accuracy, mean score, share of answers that ask a "
        "question instead of answering, length, share finished); classification and multiple choice compare the log-probabilities of "
        "the choices (accuracy, chance, centered accuracy = (accuracy - chance) / (1 - chance)). World tasks take the held-out prompts "
        "of the world's eval.jsonl and demonstrations from its sft.jsonl; the world is found next to the model (its run directory's "
        "world/, or that of the model it was fine-tuned from) unless --world names it.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="a model folder, checkpoint or run directory")
    p.add_argument(
        "--task",
        required=True,
        metavar="TASK",
        help="a world task: fact, arithmetic, sort, reverse, count, grammar, sentiment, story (generative), sentiment-choice (label "
        "words Positive/Negative), fact-choice (the answer sentence with each candidate value), or all (every generative task); or a "
        'JSONL file of {"prompt", "answer"} records, with "choices" (a list holding the answer) for multiple choice, else scored by '
        "exact match after normalising case, spaces and end punctuation",
    )
    p.add_argument("--shots", type=int, default=0, metavar="K", help="demonstrations in each prompt; fewer when K do not fit the model's context")
    p.add_argument(
        "--format",
        choices=["auto", "raw", "qa", "chat"],
        default="auto",
        help="raw: the bare prompt and a newline; qa: 'Q: ...\\nA:' as the corpus's Q&A pages; chat: the chat template; auto: chat for "
        "a chat model, else raw zero-shot and qa few-shot",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="ask only the first N items")
    p.add_argument("--world", default=None, metavar="DIR", help="the world directory for world tasks; without it, the one next to the model (its run directory's world/, or its base model's)")
    p.add_argument("--demos", default=None, metavar="PATH", help='JSONL of demonstrations, {"prompt", "answer"} or {"messages"} records, an optional "task" '
                   "matched to the item's; without it, the world's sft.jsonl, or for a task file the file itself (never the item asked)")  # fmt: skip
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="longest generated answer, in tokens")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="prompts per generation batch, or prompt-choice pairs per scoring batch")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the demonstrations' draw")
    p.add_argument("--show", type=int, default=0, metavar="N", help="include the first N items' prompts and answers")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval_fewshot)


def _held_out_args(p: argparse.ArgumentParser, model_help: str) -> None:
    """The arguments of commands where models answer held-out prompts greedily (eval policy, arena)."""
    p.add_argument("--model", action="append", required=True, metavar="[NAME=]DIR", help=model_help)
    p.add_argument("--prompts", default="world", metavar="PATH", help="evaluation records (prompt, task, meta); 'world': the world's eval.jsonl")
    p.add_argument("--world", default=None, metavar="DIR", help="the world directory (default: found next to the first model)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="the first N prompts only")
    p.add_argument("--max-new-tokens", type=int, default=48, metavar="N", help="longest answer, in tokens (an answer cut here counts as unfinished)")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0: greedy answers; above 0: one sampled answer a prompt (seeded by --seed)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling's p (with --temperature)")
    p.add_argument("--shots", action="append", default=[], metavar="NAME=K", help="ask base model NAME few-shot, behind a prefix of K of the world's demonstrations (any task) as Q:/A: pairs (repeat per model)")


def _shots(specs: list[str], models: dict[str, str]) -> dict[str, int]:
    """--shots NAME=K arguments as {name: k}."""
    out = {}
    for spec in specs:
        name, _, k = spec.partition("=")
        if name not in models or not k.strip().isdigit():
            raise InputError(f"expected NAME=K with NAME one of the models ({', '.join(models)}) and K a whole number, got {spec!r}", field="shots")
        out[name] = int(k)
    return out


def cmd_eval_policy(args) -> int:
    from ..eval.policy import evaluate_models

    models = named_models(args.model)
    result = evaluate_models(models, args.prompts, baseline=args.baseline, limit=args.limit, max_new_tokens=args.max_new_tokens, world=args.world, shots=_shots(args.shots, models), temperature=args.temperature, top_p=args.top_p, seed=args.seed, device=args.device)
    if args.json:
        print_json(result)
    else:
        keys = ["oracle_score", "task_accuracy", "false_claim_rate", "rude_rate", "question_rate", "mean_length", "finished"]
        if args.baseline:
            keys.insert(0, "win_rate_vs_" + args.baseline)
        width = max(len(n) for n in models)
        print(f"{result['prompts']} held-out prompts, {'greedy answers' if args.temperature == 0 else f'answers sampled at temperature {args.temperature}'}, scored by the oracle")
        print(" " * width + "  " + "  ".join(k for k in keys))
        for name, r in result["models"].items():
            ci = r.get(f"win_rate_vs_{args.baseline}_ci") if args.baseline else None
            print(name.ljust(width) + "  " + "  ".join(f"{r[k]:.3f}".rjust(len(k)) for k in keys) + (f"  win rate 95% interval [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
        if "by_language" in result:
            print("task accuracy by language [95% interval]; share of answers in another language than the prompt's")
            for name, rows in result["by_language"].items():
                print(name.ljust(width) + "  " + "  ".join(f"{lang} {r['task_accuracy']:.3f} [{r['task_accuracy_ci'][0]:.2f}, {r['task_accuracy_ci'][1]:.2f}] ({r['wrong_language']:.2f})" for lang, r in rows.items()))
    return 0


def add_eval_policy(esub, fmt) -> None:
    p = esub.add_parser(
        "policy",
        help="models answer held-out prompts; the oracle scores them: win rate, accuracy, truthfulness, toxicity",
        formatter_class=fmt,
        description="Each model answers the same held-out prompts greedily (a chat model through its template); the world's oracle "
        "scores every answer: mean oracle score, task accuracy, false-claim rate, rude-word rate, rate of answering with a question, "
        "mean length in words, share of answers that ended; with --baseline, each model's win rate against it (ties half).",
    )
    _held_out_args(p, "a model to evaluate (repeat for several)")
    p.add_argument("--baseline", default=None, metavar="NAME", help="the model the others' win rates are against (a NAME of --model)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the few-shot prefix and sampled answers")
    p.add_argument("--device", default="cpu", metavar="DEV", help="torch device the models answer on (cpu, cuda)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval_policy)


def cmd_eval_rm(args) -> int:
    from pathlib import Path

    import yaml

    from ..data.comparisons import read_comparisons
    from ..eval.reward import evaluate_rm, held_out
    from ..io import json_text
    from ..world.build import find_world

    model, tok = load_model_and_tokenizer(args.model)
    if model.head_kind != "scalar" and getattr(model, "chat_template", None) is None:
        raise InputError("neither a reward model nor a judge: a language model without a chat template (train a reward model with `lmforge rm`, a judge with `lmforge label judge-data` and `lmforge sft`)", path=args.model, field="model")
    world = Path(args.world) if args.world else None
    saved = Path(args.model) / "config.yaml"
    data_cfg = ((yaml.safe_load(saved.read_text()) or {}).get("data") or {}) if saved.exists() else {}
    fraction = data_cfg.get("val_fraction", 0.1)
    if args.data == "world":  # the world's comparisons this reward model did not train on
        world = world or find_world(args.model)
        comparisons = held_out(read_comparisons(world / "comparisons.jsonl")[0], fraction)
    else:
        comparisons = read_comparisons(args.data)[0]
        # a file the model trained on, with no separate validation file: score only the prompts
        # training held out (the same split by prompt), not the pairs it learned
        trained_on = {Path(f).resolve() for f in data_cfg.get("train") or [] if f != "world"}
        if not args.all and not data_cfg.get("val") and Path(args.data).resolve() in trained_on:
            comparisons = held_out(comparisons, fraction)
            print(f"lmforge eval rm: {args.data}: the model trained on this file; scoring the {len(comparisons)} comparisons of its held-out prompts (--all for every one)", file=sys.stderr)
            if not comparisons:
                raise InputError("no comparison of this file was held out from training (use --all to score them anyway)", path=args.data)
        if world is None and any(c.task for c in comparisons):
            try:
                world = find_world(args.model)
            except InputError:
                world = None  # no ground truth: labeler accuracy and calibration only
    if args.limit:
        comparisons = comparisons[: args.limit]
    result = evaluate_rm(model, tok, comparisons, world_dir=world, seed=args.seed)
    if args.json:
        print(json_text(result))
    else:
        line = f"{result['comparisons']} comparisons, {result['pairs']} pairs: accuracy against labelers {result['acc_labelers']:.3f}, ECE {result['ece']:.3f}"
        if "acc_oracle" in result:
            line += f"; against the oracle {result['acc_oracle']:.3f}; labeler agreement {result['labeler_agreement']:.3f}; oracle against labels {result['oracle_vs_labels']:.3f}"
        print(line)
        for task, t in result.get("by_task", {}).items():
            print(f"  {task:<12} against the oracle {t['acc_oracle']:.3f}, the labels {t['labels_acc_oracle']:.3f} ({t['oracle_pairs']} pairs)")
    return 0


def add_eval_rm(esub, fmt) -> None:
    p = esub.add_parser(
        "rm",
        help="a reward model or a judge on held-out comparisons: accuracy against labelers and the oracle, calibration",
        formatter_class=fmt,
        description="Score held-out comparisons with a reward model: pairwise accuracy against the labelers' rankings, calibration "
        "(ECE), and on the built-in world accuracy against the oracle, a second labeler's agreement (the ceiling) and the oracle's "
        "own accuracy against the labels. A judge (a chat model) is asked each pair in both orders; its numbers mean the same.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="a reward model (lmforge rm) or a judge (a chat model)")
    p.add_argument("--data", default="world", metavar="PATH", help="rankings or preference pairs; 'world': the world's comparisons the model did not train on")
    p.add_argument("--world", default=None, metavar="DIR", help="the world directory (default: found next to the model)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="the first N comparisons only")
    p.add_argument("--all", action="store_true", help="a file the model trained on: score every comparison, not only its held-out prompts'")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the second labeler")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval_rm)


def cmd_arena(args) -> int:
    from ..eval.arena import run_arena

    models = named_models(args.model)
    result = run_arena(models, args.prompts, limit=args.limit, max_new_tokens=args.max_new_tokens, world=args.world, bootstrap=args.bootstrap, seed=args.seed, shots=_shots(args.shots, models), temperature=args.temperature, top_p=args.top_p)
    if args.json:
        print_json(result)
    else:
        print(f"{result['prompts']} prompts, {result['battles']} battles judged by {len(result['judges'])} simulated labelers; Bradley-Terry ratings, Elo scale, 95% bootstrap intervals")
        table = sorted(result["ratings"].items(), key=lambda kv: -kv[1]["rating"])
        width = max(len(n) for n, _ in table)
        for name, r in table:
            print(f"{name.ljust(width)}  {r['rating']:7.1f}  [{r['ci_low']:7.1f}, {r['ci_high']:7.1f}]  win rate {r['win_rate']:.3f} of {r['battles']}")
    return 0


def add_arena(sub, fmt) -> None:
    p = sub.add_parser(
        "arena",
        help="models answer held-out prompts, simulated labelers judge every pair: Elo ratings with 95%% intervals",
        formatter_class=fmt,
        description="A round robin on the same held-out prompts (greedy answers): every pair of models on every prompt is judged by "
        "one of the world's simulated labelers in turn; a Bradley-Terry fit gives Elo-scaled ratings (1000 + 400 log10 odds) with "
        "bootstrap 95%% intervals, as Chatbot Arena reports them.",
    )
    _held_out_args(p, "a model in the arena (repeat; at least two)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="B", help="bootstrap resamples for the intervals (0: none)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the labelers' noise and the bootstrap")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_arena)
