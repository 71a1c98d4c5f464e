"""`lmforge`: one command, one subcommand per stage of the pipeline.

Each subcommand parses its arguments, builds the stage's config and calls the module that
does the work; the work itself lives in those modules, never here. Heavy imports (torch)
happen inside the handlers so that `--help` answers at once.

Errors in what the user gave (an `InputError`) are printed as one line naming the file,
line and field, and the command exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from . import __version__
from .errors import InputError

DATA_HELP = "a .txt/.jsonl/.parquet file or a folder of them, a saved Hugging Face dataset, or hf:NAME[:CONFIG]"


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _add_corpus_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, metavar="PATH", help=f"the corpus: {DATA_HELP}")
    p.add_argument("--text-field", default="text", metavar="NAME", help="field holding the text in JSONL/Parquet/datasets records (default: text)")
    p.add_argument(
        "--sample-by",
        choices=["document", "line", "paragraph"],
        default="document",
        help="how .txt files split into documents: a whole file, each line, or blank-line-separated paragraphs (default: document)",
    )
    p.add_argument("--split", default=None, metavar="NAME", help="split of a Hugging Face dataset (default: train)")


def _pieces(args):
    from .data.readers import iter_text_pieces

    return iter_text_pieces(args.data, text_field=args.text_field, sample_by=args.sample_by, split=args.split)


# --------------------------------------------------------------------------- tokenizer


def cmd_tokenizer_train(args) -> int:
    from .io import atomic_output_dir
    from .tokenizer import TokenizerConfig, token_stats, train_tokenizer
    from .tracking import progress_enabled

    cfg = TokenizerConfig(kind=args.kind, vocab_size=args.vocab_size, min_frequency=args.min_frequency, max_train_bytes=args.max_train_bytes)
    cfg.validate()
    with atomic_output_dir(args.out, args.overwrite) as tmp:
        tok = train_tokenizer((t for t, _ in _pieces(args)), cfg, show_progress=progress_enabled())
        tok.save(tmp)
    print(f"trained a {tok.kind} tokenizer with {tok.vocab_size} tokens -> {args.out}/tokenizer.json")
    if args.stats:
        from .tokenizer import Tokenizer

        _print_json(token_stats(Tokenizer.load(args.out), (t for t, _ in _pieces(args))))
    return 0


def cmd_tokenizer_encode(args) -> int:
    from .data.readers import iter_documents
    from .tokenizer import Tokenizer

    tok = Tokenizer.load(args.tokenizer)
    if (args.text is None) == (args.data is None):
        raise InputError("give exactly one of --text or --data")
    texts = [args.text] if args.text is not None else iter_documents(args.data, text_field=args.text_field, sample_by=args.sample_by, split=args.split)
    for text in texts:
        ids = tok.encode(text)
        if args.json:
            print(json.dumps({"ids": ids, "tokens": [tok.id_to_token(i) for i in ids]}, ensure_ascii=False))
        elif args.tokens:
            print(" ".join(tok.id_to_token(i) for i in ids))
        else:
            print(" ".join(map(str, ids)))
    return 0


def cmd_tokenizer_stats(args) -> int:
    from .tokenizer import Tokenizer, token_stats

    tok = Tokenizer.load(args.tokenizer)
    stats = token_stats(tok, (t for t, _ in _pieces(args)))
    if args.json:
        _print_json(stats)
    else:
        print(f"kind {stats['kind']}, vocabulary {stats['vocab_size']}")
        print(f"{stats['documents']} texts, {stats['bytes']} bytes, {stats['tokens']} tokens")
        print(f"bytes per token {stats['bytes_per_token']:.3f}")
        print(f"vocabulary used {stats['vocab_used']} ({100 * stats['vocab_use']:.1f}%), unknown {100 * stats['unk_rate']:.2f}% of tokens")
        print("most frequent: " + ", ".join(f"{t['token']!r} {t['count']}" for t in stats["top_tokens"]))
    return 0


# --------------------------------------------------------------------------- data


def cmd_data_validate(args) -> int:
    from pathlib import Path

    from .data.schemas import validate
    from .data.shards import TokenShards, read_index

    if (Path(args.data) / "index.json").exists():  # a shard folder: check it against its index
        index = read_index(args.data)
        report = {}
        for split in index["splits"]:
            shards = TokenShards(args.data, split)
            shards.verify()
            report[split] = {"tokens": shards.tokens, "shards": len(shards.arrays)}
        result = {"kind": "shards", "path": args.data, "splits": report, "ok": True}
    else:
        schema, n = validate(args.data, args.schema, split=args.split)
        result = {"kind": "records", "path": args.data, "schema": schema, "records": n, "ok": True}
    if args.json:
        _print_json(result)
    elif result["kind"] == "shards":
        parts = ", ".join(f"{k}: {v['tokens']} tokens" for k, v in result["splits"].items())
        print(f"{args.data}: shards ok ({parts})")
    else:
        print(f"{args.data}: {result['records']} records, schema {result['schema']}, all valid")
    return 0


def cmd_data_shards(args) -> int:
    from .data.readers import text_bytes
    from .data.shards import ShardConfig, write_shards
    from .tokenizer import Tokenizer
    from .tracking import progress

    tok = Tokenizer.load(args.tokenizer)
    cfg = ShardConfig(shard_tokens=args.shard_tokens, val_fraction=args.val_fraction, num_proc=args.num_proc, batch_docs=args.batch_docs)
    cfg.validate()
    with progress(total=text_bytes(args.data), desc="encoding", unit="B") as bar:
        index = write_shards(_pieces(args), tok, args.out, cfg, overwrite=args.overwrite, progress=bar.update)
    for name, s in index["splits"].items():
        print(f"{name}: {s['documents']} documents, {s['tokens']} tokens in {len(s['shards'])} shard(s)")
    print(f"-> {args.out}")
    return 0


def cmd_prepare(args) -> int:
    from .config import load_config
    from .data.prepare import PrepareConfig, run_prepare

    cfg = load_config(PrepareConfig, args.recipe, args.overrides)
    summary = run_prepare(cfg, args.out, overwrite=args.overwrite)
    if args.json:
        _print_json(summary)
    else:
        t = summary["tokenizer"]
        print(f"tokenizer: {t['kind']}, {t['vocab_size']} tokens")
        for name, s in summary["splits"].items():
            print(f"{name}: {s['documents']} documents, {s['tokens']} tokens, {s['bytes_per_token']:.2f} bytes/token")
        print(f"-> {args.out}")
    return 0


# --------------------------------------------------------------------------- models


def cmd_pretrain(args) -> int:
    from .config import load_config
    from .train.pretrain import PretrainConfig, run_pretrain

    cfg = load_config(PretrainConfig, args.recipe, args.overrides)
    return _print_run_result(run_pretrain(cfg, args.out), args)


def _print_run_result(result: dict, args) -> int:
    """A training stage's final metrics: one JSON object, or key=value pairs and the run directory."""
    if args.json:
        _print_json(result)
    else:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
        print(" ".join(f"{k}={v}" for k, v in shown.items()))
        print(f"-> {args.out}")
    return 0


