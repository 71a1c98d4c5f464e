"""Sampling K answers per prompt and ranking them (`lmforge sample`, `lmforge label`): the
samples file, chat and base prompting, the world's labelers, the model judge, a person's
rankings, the registry of labelers, and the command line."""

import json
import random

import pytest
import torch

from lmforge import label as label_mod
from lmforge.config import load_config
from lmforge.data import chat
from lmforge.engine import Generation, sequence_logprobs
from lmforge.errors import InputError
from lmforge.label import JudgeLabeler, LabelContext, Sample, WorldLabeler, make_labelers, rank_by_verdicts, register_labeler, run_label
from lmforge.sample import SampleConfig, prompt_tokens, read_prompts, run_sample
from lmforge.world.build import WorldConfig, build_world, load_world
from lmforge.world.labelers import Labeler as WorldLabelerSpec

from .test_cli import assert_clean_failure

TINY_WORLD = ["entities=16", "documents=300", "sft_prompts=120", "sft_val_prompts=5", "rm_prompts=10", "ppo_prompts=40", "eval_prompts=10", "calibration_prompts=50"]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A pretraining-like run directory: an untrained tiny GPT, a tokenizer trained on the world's
    corpus, the world in run/world; and beside it a copy marked as a chat model."""
    from lmforge.checkpoint import save_model
    from lmforge.models import build_model
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    base = tmp_path_factory.mktemp("sample_label")
    run = base / "run"
    build_world(load_config(WorldConfig, None, TINY_WORLD), run / "world")
    texts = [json.loads(line)["text"] for line in (run / "world" / "pretrain.jsonl").read_text().splitlines()]
    tok = train_tokenizer(texts, TokenizerConfig(kind="bpe", vocab_size=400, min_frequency=1))
    config = {"architecture": "transformer", "head": "lm", "model": {"flavour": "gpt2", "vocab_size": tok.vocab_size, "n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 256}}
    torch.manual_seed(0)
    state = build_model(config).state_dict()
    save_model(run, state, config, tok)
    save_model(base / "chat", state, {**config, "chat_template": "lmforge"}, tok)
    return run


@pytest.fixture(scope="module")
def world(run):
    return load_world(run / "world")


@pytest.fixture(scope="module")
def loaded(run):
    from lmforge.models import load_model
    from lmforge.tokenizer import Tokenizer

    model, folder = load_model(run)
    return model.eval(), Tokenizer.load(folder)


def demos(run, n):
    """(prompt, reference answer, task, meta) of the world's demonstrations."""
    out = []
    for r in read_jsonl(run / "world" / "sft.jsonl")[:n]:
        out.append((r["messages"][0]["content"], r["messages"][1]["content"], r["task"], r["meta"]))
    return out


# --------------------------------------------------------------------------- sampling


def test_samples_file_holds_k_answers_per_prompt_with_task_and_meta(run, tmp_path):
    out = tmp_path / "samples.jsonl"
    summary = run_sample(run, run / "world" / "ppo_prompts.jsonl", out, SampleConfig(k=3, max_new_tokens=6, limit=5, batch_size=6))
    prompts = read_jsonl(run / "world" / "ppo_prompts.jsonl")[:5]
    records = read_jsonl(out)
    assert [r["prompt"] for r in records] == [p["prompt"] for p in prompts]
    for r, p in zip(records, prompts):
        assert list(r) == ["prompt", "completions", "finished", "model", "task", "meta"]
        assert len(r["completions"]) == len(r["finished"]) == 3 and all(isinstance(c, str) for c in r["completions"])
        assert all(isinstance(f, bool) for f in r["finished"])
        assert (r["task"], r["meta"], r["model"]) == (p["task"], p["meta"], str(run))
    assert summary["prompts"] == 5 and summary["samples"] == 15 and summary["skipped"] == 0
    assert 0 <= summary["finished_rate"] <= 1 and 0 < summary["mean_tokens"] <= 6 and 1 <= summary["distinct_per_prompt"] <= 3


def test_sampling_is_deterministic_for_a_seed(run, tmp_path):
    cfg = {"k": 4, "max_new_tokens": 8, "limit": 6, "batch_size": 8}
    paths = [tmp_path / f"{name}.jsonl" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (1, 1, 2)):
        run_sample(run, run / "world" / "ppo_prompts.jsonl", path, SampleConfig(seed=seed, **cfg))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    # an untrained model at temperature 1 gives different answers to one prompt
    assert any(len(set(r["completions"])) > 1 for r in read_jsonl(paths[0]))


