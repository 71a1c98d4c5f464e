"""Many languages: the world told in generated languages, temperature sampling over languages, and
per-language measurements (issue 35).

The generated languages are deterministic per seed and translate everything the world writes
exactly, so a fact said in one language is the same fact in another (the oracle agrees); an
answer in another language than the prompt's is scored as such. Temperature sampling follows
mT5's p_i proportional to n_i^(1/T), checked against a hand computation; tokenizer statistics and
bits per byte are reported per language.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest

from lmforge.errors import ConfigError
from lmforge.world import corpus, oracle
from lmforge.world.build import WorldConfig, build_world, load_world
from lmforge.world.labelers import default_labelers
from lmforge.world.languages import (
    SPECS,
    Language,
    identify,
    make_languages,
    vocabulary,
)
from lmforge.world.ontology import make_world
from lmforge.world.responses import sample_responses
from lmforge.world.tasks import sample_example, words
from lmforge.world.writing import WritingHabits

from .test_cli import assert_clean_failure

CODES = ["en", "xv", "xt"]
SMALL = {"entities": 16, "documents": 300, "sft_prompts": 40, "sft_val_prompts": 10, "rm_prompts": 30, "ppo_prompts": 20, "eval_prompts": 30, "calibration_prompts": 60, "heldout_documents": 20}


@pytest.fixture(scope="module")
def world():
    w = make_world(5, 24)
    w.languages = make_languages(5, CODES, w.names)
    return w


@pytest.fixture(scope="module")
def ml_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("ml") / "world"
    build_world(WorldConfig(seed=4, languages=CODES, **SMALL), out)
    return out


def _texts(world, n: int = 300) -> list[str]:
    """What the world writes: documents of every genre, prompts, reference answers, the synthetic
    answers comparisons rank, and the labelers' demonstrations."""
    rng = random.Random(1)
    texts = [t for _, t in corpus.documents(world, rng, n)]
    labelers = default_labelers(1.0, 5, WritingHabits())
    for _ in range(n):
        ex = sample_example(world, rng)
        texts += [ex.prompt, ex.reference, rng.choice(labelers).write(world, ex, rng)[0]]
        texts += [t for t, _, _ in sample_responses(world, ex, 4, rng)]
    return texts


def test_languages_are_deterministic_per_seed_and_independent_of_each_other(world):
    again = make_languages(5, CODES, world.names)
    assert {c: lang.lexicon for c, lang in again.items()} == {c: lang.lexicon for c, lang in world.languages.items()}
    other = make_languages(6, CODES, world.names)
    assert other["xv"].lexicon != world.languages["xv"].lexicon
    assert make_languages(5, ["xt"], world.names)["xt"].lexicon == world.languages["xt"].lexicon  # whichever others the world has
    for lang in world.languages.values():
        assert set(lang.lexicon) == set(vocabulary())
        forms = list(lang.lexicon.values())
        assert len(set(forms)) == len(forms)  # one word for one word: it reads back
        assert not set(forms) & set(vocabulary()) and not set(forms) & set(world.names)
        syllables = {c + v for c in lang.spec.consonants for v in lang.spec.vowels}
        assert all(len(f) % 2 == 0 and {f[i : i + 2] for i in range(0, len(f), 2)} <= syllables for f in forms)  # its own sounds
    assert not set(world.languages["xv"].lexicon.values()) & set(world.languages["xt"].lexicon.values())


def test_everything_the_world_writes_translates_and_reads_back_exactly(world):
    texts = _texts(world)
    for code in ("xv", "xt"):
        lang = world.languages[code]
        for text in texts:
            said = lang.translate(text, world.names)
            assert lang.to_english(said, world.names) == text
            assert said != text or all(w.lower() in world.names for w in words(text) if w.isalpha())  # names alone are every language's


