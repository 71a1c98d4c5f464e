"""The pretraining stage's commands: `pretrain` a base model, `generate` from it, `checkpoint verify`."""

from __future__ import annotations

from ..errors import InputError
from .common import (
    load_model_and_tokenizer,
    print_json,
    print_run_result,
    sampling_args,
    stage_args,
)

TITLE = "pretrain"


def add_arguments(sub, fmt) -> None:
    add_pretrain(sub, fmt)
    add_scaling(sub, fmt)
    add_generate(sub, fmt)
    add_checkpoint(sub, fmt)


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit() and 0 <= int(i) < int(n)):
        raise InputError(f"expected I/N with 0 <= I < N, got {text!r}", field="shard")
    return int(i), int(n)


def cmd_scaling(args) -> int:
    import sys

    from ..scaling import load_scaling_config, run_scaling

    overrides = list(args.overrides)
    if args.budget:
        overrides.append("study.budgets=[" + ",".join(args.budget) + "]")
    if args.sizes:
        overrides.append("study.sizes=[" + ",".join(args.sizes) + "]")
    if args.optimal_for:
        overrides.append("study.optimal_for=[" + ",".join(args.optimal_for) + "]")
    cfg = load_scaling_config(args.recipe, args.preset, overrides)
    fit = run_scaling(cfg, args.out, shard=_shard(args.shard), log=lambda m: print(m, file=sys.stderr), wait=args.wait)
    if fit is None:
        return 0
    if args.json:
        print_json(fit)
        return 0
    ci = fit["intervals"]
    print(f"{fit['runs']} runs; L(N, D) = E + A/N^alpha + B/D^beta (N non-embedding parameters, D tokens, loss in nats per token)")
    for k in ("alpha", "beta", "E", "A", "B"):
        print(f"  {k:5} {fit[k]:10.4g}" + (f"  [{ci[k][0]:.4g}, {ci[k][1]:.4g}]" if k in ci else ""))
    iso = fit["isoflop"]
    if "n_opt_exponent" in iso:
        print(f"isoFLOP profiles: N_opt ~ C^{iso['n_opt_exponent']:.2f}, D_opt ~ C^{iso['d_opt_exponent']:.2f}")
    if fit["held_out"]:
        h = fit["held_out"]
        print(f"held out: the largest budget's best loss {h['best_loss']:.4f}, predicted from the smaller budgets {h['predicted_best_loss']:.4f} ({100 * h['relative_error']:.2f}% off)")
    print("compute-optimal (FLOPs: N, D, tokens a parameter):")
    for c, o in fit["optimal"].items():
        print(f"  {c}: {o['n']:,.0f}, {o['d']:,.0f}, {o['tokens_per_parameter']:.1f}" + (" (data-limited: the corpus allows no more tokens)" if o.get("data_limited") else ""))
    print(f"-> {args.out}/fit.json, {args.out}/report.md, {args.out}/plots/")
    return 0


def add_scaling(sub, fmt) -> None:
    p = sub.add_parser(
        "scaling",
        help="scaling laws: train a grid of sizes and compute budgets, fit them, size a model for a budget",
        formatter_class=fmt,
        description="Trains GPTs of several sizes (d_model x n_layer) at several compute budgets (training FLOPs, the model's own count) on the "
        "same prepared data, each with a cosine schedule over its own length; fits Chinchilla's isoFLOP profiles and parametric loss "
        "L = E + A/N^alpha + B/D^beta (bootstrap intervals), predicts the largest budget from the smaller ones, and gives the compute-optimal "
        "N and D for each budget. Settings: a preset, a recipe (world:, pretrain:, study: sections), key=value overrides "
        "(study.{sizes,budgets,head_dim,min_steps,min_tokens_per_param,max_tokens_per_param,max_epochs,warmup_frac,bootstrap,optimal_for}). Each run is a folder of "
        "DIR/runs; running again skips finished runs. Writes DIR/fit.json, DIR/runs.json, DIR/report.md, DIR/plots/.",
    )
    p.add_argument("recipe", nargs="?", default=None, help="a YAML recipe over the preset")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override any key, e.g. pretrain.data.corpus=docs.jsonl")
    p.add_argument("--preset", choices=["tiny", "default"], default="default", help="tiny: a study of half a minute (a first look, tests); default: the built-in world's study, 48 minutes on 2 CPU cores")
    p.add_argument("--budget", nargs="+", default=None, metavar="FLOPS", help="compute budgets of the runs, e.g. 1e12 3e12 1e13")
    p.add_argument("--sizes", nargs="+", default=None, metavar="DxL", help="model shapes, d_model x n_layer, e.g. 64x2 128x4")
    p.add_argument("--optimal-for", nargs="+", default=None, metavar="FLOPS", help="also give the compute-optimal N and D for these budgets")
    p.add_argument("--shard", default=None, metavar="I/N", help="run every N-th run from the I-th (several processes or machines sharing DIR); under torchrun: RANK/WORLD_SIZE")
    p.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds for other shards' runs before fitting")
    p.add_argument("--out", default="runs/scaling", metavar="DIR", help="the study's directory")
    p.add_argument("--json", action="store_true", help="print fit.json")
    p.set_defaults(func=cmd_scaling)


