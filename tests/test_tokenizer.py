import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer

from lmforge.errors import ConfigError, InputError
from lmforge.tokenizer import SPECIAL_TOKENS, Tokenizer, TokenizerConfig, token_stats, train_tokenizer

from .conftest import make_docs

UNICODE_SAMPLES = ["héllo wörld", "日本語のテキスト", "emoji 😀👍🏽 and ZWJ 👨‍👩‍👧", "tabs\tand\r\nnewlines\n\n  ", "العربية", "\x00\x01 control", ""]


@pytest.fixture(scope="module")
def bpe_tok():
    return train_tokenizer(make_docs(300) + UNICODE_SAMPLES * 3, TokenizerConfig(kind="bpe", vocab_size=500, min_frequency=1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_bpe_round_trips_arbitrary_unicode(bpe_tok, text):
    assert bpe_tok.decode(bpe_tok.encode(text)) == text


@settings(max_examples=50, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=50))
def test_bpe_never_produces_unknown(text):
    tok = _SMALL_BPE
    assert tok.unk_id not in tok.encode(text)


_SMALL_BPE = train_tokenizer(["abc def"] * 5, TokenizerConfig(kind="bpe", vocab_size=300, min_frequency=1))


def test_reloaded_tokenizer_gives_identical_ids(tmp_path, bpe_tok):
    bpe_tok.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    plain = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in make_docs(50, seed=7) + UNICODE_SAMPLES:
        ids = bpe_tok.encode(text)
        assert again.encode(text) == ids
        assert plain.encode(text, add_special_tokens=False).ids == ids
    assert again.sha256 == bpe_tok.sha256


def test_transformers_loads_identical_ids(tmp_path, bpe_tok):
    transformers = pytest.importorskip("transformers")
    bpe_tok.save(tmp_path)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    for text in make_docs(30, seed=3) + UNICODE_SAMPLES:
        assert hf.encode(text, add_special_tokens=False) == bpe_tok.encode(text)
        assert hf.decode(bpe_tok.encode(text)) == text


@pytest.mark.parametrize("kind", ["bpe", "char", "word"])
def test_special_tokens_have_the_same_ids_in_every_kind(kind):
    tok = train_tokenizer(make_docs(50), TokenizerConfig(kind=kind, vocab_size=300, min_frequency=1))
    assert tok.kind == kind
    assert [tok.special_id(n) for n in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.encode("<|user|>")[0] == tok.special_id("user")


def test_char_tokenizer_round_trips_seen_characters_and_marks_unseen():
    tok = train_tokenizer(["hello world\nbye"], TokenizerConfig(kind="char", vocab_size=100, min_frequency=1))
    assert tok.decode(tok.encode("hello\nworld")) == "hello\nworld"
    assert len(tok.encode("hello")) == 5
    assert tok.encode("hez")[-1] == tok.unk_id


def test_word_tokenizer_splits_words_and_punctuation():
    tok = train_tokenizer(["the cat sat. the dog ran!"], TokenizerConfig(kind="word", vocab_size=100, min_frequency=1))
    ids = tok.encode("the cat ran.")
    assert [tok.id_to_token(i) for i in ids] == ["the", "cat", "ran", "."]
    assert tok.decode(ids) == "the cat ran ."
    assert tok.encode("zebra") == [tok.unk_id]


def test_vocab_size_is_respected():
    tok = train_tokenizer(make_docs(300), TokenizerConfig(kind="bpe", vocab_size=300, min_frequency=1))
    assert tok.vocab_size == 300


def test_stats():
    tok = train_tokenizer(make_docs(100), TokenizerConfig(kind="bpe", vocab_size=400, min_frequency=1))
    s = token_stats(tok, make_docs(20, seed=1))
    assert s["documents"] == 20 and s["tokens"] > 0
    assert s["bytes_per_token"] == pytest.approx(s["bytes"] / s["tokens"])
    assert 0 < s["vocab_use"] <= 1 and s["unk_rate"] == 0


def test_too_small_vocab_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        train_tokenizer(["x"], TokenizerConfig(kind="bpe", vocab_size=100))
    assert e.value.field == "vocab_size"


def test_corrupt_and_missing_tokenizer_files(tmp_path):
    with pytest.raises(InputError, match="tokenizer not found"):
        Tokenizer.load(tmp_path)
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps({"model": "nope"}))
    with pytest.raises(InputError, match="not a valid tokenizer.json"):
        Tokenizer.load(bad)


# ------------------------------------------------------------------ the start of a document


def _foreign(specials: list[str], config: dict, post: str | None = None) -> Tokenizer:
    """A tokenizer as `lmforge import hf` brings one in: its own special tokens, named in its
    tokenizer_config.json, and perhaps a post-processor (Llama's adds <s>)."""
    from tokenizers import models, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate([*specials, "[UNK]", "hello", "world", "<", "s", ">"])}
    hf = HFTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.add_special_tokens(specials)
    if post:
        hf.post_processor = processors.TemplateProcessing(single=f"{post} $A", special_tokens=[(post, vocab[post])])
    return Tokenizer(hf, config)


def test_a_document_starts_as_the_model_was_trained(bpe):
    # lmforge's own: pretraining documents are separated by the end-of-text token
    assert bpe.document_ids("hello") == [bpe.eos_id, *bpe.encode("hello")]
    # GPT-2 / SmolLM2: <|endoftext|> is bos and eos, transformers adds nothing before a prompt
    gpt2 = _foreign(["<|endoftext|>"], {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})
    assert gpt2.document_ids("hello world") == gpt2.encode("hello world") == [2, 3]
    assert gpt2.document_ids("") == [0]  # nothing to continue from but the start of a text
    # Llama: the post-processor adds <s> once, whether or not the config also says add_bos_token
    for config in ({"bos_token": "<s>", "eos_token": "</s>"}, {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True}):
        llama = _foreign(["<s>", "</s>"], config, post="<s>")
        assert llama.document_ids("hello") == [0, 3]
    # add_bos_token without a post-processor: the begin token is added by the config's word
    bos = _foreign(["<s>", "</s>"], {"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": True})
    assert bos.document_ids("world") == [0, 4]
    # what a user writes stays text: "<s>" in a prompt is not the begin token
    assert 0 not in llama.document_ids("<s>hello")[1:] and llama.document_ids("<s>hello", plain=False)[:2] == [0, 0]