def test_morphology_and_word_order(world):
    xv, xt = world.languages["xv"], world.languages["xt"]
    vocab = set(vocabulary())
    assert {"friend", "friends", "eat", "eats"} <= vocab
    assert xv.word("friends") == xv.word("friend") + SPECS["xv"].suffixes["plural"]  # Velish: a suffix for English's -s
    assert xv.word("eats") == xv.word("eat") + SPECS["xv"].suffixes["plural"]
    # Torin: "the colour" is one word, the article a suffix; Velish says a phrase back to front
    assert xt.translate("the colour", world.names) == xt.word("colour") + SPECS["xt"].suffixes["the"]
    assert xt.translate("A red lamp", world.names) == xt.word("lamp") + " " + (xt.word("red") + SPECS["xt"].suffixes["a"]).capitalize()  # and swaps
    name = world.kinds["person"][0].name
    town = world.kinds["town"][0].name
    said = xv.translate(f"{name} lives in {town}.", world.names)
    assert said == f"{town} {xv.word('in')} {xv.word('lives')} {name}."
    # Torin swaps neighbours; lists, numbers and punctuation keep their places
    assert xt.translate(f"{name} lives in {town}.", world.names) == f"{xt.word('lives')} {name} {town} {xt.word('in')}."
    assert xv.translate("3 + 4 = 7.", world.names) == "3 + 4 = 7."
    assert xv.translate("red, blue, green.", world.names) == f"{xv.word('red')}, {xv.word('blue')}, {xv.word('green')}."
    with pytest.raises(ValueError, match="no word for"):
        xv.translate("a xylophone", world.names)


def test_a_fact_is_the_same_fact_in_every_language(world):
    rng = random.Random(3)
    for _ in range(200):
        state = rng.getstate()
        scores = {}
        for code in CODES:
            rng.setstate(state)
            ex = sample_example(world.speaking(code), rng)
            meta = {**ex.meta, "language": code}
            answer = world.tell(ex.reference, code)
            s = oracle.score(world, ex.task, meta, answer)
            assert s["wrong_language"] is False, (code, ex.prompt, answer)
            scores[code] = {k: v for k, v in s.items() if k != "wrong_language"}
            assert scores[code] == oracle.score(world, ex.task, ex.meta, ex.reference), (code, ex.task)
        assert scores["en"]["helpful"] > 0.5
    # a false claim is false in every language; a right answer in the wrong language helps nobody
    e = world.kinds["creature"][0]
    lie = world.statement(e, "colour", rng, value=world.false_value(e, "colour", rng))
    meta = {"entity": e.name, "attr": "colour", "answer": e.attrs["colour"], "value_type": "colour", "key": "k"}
    for code in CODES:
        assert oracle.score(world, "fact", {**meta, "language": code}, world.tell(lie, code))["truthful"] == 0.0
    right = world.answer(e, "colour")
    wrong = oracle.score(world, "fact", {**meta, "language": "xv"}, right)  # English to a Velish question
    assert wrong["wrong_language"] and wrong["helpful"] == 0.0
    assert oracle.score(world, "fact", {**meta, "language": "xv"}, world.tell(right, "xv"))["helpful"] == 1.0
    arithmetic = {"answer": 12, "key": "k", "language": "xt"}
    assert oracle.score(world, "arithmetic", arithmetic, "12.")["helpful"] > 0  # numbers alone are every language's
    counts = identify(world.tell(right, "xt"), world.languages, world.names)
    assert max(counts, key=counts.get) == "xt"


def test_alphabetical_order_follows_the_language(world):
    rng = random.Random(0)
    state, seen = rng.getstate(), 0
    for _ in range(400):
        ex = sample_example(world.speaking("xv"), rng)
        if ex.task == "sort":
            spelt = [world.languages["xv"].word(w) for w in ex.meta["target"]]
            assert spelt == sorted(spelt)
            seen += 1
    assert seen > 5
    rng.setstate(state)


