"""GGUF import (`lmforge import gguf`): llama.cpp's single-file models, dequantised to float32.

A GGUF file holds the architecture's hyperparameters (`llama.block_count`, ...), the tokenizer
(`tokenizer.ggml.tokens`, `merges`, `token_type`, the special ids, `tokenizer.chat_template`)
and the tensors, quantised or not. The `gguf` package reads it and dequantises every type it
knows (Q4_0, Q4_1, Q8_0, K-quants, ...); this module maps llama.cpp's tensor names to lmforge's
and undoes the one transformation llama.cpp's converter applies: for Llama models it permutes
the rows of q and k from Hugging Face's "rotate half" rotary layout to the interleaved one its
kernels use (`permute` in llama.cpp's convert_hf_to_gguf.py); `_unpermute` is its inverse.

The tokenizer (llama.cpp's "gpt2" model: byte-level BPE) is rebuilt as a Hugging Face
`tokenizer.json` from the vocabulary and merges, the control tokens as special tokens, as
`transformers` does when it loads a GGUF file; the chat template and the special tokens go into
`tokenizer_config.json`, and the end-of-turn tokens into `generation_config.json`, so the
imported model is asked and stopped as its authors meant (see `lmforge.data.chat`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

NAMES = {
    "attn_q": "attn.q", "attn_k": "attn.k", "attn_v": "attn.v", "attn_output": "attn.out",
    "ffn_gate": "mlp.gate", "ffn_up": "mlp.up", "ffn_down": "mlp.down",
    "attn_norm": "norm1", "ffn_norm": "norm2",
}  # fmt: skip


def _unpermute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Inverse of llama.cpp's permute(w, n_head): interleaved rotary rows back to rotate-half."""
    d = w.shape[0] // n_head // 2
    return w.reshape(n_head, d, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def _tensor(t) -> torch.Tensor:
    from gguf import dequantize

    arr = dequantize(t.data, t.tensor_type)
    shape = tuple(int(x) for x in reversed(t.shape))  # GGUF lists dimensions innermost first
    return torch.from_numpy(np.array(arr, dtype=np.float32).reshape(shape))  # a writable copy


def _tokenizer(reader, path: Path):
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise InputError(f"tokenizer model {kind!r}: only byte-level BPE ('gpt2') tokenizers are imported", path=path, field="tokenizer.ggml.model")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges", [])]
    types = _field(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
    hf = HFTokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False, byte_fallback=False))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    specials = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3]  # control tokens
    hf.add_special_tokens(specials)
    return hf, tokens


def import_gguf(src: str | Path, out: str | Path, *, overwrite: bool = False) -> dict:
    """Write the Llama-architecture GGUF file `src` as an lmforge model folder `out`."""
    try:
        from gguf import GGUFReader
    except ImportError as e:
        raise InputError(f"reading GGUF needs the gguf package: pip install 'lmforge[hf]' ({e})") from None
    from dataclasses import asdict

    from ..checkpoint import save_weights
    from ..io import atomic_output_dir
    from ..models.transformer import ModelConfig, Transformer

    src = Path(src)
    if not src.is_file():
        raise InputError("GGUF file not found", path=src)
    try:
        reader = GGUFReader(str(src))
    except Exception as e:  # the gguf package raises ValueError, struct errors, ... on a bad file
        raise InputError(f"not a readable GGUF file ({type(e).__name__}: {e})", path=src) from None
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise InputError(f"unsupported GGUF architecture {arch!r}; lmforge imports 'llama' (Llama, SmolLM, Mistral without a sliding window)", path=src, field="general.architecture")
    n_head = int(_field(reader, "llama.attention.head_count"))
    n_kv = int(_field(reader, "llama.attention.head_count_kv", n_head))
    hf_tok, tokens = _tokenizer(reader, src)
    cfg = ModelConfig(
        flavour="llama", vocab_size=len(tokens), n_layer=int(_field(reader, "llama.block_count")), n_head=n_head, n_kv_head=n_kv,
        d_model=int(_field(reader, "llama.embedding_length")), d_ff=int(_field(reader, "llama.feed_forward_length")),
        max_seq_len=int(_field(reader, "llama.context_length", 2048)), rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        tie_embeddings=not any(t.name == "output.weight" for t in reader.tensors),
    )  # fmt: skip
    state: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        name = t.name
        if name == "token_embd.weight":
            key = "tok_emb.weight"
        elif name == "output_norm.weight":
            key = "norm.weight"
        elif name == "output.weight":
            key = "lm_head.weight"
        elif name.startswith("blk."):
            _, i, part, kind = name.split(".", 3)
            if part not in NAMES:
                raise InputError(f"unexpected tensor {name!r}", path=src)
            key = f"blocks.{i}.{NAMES[part]}.{kind}"
        elif name == "rope_freqs.weight":
            raise InputError("rope frequency scaling (rope_freqs) is not supported", path=src, field=name)
        else:
            raise InputError(f"unexpected tensor {name!r}", path=src)
        w = _tensor(t)
        if name.endswith("attn_q.weight"):
            w = _unpermute(w, n_head)
        elif name.endswith("attn_k.weight"):
            w = _unpermute(w, n_kv)
        state[key] = w
    expected = Transformer(cfg).state_dict()
    for key, w in state.items():
        if key not in expected:
            raise InputError(f"unexpected tensor {key!r}", path=src)
        if tuple(w.shape) != tuple(expected[key].shape):
            raise InputError(f"tensor {key!r} has shape {tuple(w.shape)}; the file's hyperparameters give {tuple(expected[key].shape)}", path=src)
    missing = [k for k in expected if k not in state and not (k == "lm_head.weight" and cfg.tied)]
    if missing:
        raise InputError(f"missing tensors {missing[:3]}", path=src)
    bos, eos = _field(reader, "tokenizer.ggml.bos_token_id"), _field(reader, "tokenizer.ggml.eos_token_id")
    pad, unk = _field(reader, "tokenizer.ggml.padding_token_id", eos), _field(reader, "tokenizer.ggml.unknown_token_id")
    template = _field(reader, "tokenizer.chat_template")
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tokens[bos] if bos is not None else None,
        "eos_token": tokens[eos] if eos is not None else None,
        "pad_token": tokens[pad] if pad is not None else None,
        "unk_token": tokens[unk] if unk is not None else None,
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
    }
    if template:
        tok_config["chat_template"] = template
    config = {"architecture": "transformer", "head": "lm", "model": asdict(cfg), "imported_from": str(src)}
    if template:
        config["chat_template"] = "tokenizer"  # the Jinja template in tokenizer_config.json
    with atomic_output_dir(out, overwrite) as tmp:
        save_weights(tmp / "model.safetensors", state)
        hf_tok.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n", encoding="utf-8")
        (tmp / "generation_config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}, indent=2) + "\n", encoding="utf-8")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return {"architecture": arch, "parameters": sum(w.numel() for k, w in state.items()), "chat": bool(template), "out": str(out)}
