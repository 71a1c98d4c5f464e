"""LoRA: low-rank adapters on a frozen model (Hu et al. 2021), for SFT and DPO.

A linear layer W (out x in) is kept frozen and learns a low-rank update instead:

    h = W x + (alpha / r) * B A x        A: r x in, B: out x r          (Hu et al. 2021, eq. 3)

A starts random (Kaiming-uniform, as the reference implementation) and B at zero, so training
starts from the model itself; alpha / r scales the update so that changing r does not call for
a new learning rate. Only A and B train: for a 135M-parameter model with r = 8 on every
projection, under 1% of the parameters, and the optimizer's state shrinks with them.

`apply_lora` wraps the chosen linear layers of a transformer in place and freezes everything
else; `merge_lora` / `merged_state` fold B A into W (W + alpha/r B A), giving back a plain
model that every other command loads; `adapter_state` is the adapters alone (what
`adapter.safetensors` holds, beside `adapter_config.json`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..errors import ConfigError

TARGETS = ("attn.q", "attn.k", "attn.v", "attn.out", "mlp.gate", "mlp.up", "mlp.down")


@dataclass
class LoRAConfig:
    r: int = 0  # rank of the update; 0: no LoRA, every weight trains
    alpha: float = 16.0  # the update is scaled by alpha / r
    dropout: float = 0.0  # on the adapter's input
    targets: list[str] = field(default_factory=lambda: list(TARGETS))  # linear layers of each block to adapt

    def validate(self) -> None:
        if self.r < 0:
            raise ConfigError(f"must be >= 0, got {self.r}", field="lora.r")
        if self.r and self.alpha <= 0:
            raise ConfigError(f"must be > 0, got {self.alpha}", field="lora.alpha")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.dropout}", field="lora.dropout")
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or (self.r and not self.targets):
            raise ConfigError(f"unknown targets {unknown}; choose among {', '.join(TARGETS)}", field="lora.targets")


class LoRALinear(nn.Module):
    """A frozen nn.Linear (`base`) plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.r, self.scale = r, alpha / r
        self.register_buffer("lora_scale", torch.tensor(alpha / r))  # in the state dict, for merged_state
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features, device=base.weight.device, dtype=base.weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r, device=base.weight.device, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.drop = nn.Dropout(dropout)
        for p in base.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        return self.base(x) + (self.drop(x) @ self.lora_a.t() @ self.lora_b.t()) * self.scale

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
        return self.base


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> int:
    """Wrap `cfg.targets` of every block in LoRALinear and freeze the rest; returns the number
    of trainable parameters."""
    cfg.validate()
    for p in model.parameters():
        p.requires_grad_(False)
    for block in model.blocks:
        for target in cfg.targets:
            parent_name, name = target.split(".")
            parent = getattr(block, parent_name)
            layer = getattr(parent, name, None)
            if isinstance(layer, nn.Linear):  # gpt2 has no mlp.gate
                setattr(parent, name, LoRALinear(layer, cfg.r, cfg.alpha, cfg.dropout))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight, in place; the model is plain again."""
    for block in model.blocks:
        for parent in (block.attn, block.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, LoRALinear):
                    setattr(parent, name, child.merged())
    return model


def merged_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A plain state dict from one with adapters: W + alpha/r B A under W's own name."""
    if not any(k.endswith(".lora_a") for k in state):
        return state
    out = {}
    for k, v in state.items():
        if k.endswith((".lora_a", ".lora_b", ".lora_scale")):
            continue
        if k.endswith(".base.weight"):
            prefix = k[: -len(".base.weight")]
            a, b, scale = state[prefix + ".lora_a"], state[prefix + ".lora_b"], state[prefix + ".lora_scale"]
            out[prefix + ".weight"] = v + ((b.float() @ a.float()) * scale.float()).to(v.dtype)
        elif ".base." in k:
            out[k.replace(".base.", ".")] = v
        else:
            out[k] = v
    return out


def adapter_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapters alone."""
    return {k: v for k, v in state.items() if k.endswith((".lora_a", ".lora_b", ".lora_scale"))}