def test_a_multilingual_world_is_built_in_every_language(ml_world, tmp_path):
    again = tmp_path / "again"
    build_world(WorldConfig(seed=4, languages=CODES, **SMALL), again)
    for name in ("pretrain.jsonl", "heldout.jsonl", "sft.jsonl", "comparisons.jsonl", "eval.jsonl", "world.json"):
        assert (again / name).read_bytes() == (ml_world / name).read_bytes(), name
    docs = [json.loads(line) for line in (ml_world / "pretrain.jsonl").open()]
    shares = Counter(d["language"] for d in docs)
    assert set(shares) == set(CODES) and shares["en"] > shares["xv"] > shares["xt"]  # 80 / 15 / 5
    world, _, _ = load_world(ml_world)
    assert set(world.languages) == {"xv", "xt"}
    for d in docs:  # every document reads back into English the world could have written
        assert world.to_english(d["text"], d["language"]).isascii()
    evals = [json.loads(line) for line in (ml_world / "eval.jsonl").open()]
    assert len(evals) == SMALL["eval_prompts"] * 3
    by_key = Counter((r["meta"]["key"], r["meta"]["language"]) for r in evals)
    keys = {k for k, _ in by_key}
    assert all(by_key[(k, c)] == by_key[(k, "en")] for k in keys for c in CODES)  # each held-out prompt in every language
    held = [json.loads(line) for line in (ml_world / "heldout.jsonl").open()]
    assert Counter(r["language"] for r in held) == {c: SMALL["heldout_documents"] for c in CODES}
    english, torin = [r for r in held if r["language"] == "en"], [r for r in held if r["language"] == "xt"]
    for e, t in zip(english, torin):  # the same document (a sorted list's order aside)
        assert e["genre"] == t["genre"] and sorted(words(world.to_english(t["text"], "xt"))) == sorted(words(e["text"]))
    assert not {r["text"] for r in held} & {d["text"] for d in docs if len(d["text"]) > 80}  # held out
    for name in ("sft.jsonl", "comparisons.jsonl", "ppo_prompts.jsonl"):
        langs = Counter(json.loads(line)["meta"]["language"] for line in (ml_world / name).open())
        assert set(langs) <= set(CODES) and langs["en"] >= max(langs.values()) // 2
    for r in (json.loads(line) for line in (ml_world / "sft.jsonl").open()):  # demonstrations are in their prompt's language
        assert not oracle.score(world, r["task"], r["meta"], r["messages"][-1]["content"])["wrong_language"]
    for name in ("comparisons", "ppo_prompts"):  # the English preferences alone, for alignment on English only
        every = [json.loads(line) for line in (ml_world / f"{name}.jsonl").open()]
        english = [json.loads(line) for line in (ml_world / f"{name}_en.jsonl").open()]
        assert english == [r for r in every if r["meta"]["language"] == "en"] and english


def test_world_names_a_worlds_file_for_any_stage(ml_world, ml_model):
    from lmforge.errors import InputError
    from lmforge.train.dpo import _world_comparisons
    from lmforge.train.ppo import _world_prompts

    assert _world_comparisons("world", str(ml_model)) == str(ml_world / "comparisons.jsonl")
    assert _world_comparisons("world:comparisons_en", str(ml_model)) == str(ml_world / "comparisons_en.jsonl")
    assert _world_prompts("world:ppo_prompts_en", str(ml_model), "ppo_prompts.jsonl") == str(ml_world / "ppo_prompts_en.jsonl")
    assert _world_prompts("mine.jsonl", str(ml_model), "ppo_prompts.jsonl") == "mine.jsonl"
    with pytest.raises(InputError, match="no nothing.jsonl"):
        _world_comparisons("world:nothing", str(ml_model))


# The files of this one-language world as the code wrote them before languages existed (835b038).
# They change only when the world's generator is changed on purpose; then update them with it.
BEFORE = {
    "comparisons.jsonl": "e4f2cf0e477fa5397709b8abd61f302c2daf8f1e2a260bc1c3ba366ca299dfed",
    "eval.jsonl": "2b14c6a2973d6ac4fdcd5215a46d99626e54749ca71b6ffc313ad71d2afbabda",
    "pairs.jsonl": "c5b93c45e65b83fb95fa76ddce5a05fbeb418804dfc8c39f6f3d81bd57333c66",
    "ppo_prompts.jsonl": "c7f720ec5f4a198f802414b1dd8a489c51c66e3fce286d69528e85297eb8a699",
    "pretrain.jsonl": "1ceaa3de8a6abbfbf1da6a8afb5bac23b130a66f59396f4e4450dab6f5624a81",
    "sft.jsonl": "8d1db2eab525525e9602ae136b4fdb9c2010d4c8a98b379a649cdbadee934787",
    "sft_val.jsonl": "a977075147b47ef0b71bfb32374c6f9f33bec57f13c32905434cccc3a280928f",
    "world.json": "7b8f5c6a14a0a55af5346dfb79acf89d7d7ee594b0df18a1858b2490d0317db6",
}


