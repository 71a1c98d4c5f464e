"""Using a model: `chat` in the terminal, `serve` it over HTTP, `export` and `import` it to and from
other formats."""

from __future__ import annotations

import sys

from ..errors import InputError
from .common import load_model_and_tokenizer, named_models, print_json, sampling_args

TITLE = "use"


def add_arguments(sub, fmt) -> None:
    add_chat(sub, fmt)
    add_serve(sub, fmt)
    add_export(sub, fmt)
    add_import(sub, fmt)


def cmd_chat(args) -> int:
    from ..engine import SamplingParams
    from ..serve.terminal import chat_loop

    model, tok = load_model_and_tokenizer(args.model)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed)
    params.validate()
    chat_loop(model, tok, params, system=args.system)
    return 0


def add_chat(sub, fmt) -> None:
    p = sub.add_parser("chat", help="talk to a model in the terminal, the answer streamed", formatter_class=fmt, description="A multi-turn conversation through the chat template (the whole history at each turn), answers streamed. Commands: /reset, /system TEXT, /exit.")
    p.add_argument("--model", required=True, metavar="DIR", help="a model folder, checkpoint or run directory (a chat model; a base model continues the conversation as text)")
    p.add_argument("--system", default=None, metavar="TEXT", help="a system message to start with")
    p.add_argument("--max-new-tokens", type=int, default=128, metavar="N", help="longest answer, in tokens")
    sampling_args(p, temperature=0.7)
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed for sampling")
    p.set_defaults(func=cmd_chat)