def cmd_sft(args) -> int:
    from .config import load_config
    from .train.sft import SFTConfig, run_sft

    cfg = load_config(SFTConfig, args.recipe, args.overrides)
    result = run_sft(cfg, args.out)
    for path, s in result.pop("data").items():
        print(f"{path}: {s['examples']} examples, {s['answer_tokens']} answer tokens of {s['tokens']}; {s['truncated']} truncated, {s['skipped']} skipped", file=sys.stderr)
    selection = result.pop("selection", None)
    if selection is not None and not args.json:
        for t in selection["trials"]:
            print(f"lr {t['lr']:g}: held-out loss " + " ".join(f"{c['loss']:.4f}" for c in t["curve"]) + f" (every {cfg.select.every:g} epochs); lowest {t['loss']:.4f} at epoch {t['epoch']:g}", file=sys.stderr)
        c = selection["chosen"]
        print(f"chosen by held-out loss: lr {c['lr']:g}, epoch {c['epoch']:g}" + (" (the last evaluated: more epochs might help)" if selection["stopped_at_the_end"] else ""), file=sys.stderr)
    return _print_run_result(result, args)


def cmd_rm(args) -> int:
    from .config import load_config
    from .train.reward import RMConfig, run_rm

    cfg = load_config(RMConfig, args.recipe, args.overrides)
    result = run_rm(cfg, args.out)
    s = result.pop("data")
    print(
        f"{s['train_comparisons']} comparisons to train on, {s['val_comparisons']} held out ({s['pairs']} pairs read); skipped: "
        f"{s['skipped_pairs']} pairs of identical answers, {s['skipped_comparisons']} comparisons with no pair left, {s['skipped_too_long']} too long",
        file=sys.stderr,
    )
    return _print_run_result(result, args)


def cmd_rl(args) -> int:
    from .config import load_config
    from .eval.monitor import oracle_monitor
    from .train.ppo import RLConfig, run_ppo

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
    return _print_run_result(result, args)


def cmd_dpo(args) -> int:
    import warnings

    from .config import load_config
    from .eval.monitor import oracle_monitor
    from .train.dpo import DPOConfig, run_dpo

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
    displaced = summary.get("likelihood_displacement", {})
    if displaced.get("detected"):
        print("warning: " + displaced["message"], file=sys.stderr)
    return _print_run_result(summary["last"], args)


def cmd_run(args) -> int:
    from .pipeline import MODELS, load_run_config, run_pipeline

    cfg = load_run_config(args.recipe, args.preset, args.overrides, seed=args.seed)
    results = run_pipeline(cfg, args.out, start=args.from_stage, until=args.until)  # an unknown --from is refused before any work
    if not results:
        print(f"stopped after {args.until}; run again without --until to go on -> {args.out}")
        return 0
    if args.json:
        _print_json(results)
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


def cmd_study_rlhf_gain(args) -> int:
    from .pipeline import load_run_config
    from .study import run_rlhf_gain

    cfg = load_run_config(args.recipe, args.preset, args.overrides, seed=args.seed)
    study = run_rlhf_gain(cfg, args.out, base=args.base)
    if args.json:
        _print_json(study)
        return 0
    print(f"seed {study['seed']}, {study['prompts']} held-out prompts; win rate against each point's best SFT, sampled (greedy)")
    for p in study["points"]:
        w = p["win_rate_vs_sft"]
        cells = [f"{k} {w[k]['sampled']:.3f}" + (f" ({w[k]['greedy']:.3f})" if "greedy" in w[k] else "") for k in ("ppo", "dpo", "best_of_4", "best_of_16") if k in w]
        print(f"{p['name']:<12} demos {p['demonstrations']:>5} ranked {p['ranked']:>5}  " + "  ".join(cells))
    print(f"-> {args.out}/report.md, {args.out}/study.json, {args.out}/rlhf_gain.png")
    return 0


def _named_models(specs: list[str]) -> dict[str, str]:
    """--model [NAME=]DIR arguments as {name: dir}; a bare DIR is named by its last part."""
    models = {}
    for spec in specs:
        name, _, path = spec.partition("=") if "=" in spec else (spec.rstrip("/").split("/")[-1], "", spec)
        if name in models:
            raise InputError(f"two models are called {name!r}; name them NAME=PATH", field="model")
        models[name] = path
    return models


def cmd_arena(args) -> int:
    from .eval.arena import run_arena

    models = _named_models(args.model)
    result = run_arena(models, args.prompts, limit=args.limit, max_new_tokens=args.max_new_tokens, world=args.world, bootstrap=args.bootstrap, seed=args.seed, shots=_shots(args.shots, models), temperature=args.temperature, top_p=args.top_p)
    if args.json:
        _print_json(result)
    else:
        print(f"{result['prompts']} prompts, {result['battles']} battles judged by {len(result['judges'])} simulated labelers; Bradley-Terry ratings, Elo scale, 95% bootstrap intervals")
        table = sorted(result["ratings"].items(), key=lambda kv: -kv[1]["rating"])
        width = max(len(n) for n, _ in table)
        for name, r in table:
            print(f"{name.ljust(width)}  {r['rating']:7.1f}  [{r['ci_low']:7.1f}, {r['ci_high']:7.1f}]  win rate {r['win_rate']:.3f} of {r['battles']}")
    return 0


def cmd_eval_policy(args) -> int:
    from .eval.policy import evaluate_models

    models = _named_models(args.model)
    result = evaluate_models(models, args.prompts, baseline=args.baseline, limit=args.limit, max_new_tokens=args.max_new_tokens, world=args.world, shots=_shots(args.shots, models), temperature=args.temperature, top_p=args.top_p, seed=args.seed)
    if args.json:
        _print_json(result)
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
    return 0


def cmd_eval_rm(args) -> int:
    from pathlib import Path

    import yaml

    from .data.comparisons import read_comparisons
    from .eval.reward import evaluate_rm, held_out
    from .io import json_text
    from .world.build import find_world

    model, tok = _load_model_and_tokenizer(args.model)
    if model.head_kind != "scalar":
        raise InputError("not a reward model (its head is a language model's); train one with `lmforge rm`", path=args.model, field="model")
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


def cmd_compare(args) -> int:
    from .compare import CompareConfig, format_table, run_compare
    from .config import load_config
    from .io import json_text

    cfg = load_config(CompareConfig, args.recipe, args.overrides)
    result = run_compare(cfg, args.out, log=lambda msg: print(msg, file=sys.stderr))
    if args.json:
        print(json_text(result))
    else:
        print(format_table(result))
        print(f"-> {args.out}/comparison.json, {args.out}/comparison.png")
    return 0


def _load_model_and_tokenizer(path: str):
    from .models import load_model
    from .tokenizer import Tokenizer

    model, folder = load_model(path)
    return model.eval(), Tokenizer.load(folder)


def _print_conversion(info: dict, args) -> int:
    """What an export or import wrote: one JSON object, or a line and the folder."""
    if args.json:
        _print_json(info)
    else:
        print(f"{info['architecture']}, {info['parameters']:,} parameters{', chat template' if info['chat'] else ''}\n-> {args.out}")
    return 0