def test_a_one_language_world_is_what_it_was(tmp_path):
    manifest = build_world(WorldConfig(seed=4, **{k: v for k, v in SMALL.items() if k != "heldout_documents"}), tmp_path / "w")
    assert manifest["files"] == BEFORE  # byte for byte
    assert not (tmp_path / "w" / "heldout.jsonl").exists()
    data = json.loads((tmp_path / "w" / "world.json").read_text())
    assert "languages" not in data and not {"languages", "language_shares", "heldout_documents"} & set(data["config"])
    for name in ("pretrain.jsonl", "eval.jsonl"):
        first = json.loads((tmp_path / "w" / name).open().readline())
        assert "language" not in first and "language" not in first.get("meta", {})


def test_unknown_languages_and_bad_shares_are_clear_errors(cli, tmp_path):
    assert_clean_failure(cli("world", "--out", tmp_path / "w", "languages=[en,fr]"), "languages", "'fr'", "xv (Velish)")
    assert_clean_failure(cli("world", "--out", tmp_path / "w", "languages=[en,xv]", "language_shares=[0.9]"), "language_shares", "one share per language")
    assert_clean_failure(cli("world", "--out", tmp_path / "w", "languages=[en,en]"), "languages", "twice")
    assert not (tmp_path / "w").exists()
    with pytest.raises(ConfigError):
        Language.make("fr", 0)


# --------------------------------------------------------------------------- temperature over sources


def test_temperature_sampling_matches_a_hand_computation():
    from lmforge.data.prepare import resampling

    sizes = {"en": 8000, "xv": 1500, "xt": 500}
    for t in (1.0, 2.0, 3.3, 5.0):
        w = {g: n ** (1 / t) for g, n in sizes.items()}
        total = sum(w.values())
        got = resampling(sizes, t)
        for g, n in sizes.items():
            assert got[g]["sampled_share"] == pytest.approx(w[g] / total)
            assert got[g]["factor"] == pytest.approx(w[g] / total * 10000 / n)
    hand = {"en": 8000 ** 0.5 / (8000**0.5 + 1500**0.5 + 500**0.5)}  # T = 2: 89.4 / (89.4 + 38.7 + 22.4)
    assert resampling(sizes, 2.0)["en"]["sampled_share"] == pytest.approx(hand["en"]) == pytest.approx(0.5942, abs=1e-4)
    assert resampling(sizes, 1.0)["xt"]["factor"] == pytest.approx(1.0)


