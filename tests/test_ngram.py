"""n-gram LMs against KenLM: the same ARPA file, the same perplexities, the same conventions.

The reference files in tests/data were made with KenLM 0.3.0 (lmplz and query, built from the kenlm
source release):

  - kenlm_tiny_o3.arpa: `lmplz -o 3 --discount_fallback < kenlm_tiny.txt`; `lmplz -o 3
    --discount_fallback --skip_symbols` on SYMBOLS_TEXT below writes the same file, byte for byte.
  - kenlm_tiny_nonl.txt is kenlm_tiny.txt without its final newline (`printf '%s' "$(cat
    kenlm_tiny.txt)"`); kenlm_tiny_nonl_o3.arpa: `lmplz -o 3 --discount_fallback < kenlm_tiny_nonl.txt`.
  - kenlm_query_nonl.out: `query kenlm_tiny_nonl_o3.arpa < kenlm_query_nonl.txt` (a text whose last
    line has no newline); kenlm_query_specials.out: `query kenlm_tiny_o3.arpa <
    kenlm_query_specials.txt` (a text with <s>, </s> and <unk> as words).
  - KENLM_QUERY below: what `query` printed for kenlm_world_test.txt with models built by
    `lmplz -o N` on kenlm_world_train.txt.
"""

import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest

from lmforge.errors import InputError
from lmforge.models.ngram import (
    BOS,
    BOS_ID,
    EOS,
    FALLBACK,
    UNK,
    CountLM,
    NGramLM,
    OpenSentence,
    discounts,
    estimate,
    load,
    read_sentences,
    sample,
    split_query_words,
    split_words,
)

DATA = Path(__file__).parent / "data"

# kenlm_tiny.txt with <s>, </s> and <unk> among the words: lmplz refuses it, and with --skip_symbols
# reads it as kenlm_tiny.txt (the line "</s>" is the empty line)
SYMBOLS_TEXT = "the cat <s> sat on the mat\nthe dog sat on </s> the log\n<unk> the cat ran\na dog ran on the mat <unk>\nthe cat sat\n</s>\nthe mat\n"

# what KenLM's query printed (perplexity including OOVs, excluding OOVs, OOVs, tokens)
KENLM_QUERY = {3: (5.53698367944494, 5.444398162189004, 9, 4639), 5: (4.428855095381994, 4.353751606632402, 9, 4639)}


def read_arpa_dict(path):
    out, k = {}, None
    for line in Path(path).read_text().splitlines():
        if line.endswith("-grams:"):
            k = int(line[1])
        elif k and line and not line.startswith("\\"):
            parts = line.split("\t")
            out[parts[1]] = (float(parts[0]), float(parts[2]) if len(parts) > 2 else None)
    return out


def assert_same_arpa(ours_path, theirs_path):
    ours, theirs = read_arpa_dict(ours_path), read_arpa_dict(theirs_path)
    assert ours.keys() == theirs.keys()
    for gram, (p, b) in theirs.items():
        assert ours[gram][0] == pytest.approx(p, abs=1e-6), gram
        if b is not None:
            assert ours[gram][1] == pytest.approx(b, abs=1e-6), gram


def read_query_output(path):
    """log10 p of every token `query` printed, and its summary (perplexity, excluding OOVs, OOVs, tokens)."""
    text = Path(path).read_text()
    scores = [float(m[1]) for m in re.finditer(r"\S+=\d+ \d+ (\S+)", text)]
    summary = [re.search(rf"(?:^|\t){name}:\t(\S+)", text, re.MULTILINE)[1] for name in ("Perplexity including OOVs", "Perplexity excluding OOVs", "OOVs", "Tokens")]
    return np.array(scores), (float(summary[0]), float(summary[1]), int(summary[2]), int(summary[3]))


def scores(lm, sentences):
    tok, starts, targets, _ = lm.encode_sentences(sentences)
    return lm.score_ids(tok, starts, targets)


