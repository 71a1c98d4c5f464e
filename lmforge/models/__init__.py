"""Models: the transformer (and, later, n-gram and RNN baselines), and loading them from disk.

A saved model is a folder with `config.json` ({"architecture": "transformer", "head": ...,
"model": ModelConfig fields}), `model.safetensors` and `tokenizer.json`.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from ..checkpoint import load_model_files
from ..config import from_dict
from ..errors import InputError
from .transformer import ModelConfig, Transformer


def model_config_json(model: Transformer) -> dict:
    return {"architecture": "transformer", "head": model.head_kind, "model": dataclasses.asdict(model.cfg)}


def build_model(config: dict) -> Transformer:
    if config.get("architecture") != "transformer":
        raise InputError(f"unsupported architecture {config.get('architecture')!r} (supported: transformer)", field="architecture")
    cfg = from_dict(ModelConfig, config.get("model", {}))
    return Transformer(cfg, head=config.get("head", "lm"))


def load_model(path: str | os.PathLike, device: str = "cpu") -> tuple[Transformer, "os.PathLike"]:
    """The model at PATH (a model folder, checkpoint or run directory) and the folder it came from."""
    config, weights, folder = load_model_files(path, device)
    model = build_model(config)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {"lm_head.weight"} if model.cfg.tied else set()
    if set(missing) - tied or unexpected:
        raise InputError(f"weights do not fit the config: missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]}", path=folder)
    return model.to(device), folder


__all__ = ["ModelConfig", "Transformer", "build_model", "load_model", "model_config_json", "torch"]