def cmd_export(args) -> int:
    from .interop.hf import export_hf

    info = export_hf(args.model, args.out, overwrite=args.overwrite)
    return _print_conversion(info, args)


def cmd_import(args) -> int:
    if args.action == "gguf":
        from .interop.gguf import import_gguf

        info = import_gguf(args.src, args.out, overwrite=args.overwrite)
    else:
        from .interop.hf import import_hf

        info = import_hf(args.src, args.out, overwrite=args.overwrite)
    return _print_conversion(info, args)


def cmd_chat(args) -> int:
    from .engine import SamplingParams
    from .serve.terminal import chat_loop

    model, tok = _load_model_and_tokenizer(args.model)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed)
    params.validate()
    chat_loop(model, tok, params, system=args.system)
    return 0


def _named_models(specs: list[str]) -> dict[str, str]:
    from pathlib import Path

    out = {}
    for spec in specs:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        name = name or Path(path.rstrip("/")).name or path
        if name in out:
            raise InputError(f"two models named {name!r}; name them with NAME=DIR", field="model")
        out[name] = path
    return out


def cmd_serve(args) -> int:
    import os

    try:
        import uvicorn

        from .serve.app import Limits, create_app, load_served
    except ImportError as e:
        raise InputError(f"serving needs the [serve] extra: pip install 'lmforge[serve]' ({e})") from None
    limits = Limits(
        max_body_bytes=args.max_body_bytes, max_prompt_tokens=args.max_prompt_tokens, max_tokens=args.max_tokens, timeout_s=args.timeout,
        max_batch=args.max_batch, max_queue=args.max_queue, batching=not args.no_batching,
    )  # fmt: skip
    for name in ("max_batch", "max_queue", "max_tokens", "max_body_bytes"):
        if getattr(limits, name) < 1:
            raise InputError(f"must be at least 1, got {getattr(limits, name)}", field="--" + name.replace("_", "-"))
    served = load_served(_named_models(args.model), limits, args.device)
    key = args.api_key or os.environ.get("LMFORGE_API_KEY") or None
    app = create_app(served, api_key=key, limits=limits)
    print(f"serving {', '.join(served)} at http://{args.host}:{args.port}/ (OpenAI API under /v1{'; API key required' if key else ''})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_generate(args) -> int:
    from .engine import SamplingParams, beam_search, generate

    from .data import chat

    model, tok = _load_model_and_tokenizer(args.model)
    as_chat = args.chat == "on" or (args.chat == "auto" and model.chat_template is not None)
    if as_chat:  # the prompt is a user turn; the answer is the assistant's, ended by <|end|>
        prompt = chat.prompt_ids(tok, [{"role": "user", "content": args.prompt}])
        stops, text_of = chat.stop_ids(tok), lambda ids: chat.answer_text(tok, ids)  # noqa: E731
    else:
        prompt = tok.document_ids(args.prompt, plain=False)  # a new document, as `lmforge sample` and the server start it
        stops, text_of = [tok.eos_id], tok.decode
    if args.beams > 1:
        results = beam_search(model, prompt, beams=args.beams, max_new_tokens=args.max_new_tokens, eos_id=stops[0], length_penalty=args.length_penalty)
        outs = [{"text": text_of(t), "score": s} for t, s in results]
    else:
        params = SamplingParams(
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
            repetition_penalty=args.repetition_penalty, stop_ids=stops, stop_strings=args.stop or [], seed=args.seed,
        )  # fmt: skip
        gens = generate(model, [prompt] * args.n, params, pad_id=tok.pad_id, decode=tok.decode)
        outs = [{"text": text_of(g.tokens), "finished": g.finished, "tokens": len(g.tokens)} for g in gens]
    if args.json:
        _print_json({"prompt": args.prompt, "chat": as_chat, "completions": outs})
    else:
        for o in outs:
            print(o["text"] if as_chat else args.prompt + o["text"])
            if len(outs) > 1:
                print("---")
    return 0


def cmd_eval_ppl(args) -> int:
    from .eval.perplexity import perplexity

    model, tok = _load_model_and_tokenizer(args.model)
    result = perplexity(model, tok, args.data, text_field=args.text_field, sample_by=args.sample_by, split=args.split, batch_size=args.batch_size, window=args.window, stride=args.stride)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"perplexity {result['perplexity']:.3f}  bits/byte {result['bpb']:.4f}  loss {result['loss']:.4f}  ({result['tokens']} tokens, {result['bytes']} bytes)")
    return 0


def cmd_eval_fewshot(args) -> int:
    from .eval.fewshot import FewShotConfig, evaluate, load_task, summary_text
    from .io import json_text
    from .tracking import progress

    cfg = FewShotConfig(shots=args.shots, format=args.format, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed, show=args.show)
    cfg.validate()
    if args.limit is not None and args.limit < 1:
        raise InputError(f"must be >= 1, got {args.limit}", field="limit")
    model, tok = _load_model_and_tokenizer(args.model)
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


# --------------------------------------------------------------------------- sampling and labeling


def _tick(bar, done: int, total: int) -> None:
    bar.total = total
    bar.update(done - bar.n)


def cmd_sample(args) -> int:
    from .sample import SampleConfig, run_sample
    from .tracking import progress

    cfg = SampleConfig(
        k=args.k, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
        batch_size=args.batch_size, seed=args.seed, limit=args.limit, chat=args.chat, long=args.long, device=args.device,
    )  # fmt: skip
    with progress(desc="sampling", unit="prompt") as bar:
        summary = run_sample(args.model, args.prompts, args.out, cfg, progress=lambda done, total: _tick(bar, done, total))
    if args.json:
        _print_json(summary)
    else:
        s = summary
        skipped = f", {s['skipped']} skipped (too long)" if s["skipped"] else ""
        print(f"{s['prompts']} prompts x {s['k']} = {s['samples']} answers{skipped}; finished {100 * s['finished_rate']:.1f}%, "
              f"{s['mean_tokens']:.1f} tokens on average, {s['distinct_per_prompt']:.2f} distinct of {s['k']} per prompt; {s['seconds']:.1f} s")  # fmt: skip
        print(f"-> {args.out}")
    return 0


def _need(args, *names: str) -> None:
    missing = [n for n in names if getattr(args, n) in (None, [])]
    if missing:
        action = f"label {args.action}" if args.action else "label"
        raise InputError(f"lmforge {action} needs " + ", ".join("--" + n for n in missing))