def test_arpa_equals_lmplz_on_a_small_corpus(tmp_path):
    lm = estimate(read_sentences(DATA / "kenlm_tiny.txt"), 3, discount_fallback=FALLBACK)
    lm.write_arpa(tmp_path / "ours.arpa")
    assert_same_arpa(tmp_path / "ours.arpa", DATA / "kenlm_tiny_o3.arpa")


@pytest.mark.parametrize("order", [3, 5])
def test_perplexity_equals_kenlm_query(order):
    lm = estimate(read_sentences(DATA / "kenlm_world_train.txt"), order)
    r = lm.evaluate(read_sentences(DATA / "kenlm_world_test.txt"))
    ppl, ppl_no_oov, oov, tokens = KENLM_QUERY[order]
    assert (r["oov"], r["tokens"]) == (oov, tokens)
    assert f"{r['perplexity']:.6g}" == f"{ppl:.6g}"  # the issue asks for 4 significant digits
    assert f"{r['perplexity_excluding_oov']:.6g}" == f"{ppl_no_oov:.6g}"


def test_arpa_round_trip(tmp_path):
    lm = estimate(read_sentences(DATA / "kenlm_world_train.txt"), 4)
    lm.write_arpa(tmp_path / "m.arpa")
    again = NGramLM.read_arpa(tmp_path / "m.arpa")
    test = read_sentences(DATA / "kenlm_world_test.txt")
    assert again.evaluate(test)["log10_prob"] == pytest.approx(lm.evaluate(test)["log10_prob"], abs=1e-3)
    for k in range(4):
        assert np.array_equal(again.orders[k].keys, lm.orders[k].keys)


def test_hand_computed_discounts_and_probabilities():
    # corpus: "a b" twice and "a c" once; order 2.
    sents = [["a", "b"], ["a", "b"], ["a", "c"]]
    lm = estimate(sents, 2, discount_fallback=FALLBACK)
    # Unigram continuation counts: a 1 (<s>), b 1 (a), c 1 (a), </s> 2 (b, c); <s> none.
    # t1..t4 = 3, 1, 0, 0: t3 = 0 leaves D2 and D3+ undefined, so the fallback (0.5, 1, 1.5) is used.
    # sum a = 5; gamma = (0.5 * 3 + 1 * 1) / 5 = 0.5; uniform over |V| = 5 (<unk> a b c </s>, not <s>)
    p_uni = {"a": (1 - 0.5) / 5 + 0.5 / 5, "b": 0.2, "</s>": (2 - 1) / 5 + 0.5 / 5, "<unk>": 0.5 / 5}
    for w, p in p_uni.items():
        assert lm.prob([], w) == pytest.approx(p)
    # Bigrams (raw counts, the highest order): <s> a 3, a b 2, b </s> 2, a c 1, c </s> 1.
    # t1..t4 = 2, 2, 1, 0: Y = 2 / (2 + 4) = 1/3, D1 = 1 - 2Y(2/2) = 1/3, D2 = 2 - 3Y(1/2) = 1.5,
    # D3+ = 3 - 4Y(0/1) = 3.
    d1, d2 = 1 / 3, 1.5
    assert discounts(np.array([3, 2, 2, 1, 1]), 2) == pytest.approx((d1, d2, 3.0), rel=1e-6)
    # p(b | a) = (2 - D2) / 3 + gamma(a) p(b), gamma(a) = (D1 * 1 + D2 * 1) / 3
    assert lm.prob([BOS, "a"], "b") == pytest.approx((2 - d2) / 3 + (d1 + d2) / 3 * 0.2)
    # an unseen bigram backs off: p(a | b) = gamma(b) p(a), gamma(b) = D2 * 1 / 2 (b's one bigram has count 2)
    assert lm.prob(["b"], "a") == pytest.approx(d2 / 2 * 0.2)
    assert lm.prob(["b"], EOS) == pytest.approx((2 - d2) / 2 + d2 / 2 * 0.3)