def test_prepare_mixes_languages_by_temperature_and_counts_their_tokens(cli, ml_world, tmp_path):
    data = ml_world / "pretrain.jsonl"
    out = {}
    for t in ("1", "5"):
        code, _, err = cli("prepare", f"data.path={data}", "data.group_by=language", f"data.temperature={t}", "tokenizer.vocab_size=300", "tokenizer.min_frequency=1", "--out", tmp_path / t, "--json")
        assert code == 0, err
        out[t] = json.loads((tmp_path / t / "summary.json").read_text())
    natural = out["1"]["sources"]["groups"]
    sampled = out["5"]["sources"]["groups"]
    assert sampled["xt"]["sampled_share"] > natural["xt"]["share"] and sampled["en"]["sampled_share"] < natural["en"]["share"]
    groups = out["5"]["splits"]["train"]["groups"]
    got = groups["xt"]["bytes"] / sum(g["bytes"] for g in groups.values())
    assert got == pytest.approx(sampled["xt"]["sampled_share"], abs=0.08)  # repeated and thinned documents, drawn per document
    drawn = {g: sum(s["groups"][g]["bytes"] for s in out["5"]["splits"].values()) for g in CODES}
    assert sampled["xt"]["drawn_share"] == pytest.approx(drawn["xt"] / sum(drawn.values()))  # what the draws gave, beside the plan
    assert sum(g["tokens"] for g in out["1"]["splits"]["train"]["groups"].values()) == out["1"]["splits"]["train"]["tokens"]
    assert_clean_failure(cli("prepare", f"data.path={data}", "data.temperature=3", "--out", tmp_path / "x"), "data.temperature", "group_by")
    assert_clean_failure(cli("prepare", f"data.path={data}", "data.group_by=dialect", "data.temperature=3", "--out", tmp_path / "y"), "pretrain.jsonl:1", "dialect")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_tokenizer_stats_and_bits_per_byte_per_language(cli, ml_world, tmp_path):
    from lmforge.tokenizer import Tokenizer

    held = ml_world / "heldout.jsonl"
    code, _, err = cli("tokenizer", "train", "--data", ml_world / "pretrain.jsonl", "--vocab-size", 300, "--min-frequency", 1, "--out", tmp_path / "tok")
    assert code == 0, err
    code, out, err = cli("tokenizer", "stats", "--tokenizer", tmp_path / "tok", "--data", held, "--by", "language", "--json")
    assert code == 0, err
    stats = json.loads(out)
    tok = Tokenizer.load(tmp_path / "tok")
    records = [json.loads(line) for line in held.open()]
    for lang in CODES:
        texts = [r["text"] for r in records if r["language"] == lang]
        tokens = sum(len(tok.encode(t)) for t in texts)
        words = sum(len(t.split()) for t in texts)  # \w+ words: here no word holds punctuation inside
        g = stats["by"][lang]
        assert g["tokens"] == tokens and g["documents"] == len(texts)
        assert g["tokens_per_word"] == pytest.approx(tokens / g["words"]) and abs(g["words"] - words) / words < 0.2
        assert g["bytes_per_token"] == pytest.approx(sum(len(t.encode()) for t in texts) / tokens)
    assert stats["by"]["en"]["premium"] == 1.0 and stats["by"]["xt"]["premium"] > 1.0  # trained on 80% English
    code, out, err = cli("tokenizer", "stats", "--tokenizer", tmp_path / "tok", "--data", ml_world / "eval.jsonl", "--text-field", "prompt", "--by", "meta.language", "--json")
    assert code == 0 and set(json.loads(out)["by"]) == set(CODES)
    assert_clean_failure(cli("tokenizer", "stats", "--tokenizer", tmp_path / "tok", "--data", held, "--by", "dialect"), "heldout.jsonl:1", "dialect")
    code, out, err = cli("tokenizer", "stats", "--tokenizer", tmp_path / "tok", "--data", held, "--by", "language", "--reference", "xt", "--json")
    assert code == 0, err
    against_xt = json.loads(out)["by"]
    assert against_xt["xt"]["premium"] == 1.0 and against_xt["en"]["premium"] == pytest.approx(1 / stats["by"]["xt"]["premium"])
    assert_clean_failure(cli("tokenizer", "stats", "--tokenizer", tmp_path / "tok", "--data", held, "--by", "language", "--reference", "fr"), "'fr'", "xv")


@pytest.fixture(scope="module")
def ml_model(ml_world, tmp_path_factory):
    from lmforge.cli import main

    out = tmp_path_factory.mktemp("mlm") / "base"
    assert main(["pretrain", str(Path(__file__).parents[1] / "recipes" / "tiny.yaml"), f"data.corpus={ml_world / 'pretrain.jsonl'}", "model.max_seq_len=160", "data.seq_len=128", "train.steps=3", "train.eval_every=0", "--out", str(out)]) == 0
    return out


def test_sft_mixes_languages_by_temperature_and_eval_reports_each_language(cli, ml_world, ml_model, tmp_path):
    code, _, err = cli("sft", f"init={ml_model}", f"data.train=[{ml_world / 'sft.jsonl'},{ml_world / 'sft_en.jsonl'}]", "data.group_by=meta.language", "data.temperature=5", "epochs=1", "train.batch_size=4", "--out", tmp_path / "sft")
    assert code == 0, err
    groups = json.loads((tmp_path / "sft" / "data_stats.json").read_text())["groups"]["groups"]
    n = {g: r["examples"] for g, r in groups.items()}
    records = [json.loads(line) for name in ("sft.jsonl", "sft_en.jsonl") for line in (ml_world / name).open()]
    assert n == dict(Counter(r["meta"]["language"] for r in records))  # one dataset per language, across both files
    w = {g: k ** (1 / 5) for g, k in n.items()}
    assert all(groups[g]["sampled_share"] == pytest.approx(w[g] / sum(w.values())) for g in n)
    code, out, err = cli("eval", "policy", "--model", f"sft={tmp_path / 'sft'}", "--model", f"base={ml_model}", "--baseline", "base", "--prompts", ml_world / "eval.jsonl", "--limit", 12, "--max-new-tokens", 8, "--json")
    assert code == 0, err
    table = json.loads(out)["by_language"]
    assert set(table["sft"]) == set(CODES) and all(r["prompts"] == 4 for r in table["sft"].values())  # parallel: 4 prompts each
    row = table["sft"]["xt"]
    assert 0 <= row["task_accuracy"] <= 1 and len(row["task_accuracy_ci"]) == 2 and 0 <= row["wrong_language"] <= 1 and "win_rate_vs_base" in row
    assert_clean_failure(cli("sft", f"init={ml_model}", f"data.train=[{ml_world / 'sft.jsonl'}]", "data.group_by=dialect", "--out", tmp_path / "bad"), "sft.jsonl:1", "dialect")