@pytest.mark.parametrize("kind", ["chat", "base"])
def test_chat_model_is_asked_through_the_template_and_base_model_with_text(run, tmp_path, monkeypatch, kind):
    import lmforge.engine

    model = run.parent / "chat" if kind == "chat" else run
    from lmforge.tokenizer import Tokenizer

    tok = Tokenizer.load(run)
    asked = []

    def fake_generate(model, prompts, params, pad_id=0, decode=None):
        asked.append((prompts, params.stop_ids))
        return [Generation(tok.encode(" yes"), True, [0.0]) for _ in prompts]

    monkeypatch.setattr(lmforge.engine, "generate", fake_generate)
    out = tmp_path / "s.jsonl"
    run_sample(model, write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Where does Rozu live?"}]), out, SampleConfig(k=2))
    (prompts, stops), = asked
    if kind == "chat":
        expected = chat.prompt_ids(tok, [{"role": "user", "content": "Where does Rozu live?"}])
        assert stops == chat.stop_ids(tok) and read_jsonl(out)[0]["completions"] == ["yes", "yes"]  # the template's space dropped
    else:
        expected = [tok.eos_id, *tok.encode("Where does Rozu live?")]  # a new document, as in pretraining
        assert stops == [tok.eos_id] and read_jsonl(out)[0]["completions"] == [" yes", " yes"]  # a continuation of the text
    assert prompts == [expected, expected]
    assert prompt_tokens(tok, "Where does Rozu live?", kind == "chat") == expected


def test_prompts_may_be_text_messages_or_a_conversation_ending_on_a_user_turn(tmp_path):
    user = [{"role": "user", "content": "Hi?"}]
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi?", "task": "fact", "meta": {"a": 1}}, {"prompt": user}, {"messages": user}])
    prompts = read_prompts(f)
    assert [p.prompt for p in prompts] == ["Hi?", user, user] and prompts[0].task == "fact" and prompts[0].meta == {"a": 1}
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Hi?"}, {"messages": [*user, {"role": "assistant", "content": "Yo."}]}])
    with pytest.raises(InputError, match="end on a user turn") as e:
        read_prompts(bad)
    assert (e.value.line, e.value.field) == (2, "messages[1].role")


def test_a_prompt_too_long_for_the_model_is_an_error_naming_its_line_or_a_counted_skip(run, tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Where does Rozu live?"}, {"prompt": "Rozu lives far away. " * 80}])
    with pytest.raises(InputError, match="exceeds the model's context of 256") as e:
        run_sample(run, f, tmp_path / "s.jsonl", SampleConfig(k=2, max_new_tokens=4))
    assert (e.value.line, e.value.field) == (2, "prompt") and not (tmp_path / "s.jsonl").exists()
    summary = run_sample(run, f, tmp_path / "s.jsonl", SampleConfig(k=2, max_new_tokens=4, long="skip"))
    assert summary["prompts"] == 1 and summary["skipped"] == 1


# --------------------------------------------------------------------------- the world's labelers


def test_world_labelers_rank_the_reference_above_an_empty_answer(run, world):
    w, labelers, _ = world
    rng = random.Random(0)
    firsts = []
    for n, (prompt, reference, task, meta) in enumerate(demos(run, 100)):
        completions = [reference, "", "What is it?"]
        rng.shuffle(completions)
        lab = WorldLabeler(w, labelers[n % len(labelers)])
        ranking = lab.rank(Sample(prompt, completions, [True] * 3, task, meta))
        assert sorted(ranking) == [0, 1, 2]
        firsts.append(completions[ranking[0]] == reference)
    assert sum(firsts) / len(firsts) >= 0.95  # noisy labelers (73% agreement) still see a clear case


def test_world_labelers_hold_an_unfinished_answer_against_it(run, world):
    w, _, _ = world
    sharp = WorldLabeler(w, WorldLabelerSpec("sharp", temperature=1e-6))  # no noise: the oracle's order
    for prompt, reference, task, meta in demos(run, 20):
        assert sharp.rank(Sample(prompt, [reference, reference], [False, True], task, meta))[0] == 1


def test_world_labelers_take_turns_deterministically(run, tmp_path):
    samples = [{"prompt": p, "completions": [r, ""], "finished": [True, True], "model": str(run), "task": t, "meta": m} for p, r, t, m in demos(run, 10)]
    f = write_jsonl(tmp_path / "s.jsonl", samples)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    summary = run_label(f, ["world"], a)  # the world found next to the samples' model
    run_label(f, ["world"], b)
    assert a.read_bytes() == b.read_bytes()
    assert summary["labelers"] == {f"labeler-{i}": 2 for i in range(1, 6)} and summary["skipped"] == 0
    assert [r["labeler"] for r in read_jsonl(a)][:5] == [f"labeler-{i}" for i in range(1, 6)]
    one = run_label(f, ["world:labeler-3"], a, world=run / "world")
    assert one["labelers"] == {"labeler-3": 10}
    each = run_label(f, ["world"], a, each=True)
    assert each["rankings"] == 50


# --------------------------------------------------------------------------- the model judge


def test_judge_verdict_is_the_likelier_letter_asked_in_both_orders(loaded, monkeypatch):
    model, tok = loaded
    judge = JudgeLabeler(model, tok, "judge")
    q, answers = "Where does Rozu live?", ["Rozu lives in Rota.", "I do not know.", "Rota!"]

    def by_hand(a, b):
        text = f"Question: {q}\nAnswer A: {a}\nAnswer B: {b}\nWhich answer is better? Answer:"
        ids = [tok.eos_id, *tok.encode(text)]
        cont = {x: [tok.eos_id, *tok.encode(text + x)][len(ids) :] for x in (" A", " B")}
        with torch.no_grad():
            lp = sequence_logprobs(model, [ids, ids], [cont[" A"], cont[" B"]])
        return float(lp[0] - lp[1]), text

    odds, texts = {}, set()
    for i in range(3):
        for j in range(3):
            if i != j:
                odds[i, j], text = by_hand(answers[i], answers[j])
                texts.add(text)
    asked = []
    import lmforge.engine

    def spy(model, prompts, conts, **kw):
        asked.extend(tok.decode(p[1:]) for p in prompts)
        return sequence_logprobs(model, prompts, conts, **kw)

    monkeypatch.setattr(lmforge.engine, "sequence_logprobs", spy)
    got = judge.log_odds(Sample(q, answers))
    assert set(got) == set(odds)
    assert all(got[p] == pytest.approx(odds[p], abs=1e-5) for p in odds)
    assert set(asked) == texts  # every pair asked in both orders, A and B each
    assert judge.rank(Sample(q, answers)) == rank_by_verdicts(3, odds)


def test_judge_ranks_by_wins_and_breaks_ties_by_log_odds():
    # a judge that always says "A" (by 5 nats) but slightly prefers 2 > 0 > 1: every answer wins
    # once per pair it is shown first, so the summed log-odds decide
    pref = {0: 0.0, 1: -0.3, 2: 0.4}
    biased = {(i, j): 5.0 + pref[i] - pref[j] for i in range(3) for j in range(3) if i != j}
    assert rank_by_verdicts(3, biased) == [2, 0, 1]
    # a judge without bias: wins decide
    clear = {(i, j): pref[i] - pref[j] for i in range(3) for j in range(3) if i != j}
    assert rank_by_verdicts(3, clear) == [2, 0, 1]
    # identical answers: a tie everywhere, index order
    assert rank_by_verdicts(3, {(i, j): 0.7 for i in range(3) for j in range(3) if i != j}) == [0, 1, 2]


def test_chat_judge_is_asked_through_the_template(run, loaded):
    model, tok = loaded
    model.chat_template = "lmforge"
    try:
        ids, a, b = JudgeLabeler(model, tok, "j").prompt("Q?", "x", "y")
    finally:
        model.chat_template = None
    assert ids[0] == tok.special_id("user") and ids[-1] == tok.special_id("assistant")
    assert (a, b) == (tok.encode_plain(" A"), tok.encode_plain(" B"))


def test_judge_data_shows_each_pair_in_both_orders_and_teaches_the_tokens_the_judge_is_scored_by(cli, run, loaded, tmp_path):
    from lmforge.data import chat
    from lmforge.data.comparisons import Comparison
    from lmforge.label import judge_demonstrations

    c = Comparison(prompt="Q?", completions=["good", "bad", "worse"], pairs=[(0, 1), (0, 2), (1, 2)], finished=[True] * 3)
    records = judge_demonstrations([c])
    seen = {(r["messages"][0]["content"], r["messages"][1]["content"]) for r in records}
    assert len(records) == 6 and ("Question: Q?\nAnswer A: good\nAnswer B: bad\nWhich answer is better?", "A") in seen
    assert ("Question: Q?\nAnswer A: bad\nAnswer B: good\nWhich answer is better?", "B") in seen
    assert sum(r["messages"][1]["content"] == "A" for r in records) == 3  # no position to learn the verdict from
    assert len(judge_demonstrations([c], pairs_per_comparison=1)) == 2

    model, tok = loaded  # what SFT trains on is what the chat judge scores: the prompt, then " A"
    model.chat_template = "lmforge"
    try:
        ids, a, _ = JudgeLabeler(model, tok, "j").prompt("Q?", "good", "bad")
    finally:
        model.chat_template = None
    rendered = chat.render(tok, [{"role": "user", "content": "Question: Q?\nAnswer A: good\nAnswer B: bad\nWhich answer is better?"}, {"role": "assistant", "content": "A"}])
    learnt = [t for t, m in zip(rendered.ids, rendered.mask) if m]
    assert rendered.ids[: len(ids)] == ids and learnt == a + [tok.special_id("end_of_turn")]

    rankings = tmp_path / "rankings.jsonl"
    write_jsonl(rankings, [{"prompt": "Q?", "completions": ["a", "b", "c"], "ranking": [2, 0, 1]}, {"prompt": "P?", "completions": ["x", "y"], "ranking": [1, 0]}])
    code, out, err = cli("label", "judge-data", "--rankings", rankings, "--out", tmp_path / "judge.jsonl", "--json")
    assert code == 0, err
    assert json.loads(out)["conversations"] == 8 and len(read_jsonl(tmp_path / "judge.jsonl")) == 8
    code, _, err = cli("label", "judge-data", "--rankings", tmp_path / "missing.jsonl", "--out", tmp_path / "j2.jsonl")
    assert code == 2 and "missing.jsonl" in err and "Traceback" not in err and not (tmp_path / "j2.jsonl").exists()


def test_the_judge_as_a_preference_model_is_symmetric_whatever_its_position_bias(loaded):
    import torch

    model, tok = loaded
    judge = JudgeLabeler(model, tok, "judge")
    q, a, b = ["Q?", "Who?"], ["a short answer", "x"], ["another answer", "y y y"]
    p_ab, p_ba = judge.preference(q, a, b), judge.preference(q, b, a)
    assert torch.allclose(p_ab + p_ba, torch.ones(2), atol=1e-5)
    odds = judge.log_odds(Sample(prompt="Q?", completions=[a[0], b[0]]))  # the same verdicts, as ranking sees them
    assert float(p_ab[0]) == pytest.approx(float(torch.sigmoid(torch.tensor((odds[(0, 1)] - odds[(1, 0)]) / 2))), abs=1e-5)


def test_judge_skips_a_sample_that_does_not_fit_its_context(loaded):
    model, tok = loaded
    judge = JudgeLabeler(model, tok, "judge")
    assert judge.rank(Sample("Q?", ["word " * 200, "x"])) is None


# --------------------------------------------------------------------------- a person's rankings


def test_human_rankings_are_matched_by_prompt_and_completions(tmp_path):
    samples = write_jsonl(tmp_path / "s.jsonl", [
        {"prompt": "A?", "completions": ["a1", "a2", "a3"]},
        {"prompt": "B?", "completions": ["b1", "b2"]},
        {"prompt": "C?", "completions": ["c1", "c2"]},
    ])  # fmt: skip
    human = write_jsonl(tmp_path / "h.jsonl", [
        {"prompt": "A?", "completions": ["a1", "a2", "a3"], "ranking": [2, 0, 1], "labeler": "ada"},
        {"prompt": "B?", "completions": ["b2", "b1"], "ranking": [0, 1]},  # other order: not this sample
        {"prompt": "C?", "completions": ["c1", "c2"], "ranking": [1, 0]},
        {"prompt": "D?", "completions": ["d1", "d2"], "ranking": [1, 0]},
    ])  # fmt: skip
    out = tmp_path / "r.jsonl"
    summary = run_label(samples, [f"human:{human}"], out)
    assert [(r["prompt"], r["ranking"], r["labeler"]) for r in read_jsonl(out)] == [("A?", [2, 0, 1], "ada"), ("C?", [1, 0], "human")]
    assert summary["skipped"] == 1 and summary["skipped_by"] == {"human": 1} and "no ranking" in summary["skip_reasons"]["human"]
    assert summary["human_rankings_unused"] == 2


# --------------------------------------------------------------------------- the registry


def test_a_new_kind_of_labeler_plugs_into_the_registry(tmp_path, monkeypatch):
    monkeypatch.setattr(label_mod, "LABELERS", dict(label_mod.LABELERS))

    class Shortest:
        name = "shortest"

        def rank(self, sample):
            return sorted(range(len(sample.completions)), key=lambda i: len(sample.completions[i]))

    register_labeler("shortest", lambda arg, ctx: [Shortest()])
    samples = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "A?", "completions": ["long one", "a", "mid"]}])
    run_label(samples, ["shortest"], tmp_path / "r.jsonl")
    assert read_jsonl(tmp_path / "r.jsonl")[0]["ranking"] == [1, 2, 0]
    with pytest.raises(InputError, match="unknown labeler 'longest'"):
        make_labelers("longest", LabelContext())