def test_discounts_follow_chen_and_goodman():
    adjusted = np.array([1] * 10 + [2] * 5 + [3] * 3 + [4] * 2)
    y = 10 / (10 + 2 * 5)
    assert discounts(adjusted, 1) == pytest.approx((1 - 2 * y * 5 / 10, 2 - 3 * y * 3 / 5, 3 - 4 * y * 2 / 3), rel=1e-6)


def test_zero_count_of_counts_is_a_clear_error():
    with pytest.raises(InputError) as e:
        estimate(read_sentences(DATA / "kenlm_tiny.txt"), 3)
    assert "count-of-counts" in str(e.value) and "discount-fallback" in str(e.value)


def random_contexts(sentences, n, seed):
    """n contexts: a random prefix of a random sentence after <s>, one with an OOV word, and none."""
    rng = random.Random(seed)
    out = [[], [BOS, "zzz-oov"], ["zzz-oov", "the"]]
    for _ in range(n):
        s = rng.choice([s for s in sentences if len(s) > 4])
        out.append([BOS] + s[: rng.randint(0, len(s))])
    return out


@pytest.mark.parametrize("smoothing,order", [("kn", 1), ("kn", 2), ("kn", 3), ("kn", 5), ("addk", 1), ("addk", 3), ("mle", 3)])
def test_every_context_sums_to_one(smoothing, order):
    train = read_sentences(DATA / "kenlm_world_train.txt")
    lm = estimate(train, order, smoothing=smoothing, k=0.1, discount_fallback=FALLBACK)
    words = [w for w in lm.vocab if w != BOS]
    contexts = random_contexts(train, 3, order)
    if smoothing == "mle":  # maximum likelihood has no distribution after a context it never saw
        contexts = [c for c in contexts if "zzz-oov" not in c]
    for context in contexts:
        assert sum(lm.prob(context, w) for w in words) == pytest.approx(1.0, abs=1e-6), context
        assert np.sum(10 ** lm.next_log10_probs(context)) == pytest.approx(1.0, abs=1e-9), context


@pytest.mark.parametrize("model", ["kn", "kenlm-arpa", "addk", "mle"])
def test_next_word_distribution_equals_prob_for_every_word(model):
    train = read_sentences(DATA / "kenlm_world_train.txt")
    if model == "kenlm-arpa":
        lm = NGramLM.read_arpa(DATA / "kenlm_tiny_o3.arpa")
        train = read_sentences(DATA / "kenlm_tiny.txt")
    else:
        lm = estimate(train, 4, smoothing=model, k=0.5)
    contexts = random_contexts(train, 3, 0) + [[BOS, "the", BOS]]
    for context in contexts:
        dist = lm.next_log10_probs(context)
        assert dist.shape == (lm.V,) and dist[BOS_ID] == -np.inf  # <s> is never predicted
        expected = np.array([lm.prob(context, w) for w in lm.vocab])
        others = np.arange(lm.V) != BOS_ID
        np.testing.assert_allclose(10 ** dist[others], expected[others], rtol=1e-12, atol=0)


def test_unseen_words_empty_lines_and_oov_context():
    lm = estimate(read_sentences(DATA / "kenlm_world_train.txt"), 3)
    r = lm.evaluate([["zzz", "qqq"], [], ["The", "zzz"]])
    assert r["oov"] == 3 and r["tokens"] == 3 + 3 + 1  # three words, and each sentence's </s>
    assert math.isfinite(r["perplexity"]) and r["perplexity_excluding_oov"] < r["perplexity"]


def test_cli_train_eval_generate(cli, tmp_path):
    out = tmp_path / "m.arpa"
    code, _, err = cli("ngram", "train", "--order", 3, "--data", DATA / "kenlm_world_train.txt", "--out", out)
    assert code == 0, err
    code, stdout, _ = cli("ngram", "eval", "--model", out, "--data", DATA / "kenlm_world_test.txt", "--json")
    r = json.loads(stdout)
    assert code == 0 and {"perplexity", "perplexity_excluding_oov", "oov", "tokens"} <= set(r)
    assert f"{r['perplexity']:.5g}" == f"{KENLM_QUERY[3][0]:.5g}"
    code, stdout, _ = cli("ngram", "generate", "--model", out, "--n", 2, "--seed", 1)
    assert code == 0 and len(stdout.strip().splitlines()) == 2