def cmd_label(args) -> int:
    from .label import run_label
    from .tracking import progress

    if args.action == "serve":
        return _label_serve(args)
    if args.action == "export":
        from .serve.labeling import export

        _need(args, "db", "out")
        summary = export(args.db, args.out)
        if args.json:
            _print_json(summary)
        else:
            by = ", ".join(f"{k} {v}" for k, v in summary["annotators"].items()) or "nobody yet"
            print(f"{summary['rankings']} rankings of {summary['samples']} samples ({by})\n-> {args.out}")
        return 0
    _need(args, "samples", "labeler", "out")

    with progress(desc="labeling", unit="sample") as bar:
        summary = run_label(
            args.samples, args.labeler, args.out, world=args.world, each=args.each, seed=args.seed, limit=args.limit,
            batch_size=args.batch_size, device=args.device, progress=lambda done, total: _tick(bar, done, total),
        )  # fmt: skip
    if args.json:
        _print_json(summary)
    else:
        s = summary
        by = ", ".join(f"{k} {v}" for k, v in s["labelers"].items())
        print(f"{s['rankings']} rankings of {s['samples']} samples ({by}); {s['skipped']} skipped; {s['seconds']:.1f} s")
        for name, reason in s.get("skip_reasons", {}).items():
            print(f"  skipped by {name} ({s['skipped_by'][name]}): {reason}")
        print(f"-> {args.out}")
    return 0


def _label_serve(args) -> int:
    _need(args, "db")
    try:
        import uvicorn

        from .serve.labeling import create_label_app, open_store
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


# --------------------------------------------------------------------------- n-grams


def _ngram_sentences(args, query: bool = False):
    """Sentences of words: KenLM's line-per-sentence whitespace split (lmplz's for training, query's
    with `query`), or a tokenizer's tokens."""
    from pathlib import Path

    from .data.readers import iter_documents
    from .models.ngram import read_sentences, split_query_words, split_words

    if args.tokenize == "whitespace" and Path(args.data).is_file() and Path(args.data).suffix.lower() in (".txt", ".text", ".md"):
        return read_sentences(args.data, query=query)  # exactly as lmplz/query read a file
    if args.tokenize == "tokenizer":
        from .tokenizer import Tokenizer

        if not args.tokenizer:
            raise InputError("--tokenize tokenizer needs --tokenizer PATH")
        tok = Tokenizer.load(args.tokenizer)
        return [[str(i) for i in tok.encode(doc)] for doc in iter_documents(args.data, text_field=args.text_field)]
    split = split_query_words if query else split_words
    return [split(line) for doc in iter_documents(args.data, text_field=args.text_field) for line in doc.split("\n")]


def cmd_ngram_train(args) -> int:
    from pathlib import Path

    from .models.ngram import FALLBACK, estimate

    npz = Path(args.out).suffix.lower() == ".npz"
    if args.smoothing != "kn" and not npz:  # say so before counting, not after
        raise InputError(f"--smoothing {args.smoothing} models cannot be written as ARPA (they do not back off); give --out a .npz path", field="out")
    lm = estimate(
        _ngram_sentences(args),
        args.order,
        smoothing=args.smoothing,
        k=args.k,
        discount_fallback=FALLBACK if args.discount_fallback else None,
        skip_symbols=args.skip_symbols,
    )
    if npz:
        lm.save(args.out)
    else:
        lm.write_arpa(args.out)
    sizes = ", ".join(f"{k + 1}-grams {len(o.keys)}" for k, o in enumerate(lm.orders))
    print(f"order {args.order} {args.smoothing}: {sizes} -> {args.out}")
    return 0


def cmd_ngram_eval(args) -> int:
    from .io import json_text
    from .models.ngram import load

    lm = load(args.model)
    result = lm.evaluate(_ngram_sentences(args, query=True))
    if args.json:
        print(json_text(result))  # an infinite perplexity (MLE gave a token probability 0) is null
    else:
        zero = f", zero-probability tokens {result['zero_prob_tokens']}" if result["zero_prob_tokens"] else ""
        print(f"perplexity {result['perplexity']:.4f} (excluding OOVs {result['perplexity_excluding_oov']:.4f}), OOVs {result['oov']}, tokens {result['tokens']}{zero}")
    return 0


def cmd_ngram_generate(args) -> int:
    import numpy as np

    from .models.ngram import load, sample, split_words

    lm = load(args.model)
    rng = np.random.default_rng(args.seed)
    if args.tokenizer:  # the model's words are token ids (trained with --tokenize tokenizer)
        from .tokenizer import Tokenizer

        tok = Tokenizer.load(args.tokenizer)
        if not all(w.isdigit() and int(w) < tok.vocab_size for w in lm.vocab[3:]):
            raise InputError("the model's words are not this tokenizer's ids (was it trained with --tokenize tokenizer and this --tokenizer?)", path=args.model)
        context = [str(i) for i in tok.encode(args.prompt or "")]
        for _ in range(args.n):
            print(tok.decode([int(w) for w in context + sample(lm, rng, args.max_words, context)]))
        return 0
    for _ in range(args.n):
        context = split_words(args.prompt or "")
        print(" ".join(context + sample(lm, rng, args.max_words, context)))
    return 0


# --------------------------------------------------------------------------- world


def cmd_world(args) -> int:
    if args.words[:1] == ["stats"]:
        if len(args.words) != 2:
            raise InputError("usage: lmforge world stats DIR")
        from .world.build import world_stats

        stats = world_stats(args.words[1], agreement_prompts=args.agreement_prompts)
        if args.json:
            _print_json(stats)
        else:
            _print_world_stats(stats)
        return 0
    from .config import load_config
    from .tracking import progress
    from .world.build import WorldConfig, build_world

    if args.out is None:
        raise InputError("--out DIR is required to generate a world (or use: lmforge world stats DIR)")
    recipe = args.words[0] if args.words and "=" not in args.words[0] else None
    overrides = args.words[1:] if recipe else list(args.words)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.entities is not None:
        overrides.append(f"entities={args.entities}")
    cfg = load_config(WorldConfig, recipe, overrides)
    with progress(total=5, desc="world", unit="part") as bar:
        manifest = build_world(cfg, args.out, overwrite=args.overwrite, progress=lambda part: (bar.set_postfix_str(part), bar.update()))
    if args.json:
        _print_json(manifest)
    else:
        print(", ".join(f"{k} {v}" for k, v in manifest["counts"].items()))
        print(f"labeler temperature {manifest['labeler_temperature']:.4f} -> {args.out}")
    return 0


def _print_world_stats(s: dict) -> None:
    plural = {"creature": "creatures", "person": "people", "town": "towns", "product": "products"}
    print(f"seed {s['seed']}: " + ", ".join(f"{n} {plural.get(k, k)}" for k, n in s["entities"].items()) + f", {s['facts']} facts")
    p = s["pretrain"]
    print(f"pretraining corpus: {p['documents']} documents, {p['bytes']} bytes, {p['words']} words, vocabulary {p['vocabulary']} words")
    print("  genres: " + ", ".join(f"{g} {100 * v:.1f}%" for g, v in p["genres"].items()))
    print("splits: " + ", ".join(f"{k} {v}" for k, v in s["splits"].items()))
    for name, c in s["tasks"].items():
        print(f"  {name} tasks: " + ", ".join(f"{t} {n}" for t, n in c.items()))
    print("comparisons by K: " + ", ".join(f"K={k}: {n}" for k, n in s["comparisons_k"].items()))
    a = s["labeler_agreement"]
    if a["measured"] is not None:
        print(f"labeler agreement ({a['labelers'][0]} vs {a['labelers'][1]}): measured {a['measured']:.3f}, target {a['target']}")
    d = s.get("demonstrations") or {}
    if d:
        q = d["oracle_score"]
        print(f"demonstrations (by {d['written_by']}): mean oracle score {q['written']:.3f}; the reference answers' {q['reference']:.3f}, the best the tasks admit {q['best']:.3f}; "
              f"{100 * d['below_best']:.0f}% below the best")
        r = d["rates"]
        print("  task answered in full {:.0%}, false claims {:.1%}, rude {:.1%}, asks back {:.1%}; flaws: ".format(r["task_correct"], r["false_claim"], r["rude"], r["asks"])
              + ", ".join(f"{f} {100 * r[f]:.1f}%" for f in ("terse", "padding", "slip", "hedge", "rumour", "rude", "question", "ramble") if f in r and f != "rude"))