# --------------------------------------------------------------------------- the command line


def test_sample_then_label_through_the_cli(cli, run, tmp_path):
    samples, ranked = tmp_path / "samples.jsonl", tmp_path / "ranked.jsonl"
    code, out, err = cli("sample", "--model", run, "--prompts", run / "world" / "ppo_prompts.jsonl", "--k", 4, "--limit", 8, "--max-new-tokens", 6, "--out", samples, "--json")
    assert code == 0, err
    assert json.loads(out)["samples"] == 32 and len(read_jsonl(samples)) == 8
    code, out, err = cli("label", "--samples", samples, "--labeler", "world", "--out", ranked, "--json")
    assert code == 0, err
    assert json.loads(out)["rankings"] == 8
    records = read_jsonl(ranked)
    assert list(records[0]) == ["prompt", "completions", "ranking", "labeler", "finished", "task", "meta"]  # as the world's comparisons.jsonl
    assert set(records[0]) == set(read_jsonl(run / "world" / "comparisons.jsonl")[0])
    code, out, err = cli("data", "validate", "--data", ranked, "--schema", "ranking")
    assert code == 0 and "8 records" in out, err
    code, out, err = cli("label", "--samples", samples, "--labeler", f"judge:{run}", "--limit", 2, "--out", tmp_path / "judged.jsonl")
    assert code == 0 and "2 rankings" in out, err
    assert {r["labeler"] for r in read_jsonl(tmp_path / "judged.jsonl")} == {f"judge:{run}"}
    # a constitution: the judge reads its principles before each question; an empty one is refused
    principles = tmp_path / "constitution.txt"
    principles.write_text("Prefer the answer that is correct.\nPrefer the answer that states nothing false.\n")
    code, out, err = cli("label", "--samples", samples, "--labeler", f"judge:{run}", "--constitution", principles, "--limit", 2, "--out", tmp_path / "c.jsonl")
    assert code == 0 and "2 rankings" in out, err
    (tmp_path / "empty.txt").write_text("\n  \n")
    for bad, says in ((tmp_path / "empty.txt", "constitution is empty"), (tmp_path / "none.txt", "no such file")):
        assert_clean_failure(cli("label", "--samples", samples, "--labeler", f"judge:{run}", "--constitution", bad, "--out", tmp_path / "x.jsonl"), str(bad), says)
    assert not (tmp_path / "x.jsonl").exists()


