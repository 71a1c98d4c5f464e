"""Hugging Face format: lmforge models out (`lmforge export hf`) and in (`lmforge import hf`).

lmforge's two transformer flavours are two Hugging Face families, parameter for parameter:

  llama  -> LlamaForCausalLM   RMSNorm, rotary positions in the "rotate half" layout HF uses
                               (so q and k need no permutation), SwiGLU, grouped-query attention
  gpt2   -> GPT2LMHeadModel    LayerNorm, learned positions, GELU (tanh) MLP; HF keeps GPT-2's
                               Conv1D weights as (in, out), so every matrix is transposed and
                               q, k, v are one `c_attn`

Export writes `config.json`, `model.safetensors` (HF names; a tied head stored once, as HF
does), the tokenizer (`tokenizer.json`, `tokenizer_config.json` with the chat template of a
fine-tuned model, `special_tokens_map.json`) and `generation_config.json` (a chat model stops at
<|end|> as well as <|endoftext|>). Import reads the same layout from a local directory for
Llama, Mistral (without a sliding window), Qwen2 (biases on q, k, v) and SmolLM (a Llama), and
GPT-2, and BERT encoders (`BertModel`, the layout of sentence-transformers' MiniLM models: the
`bert` flavour, hidden states for `lmforge embed`; its pooler, trained for next-sentence
prediction, is left out). What cannot be represented is refused with the reason: another architecture (named,
with the supported ones), rope scaling, a sliding window, a tensor whose shape the config does
not give (named).

Written by hand because it is the mapping itself; `transformers` is needed only by the tests
that check the logits agree (the optional [hf] extra).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import InputError

LLAMA_TYPES = ("llama", "mistral", "qwen2")
SUPPORTED = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel", "BertModel")


# --------------------------------------------------------------------------- export


def _llama_out(model) -> tuple[dict, dict[str, torch.Tensor]]:
    cfg = model.cfg
    sd = model.state_dict()
    out = {"model.embed_tokens.weight": sd["tok_emb.weight"], "model.norm.weight": sd["norm.weight"]}
    names = {"attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj", "attn.out": "self_attn.o_proj",
             "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj",
             "norm1": "input_layernorm", "norm2": "post_attention_layernorm"}  # fmt: skip
    for i in range(cfg.n_layer):
        for ours, theirs in names.items():
            for kind in ("weight", "bias"):
                key = f"blocks.{i}.{ours}.{kind}"
                if key in sd:
                    out[f"model.layers.{i}.{theirs}.{kind}"] = sd[key]
    if not cfg.tied:
        out["lm_head.weight"] = sd["lm_head.weight"]
    bias = "blocks.0.attn.q.bias" in sd
    config = {
        "architectures": ["Qwen2ForCausalLM" if bias else "LlamaForCausalLM"],
        "model_type": "qwen2" if bias else "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ff_dim,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "hidden_act": "silu",
        "tie_word_embeddings": cfg.tied,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "float32",
    }
    if bias:
        config.pop("attention_bias")
        config.pop("mlp_bias")
    return config, out


def _gpt2_out(model) -> tuple[dict, dict[str, torch.Tensor]]:
    cfg = model.cfg
    if cfg.kv_heads != cfg.n_head:
        raise InputError("GPT-2 has no grouped-query attention; this gpt2-flavour model has n_kv_head != n_head", field="n_kv_head")
    if cfg.ff_dim != 4 * cfg.d_model:
        raise InputError(f"GPT-2's MLP is 4 x d_model wide; this model's is {cfg.ff_dim}", field="d_ff")
    sd = model.state_dict()
    out = {"transformer.wte.weight": sd["tok_emb.weight"], "transformer.wpe.weight": sd["pos_emb.weight"],
           "transformer.ln_f.weight": sd["norm.weight"], "transformer.ln_f.bias": sd["norm.bias"]}  # fmt: skip
    for i in range(cfg.n_layer):
        b, h = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[h + theirs + ".weight"], out[h + theirs + ".bias"] = sd[b + ours + ".weight"], sd[b + ours + ".bias"]
        # Conv1D stores (in, out): transpose ours (out, in); q, k, v side by side in c_attn
        out[h + "attn.c_attn.weight"] = torch.cat([sd[b + f"attn.{x}.weight"] for x in "qkv"], 0).t()
        out[h + "attn.c_attn.bias"] = torch.cat([sd[b + f"attn.{x}.bias"] for x in "qkv"], 0)
        out[h + "attn.c_proj.weight"], out[h + "attn.c_proj.bias"] = sd[b + "attn.out.weight"].t(), sd[b + "attn.out.bias"]
        out[h + "mlp.c_fc.weight"], out[h + "mlp.c_fc.bias"] = sd[b + "mlp.up.weight"].t(), sd[b + "mlp.up.bias"]
        out[h + "mlp.c_proj.weight"], out[h + "mlp.c_proj.bias"] = sd[b + "mlp.down.weight"].t(), sd[b + "mlp.down.bias"]
    if not cfg.tied:
        out["lm_head.weight"] = sd["lm_head.weight"]
    config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_positions": cfg.max_seq_len,
        "n_ctx": cfg.max_seq_len,
        "n_inner": None,
        "layer_norm_epsilon": cfg.norm_eps,
        "activation_function": "gelu_new",  # GELU, tanh approximation: what lmforge's MLP computes
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "tie_word_embeddings": cfg.tied,
        "torch_dtype": "float32",
    }
    return config, out


def _tokenizer_files(tok, chat: bool) -> dict[str, dict]:
    from ..data.chat import CHAT_TEMPLATE
    from ..tokenizer import SPECIAL_TOKENS

    specials = {"bos_token": SPECIAL_TOKENS["bos"], "eos_token": SPECIAL_TOKENS["eos"], "unk_token": SPECIAL_TOKENS["unk"], "pad_token": SPECIAL_TOKENS["pad"]}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "additional_special_tokens": [SPECIAL_TOKENS[n] for n in ("system", "user", "assistant", "end_of_turn")],
        "model_max_length": 1 << 30,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
    }
    if chat:
        config["chat_template"] = CHAT_TEMPLATE
    return {"tokenizer_config.json": config, "special_tokens_map.json": {**specials, "additional_special_tokens": config["additional_special_tokens"]}}


def export_hf(model_dir: str | Path, out: str | Path, *, overwrite: bool = False) -> dict:
    """Write the lmforge model at `model_dir` as a Hugging Face model folder `out`."""
    from safetensors.torch import save_file

    from ..io import atomic_output_dir
    from ..models import load_model
    from ..models.transformer import Transformer
    from ..tokenizer import Tokenizer

    model, folder = load_model(model_dir)
    if not isinstance(model, Transformer):
        raise InputError("only transformers have a Hugging Face family (this is a recurrent model)", path=folder)
    if model.head_kind != "lm":
        raise InputError("a reward or value model (scalar head) has no causal-LM equivalent; export a language model", path=folder)
    tok = Tokenizer.load(folder)
    if model.cfg.flavour == "bert" or not model.cfg.causal:
        raise InputError("an encoder (bidirectional attention) is not exported: export writes causal language models, the llama and gpt2 flavours", path=folder, field="causal")
    config, state = (_llama_out if model.cfg.flavour == "llama" else _gpt2_out)(model)
    chat = getattr(model, "chat_template", None) is not None
    config.update(bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    eos = [tok.special_id("end_of_turn"), tok.eos_id] if chat else tok.eos_id
    generation = {"bos_token_id": tok.bos_id, "eos_token_id": eos, "pad_token_id": tok.pad_id, "do_sample": True, "temperature": 1.0, "top_p": 1.0}
    with atomic_output_dir(out, overwrite) as tmp:
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tok.save(tmp)
        for name, obj in {"config.json": config, "generation_config.json": generation, **_tokenizer_files(tok, chat)}.items():
            (tmp / name).write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    return {"architecture": config["architectures"][0], "parameters": sum(v.numel() for v in state.values()), "chat": chat, "out": str(out)}


# --------------------------------------------------------------------------- import


def _read_config(src: Path) -> dict:
    p = src / "config.json"
    if not p.exists():
        raise InputError("not a Hugging Face model folder (no config.json)", path=src)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"corrupt config.json: {e}", path=p) from None


def _hf_weights(src: Path) -> dict[str, torch.Tensor]:
    from ..checkpoint import load_weights

    files = sorted(src.glob("*.safetensors"))
    if not files:
        if list(src.glob("*.bin")):
            raise InputError("only safetensors weights are read (pytorch_model.bin is a pickle, which lmforge does not load)", path=src)
        raise InputError("no *.safetensors weights", path=src)
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_weights(f))
    return out


def _model_config(hf: dict, src: Path):
    from ..models.transformer import ModelConfig

    arch = (hf.get("architectures") or [None])[0]
    mtype = hf.get("model_type")
    if arch not in SUPPORTED:
        raise InputError(f"unsupported architecture {arch or mtype!r}; lmforge imports {', '.join(SUPPORTED)}", path=src / "config.json", field="architectures")
    if mtype == "bert":
        return _bert_config(hf, src), False
    if mtype == "gpt2":
        act = hf.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise InputError(f"GPT-2 with activation {act!r}: lmforge's GPT-2 MLP is GELU with the tanh approximation", path=src / "config.json", field="activation_function")
        n_inner = hf.get("n_inner")
        return ModelConfig(
            flavour="gpt2", vocab_size=hf["vocab_size"], n_layer=hf["n_layer"], n_head=hf["n_head"], d_model=hf["n_embd"],
            d_ff=n_inner or 4 * hf["n_embd"], max_seq_len=hf.get("n_positions", 1024), norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            tie_embeddings=hf.get("tie_word_embeddings", True),
        ), False  # fmt: skip
    rope = hf.get("rope_parameters") or {}  # transformers 5 keeps rope_theta and the scaling here
    for key, scaling in (("rope_scaling", hf.get("rope_scaling")), ("rope_parameters", rope)):
        if scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default":
            raise InputError(f"rope scaling {scaling} is not supported", path=src / "config.json", field=key)
    theta = float(hf.get("rope_theta") or rope.get("rope_theta") or 10000.0)
    if mtype in ("mistral", "qwen2") and hf.get("sliding_window") and hf.get("use_sliding_window", mtype == "mistral"):
        raise InputError("sliding-window attention is not supported (set it to null for a model that never uses it)", path=src / "config.json", field="sliding_window")
    if hf.get("hidden_act", "silu") != "silu":
        raise InputError(f"activation {hf['hidden_act']!r}: lmforge's Llama MLP is SwiGLU (silu)", path=src / "config.json", field="hidden_act")
    d, nh = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d // nh):
        raise InputError(f"head_dim {hf['head_dim']} differs from hidden_size / num_attention_heads ({d // nh})", path=src / "config.json", field="head_dim")
    if hf.get("mlp_bias") or (mtype == "llama" and hf.get("attention_bias")):
        raise InputError("biases in the Llama MLP or attention are not supported", path=src / "config.json", field="attention_bias")
    return ModelConfig(
        flavour="llama", vocab_size=hf["vocab_size"], n_layer=hf["num_hidden_layers"], n_head=nh, n_kv_head=hf.get("num_key_value_heads", nh),
        d_model=d, d_ff=hf["intermediate_size"], max_seq_len=hf.get("max_position_embeddings", 2048), rope_theta=theta,
        norm_eps=hf.get("rms_norm_eps", 1e-6), tie_embeddings=hf.get("tie_word_embeddings", False), qkv_bias=mtype == "qwen2",
    ), mtype == "qwen2"  # fmt: skip


def _bert_config(hf: dict, src: Path):
    from ..models.transformer import ModelConfig

    if hf.get("hidden_act", "gelu") != "gelu":
        raise InputError(f"BERT with activation {hf['hidden_act']!r}: lmforge's BERT MLP is the exact GELU", path=src / "config.json", field="hidden_act")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise InputError("only absolute position embeddings are supported", path=src / "config.json", field="position_embedding_type")
    return ModelConfig(
        flavour="bert", vocab_size=hf["vocab_size"], n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"], d_model=hf["hidden_size"],
        d_ff=hf["intermediate_size"], max_seq_len=hf.get("max_position_embeddings", 512), norm_eps=hf.get("layer_norm_eps", 1e-12),
        tie_embeddings=True, causal=False,
    )  # fmt: skip


def _bert_state(cfg, take, w: dict) -> dict[str, torch.Tensor]:
    """BertModel's tensors (with or without the "bert." prefix) under lmforge's names. The one
    segment's token-type embedding is added to every position embedding, which is exact for
    single-segment input; older checkpoints name LayerNorm parameters gamma and beta."""
    prefix = "bert." if any(k.startswith("bert.") for k in w) else ""

    def norm(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        n = prefix + name
        if n + ".gamma" in w:
            return take(n + ".gamma"), take(n + ".beta")
        return take(n + ".weight"), take(n + ".bias")

    out = {"tok_emb.weight": take(prefix + "embeddings.word_embeddings.weight")}
    types = take(prefix + "embeddings.token_type_embeddings.weight")
    out["pos_emb.weight"] = take(prefix + "embeddings.position_embeddings.weight") + types[0]
    out["emb_norm.weight"], out["emb_norm.bias"] = norm("embeddings.LayerNorm")
    names = {"attn.q": "attention.self.query", "attn.k": "attention.self.key", "attn.v": "attention.self.value",
             "attn.out": "attention.output.dense", "mlp.up": "intermediate.dense", "mlp.down": "output.dense"}  # fmt: skip
    for i in range(cfg.n_layer):
        h = f"{prefix}encoder.layer.{i}."
        for ours, theirs in names.items():
            out[f"blocks.{i}.{ours}.weight"], out[f"blocks.{i}.{ours}.bias"] = take(h + theirs + ".weight"), take(h + theirs + ".bias")
        out[f"blocks.{i}.norm1.weight"], out[f"blocks.{i}.norm1.bias"] = norm(f"encoder.layer.{i}.attention.output.LayerNorm")
        out[f"blocks.{i}.norm2.weight"], out[f"blocks.{i}.norm2.bias"] = norm(f"encoder.layer.{i}.output.LayerNorm")
    for k in [k for k in w if k.startswith((prefix + "pooler.", prefix + "embeddings.position_ids"))]:
        w.pop(k)  # the pooler (next-sentence prediction) and a stored buffer of 0..n-1
    return out


def _state_from_hf(cfg, weights: dict[str, torch.Tensor], src: Path) -> dict[str, torch.Tensor]:
    """lmforge's state dict from HF tensors (the inverse of `_llama_out` / `_gpt2_out`)."""
    w = dict(weights)
    out: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        if name not in w:
            raise InputError(f"missing tensor {name!r}", path=src)
        return w.pop(name)

    if cfg.flavour == "bert":
        out = _bert_state(cfg, take, w)
    elif cfg.flavour == "llama":
        out["tok_emb.weight"], out["norm.weight"] = take("model.embed_tokens.weight"), take("model.norm.weight")
        names = {"attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj", "attn.out": "self_attn.o_proj",
                 "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj",
                 "norm1": "input_layernorm", "norm2": "post_attention_layernorm"}  # fmt: skip
        for i in range(cfg.n_layer):
            for ours, theirs in names.items():
                out[f"blocks.{i}.{ours}.weight"] = take(f"model.layers.{i}.{theirs}.weight")
                if cfg.qkv_bias and ours in ("attn.q", "attn.k", "attn.v"):
                    out[f"blocks.{i}.{ours}.bias"] = take(f"model.layers.{i}.{theirs}.bias")
    else:
        out["tok_emb.weight"], out["pos_emb.weight"] = take("transformer.wte.weight"), take("transformer.wpe.weight")
        out["norm.weight"], out["norm.bias"] = take("transformer.ln_f.weight"), take("transformer.ln_f.bias")
        d = cfg.d_model
        for i in range(cfg.n_layer):
            b, h = f"blocks.{i}.", f"transformer.h.{i}."
            for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
                out[b + ours + ".weight"], out[b + ours + ".bias"] = take(h + theirs + ".weight"), take(h + theirs + ".bias")
            qkv_w, qkv_b = take(h + "attn.c_attn.weight"), take(h + "attn.c_attn.bias")
            if qkv_w.shape != (d, 3 * d):
                raise InputError(f"tensor {h}attn.c_attn.weight has shape {tuple(qkv_w.shape)}; the config gives {(d, 3 * d)}", path=src)
            for j, x in enumerate("qkv"):
                out[b + f"attn.{x}.weight"] = qkv_w[:, j * d : (j + 1) * d].t().contiguous()
                out[b + f"attn.{x}.bias"] = qkv_b[j * d : (j + 1) * d].contiguous()
            out[b + "attn.out.weight"], out[b + "attn.out.bias"] = take(h + "attn.c_proj.weight").t().contiguous(), take(h + "attn.c_proj.bias")
            out[b + "mlp.up.weight"], out[b + "mlp.up.bias"] = take(h + "mlp.c_fc.weight").t().contiguous(), take(h + "mlp.c_fc.bias")
            out[b + "mlp.down.weight"], out[b + "mlp.down.bias"] = take(h + "mlp.c_proj.weight").t().contiguous(), take(h + "mlp.c_proj.bias")
            for extra in ("attn.bias", "attn.masked_bias"):  # old GPT-2 checkpoints store their causal masks
                w.pop(h + extra, None)
    if "lm_head.weight" in w:
        head = w.pop("lm_head.weight")
        if not cfg.tied:
            out["lm_head.weight"] = head
    elif not cfg.tied:
        raise InputError("missing tensor 'lm_head.weight' (the config says the embeddings are not tied)", path=src)
    if w:
        raise InputError(f"tensors the config does not account for: {sorted(w)[:3]}{' ...' if len(w) > 3 else ''}", path=src)
    return out