def cmd_serve(args) -> int:
    import os

    try:
        import uvicorn

        from ..serve.app import SETTINGS_ENV, Limits, create_app, load_served
    except ImportError as e:
        raise InputError(f"serving needs the [serve] extra: pip install 'lmforge[serve]' ({e})") from None
    limits = Limits(
        max_body_bytes=args.max_body_bytes, max_prompt_tokens=args.max_prompt_tokens, max_tokens=args.max_tokens, timeout_s=args.timeout,
        max_batch=args.max_batch, max_queue=args.max_queue, max_tokens_in_flight=args.max_tokens_in_flight,
        batching="off" if args.no_batching else args.batching, compile=args.compile,
    )  # fmt: skip
    for name in ("max_batch", "max_queue", "max_tokens_in_flight", "max_tokens", "max_body_bytes"):
        if getattr(limits, name) < 1:
            raise InputError(f"must be at least 1, got {getattr(limits, name)}", field="--" + name.replace("_", "-"))
    if args.workers < 1:
        raise InputError(f"must be at least 1, got {args.workers}", field="--workers")
    models = named_models(args.model)
    key = args.api_key or os.environ.get("LMFORGE_API_KEY") or None
    where = f"at http://{args.host}:{args.port}/ (OpenAI API under /v1{'; API key required' if key else ''})"
    if args.workers > 1:  # N processes on one port, each with its own copy of the models
        import dataclasses
        import json

        from ..serve.app import load_one

        for path in models.values():  # a bad folder fails here, once, not in every worker
            load_one(path, "cpu")
        threads = max(1, (os.cpu_count() or 1) // args.workers)
        os.environ[SETTINGS_ENV] = json.dumps({"models": models, "limits": dataclasses.asdict(limits), "device": args.device, "api_key": key, "threads": threads})
        print(f"serving {', '.join(models)} {where} from {args.workers} worker processes, {threads} threads each", file=sys.stderr)
        uvicorn.run("lmforge.serve.app:app_from_env", factory=True, workers=args.workers, host=args.host, port=args.port, log_level="warning")
        return 0
    served = load_served(models, limits, args.device)
    app = create_app(served, api_key=key, limits=limits)
    print(f"serving {', '.join(served)} {where}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_serve(sub, fmt) -> None:
    p = sub.add_parser("serve", help="serve models over an OpenAI-compatible HTTP API, with a chat page", formatter_class=fmt, description="POST /v1/chat/completions, POST /v1/completions (streaming by server-sent events), GET /v1/models, GET /health, and a chat page at /. Concurrent requests share forward passes, each joining the running batch at the next decode step (continuous batching); past --max-tokens-in-flight a request gets 429 with Retry-After, past --timeout 503. Needs the [serve] extra (FastAPI, uvicorn).")
    p.add_argument("--model", required=True, action="append", metavar="[NAME=]DIR", help="a model to serve (repeat for several; NAME defaults to the folder's name)")
    p.add_argument("--host", default="127.0.0.1", metavar="HOST", help="address to bind (0.0.0.0 exposes the server to the network)")
    p.add_argument("--port", type=int, default=8000, metavar="PORT", help="port to listen on")
    p.add_argument("--api-key", default=None, metavar="KEY", help="require 'Authorization: Bearer KEY' on /v1 (default: the LMFORGE_API_KEY environment variable, else none)")
    p.add_argument("--max-batch", type=int, default=32, metavar="N", help="rows one forward pass may carry")
    p.add_argument("--max-tokens-in-flight", type=int, default=1 << 18, metavar="N", help="prompt + max_tokens of all queued and running answers; a request past it gets 429 with Retry-After")
    p.add_argument("--max-queue", type=int, default=1024, metavar="N", help="requests that may wait; one more gets 429")
    p.add_argument("--batching", choices=["continuous", "waves", "off"], default="continuous", help="continuous: requests join the running batch at each decode step; waves: the batch runs until its last answer ends (for comparison); off: one request at a time")
    p.add_argument("--no-batching", action="store_true", help="the same as --batching off")
    p.add_argument("--compile", action="store_true", help="torch.compile the decode step (faster decoding; compiled for each batch size and attention length at start, about two minutes on a CPU)")
    p.add_argument("--max-tokens", type=int, default=512, metavar="N", help="the largest max_tokens a request may ask for")
    p.add_argument("--max-prompt-tokens", type=int, default=0, metavar="N", help="longest prompt in tokens (0: the model's context less one)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, metavar="N", help="largest request body")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds a request may take, waiting included (then 503)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="torch device (cpu, cuda)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="server processes on the one port, each with its own copy of the models and its share of the CPU threads")
    p.set_defaults(func=cmd_serve)


def _print_conversion(info: dict, args) -> int:
    """What an export or import wrote: one JSON object, or a line and the folder."""
    if args.json:
        print_json(info)
    else:
        print(f"{info['architecture']}, {info['parameters']:,} parameters{', chat template' if info['chat'] else ''}\n-> {args.out}")
    return 0


def _conversion(p, src: tuple[str, str, str], func) -> None:
    """The arguments every export/import shares: the source, --out, --overwrite, --json."""
    p.add_argument(src[0], required=True, metavar=src[1], help=src[2])
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (written whole or not at all)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--json", action="store_true", help="print a summary as one JSON object")
    p.set_defaults(func=func)


def cmd_export(args) -> int:
    from ..interop.hf import export_hf

    info = export_hf(args.model, args.out, overwrite=args.overwrite)
    return _print_conversion(info, args)


def add_export(sub, fmt) -> None:
    xp = sub.add_parser("export", help="write a model in another format (Hugging Face)", description="Export an lmforge model.")
    xsub = xp.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = xsub.add_parser("hf", help="a Hugging Face model folder (LlamaForCausalLM / GPT2LMHeadModel)", formatter_class=fmt, description="Write config.json, model.safetensors (Hugging Face names), tokenizer.json, tokenizer_config.json (with the chat template of a chat model), special_tokens_map.json and generation_config.json; `transformers` loads it with AutoModelForCausalLM and AutoTokenizer. The llama flavour becomes LlamaForCausalLM (Qwen2ForCausalLM with q/k/v biases), the gpt2 flavour GPT2LMHeadModel.")
    _conversion(p, ("--model", "DIR", "an lmforge model folder, checkpoint or run directory"), cmd_export)


def cmd_import(args) -> int:
    if args.action == "gguf":
        from ..interop.gguf import import_gguf

        info = import_gguf(args.src, args.out, overwrite=args.overwrite)
    else:
        from ..interop.hf import import_hf

        info = import_hf(args.src, args.out, overwrite=args.overwrite)
    return _print_conversion(info, args)


def add_import(sub, fmt) -> None:
    ip = sub.add_parser("import", help="read a model from another format (Hugging Face, GGUF)", description="Import a model as an lmforge model folder.")
    isub = ip.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = isub.add_parser("hf", help="a Hugging Face model folder (or hub name): Llama, Mistral, Qwen2, SmolLM, GPT-2, a BERT encoder", formatter_class=fmt, description="Read config.json and *.safetensors of a Llama-family (Llama, Mistral without a sliding window, Qwen2, SmolLM) or GPT-2 model, or a BERT encoder (BertModel, as sentence-transformers' MiniLM; for lmforge embed), and write an lmforge model folder (its tokenizer.json copied). Pickled weights (.bin) are refused. A hub name (org/model) is downloaded when huggingface_hub is installed and the hub is reachable.")
    _conversion(p, ("--src", "DIR", "the Hugging Face model folder, or a hub name org/model"), cmd_import)
    p = isub.add_parser("gguf", help="a llama.cpp GGUF file (Llama architecture), dequantised to float32", formatter_class=fmt, description="Read a GGUF file with the gguf package (every quantisation it knows: Q4_0, Q4_1, Q8_0, K-quants, ...), undo llama.cpp's q/k row permutation, rebuild its byte-level BPE tokenizer as tokenizer.json, keep its chat template (tokenizer_config.json) and end tokens (generation_config.json), and write an lmforge model folder.")
    _conversion(p, ("--src", "FILE", "the .gguf file"), cmd_import)