def test_a_constitution_comes_before_the_question():
    from lmforge.label import judge_question

    assert judge_question("Q?", "a", "b", "Be true.") == "Compare the answers by these principles:\nBe true.\nQuestion: Q?\nAnswer A: a\nAnswer B: b\nWhich answer is better?"
    assert judge_question("Q?", "a", "b") == "Question: Q?\nAnswer A: a\nAnswer B: b\nWhich answer is better?"


def test_bad_inputs_fail_with_one_line_and_write_nothing(cli, run, tmp_path):
    out = tmp_path / "out.jsonl"
    good = {"prompt": "A?", "completions": ["a", "b"], "finished": [True, True]}
    world = ["--world", run / "world"]

    def samples(*records, first=good):
        samples.n = getattr(samples, "n", 0) + 1
        return write_jsonl(tmp_path / f"s{samples.n}.jsonl", [first, *records])

    def human(name, *records):
        return "human:" + str(write_jsonl(tmp_path / name, records))

    cases = [  # (options, samples file, what the one line must say)
        (["--labeler", "world", *world], samples({"completions": ["a", "b"]}), [":2", "field 'prompt'", "missing"]),
        (["--labeler", "world", *world], samples({"prompt": "B?", "completions": ["a"]}), [":2", "field 'completions'", "at least 2"]),
        (["--labeler", "world", *world], samples({"prompt": "B?", "completions": ["a", 3]}), [":2", "field 'completions'"]),
        (["--labeler", "world", *world], samples({"prompt": "B?", "completions": ["a", "b"], "finished": [True]}), [":2", "field 'finished'"]),
        (["--labeler", "world", *world], samples(), [":1", "field 'task'", "ppo_prompts"]),
        (["--labeler", "world", *world], samples(first={**good, "task": "poetry", "meta": {}}), [":1", "field 'task'", "unknown world task"]),
        (["--labeler", "world", *world], samples(first={**good, "task": "fact", "meta": {}}), [":1", "field 'meta'", "this world"]),
        (["--labeler", "world"], samples(), ["field 'world'", "--world"]),
        (["--labeler", "world:labeler-9", *world], samples(), ["field 'labeler'", "labeler-9", "labeler-1"]),
        (["--labeler", "wizard"], samples(), ["field 'labeler'", "unknown labeler 'wizard'", "judge:MODEL_DIR"]),
        (["--labeler", "judge"], samples(), ["field 'labeler'", "judge:MODEL_DIR"]),
        (["--labeler", f"human:{tmp_path / 'none.jsonl'}"], samples(), ["none.jsonl", "no such file"]),
        (["--labeler", human("h.jsonl", {"prompt": "Z?", "completions": ["a", "b"], "ranking": [0, 0]})], samples(), ["h.jsonl:1", "field 'ranking'"]),
        (["--labeler", human("h2.jsonl", {"prompt": "Z?", "completions": ["a", "b"], "ranking": [0, 1]})], samples(), ["no sample was ranked", "no ranking"]),
    ]
    for extra, path, fragments in cases:
        assert_clean_failure(cli("label", "--samples", path, "--out", out, *extra), *fragments)
        assert not out.exists()
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "A?"}, {"text": "B"}])
    assert_clean_failure(cli("sample", "--model", run, "--prompts", prompts, "--out", out), "p.jsonl:2", "field 'prompt'", "missing")
    assert_clean_failure(cli("sample", "--model", run, "--prompts", prompts, "--out", out, "--k", 1), "field 'k'", ">= 2")
    long = write_jsonl(tmp_path / "long.jsonl", [{"prompt": "far away " * 200}])
    assert_clean_failure(cli("sample", "--model", run, "--prompts", long, "--out", out), "long.jsonl:1", "field 'prompt'", "--long skip")
    assert_clean_failure(cli("sample", "--model", tmp_path / "nomodel", "--prompts", long, "--out", out), "nomodel")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_best_data_keeps_the_best_finished_answer_of_each_ranking(cli, tmp_path):
    """Expert iteration's data: the answer ranked above all others, as a demonstration; an
    unfinished or empty best is left out (counted)."""
    rankings = tmp_path / "rankings.jsonl"
    write_jsonl(rankings, [
        {"prompt": "Q?", "completions": ["a", "b", "c"], "ranking": [2, 0, 1]},
        {"prompt": "P?", "completions": ["x", "y"], "ranking": [1, 0]},
        {"prompt": "S?", "completions": ["same", "other", "same"], "ranking": [0, 2, 1]},  # the best sampled twice: one demonstration
        {"prompt": "R?", "completions": ["cut", "whole"], "ranking": [0, 1], "finished": [False, True]},
        {"prompt": "E?", "completions": ["", "words"], "ranking": [0, 1]},  # nothing to learn from
    ])  # fmt: skip
    code, out, err = cli("label", "best-data", "--rankings", rankings, "--out", tmp_path / "best.jsonl", "--json")
    assert code == 0, err
    assert json.loads(out)["kept"] == 3 and json.loads(out)["unfinished"] == 1 and json.loads(out)["empty"] == 1
    assert read_jsonl(tmp_path / "best.jsonl") == [
        {"prompt": "Q?", "completion": "c"},
        {"prompt": "P?", "completion": "y"},
        {"prompt": "S?", "completion": "same"},
    ]  # fmt: skip
    write_jsonl(rankings, [{"prompt": "R?", "completions": ["cut", "whole"], "ranking": [0, 1], "finished": [False, True]}])
    code, _, err = cli("label", "best-data", "--rankings", rankings, "--out", tmp_path / "none.jsonl")
    assert code == 2 and "no ranking has a finished answer" in err and not (tmp_path / "none.jsonl").exists()