def import_hf(src: str | Path, out: str | Path, *, overwrite: bool = False) -> dict:
    """Write the Hugging Face model at `src` (a local folder) as an lmforge model folder `out`."""
    from ..checkpoint import save_weights
    from ..io import atomic_output_dir
    from ..models.transformer import Transformer

    src = _local(src)
    hf = _read_config(src)
    cfg, _ = _model_config(hf, src)
    state = _state_from_hf(cfg, _hf_weights(src), src)
    model = Transformer(cfg)
    expected = model.state_dict()
    for name, t in state.items():
        if name not in expected:
            raise InputError(f"unexpected tensor {name!r}", path=src)
        if tuple(t.shape) != tuple(expected[name].shape):
            raise InputError(f"tensor {name!r} has shape {tuple(t.shape)}; the config gives {tuple(expected[name].shape)}", path=src)
    model.load_state_dict(state, strict=False)
    config = {"architecture": "transformer", "head": "lm", "model": asdict(cfg), "imported_from": str(src)}
    if cfg.flavour == "bert":
        config["objective"] = "encoder"  # hidden states for lmforge embed; BERT's masked-LM head is not imported (the tied head is none)
    template = _chat_template(src)  # "lmforge" (an exported lmforge chat model), "tokenizer" (its own Jinja), or None
    if template:
        config["chat_template"] = template
    with atomic_output_dir(out, overwrite) as tmp:
        save_weights(tmp / "model.safetensors", {k: v.float().contiguous() for k, v in state.items()})
        # the tokenizer, and with a foreign one its special tokens, chat template and end tokens
        keep = ("tokenizer_config.json", "generation_config.json") if template == "tokenizer" or cfg.flavour == "bert" or _foreign_specials(src) else ()
        for name in ("tokenizer.json", *keep):  # BERT's [PAD] and [MASK] are named in tokenizer_config.json
            if (src / name).exists():
                (tmp / name).write_bytes((src / name).read_bytes())
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    chat = template is not None
    return {"architecture": (hf.get("architectures") or [""])[0], "flavour": cfg.flavour, "parameters": sum(t.numel() for t in state.values()), "chat": chat, "out": str(out)}


