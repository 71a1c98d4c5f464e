"""Models, and loading them from disk.

  transformer.py  the GPT (gpt2 and llama flavours): lmforge's one model definition
  rnn.py          the recurrent baselines (Elman RNN, LSTM, GRU)
  ngram.py        n-gram baselines (Kneser-Ney as KenLM builds it, add-k, MLE): numpy, no torch

A saved neural model is a folder with `config.json` ({"architecture": "transformer" | "rnn",
"head": ..., "model": the config's fields, "trained_seq_len": the length of its training
sequences, "chat_template": "lmforge" once fine-tuned on conversations, "untrained_tokens": the
ids pretraining never saw, which SFT needs to know}), `model.safetensors` and `tokenizer.json`.

Nothing here imports torch until a neural model is asked for, so the n-gram commands start
without it.
"""

from __future__ import annotations

import dataclasses
import os

from ..errors import InputError

ARCHITECTURES = ("transformer", "rnn")


def model_config_json(model) -> dict:
    from .rnn import RNNLM

    arch = "rnn" if isinstance(model, RNNLM) else "transformer"
    out = {"architecture": arch, "head": model.head_kind, "model": dataclasses.asdict(model.cfg)}
    if getattr(model, "prior", None) is not None:  # a reward model's answer prior: its frozen LM's shape
        out["prior"] = dataclasses.asdict(model.prior.lm.cfg)
    if getattr(model, "head_kind", "") == "classes":  # a classifier: its class names, in head order, and pooling
        out["labels"], out["pooling"] = list(model.labels), model.pooling
    return out


def build_model(config: dict):
    from ..config import from_dict
    from .rnn import RNNLM, RNNConfig
    from .transformer import ModelConfig, Transformer

    arch = config.get("architecture")
    if arch == "rnn":
        model = RNNLM(from_dict(RNNConfig, config.get("model", {})))
    elif arch == "transformer":
        prior = from_dict(ModelConfig, config["prior"]) if config.get("prior") else None
        head = config.get("head", "lm")
        model = Transformer(from_dict(ModelConfig, config.get("model", {})), head=head, prior=prior, n_classes=len(config.get("labels") or []))
        if head == "classes":
            model.labels, model.pooling = list(config["labels"]), config.get("pooling", "mean")
    else:
        raise InputError(f"unsupported architecture {arch!r} (supported: {', '.join(ARCHITECTURES)})", field="architecture")
    # the sequence length it was trained on (pretraining records it): evaluation's default window,
    # since a transformer has learned nothing about positions past it
    model.trained_seq_len = config.get("trained_seq_len")
    # the chat template a fine-tuned model was trained with (None: a base model, plain text)
    model.chat_template = config.get("chat_template")
    # ids that never occurred in the pretraining data (pretraining records them): their rows were
    # only ever pushed down, so SFT starts the chat template's tokens elsewhere (lmforge.train.sft)
    model.untrained_tokens = config.get("untrained_tokens")
    return model


def load_model(path: str | os.PathLike, device: str = "cpu"):
    """The model at PATH (a model folder, checkpoint or run directory) and the folder it came from."""
    from ..checkpoint import load_model_files

    config, weights, folder = load_model_files(path, device)
    model = build_model(config)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # a tied weight may be stored under one of its names only
    tied = {n for n, _ in model.named_parameters(remove_duplicate=False)} - {n for n, _ in model.named_parameters()}
    if set(missing) - tied or unexpected:
        raise InputError(f"weights do not fit the config: missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]}", path=folder)
    return model.to(device), folder


__all__ = ["ARCHITECTURES", "build_model", "load_model", "model_config_json"]