def cmd_pretrain(args) -> int:
    from ..config import load_config
    from ..train.pretrain import PretrainConfig, run_pretrain

    cfg = load_config(PretrainConfig, args.recipe, args.overrides)
    return print_run_result(run_pretrain(cfg, args.out), args)


def add_pretrain(sub, fmt) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain a GPT (or a BERT-style encoder, an RNN, LSTM, GRU) on a corpus (the built-in world by default)",
        formatter_class=fmt,
        description="Pretrain a decoder-only transformer (arch=transformer) or a recurrent LM (arch=rnn, truncated backpropagation through "
        "time) by next-token prediction, or an encoder by masked-token prediction (objective=mlm: bidirectional attention, BERT's 15% with 80/10/10 mask/random/keep, a <|mask|> token appended to its tokenizer; recipes/encoder.yaml). Settings come from the recipe (see recipes/tiny.yaml, "
        "small.yaml, gpt2-124m.yaml), then KEY=VALUE overrides, e.g. model.n_layer=4 train.steps=500. Sections: arch, objective, mlm.{probability,mask,random}, data.{shards,corpus,world_seed,"
        "tokenizer.*,val_fraction,seq_len,eval_batches}, model.{flavour,n_layer,n_head,n_kv_head,d_model,d_ff,max_seq_len,dropout,rope_theta,"
        "norm_eps,tie_embeddings,causal}, rnn.{cell,d_embed,d_hidden,n_layer,dropout,tie_embeddings,max_seq_len}, train.{steps,batch_size,grad_accum,optim.*,schedule.*,eval_every,log_every,save_every,keep_last,seed,"
        "nan_policy,compile,device,precision,parallel,tensorboard,wandb}. Running again on the same --out resumes; under "
        "`torchrun --nproc_per_node=N` it trains data-parallel (train.parallel=ddp|fsdp).",
    )
    stage_args(p)
    p.set_defaults(func=cmd_pretrain)


def cmd_generate(args) -> int:
    from ..data import chat
    from ..engine import SamplingParams, beam_search, generate

    model, tok = load_model_and_tokenizer(args.model)
    as_chat = args.chat == "on" or (args.chat == "auto" and model.chat_template is not None)
    if as_chat:  # the prompt is a user turn; the answer is the assistant's, ended by <|end|>
        prompt = chat.prompt_ids(tok, [{"role": "user", "content": args.prompt}])
        stops, text_of = chat.stop_ids(tok), lambda ids: chat.answer_text(tok, ids)
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
        print_json({"prompt": args.prompt, "chat": as_chat, "completions": outs})
    else:
        for o in outs:
            print(o["text"] if as_chat else args.prompt + o["text"])
            if len(outs) > 1:
                print("---")
    return 0


def add_generate(sub, fmt) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a trained model", formatter_class=fmt, description="Generate text from a model: sampling (temperature, top-k, top-p) or beam search.")
    p.add_argument("--model", required=True, metavar="DIR", help="a model folder, checkpoint or run directory")
    p.add_argument("--prompt", required=True, metavar="TEXT", help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N", help="most tokens to add")
    sampling_args(p, temperature=0.8)
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop when this text appears (repeatable)")
    p.add_argument("--chat", choices=["auto", "on", "off"], default="auto", help="send the prompt as a user turn through the chat template and print the answer (auto: for a fine-tuned chat model), or continue it as text")
    p.add_argument("--beams", type=int, default=1, metavar="B", help="beam search with B beams (B > 1 ignores sampling options)")
    p.add_argument("--length-penalty", type=float, default=1.0, metavar="A", help="beam search length penalty exponent")
    p.add_argument("--n", type=int, default=1, metavar="N", help="number of samples")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed for sampling")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_generate)


def cmd_checkpoint_verify(args) -> int:
    from pathlib import Path

    from ..checkpoint import checkpoint_dirs, load_weights, verify_checkpoint

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
        print_json(report)
    else:
        for r in report:
            print(f"{'ok ' if r['ok'] else 'BAD'} {r['path']}" + (f"  step {r['step']}" if r.get("step") is not None else "") + (f"  ({r['error']})" if not r["ok"] else ""))
    if bad is not None and not any(r["ok"] for r in report):
        raise bad
    return 0 if bad is None else 1


def add_checkpoint(sub, fmt) -> None:
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