def _foreign_specials(src: Path) -> bool:
    """Whether the folder's tokenizer names its special tokens its own way (a base model's "</s>"
    rather than lmforge's <|endoftext|>): then tokenizer_config.json says which is which."""
    from tokenizers import Tokenizer as HFTokenizer

    from ..tokenizer import SPECIAL_TOKENS

    path = src / "tokenizer.json"
    return path.exists() and HFTokenizer.from_file(str(path)).token_to_id(SPECIAL_TOKENS["eos"]) is None


def _local(src: str | Path) -> Path:
    """A local folder as it is; otherwise a hub name ("org/model"), downloaded (safetensors,
    configs and tokenizer only) when `huggingface_hub` is installed and the hub is reachable."""
    p = Path(src)
    if p.is_dir():
        return p
    name = str(src)
    if p.exists() or name.count("/") != 1 or name.startswith((".", "/")):
        raise InputError("not a folder (give a local Hugging Face model folder, or a hub name like org/model)", path=src)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise InputError("not a local folder; downloading a hub model needs huggingface_hub (pip install 'lmforge[hf]')", path=src) from None
    try:
        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "tokenizer*"]))
    except Exception as e:  # offline, unknown repository, gated model
        raise InputError(f"could not download {name} from the Hugging Face hub ({type(e).__name__}: {e})", path=src) from None


def _chat_template(src: Path) -> str | None:
    """"lmforge" when the folder's chat template is lmforge's (an exported lmforge chat model),
    "tokenizer" when it has another (kept in tokenizer_config.json), None for a base model."""
    from ..data.chat import CHAT_TEMPLATE

    p = src / "tokenizer_config.json"
    if not p.exists():
        return None
    try:
        template = json.loads(p.read_text(encoding="utf-8")).get("chat_template")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    if not isinstance(template, str) or not template:
        return None
    return "lmforge" if template == CHAT_TEMPLATE else "tokenizer"
