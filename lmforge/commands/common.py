"""What the commands of several stages share: printing, argument sets, loading a model."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError

DATA_HELP = "a .txt/.jsonl/.parquet file or a folder of them, a saved Hugging Face dataset, or hf:NAME[:CONFIG]"


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def add_corpus_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, metavar="PATH", help=f"the corpus: {DATA_HELP}")
    p.add_argument("--text-field", default="text", metavar="NAME", help="field holding the text in JSONL/Parquet/datasets records (default: text)")
    p.add_argument(
        "--sample-by",
        choices=["document", "line", "paragraph"],
        default="document",
        help="how .txt files split into documents: a whole file, each line, or blank-line-separated paragraphs (default: document)",
    )
    p.add_argument("--split", default=None, metavar="NAME", help="split of a Hugging Face dataset (default: train)")


def stage_args(p: argparse.ArgumentParser, example: str = "") -> None:
    """The arguments every training stage takes: a recipe, dotted overrides, --out, --json."""
    p.add_argument("recipe", nargs="?", default=None, metavar="RECIPE", help="a YAML recipe")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config overrides" + (f", e.g. {example}" if example else ""))
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (resumed if it holds checkpoints)")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")


def sampling_args(p, *, temperature: float) -> None:
    """The sampler's options, shared by `generate` and `chat` (only the default temperature differs)."""
    p.add_argument("--temperature", type=float, default=temperature, metavar="T", help="sampling temperature; 0 is greedy")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="sample among the K most likely tokens only")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling: the smallest set of tokens with probability >= P")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R", help="divide (multiply) positive (negative) logits of tokens already seen by R")


def print_run_result(result: dict, args) -> int:
    """A training stage's final metrics: one JSON object, or key=value pairs and the run directory."""
    if args.json:
        print_json(result)
    else:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
        print(" ".join(f"{k}={v}" for k, v in shown.items()))
        print(f"-> {args.out}")
    return 0


def load_model_and_tokenizer(path: str):
    from ..models import load_model
    from ..tokenizer import Tokenizer

    model, folder = load_model(path)
    if getattr(getattr(model, "cfg", None), "causal", True) is False:
        raise InputError("an encoder (bidirectional attention) does not generate or score text left to right; use it with lmforge embed", path=folder, field="causal")
    return model.eval(), Tokenizer.load(folder)


def named_models(specs: list[str]) -> dict[str, str]:
    """--model [NAME=]DIR arguments as {name: dir}; a bare DIR is named by its folder's name."""
    from pathlib import Path

    out = {}
    for spec in specs:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        name = name or Path(path.rstrip("/")).name or path
        if name in out:
            raise InputError(f"two models named {name!r}; name them with NAME=DIR", field="model")
        out[name] = path
    return out