# --------------------------------------------------------------------------- checkpoints


def cmd_checkpoint_verify(args) -> int:
    from pathlib import Path

    from .checkpoint import checkpoint_dirs, load_weights, verify_checkpoint

    path = Path(args.path)
    if not path.is_dir():
        raise InputError("no such directory", path=path)
    report = []
    targets = checkpoint_dirs(path) or [path]
    bad = None
    for d in targets:
        try:
            if (d / "trainer_state.json").exists():
                state = verify_checkpoint(d)
                report.append({"path": str(d), "step": state.get("step"), "ok": True})
            elif (d / "model.safetensors").exists():
                load_weights(d / "model.safetensors")
                report.append({"path": str(d), "ok": True})
            else:
                raise InputError("neither a checkpoint nor a model folder (no trainer_state.json or model.safetensors)", path=d)
        except InputError as e:
            report.append({"path": str(d), "ok": False, "error": str(e)})
            bad = bad or e
    if (path / "model.safetensors").exists() and targets != [path]:
        try:
            load_weights(path / "model.safetensors")
            report.append({"path": str(path), "ok": True})
        except InputError as e:
            report.append({"path": str(path), "ok": False, "error": str(e)})
            bad = bad or e
    if args.json:
        _print_json(report)
    else:
        for r in report:
            print(f"{'ok ' if r['ok'] else 'BAD'} {r['path']}" + (f"  step {r['step']}" if r.get("step") is not None else "") + (f"  ({r['error']})" if not r["ok"] else ""))
    if bad is not None and not any(r["ok"] for r in report):
        raise bad
    return 0 if bad is None else 1


# --------------------------------------------------------------------------- parser


def _stage_args(p: argparse.ArgumentParser, example: str = "") -> None:
    """The arguments every training stage takes: a recipe, dotted overrides, --out, --json."""
    p.add_argument("recipe", nargs="?", default=None, metavar="RECIPE", help="a YAML recipe")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config overrides" + (f", e.g. {example}" if example else ""))
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (resumed if it holds checkpoints)")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")


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


RUN_STAGES = ("world", "tokenizer", "pretrain", "pretrain_large", "baselines", "sft", "sft_rm", "samples", "labels", "rm", "ppo", "dpo", "eval", "report")  # lmforge.pipeline.STAGES (not imported: --help stays fast)