def test_eval_ppl_by_language_scores_each_language_alone(cli, ml_world, ml_model, tmp_path):
    held = ml_world / "heldout.jsonl"
    code, out, err = cli("eval", "ppl", "--model", ml_model, "--data", held, "--by", "language", "--json")
    assert code == 0, err
    result = json.loads(out)
    one = tmp_path / "xt.jsonl"
    one.write_text("".join(line for line in held.open() if json.loads(line)["language"] == "xt"))
    code, out, _ = cli("eval", "ppl", "--model", ml_model, "--data", one, "--json")
    alone = json.loads(out)
    assert result["by"]["xt"]["bpb"] == pytest.approx(alone["bpb"], rel=1e-6) and result["by"]["xt"]["bytes"] == alone["bytes"]
    assert sum(g["bytes"] for g in result["by"].values()) == result["bytes"]
    assert all(math.isfinite(g["bpb"]) for g in result["by"].values())


def test_a_multilingual_runs_report_has_the_table_by_language():
    from lmforge.report import _by_language

    row = lambda acc, wrong, win=None: {"task_accuracy": acc, "task_accuracy_ci": [acc - 0.05, acc + 0.05], "wrong_language": wrong, **({"win_rate_vs_sft": win} if win is not None else {})}  # noqa: E731
    table = {"base": {c: row(0.1, 0.3, 0.2) for c in CODES}, "sft": {"en": row(0.6, 0.0), "xv": row(0.4, 0.1), "xt": row(0.3, 0.2)}, "ppo": {c: row(0.5, 0.0, 0.55) for c in CODES}}
    lm = {"gpt": {"bpb": 0.3, "bpb_by_language": {"en": 0.25, "xv": 0.4, "xt": 0.5}}}
    text = "\n".join(_by_language(table, lm))
    assert "## By language" in text and "Torin (xt)" in text and "Velish (xv)" in text
    assert "| best SFT | 0.600 [0.55, 0.65] (0.00) | 0.400 [0.35, 0.45] (0.10) | 0.300 [0.25, 0.35] (0.20) |" in text
    assert "| PPO | 0.550 | 0.550 | 0.550 |" in text and "| base | 0.2500 | 0.4000 | 0.5000 |" in text
    assert _by_language({}, lm) == []


def test_few_shot_prefixes_are_in_the_prompts_language(ml_world, ml_model):
    from lmforge.eval.fewshot import _demo_of, _read_jsonl
    from lmforge.eval.policy import fewshot_prompt_ids, qa_markers
    from lmforge.sample import read_prompts
    from lmforge.tokenizer import Tokenizer

    tok = Tokenizer.load(ml_model)
    pool = [_demo_of(r, loc) for r, loc in _read_jsonl(ml_world / "sft.jsonl")]
    items = read_prompts(str(ml_world / "eval.jsonl"), 6)
    world = load_world(ml_world)[0]
    markers = qa_markers(ml_world)
    assert markers["en"] == ("Q:", "A:") and markers["xt"] == (world.tell("Q:", "xt"), world.tell("A:", "xt")) != markers["en"]
    ids = fewshot_prompt_ids(tok, items, pool, 2, room=8, context=4096, seed=0, markers=markers)
    for item, prompt in zip(items, ids):
        text = tok.decode(prompt)
        lang = item.meta["language"]
        q, a = markers[lang]  # the world's own Q&A pages' markers in the prompt's language
        assert text.removeprefix("<|endoftext|>").startswith(f"{q} ") and text.endswith(f"\n{a}") and text.count(f"\n{a} ") == min(2, sum(d.meta["language"] == lang for d in pool))
        demos = [d for d in pool if d.prompt in text]
        available = sum(d.meta["language"] == lang for d in pool)
        assert len(demos) == min(2, available) >= 1 and all(d.meta["language"] == lang for d in demos), (lang, [d.meta["language"] for d in demos])
