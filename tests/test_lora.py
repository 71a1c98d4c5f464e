"""LoRA adapters: the layer, merging, and SFT and DPO runs that train adapters only."""

from __future__ import annotations

import pytest
import torch

from lmforge.cli import main
from lmforge.models import load_model
from lmforge.models.lora import LoRAConfig, LoRALinear, adapter_state, apply_lora, merge_lora, merged_state
from lmforge.models.transformer import ModelConfig, Transformer
from lmforge.tokenizer import Tokenizer


def _model(flavour="llama"):
    torch.manual_seed(0)
    return Transformer(ModelConfig(flavour=flavour, vocab_size=100, n_layer=2, n_head=4, d_model=32, max_seq_len=32)).eval()


@pytest.mark.parametrize("flavour", ["llama", "gpt2"])
def test_lora_starts_at_the_model_and_merges_exactly(flavour):
    model = _model(flavour)
    ids = torch.randint(0, 100, (2, 10))
    with torch.no_grad():
        before = model(ids)
    trainable = apply_lora(model, LoRAConfig(r=4, alpha=8))
    assert 0 < trainable < sum(p.numel() for p in model.parameters()) / 2
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())
    with torch.no_grad():
        assert torch.equal(model(ids), before)  # B = 0: the adapters start as nothing
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_b.normal_()
        adapted = model(ids)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        assert set(adapter_state(state)) and all(k.endswith((".lora_a", ".lora_b", ".lora_scale")) for k in adapter_state(state))
        plain = merged_state(state)
        merge_lora(model)
        assert not any(isinstance(m, LoRALinear) for m in model.modules())
        assert (model(ids) - adapted).abs().max() < 1e-5
        assert set(plain) == set(model.state_dict()) and all(torch.allclose(plain[k], v, atol=1e-6) for k, v in model.state_dict().items())


def test_lora_config_is_checked():
    from lmforge.errors import ConfigError

    with pytest.raises(ConfigError, match="lora.targets"):
        LoRAConfig(r=4, targets=["attn.qq"]).validate()
    with pytest.raises(ConfigError, match="lora.r"):
        LoRAConfig(r=-1).validate()


def test_sft_and_dpo_with_lora_train_adapters_only(chain, tmp_path):
    base, _ = load_model(chain / "base")
    out = tmp_path / "sft_lora"
    assert main(["sft", f"init={chain / 'base'}", "epochs=0", "train.steps=6", "train.batch_size=4", "lora.r=4", "train.optim.lr=1e-2", "--out", str(out)]) == 0
    tuned, _ = load_model(out)  # a plain model, adapters merged
    assert (out / "adapter.safetensors").exists()
    changed = [n for n, p in tuned.state_dict().items() if not torch.equal(p, base.state_dict()[n])]
    # only the adapted projections moved; norms are the base model's, and of the embeddings only
    # <|end|>'s output row, started from <|endoftext|>'s before training (lmforge.train.sft)
    assert changed and all(any(t in n for t in (".attn.", ".mlp.")) and n.endswith(".weight") for n in changed if "emb" not in n and "lm_head" not in n)
    end = Tokenizer.load(chain / "base").special_id("end_of_turn")
    for name in ("tok_emb.weight", "lm_head.weight"):
        moved = (tuned.state_dict()[name] != base.state_dict()[name]).any(1).nonzero().flatten().tolist()
        assert moved in ([], [end])
    assert torch.equal(tuned.state_dict()["lm_head.weight"][end], base.state_dict()["lm_head.weight"][Tokenizer.load(chain / "base").eos_id])

    out = tmp_path / "dpo_lora"
    assert main(["dpo", f"init={chain / 'sft'}", "epochs=0", "train.steps=4", "train.batch_size=4", "lora.r=4", "lora.targets=[attn.q,attn.v]", "eval.prompts=", "--out", str(out)]) == 0
    sft, _ = load_model(chain / "sft")
    dpo, _ = load_model(out)
    changed = [n for n, p in dpo.state_dict().items() if not torch.equal(p, sft.state_dict()[n])]
    assert changed and all(n.endswith((".attn.q.weight", ".attn.v.weight")) for n in changed)