def _sampling_args(p, *, temperature: float) -> None:
    """The sampler's options, shared by `generate` and `chat` (only the default temperature differs)."""
    p.add_argument("--temperature", type=float, default=temperature, metavar="T", help="sampling temperature; 0 is greedy")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="sample among the K most likely tokens only")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling: the smallest set of tokens with probability >= P")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R", help="divide (multiply) positive (negative) logits of tokens already seen by R")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="lmforge",
        description="Build and align a language model end to end. Each subcommand is one stage of the pipeline.",
        epilog="Run 'lmforge COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # tokenizer ------------------------------------------------------------
    tp = sub.add_parser("tokenizer", help="train a tokenizer, encode text, measure a tokenizer", description="Tokenizers: byte-level BPE, character and word level (Hugging Face tokenizers).")
    tsub = tp.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = tsub.add_parser("train", help="train a tokenizer on a corpus", formatter_class=fmt, description="Train a tokenizer on a corpus and save it as DIR/tokenizer.json.")
    _add_corpus_args(p)
    p.add_argument("--kind", choices=["bpe", "char", "word"], default="bpe", help="byte-level BPE, one token per character, or one per word")
    p.add_argument("--vocab-size", type=int, default=4096, metavar="N", help="vocabulary size, special tokens included")
    p.add_argument("--min-frequency", type=int, default=2, metavar="N", help="minimum count of a merge (bpe) or a character/word to enter the vocabulary")
    p.add_argument("--max-train-bytes", type=int, default=None, metavar="N", help="train on the first N bytes of the corpus only")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for tokenizer.json")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")
    p.add_argument("--stats", action="store_true", help="print the tokenizer's statistics on the corpus as JSON afterwards")
    p.set_defaults(func=cmd_tokenizer_train)

    p = tsub.add_parser("encode", help="print the token ids of a text", formatter_class=fmt, description="Encode --text, or each document of --data, and print the ids (one line per document).")
    p.add_argument("--tokenizer", required=True, metavar="PATH", help="tokenizer.json or a folder holding one")
    p.add_argument("--text", default=None, help="the text to encode")
    _add_corpus_args(p, required=False)
    p.add_argument("--tokens", action="store_true", help="print the tokens instead of the ids")
    p.add_argument("--json", action="store_true", help="print one JSON object per text: ids and tokens")
    p.set_defaults(func=cmd_tokenizer_encode)

    p = tsub.add_parser("stats", help="bytes per token and vocabulary use on a corpus", formatter_class=fmt, description="Measure a tokenizer on a corpus: bytes per token, share of the vocabulary used, unknown-token rate.")
    p.add_argument("--tokenizer", required=True, metavar="PATH", help="tokenizer.json or a folder holding one")
    _add_corpus_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_tokenizer_stats)

    # data -----------------------------------------------------------------
    dp = sub.add_parser("data", help="validate datasets, encode a corpus into token shards", description="Data: record validation and token shards.")
    dsub = dp.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = dsub.add_parser(
        "validate",
        help="check every record of a dataset against its schema (or a shard folder against its checksums)",
        formatter_class=fmt,
        description="Check every record against a schema: text, messages, prompt_completion, preference, unpaired_preference, ranking, evaluation. "
        "Without --schema, the first record's keys decide. Given a shard folder, checks every shard's checksum instead.",
    )
    p.add_argument("--data", required=True, metavar="PATH", help=f"the dataset: {DATA_HELP}; or a shard folder")
    p.add_argument(
        "--schema",
        default=None,
        choices=["text", "messages", "prompt_completion", "preference", "unpaired_preference", "ranking", "evaluation"],
        help="the schema every record must follow (default: detected from the first record)",
    )
    p.add_argument("--split", default=None, metavar="NAME", help="split of a Hugging Face dataset (default: train)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_data_validate)

    p = dsub.add_parser("shards", help="encode a corpus into token shards", formatter_class=fmt, description="Encode a corpus once into numpy memmap shards, an end-of-text token after each document.")
    _add_corpus_args(p)
    p.add_argument("--tokenizer", required=True, metavar="PATH", help="tokenizer.json or a folder holding one")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--val-fraction", type=float, default=0.0, metavar="F", help="share of documents (chosen by hash of their text) held out in a val split")
    p.add_argument("--shard-tokens", type=int, default=1 << 26, metavar="N", help="tokens per shard file")
    p.add_argument("--num-proc", type=int, default=1, metavar="N", help="encoding processes (1: this process, which tokenizers already runs on every core)")
    p.add_argument("--batch-docs", type=int, default=512, metavar="N", help="documents per encoding batch")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")
    p.set_defaults(func=cmd_data_shards)

    # prepare --------------------------------------------------------------
    p = sub.add_parser(
        "prepare",
        help="the data stage: train a tokenizer on a corpus and write its token shards",
        formatter_class=fmt,
        description="The data stage of the pipeline: corpus -> tokenizer.json -> shards/. Settings come from the recipe, "
        "then from KEY=VALUE overrides (dotted keys, e.g. data.path=corpus.txt tokenizer.vocab_size=8192 shards.val_fraction=0.05). "
        "Keys: data.{path,text_field,sample_by,split}, tokenizer.{kind,vocab_size,min_frequency,max_train_bytes}, tokenizer_path, "
        "shards.{shard_tokens,val_fraction,num_proc,batch_docs}.",
    )
    p.add_argument("recipe", nargs="?", default=None, metavar="RECIPE", help="a YAML recipe (see recipes/)")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_prepare)

    # pretrain / generate / eval -------------------------------------------
    p = sub.add_parser(
        "pretrain",
        help="pretrain a GPT (or an RNN, LSTM, GRU) on a corpus (the built-in world by default)",
        formatter_class=fmt,
        description="Pretrain a decoder-only transformer (arch=transformer) or a recurrent LM (arch=rnn, truncated backpropagation through "
        "time) by next-token prediction. Settings come from the recipe (see recipes/tiny.yaml, "
        "small.yaml, gpt2-124m.yaml), then KEY=VALUE overrides, e.g. model.n_layer=4 train.steps=500. Sections: arch, data.{shards,corpus,world_seed,"
        "tokenizer.*,val_fraction,seq_len,eval_batches}, model.{flavour,n_layer,n_head,n_kv_head,d_model,d_ff,max_seq_len,dropout,rope_theta,"
        "norm_eps,tie_embeddings,causal}, rnn.{cell,d_embed,d_hidden,n_layer,dropout,tie_embeddings,max_seq_len}, train.{steps,batch_size,grad_accum,optim.*,schedule.*,eval_every,log_every,save_every,keep_last,seed,"
        "nan_policy,compile,device,precision,parallel,tensorboard,wandb}. Running again on the same --out resumes; under "
        "`torchrun --nproc_per_node=N` it trains data-parallel (train.parallel=ddp|fsdp).",
    )
    _stage_args(p)
    p.set_defaults(func=cmd_pretrain)

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
    _stage_args(p, example="init=runs/small epochs=5")
    p.set_defaults(func=cmd_sft)

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

    p = sub.add_parser("study", help="studies that run the pipeline many times: rlhf-gain", formatter_class=fmt)
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
    p.add_argument("recipe", nargs="?", default=None, help="a YAML recipe over the preset (as for lmforge run)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override any key of the run's config, e.g. study.cost_ratio=2")
    p.add_argument("--preset", choices=["tiny", "default"], default="default", help="tiny: seconds (plumbing); default: about 11 minutes a point on 2 CPU cores")
    p.add_argument("--out", default="runs/rlhf_gain", metavar="DIR", help="the study's directory")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="the world's seed and every stage's")
    p.add_argument("--base", default=None, metavar="RUN_DIR", help="share the base model of this run directory (same seed); without it the study pretrains its own")
    p.add_argument("--json", action="store_true", help="print study.json")
    p.set_defaults(func=cmd_study_rlhf_gain)

    p = sub.add_parser("generate", help="continue a prompt with a trained model", formatter_class=fmt, description="Generate text from a model: sampling (temperature, top-k, top-p) or beam search.")
    p.add_argument("--model", required=True, metavar="DIR", help="a model folder, checkpoint or run directory")
    p.add_argument("--prompt", required=True, metavar="TEXT", help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="most tokens to add")
    _sampling_args(p, temperature=0.8)
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop when this text appears (repeatable)")
    p.add_argument("--chat", choices=["auto", "on", "off"], default="auto", help="send the prompt as a user turn through the chat template and print the answer (auto: for a fine-tuned chat model), or continue it as text")
    p.add_argument("--beams", type=int, default=1, metavar="B", help="beam search with B beams (B > 1 ignores sampling options)")
    p.add_argument("--length-penalty", type=float, default=1.0, metavar="A", help="beam search length penalty exponent")
    p.add_argument("--n", type=int, default=1, metavar="N", help="number of samples")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed for sampling")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("chat", help="talk to a model in the terminal, the answer streamed", formatter_class=fmt, description="A multi-turn conversation through the chat template (the whole history at each turn), answers streamed. Commands: /reset, /system TEXT, /exit.")
    p.add_argument("--model", required=True, metavar="DIR", help="a model folder, checkpoint or run directory (a chat model; a base model continues the conversation as text)")
    p.add_argument("--system", default=None, metavar="TEXT", help="a system message to start with")
    p.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="longest answer, in tokens")
    _sampling_args(p, temperature=0.7)
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed for sampling")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("serve", help="serve models over an OpenAI-compatible HTTP API, with a chat page", formatter_class=fmt, description="POST /v1/chat/completions, POST /v1/completions (streaming by server-sent events), GET /v1/models, GET /health, and a chat page at /. Concurrent requests share forward passes; a full queue answers 429, a request past --timeout 503. Needs the [serve] extra (FastAPI, uvicorn).")
    p.add_argument("--model", required=True, action="append", metavar="[NAME=]DIR", help="a model to serve (repeat for several; NAME defaults to the folder's name)")
    p.add_argument("--host", default="127.0.0.1", metavar="HOST", help="address to bind (0.0.0.0 exposes the server to the network)")
    p.add_argument("--port", type=int, default=8000, metavar="PORT", help="port to listen on")
    p.add_argument("--api-key", default=None, metavar="KEY", help="require 'Authorization: Bearer KEY' on /v1 (default: the LMFORGE_API_KEY environment variable, else none)")
    p.add_argument("--max-batch", type=int, default=32, metavar="N", help="rows one forward pass may carry")
    p.add_argument("--max-queue", type=int, default=64, metavar="N", help="requests that may wait; one more gets 429")
    p.add_argument("--no-batching", action="store_true", help="one request per forward pass (for comparison)")
    p.add_argument("--max-tokens", type=int, default=512, metavar="N", help="the largest max_tokens a request may ask for")
    p.add_argument("--max-prompt-tokens", type=int, default=0, metavar="N", help="longest prompt in tokens (0: the model's context less one)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, metavar="N", help="largest request body")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds a request may take, waiting included (then 503)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="torch device (cpu, cuda)")
    p.set_defaults(func=cmd_serve)

    def conversion(p, src: tuple[str, str, str], func) -> None:
        """The arguments every export/import shares: the source, --out, --overwrite, --json."""
        p.add_argument(src[0], required=True, metavar=src[1], help=src[2])
        p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (written whole or not at all)")
        p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
        p.add_argument("--json", action="store_true", help="print a summary as one JSON object")
        p.set_defaults(func=func)

    xp = sub.add_parser("export", help="write a model in another format (Hugging Face)", description="Export an lmforge model.")
    xsub = xp.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = xsub.add_parser("hf", help="a Hugging Face model folder (LlamaForCausalLM / GPT2LMHeadModel)", formatter_class=fmt, description="Write config.json, model.safetensors (Hugging Face names), tokenizer.json, tokenizer_config.json (with the chat template of a chat model), special_tokens_map.json and generation_config.json; `transformers` loads it with AutoModelForCausalLM and AutoTokenizer. The llama flavour becomes LlamaForCausalLM (Qwen2ForCausalLM with q/k/v biases), the gpt2 flavour GPT2LMHeadModel.")
    conversion(p, ("--model", "DIR", "an lmforge model folder, checkpoint or run directory"), cmd_export)

    ip = sub.add_parser("import", help="read a model from another format (Hugging Face, GGUF)", description="Import a model as an lmforge model folder.")
    isub = ip.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = isub.add_parser("hf", help="a Hugging Face model folder (or hub name): Llama, Mistral, Qwen2, SmolLM, GPT-2", formatter_class=fmt, description="Read config.json and *.safetensors of a Llama-family (Llama, Mistral without a sliding window, Qwen2, SmolLM) or GPT-2 model and write an lmforge model folder (its tokenizer.json copied). Pickled weights (.bin) are refused. A hub name (org/model) is downloaded when huggingface_hub is installed and the hub is reachable.")
    conversion(p, ("--src", "DIR", "the Hugging Face model folder, or a hub name org/model"), cmd_import)
    p = isub.add_parser("gguf", help="a llama.cpp GGUF file (Llama architecture), dequantised to float32", formatter_class=fmt, description="Read a GGUF file with the gguf package (every quantisation it knows: Q4_0, Q4_1, Q8_0, K-quants, ...), undo llama.cpp's q/k row permutation, rebuild its byte-level BPE tokenizer as tokenizer.json, keep its chat template (tokenizer_config.json) and end tokens (generation_config.json), and write an lmforge model folder.")
    conversion(p, ("--src", "FILE", "the .gguf file"), cmd_import)

    ep = sub.add_parser("eval", help="evaluate a model", description="Evaluation commands; each prints one JSON object with --json.")
    esub = ep.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = esub.add_parser("ppl", help="perplexity and bits per byte on held-out text", formatter_class=fmt, description="Perplexity per token and bits per byte of a model on a corpus (documents joined with the end-of-text token, scored in windows of the model's context).")
    p.add_argument("--model", required=True, metavar="DIR", help="a model folder, checkpoint or run directory")
    _add_corpus_args(p)
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="transformers: windows per forward pass")
    p.add_argument("--window", type=int, default=None, metavar="N", help="tokens per window (default: the length the model was trained on, else its context; recurrent models: 512, state carried)")
    p.add_argument("--stride", type=int, default=None, metavar="N", help="transformers: score N new tokens per window, the rest being context only (default: the window, non-overlapping)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval_ppl)

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
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval_policy)

    p = esub.add_parser(
        "rm",
        help="a reward model on held-out comparisons: accuracy against labelers and the oracle, calibration",
        formatter_class=fmt,
        description="Score held-out comparisons with a reward model: pairwise accuracy against the labelers' rankings, calibration "
        "(ECE), and on the built-in world accuracy against the oracle, a second labeler's agreement (the ceiling) and the oracle's "
        "own accuracy against the labels.",
    )
    p.add_argument("--model", required=True, metavar="DIR", help="a reward model (lmforge rm)")
    p.add_argument("--data", default="world", metavar="PATH", help="rankings or preference pairs; 'world': the world's comparisons the model did not train on")
    p.add_argument("--world", default=None, metavar="DIR", help="the world directory (default: found next to the model)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="the first N comparisons only")
    p.add_argument("--all", action="store_true", help="a file the model trained on: score every comparison, not only its held-out prompts'")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the second labeler")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval_rm)

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
    _stage_args(p, example="init=runs/sft")
    p.set_defaults(func=cmd_rm)

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
    _stage_args(p, example="init=runs/sft beta=0.1")
    p.add_argument("--loss", choices=["dpo", "cdpo", "ipo", "hinge", "kto"], default=None, help="the loss (default: the recipe's, else dpo)")
    p.set_defaults(func=cmd_dpo)

    # sample, label ----------------------------------------------------------
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
    p.add_argument("action", nargs="?", choices=["serve", "export"], default=None, help="serve: a web page where people rank the samples (stored in --db, SQLite); export: write --db's rankings to --out")
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
    p.add_argument("--device", default="cpu", metavar="DEV", help="judge: torch device (cpu, cuda)")
    p.add_argument("--json", action="store_true", help="print a summary as one JSON object (rankings, skipped, per-labeler counts)")
    p.set_defaults(func=cmd_label)

    # ngram ----------------------------------------------------------------
    np_ = sub.add_parser(
        "ngram",
        help="n-gram language models: modified Kneser-Ney (KenLM-compatible ARPA), add-k, maximum likelihood",
        description="n-gram LMs: Kneser-Ney estimated as KenLM's lmplz does (ARPA files), or add-k / maximum likelihood (.npz files).",
    )
    nsub = np_.add_subparsers(dest="action", metavar="ACTION", required=True)

    def ngram_data(p):
        p.add_argument("--data", required=True, metavar="PATH", help=f"text: {DATA_HELP}; with --tokenize whitespace each line is a sentence")
        p.add_argument("--tokenize", choices=["whitespace", "tokenizer"], default="whitespace", help="words split on whitespace as KenLM does, or the tokens of --tokenizer (one document a sentence)")
        p.add_argument("--tokenizer", default=None, metavar="PATH", help="tokenizer.json for --tokenize tokenizer")
        p.add_argument("--text-field", default="text", metavar="NAME", help="field holding the text in JSONL/Parquet records")

    p = nsub.add_parser(
        "train",
        help="estimate an n-gram model and write it as ARPA (Kneser-Ney) or .npz",
        formatter_class=fmt,
        description="Interpolated modified Kneser-Ney (Chen & Goodman 1998) as lmplz computes it, or add-k / maximum likelihood from the same counts.",
    )
    p.add_argument("--order", type=int, required=True, metavar="N", help="the n-gram order")
    ngram_data(p)
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.arpa (Kneser-Ney only) or FILE.npz (any smoothing)")
    p.add_argument("--smoothing", choices=["kn", "addk", "mle"], default="kn", help="kn: modified Kneser-Ney; addk: (c(hw) + k) / (c(h) + k|V|); mle: c(hw) / c(h)")
    p.add_argument("--k", type=float, default=1.0, metavar="K", help="k for --smoothing addk (1 is Laplace's add-one)")
    p.add_argument("--discount-fallback", action="store_true", help="use D = 0.5, 1, 1.5 where count-of-counts make a discount undefined (lmplz's --discount_fallback)")
    p.add_argument("--skip-symbols", action="store_true", help="read <s>, </s> and <unk> in the text as whitespace instead of refusing them (lmplz's --skip_symbols)")
    p.set_defaults(func=cmd_ngram_train)

    p = nsub.add_parser("eval", help="perplexity of an n-gram model on text (as KenLM's query reports it)", formatter_class=fmt, description="Perplexity with and without OOVs; </s> and OOV words count as tokens.")
    p.add_argument("--model", required=True, metavar="FILE", help="an ARPA file (lmforge's or KenLM's) or an lmforge .npz")
    ngram_data(p)
    p.add_argument("--json", action="store_true", help='print {"perplexity", "perplexity_excluding_oov", "oov", "tokens", "log10_prob", "zero_prob_tokens"}')
    p.set_defaults(func=cmd_ngram_eval)

    p = nsub.add_parser("generate", help="sample sentences from an n-gram model", formatter_class=fmt, description="Draw words one at a time from p(w | context) until </s>.")
    p.add_argument("--model", required=True, metavar="FILE", help="an ARPA file or an lmforge .npz")
    p.add_argument("--prompt", default="", metavar="TEXT", help="words to start from")
    p.add_argument("--tokenizer", default=None, metavar="PATH", help="for a model trained with --tokenize tokenizer: encode the prompt and decode the samples with this tokenizer")
    p.add_argument("--n", type=int, default=1, metavar="N", help="number of sentences")
    p.add_argument("--max-words", type=int, default=40, metavar="N", help="most words (or tokens) per sentence")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed")
    p.set_defaults(func=cmd_ngram_generate)

    # world ----------------------------------------------------------------
    p = sub.add_parser(
        "world",
        help="generate the built-in world (corpus, tasks, comparisons, held-out prompts), or describe one",
        formatter_class=fmt,
        usage="lmforge world --out DIR [--seed N] [--entities N] [RECIPE] [KEY=VALUE ...]\n       lmforge world stats DIR [--json]",
        description="Generate the built-in world: a small universe with a known truth, its pretraining corpus, SFT demonstrations, "
        "ranked comparisons, RL prompts and held-out evaluation prompts, all deterministic for a seed. "
        "'lmforge world stats DIR' describes a generated world and measures its labelers' agreement. "
        "Config keys (KEY=VALUE): seed, entities, documents, genres.{encyclopedia,story,worksheet,qa,quiz,forum,rumour,review}, qa_good (share of good answers on Q&A and question pages), "
        "sft_prompts, sft_val_prompts, rm_prompts, ppo_prompts, eval_prompts, k_min, k_max, labelers, agreement, calibration_prompts.",
    )
    p.add_argument("words", nargs="*", metavar="ARGS", help="'stats DIR', or an optional recipe and KEY=VALUE overrides")
    p.add_argument("--out", default=None, metavar="DIR", help="folder to write the world into")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="random seed (default 0): same seed, same world, byte for byte")
    p.add_argument("--entities", type=int, default=None, metavar="N", help="number of entities (default 48)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")
    p.add_argument("--agreement-prompts", type=int, default=1000, metavar="N", help="stats: prompts whose response pairs two labelers judge")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_world)

    # ppo / rl ---------------------------------------------------------------
    rl_keys = (
        "Keys: policy (the SFT model), reward (the reward model), algorithm (ppo|reinforce|rloo|grpo), value (model|head), iterations, "
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
    _stage_args(p, example="policy=runs/sft reward=runs/rm iterations=50")
    p.set_defaults(func=cmd_rl)
    p = sub.add_parser(
        "rl",
        help="policy-gradient RLHF with the same rollouts: --algorithm ppo|reinforce|rloo|grpo",
        formatter_class=fmt,
        description="The rollouts of `lmforge ppo` with another update: REINFORCE with a baseline, RLOO (leave-one-out baselines) or "
        "GRPO (group-relative advantages, the KL as a loss term). " + rl_keys,
    )
    _stage_args(p, example="policy=runs/sft reward=runs/rm rollout.group_size=4")
    p.add_argument("--algorithm", choices=["ppo", "reinforce", "rloo", "grpo"], default=None, help="the update (default: the recipe's, else ppo)")
    p.set_defaults(func=cmd_rl)

    # compare --------------------------------------------------------------
    p = sub.add_parser(
        "compare",
        help="n-gram, RNN and GPT language models side by side on one corpus (bits per byte, perplexity, size, time)",
        formatter_class=fmt,
        description="Train (or load) n-gram models with Kneser-Ney smoothing, a recurrent LM and a GPT on the same corpus and score them "
        "on the same held-out documents: bits per byte, perplexity per token, size, training time; saved as DIR/comparison.json and "
        "DIR/comparison.png. Settings come from the recipe (see recipes/compare.yaml), then KEY=VALUE overrides. Sections: "
        "data.{shards,corpus,world_seed,tokenizer.*,val_fraction,seq_len,eval_batches}, ngram.{orders,discount_fallback,load}, "
        "rnn.{enabled,load,model.{cell,d_embed,d_hidden,n_layer,dropout,tie_embeddings},train.*}, gpt.{enabled,load,model.*,train.*}. "
        "Running again on the same --out reuses finished runs.",
    )
    p.add_argument("recipe", nargs="?", default=None, metavar="RECIPE", help="a YAML recipe")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--out", default="runs/compare", metavar="DIR", help="run directory (models, comparison.json, comparison.png)")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    p.set_defaults(func=cmd_compare)

    # checkpoint -----------------------------------------------------------
    cp = sub.add_parser("checkpoint", help="inspect run directories and checkpoints", description="Run directories and checkpoints.")
    csub = cp.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = csub.add_parser(
        "verify",
        help="check checkpoints against their checksums",
        formatter_class=fmt,
        description="Check every checkpoint of a run directory (or one checkpoint or model folder) against the checksums in its "
        "trainer_state.json, and that its safetensors file is complete. Exit 0 if all are good, 1 if some are damaged but one is "
        "usable, 2 if none is.",
    )
    p.add_argument("path", metavar="DIR", help="a run directory, a checkpoint folder or a model folder")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.set_defaults(func=cmd_checkpoint_verify)
    return parser


def _split_recipe(args) -> None:
    """`lmforge prepare key=value` (no recipe): the first positional is an override, not a file."""
    recipe = getattr(args, "recipe", None)
    if recipe is not None and "=" in recipe and not recipe.endswith((".yaml", ".yml")):
        args.overrides = [recipe, *args.overrides]
        args.recipe = None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _split_recipe(args)
    prog = " ".join(["lmforge", args.command, getattr(args, "action", "") or ""]).strip()
    default_format = warnings.formatwarning
    warnings.formatwarning = lambda msg, cat, *a, **k: f"{prog}: warning: {msg}\n"
    try:
        return args.func(args)
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # unreadable files, full disks: the system's words, with the file
        where = f"{e.filename}: " if e.filename else ""
        print(f"{prog}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = default_format