def test_cli_bad_inputs(cli, tmp_path):
    from .test_cli import assert_clean_failure

    assert_clean_failure(cli("ngram", "train", "--order", 3, "--data", DATA / "kenlm_tiny.txt", "--out", tmp_path / "x.arpa"), "count-of-counts")
    assert not (tmp_path / "x.arpa").exists()
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\tthe\t0\n")
    assert_clean_failure(cli("ngram", "eval", "--model", bad, "--data", DATA / "kenlm_tiny.txt"), str(bad), "header says 3")
    assert_clean_failure(cli("ngram", "eval", "--model", tmp_path / "none.arpa", "--data", DATA / "kenlm_tiny.txt"), "not found")


# --------------------------------------------------------------------------- a last line without newline


def test_only_an_unterminated_last_line_is_an_open_sentence(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("a b\n\nc d")
    s = read_sentences(p)
    assert s == [["a", "b"], [], ["c", "d"]] and isinstance(s[-1], OpenSentence) and not isinstance(s[1], OpenSentence)
    assert not isinstance(read_sentences(p, kenlm_last_line=False)[-1], OpenSentence)
    p.write_text("a b\n")
    assert not any(isinstance(x, OpenSentence) for x in read_sentences(p))
    p.write_text("a b\n \t")  # lmplz and query read nothing from a last line of blanks
    assert read_sentences(p) == [["a", "b"]]


def test_last_line_without_newline_gets_no_end_of_sentence_as_in_lmplz(tmp_path):
    lm = estimate(read_sentences(DATA / "kenlm_tiny_nonl.txt"), 3, discount_fallback=FALLBACK)
    lm.write_arpa(tmp_path / "ours.arpa")
    assert_same_arpa(tmp_path / "ours.arpa", DATA / "kenlm_tiny_nonl_o3.arpa")
    # read as a whole sentence, the same file gives the model of kenlm_tiny.txt (which ends in a newline)
    whole = estimate(read_sentences(DATA / "kenlm_tiny_nonl.txt", kenlm_last_line=False), 3, discount_fallback=FALLBACK)
    whole.write_arpa(tmp_path / "whole.arpa")
    assert_same_arpa(tmp_path / "whole.arpa", DATA / "kenlm_tiny_o3.arpa")


def test_query_scores_a_last_line_without_newline_with_no_end_of_sentence():
    lm = NGramLM.read_arpa(DATA / "kenlm_tiny_nonl_o3.arpa")
    text = read_sentences(DATA / "kenlm_query_nonl.txt", query=True)  # ends "the zebra sat", no newline
    theirs, (ppl, _, _, tokens) = read_query_output(DATA / "kenlm_query_nonl.out")
    ours = scores(lm, text)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)  # word for word, and no </s> at the end
    r = lm.evaluate(text)
    assert r["tokens"] == tokens == 22 and r["oov"] == 2
    assert r["perplexity"] == pytest.approx(10 ** (-theirs.sum() / tokens), rel=1e-6)
    # query 0.3.0 counts the last line's words as tokens but leaves their scores (and OOVs) out of
    # its total; lmforge does not copy that bug
    assert ppl == pytest.approx(10 ** (-theirs[:-3].sum() / tokens), rel=1e-6)


# --------------------------------------------------------------------------- <s>, </s>, <unk> as words


def test_lmplz_and_query_split_words_differently():
    assert split_words("a\vb c\0d\te\rf") == ["a\vb", "c", "d", "e", "f"]
    assert split_query_words("a\vb c\0d\te\rf\fg") == ["a", "b", "c\0d", "e", "f", "g"]


