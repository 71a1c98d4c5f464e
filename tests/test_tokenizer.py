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