def test_special_words_in_training_text_are_refused_naming_file_line_and_word(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(SYMBOLS_TEXT)
    with pytest.raises(InputError) as e:
        estimate(read_sentences(p), 3, discount_fallback=FALLBACK)
    assert (e.value.path, e.value.line) == (str(p), 1)
    assert "<s>" in str(e.value) and "--skip-symbols" in str(e.value)
    with pytest.raises(InputError, match=r"</s> .*sentence 2"):
        estimate([["a"], ["b", EOS]], 2, smoothing="mle")


def test_skip_symbols_reads_special_words_as_whitespace_as_lmplz_does(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(SYMBOLS_TEXT)
    with pytest.warns(UserWarning, match="whitespace"):
        lm = estimate(read_sentences(p), 3, discount_fallback=FALLBACK, skip_symbols=True)
    lm.write_arpa(tmp_path / "ours.arpa")
    assert_same_arpa(tmp_path / "ours.arpa", DATA / "kenlm_tiny_o3.arpa")


@pytest.mark.parametrize("source", ["kenlm-arpa", "estimate"])
def test_special_words_in_scored_text_are_scored_as_query_scores_them(source):
    # <s> takes its unigram log10 p = 0 plus backoffs and then acts as a sentence start; </s> is
    # scored and the sentence goes on; <unk> is an OOV word
    if source == "kenlm-arpa":
        lm = NGramLM.read_arpa(DATA / "kenlm_tiny_o3.arpa")
    else:
        lm = estimate(read_sentences(DATA / "kenlm_tiny.txt"), 3, discount_fallback=FALLBACK)
    text = read_sentences(DATA / "kenlm_query_specials.txt", query=True)
    theirs, (ppl, ppl_no_oov, oov, tokens) = read_query_output(DATA / "kenlm_query_specials.out")
    np.testing.assert_allclose(scores(lm, text), theirs, atol=1e-6)
    r = lm.evaluate(text)
    assert (r["oov"], r["tokens"]) == (oov, tokens)
    assert r["perplexity"] == pytest.approx(ppl, rel=1e-6) and r["perplexity_excluding_oov"] == pytest.approx(ppl_no_oov, rel=1e-6)


# --------------------------------------------------------------------------- maximum likelihood and add-k


def test_add_k_hand_computed():
    # "a b" twice, "a c" once. Bigrams: <s> a 3, a b 2, b </s> 2, a c 1, c </s> 1; |V| = 5 (<unk> a b c </s>)
    sents = [["a", "b"], ["a", "b"], ["a", "c"]]
    lm = estimate(sents, 2, smoothing="addk", k=0.5)
    assert isinstance(lm, CountLM)
    assert lm.prob([BOS], "a") == pytest.approx((3 + 0.5) / (3 + 0.5 * 5))
    assert lm.prob(["a"], "b") == pytest.approx((2 + 0.5) / (3 + 0.5 * 5))
    assert lm.prob(["b"], "a") == pytest.approx(0.5 / (2 + 0.5 * 5))  # unseen bigram
    assert lm.prob(["c"], EOS) == pytest.approx((1 + 0.5) / (1 + 0.5 * 5))
    assert lm.prob(["zzz"], "a") == pytest.approx(1 / 5)  # unseen context: uniform
    # unigrams: a 3, b 2, c 1, </s> 3 of 9 tokens
    uni = estimate(sents, 1, smoothing="addk", k=0.5)
    assert uni.prob([], "a") == pytest.approx(3.5 / (9 + 2.5)) and uni.prob([], UNK) == pytest.approx(0.5 / 11.5)
    r = lm.evaluate([["a", "c"]])  # p(a | <s>) p(c | a) p(</s> | c)
    assert r["log10_prob"] == pytest.approx(math.log10(3.5 / 5.5 * 1.5 / 5.5 * 1.5 / 3.5))


def test_maximum_likelihood_hand_computed_and_zero_probability_reported():
    sents = [["a", "b"], ["a", "b"], ["a", "c"]]
    lm = estimate(sents, 2, smoothing="mle")
    assert lm.prob(["a"], "b") == pytest.approx(2 / 3) and lm.prob([BOS], "a") == 1.0 and lm.prob(["b"], "a") == 0.0
    assert lm.evaluate([["a", "c"]])["perplexity"] == pytest.approx(3 ** (1 / 3))  # 1 * 1/3 * 1 over 3 tokens
    r = lm.evaluate([["a", "c"], ["b"], ["a", "zzz"]])  # p(b | <s>) = 0, p(<unk> | a) = 0, p(</s> | <unk>) = 0
    assert r["zero_prob_tokens"] == 3 and r["oov"] == 1 and r["tokens"] == 8
    assert r["perplexity"] == math.inf and r["perplexity_excluding_oov"] == math.inf and r["log10_prob"] == -math.inf
    tri = estimate(sents, 3, smoothing="mle")  # at the start of a sentence the context is <s> and what follows
    assert tri.prob([BOS, "a"], "b") == pytest.approx(2 / 3) and tri.prob([BOS], "a") == 1.0


def test_bad_smoothing_settings_are_clear_errors():
    with pytest.raises(InputError, match="smoothing"):
        estimate([["a"]], 2, smoothing="witten-bell")
    with pytest.raises(InputError, match="k must be"):
        estimate([["a"]], 2, smoothing="addk", k=0)


# --------------------------------------------------------------------------- files, size, sampling


@pytest.mark.parametrize("smoothing", ["kn", "addk", "mle"])
def test_npz_round_trip(tmp_path, smoothing):
    lm = estimate(read_sentences(DATA / "kenlm_world_train.txt"), 3, smoothing=smoothing, k=0.25)
    lm.save(tmp_path / "m.npz")
    again = load(tmp_path / "m.npz")
    assert type(again) is type(lm) and again.vocab == lm.vocab and again.num_entries == lm.num_entries
    test = read_sentences(DATA / "kenlm_world_test.txt", query=True)
    assert again.evaluate(test) == lm.evaluate(test)


def test_count_models_are_not_written_as_arpa_and_npz_is_read_without_pickle(tmp_path):
    lm = estimate([["a", "b"]], 2, smoothing="addk")
    with pytest.raises(InputError, match="cannot be written as ARPA"):
        lm.write_arpa(tmp_path / "m.arpa")
    assert not (tmp_path / "m.arpa").exists()
    np.savez(tmp_path / "evil.npz", format=np.array([object()], dtype=object))
    with pytest.raises(InputError, match="evil.npz"):
        load(tmp_path / "evil.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(InputError, match="not an lmforge n-gram model"):
        load(tmp_path / "other.npz")


def test_num_entries_is_the_arpa_header_total():
    assert NGramLM.read_arpa(DATA / "kenlm_tiny_o3.arpa").num_entries == 12 + 19 + 19
    assert estimate(read_sentences(DATA / "kenlm_tiny.txt"), 3, discount_fallback=FALLBACK).num_entries == 50


def test_sampling_is_seeded_and_follows_the_model():
    lm = NGramLM.read_arpa(DATA / "kenlm_tiny_o3.arpa")
    draws = [sample(lm, np.random.default_rng(7), 30) for _ in range(2)]
    assert draws[0] == draws[1] and draws[0] and set(draws[0]) <= set(lm.vocab) - {BOS, UNK, EOS}
    # first words of 4000 one-word samples against p(w | <s>) renormalised without <unk>
    rng = np.random.default_rng(0)
    firsts = [(sample(lm, rng, 1) or [EOS])[0] for _ in range(4000)]
    p = 10 ** lm.next_log10_probs([BOS])
    p[lm.index[UNK]] = 0
    for w in ("the", "a", EOS):
        assert firsts.count(w) / len(firsts) == pytest.approx(p[lm.index[w]] / p.sum(), abs=0.03)


def test_sampling_a_context_maximum_likelihood_never_saw_is_a_clear_error():
    lm = estimate([["a", "b"], ["a", "c"]], 2, smoothing="mle")
    assert sample(lm, np.random.default_rng(0), 10)[0] == "a"
    with pytest.raises(InputError, match="never saw"):
        sample(lm, np.random.default_rng(0), 10, context=["zzz"])


# --------------------------------------------------------------------------- command line


def test_cli_add_k_and_maximum_likelihood(cli, tmp_path):
    train, test = DATA / "kenlm_world_train.txt", DATA / "kenlm_world_test.txt"
    code, _, err = cli("ngram", "train", "--order", 3, "--smoothing", "addk", "--k", 0.01, "--data", train, "--out", tmp_path / "addk.npz")
    assert code == 0, err
    code, stdout, _ = cli("ngram", "eval", "--model", tmp_path / "addk.npz", "--data", test, "--json")
    assert code == 0 and math.isfinite(json.loads(stdout)["perplexity"])
    code, stdout, _ = cli("ngram", "generate", "--model", tmp_path / "addk.npz", "--n", 2, "--seed", 1)
    assert code == 0 and len(stdout.strip().splitlines()) == 2
    code, _, err = cli("ngram", "train", "--order", 3, "--smoothing", "mle", "--data", train, "--out", tmp_path / "mle.npz")
    assert code == 0, err
    code, stdout, _ = cli("ngram", "eval", "--model", tmp_path / "mle.npz", "--data", test, "--json")
    r = json.loads(stdout, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert code == 0 and r["perplexity"] is None and r["zero_prob_tokens"] > 0  # infinite: JSON has no number for it
    code, stdout, _ = cli("ngram", "eval", "--model", tmp_path / "mle.npz", "--data", test)
    assert code == 0 and "perplexity inf" in stdout and "zero-probability tokens" in stdout


def test_cli_refuses_arpa_for_count_models(cli, tmp_path):
    from .test_cli import assert_clean_failure

    assert_clean_failure(cli("ngram", "train", "--order", 2, "--smoothing", "mle", "--data", DATA / "kenlm_tiny.txt", "--out", tmp_path / "m.arpa"), "cannot be written as ARPA", ".npz")
    assert not (tmp_path / "m.arpa").exists()


def test_cli_special_words(cli, tmp_path):
    from .test_cli import assert_clean_failure

    p = tmp_path / "t.txt"
    p.write_text(SYMBOLS_TEXT)
    out = tmp_path / "m.arpa"
    assert_clean_failure(cli("ngram", "train", "--order", 3, "--discount-fallback", "--data", p, "--out", out), f"{p}:1", "<s>", "--skip-symbols")
    assert not out.exists()
    with pytest.warns(UserWarning, match="5 occurrences .* as whitespace"):
        code, _, err = cli("ngram", "train", "--order", 3, "--discount-fallback", "--skip-symbols", "--data", p, "--out", out)
    assert code == 0, err
    assert_same_arpa(out, DATA / "kenlm_tiny_o3.arpa")


def test_cli_generate_decodes_tokenizer_ids(cli, tmp_path, bpe, corpus_jsonl):
    from .test_cli import assert_clean_failure

    bpe.save(tmp_path / "tok")
    out = tmp_path / "m.arpa"
    code, _, err = cli("ngram", "train", "--order", 3, "--discount-fallback", "--tokenize", "tokenizer", "--tokenizer", tmp_path / "tok", "--data", corpus_jsonl, "--out", out)
    assert code == 0, err
    args = ("ngram", "generate", "--model", out, "--tokenizer", tmp_path / "tok", "--prompt", "The cat", "--n", 2, "--seed", 3)
    code, stdout, _ = cli(*args)
    lines = stdout.strip("\n").split("\n")
    assert code == 0 and len(lines) == 2 and all(line.startswith("The cat") for line in lines)
    assert cli(*args)[1] == stdout  # seeded
    words = tmp_path / "w.arpa"
    assert cli("ngram", "train", "--order", 2, "--discount-fallback", "--data", DATA / "kenlm_tiny.txt", "--out", words)[0] == 0
    assert_clean_failure(cli("ngram", "generate", "--model", words, "--tokenizer", tmp_path / "tok"), "not this tokenizer's ids")
