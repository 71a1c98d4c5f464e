"""In-context evaluation (`lmforge eval fewshot`): prompt formats, demonstrations, scoring by a
checker and by log-probability, finding the world, and the command line."""

import json
import shutil

import pytest
import torch

from lmforge.config import load_config
from lmforge.data import chat
from lmforge.engine import Generation, sequence_logprobs
from lmforge.errors import InputError
from lmforge.eval import fewshot
from lmforge.eval.fewshot import FewShotConfig, Item, Task, encode, evaluate, load_task, pick_demos, render, world_task
from lmforge.world.build import WorldConfig, build_world, find_world
from lmforge.world.ontology import VALUES

from .test_cli import assert_clean_failure

TINY_WORLD = ["entities=16", "documents=300", "sft_prompts=80", "sft_val_prompts=5", "rm_prompts=10", "ppo_prompts=5", "eval_prompts=60", "calibration_prompts=50"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A pretraining-like run directory: an untrained tiny GPT, a tokenizer trained on the world's
    corpus, and the world in run/world."""
    from lmforge.checkpoint import save_model
    from lmforge.models import build_model
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer

    run = tmp_path_factory.mktemp("fewshot") / "run"
    build_world(load_config(WorldConfig, None, TINY_WORLD), run / "world")
    texts = [json.loads(line)["text"] for line in (run / "world" / "pretrain.jsonl").read_text().splitlines()]
    tok = train_tokenizer(texts, TokenizerConfig(kind="bpe", vocab_size=400, min_frequency=1))
    config = {"architecture": "transformer", "head": "lm", "model": {"flavour": "gpt2", "vocab_size": tok.vocab_size, "n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 512}}
    torch.manual_seed(0)
    save_model(run, build_model(config).state_dict(), config, tok)
    return run


@pytest.fixture(scope="module")
def loaded(run):
    from lmforge.models import load_model
    from lmforge.tokenizer import Tokenizer

    model, folder = load_model(run)
    return model.eval(), Tokenizer.load(folder)


@pytest.fixture(scope="module")
def world(run):
    from lmforge.world.build import load_world

    return load_world(run / "world")[0]


DEMOS = [Item("What is 1 + 1?", "1 + 1 = 2."), Item("What is 2 + 3?", "2 + 3 = 5.")]


# ------------------------------------------------------------------ prompts


def test_raw_prompt_text():
    assert render("raw", "What is 2 + 2?", []) == "What is 2 + 2?\n"
    assert render("raw", "What is 2 + 2?", DEMOS) == "What is 1 + 1?\n1 + 1 = 2.\n\nWhat is 2 + 3?\n2 + 3 = 5.\n\nWhat is 2 + 2?\n"


def test_qa_prompt_text():
    assert render("qa", "What is 2 + 2?", []) == "Q: What is 2 + 2?\nA:"
    assert render("qa", "What is 2 + 2?", DEMOS) == "Q: What is 1 + 1?\nA: 1 + 1 = 2.\n\nQ: What is 2 + 3?\nA: 2 + 3 = 5.\n\nQ: What is 2 + 2?\nA:"


def test_chat_prompt_messages():
    assert render("chat", "What is 2 + 2?", []) == [{"role": "user", "content": "What is 2 + 2?"}]
    assert render("chat", "What is 2 + 2?", DEMOS) == [
        {"role": "user", "content": "What is 1 + 1?"},
        {"role": "assistant", "content": "1 + 1 = 2."},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "2 + 3 = 5."},
        {"role": "user", "content": "What is 2 + 2?"},
    ]


def test_base_formats_start_a_new_document(loaded):
    _, tok = loaded
    text = render("qa", "What is 2 + 2?", DEMOS)
    assert encode(tok, "qa", text) == [tok.eos_id, *tok.encode(text)]


def test_chat_format_goes_through_the_chat_template(loaded, monkeypatch):
    _, tok = loaded
    messages = render("chat", "What is 2 + 2?", DEMOS)
    expected = chat.prompt_ids(tok, messages)
    assert encode(tok, "chat", messages) == expected and expected[-1] == tok.special_id("assistant")
    seen = []
    monkeypatch.setattr(chat, "prompt_ids", lambda t, m: seen.append(m) or [1, 2, 3])
    assert encode(tok, "chat", messages) == [1, 2, 3] and seen == [messages]


def test_choices_are_scored_as_the_prompt_continues(loaded):
    _, tok = loaded
    text = render("qa", "Is it good?", [])
    assert fewshot.choice_ids(tok, "qa", text, encode(tok, "qa", text), "Positive") == tok.encode(" Positive")
    messages = render("chat", "Is it good?", DEMOS)
    prompt = encode(tok, "chat", messages)
    answered = chat.render(tok, [*messages, {"role": "assistant", "content": "Positive"}]).ids
    assert prompt + fewshot.choice_ids(tok, "chat", messages, prompt, "Positive") + [tok.special_id("end_of_turn")] == answered


def test_auto_format_picks_chat_for_a_chat_model_else_raw_or_qa(loaded):
    model, _ = loaded
    assert fewshot.resolve_format("auto", model, 0) == "raw"
    assert fewshot.resolve_format("auto", model, 3) == "qa"
    chat_model = torch.nn.Module()
    chat_model.chat_template = "lmforge"
    assert fewshot.resolve_format("auto", chat_model, 0) == "chat"


# ------------------------------------------------------------------ demonstrations


def test_demos_exclude_the_item_and_are_deterministic():
    pool = [Item(f"Question {i}?", f"Answer {i}.") for i in range(6)]
    for item in pool:
        demos = pick_demos(pool, item, 5, seed=0)
        assert item not in demos and len({d.prompt for d in demos}) == 5
        assert pick_demos(pool, item, 2, seed=0) == pick_demos(list(pool), item, 2, seed=0)
    draws = {s: [pick_demos(pool, item, 2, seed=s) for item in pool] for s in (0, 1)}
    assert draws[0] != draws[1]
    with pytest.raises(InputError, match="only 5"):
        pick_demos(pool, pool[0], 6, seed=0)


def test_world_demos_come_from_sft_and_share_the_items_task(run):
    task = world_task("all", run / "world")
    assert {i.task for i in task.items} > {"fact"}
    for item in task.items:
        demos = pick_demos(task.demos, item, 3, seed=0)
        assert all(d.task == item.task and d.prompt != item.prompt for d in demos)


def test_demos_that_do_not_fit_are_dropped(loaded, run):
    model, tok = loaded
    task = world_task("fact", run / "world")
    task.items = task.items[:4]
    full = evaluate(model, tok, task, FewShotConfig(shots=3, max_new_tokens=4))
    assert full["mean_shots"] == 3
    model.cfg.max_seq_len, saved = 60, model.cfg.max_seq_len
    try:
        cut = evaluate(model, tok, task, FewShotConfig(shots=3, max_new_tokens=4))
    finally:
        model.cfg.max_seq_len = saved
    assert 0 < cut["mean_shots"] < 3


# ------------------------------------------------------------------ scoring by log-probability


def test_label_words_prediction_is_the_argmax_of_sequence_logprobs(loaded, run):
    model, tok = loaded
    task = world_task("sentiment-choice", run / "world")
    r = evaluate(model, tok, task, FewShotConfig(shots=2, show=len(task.items)))
    assert r["format"] == "qa" and r["chance"] == 0.5
    right = 0
    for item, ex in zip(task.items, r["examples"]):
        ids = encode(tok, "qa", render("qa", item.prompt, pick_demos(task.demos, item, 2, seed=0)))
        with torch.no_grad():
            lp = [float(sequence_logprobs(model, [ids], [tok.encode(" " + c)])[0]) for c in ("Positive", "Negative")]
        assert ex["logprobs"] == pytest.approx(lp, abs=1e-4)
        assert ex["predicted"] == ("Positive", "Negative")[lp.index(max(lp))]
        right += ex["predicted"] == item.answer
    assert r["accuracy"] == right / len(task.items)


def _choice_stub(monkeypatch, tok, favoured):
    """sequence_logprobs replaced: 0 for the continuation `favoured(prompt_text)` names, -1 otherwise."""

    def fake(model, prompts, continuations, pad_id=0):
        return torch.tensor([0.0 if tok.decode(c).strip() == favoured(tok.decode(p)) else -1.0 for p, c in zip(prompts, continuations)])

    monkeypatch.setattr(fewshot, "sequence_logprobs", fake)


def _sentiment_items():
    reviews = {"I love this lamp. It works great.": "Positive", "I hate this lamp. It arrived broken.": "Negative", "Best bike I have had.": "Positive", "Worst bike I have had.": "Negative"}
    return [Item(f"Review: {text}\nIs the review positive or negative?", label, "sentiment", {}, ["Positive", "Negative"], ["Positive", "Negative"].index(label)) for text, label in reviews.items()]


def test_always_right_gets_accuracy_1_and_a_constant_answer_gets_chance(loaded, monkeypatch):
    model, tok = loaded
    items = _sentiment_items()
    task = Task("sentiment-choice", items, [], None)
    truth = {it.prompt: it.answer for it in items}
    _choice_stub(monkeypatch, tok, lambda prompt: next(a for p, a in truth.items() if prompt.endswith(p + "\n")))
    r = evaluate(model, tok, task, FewShotConfig())
    assert (r["accuracy"], r["chance"], r["centered_accuracy"]) == (1.0, 0.5, 1.0)
    _choice_stub(monkeypatch, tok, lambda prompt: "Positive")
    r = evaluate(model, tok, task, FewShotConfig())
    assert (r["accuracy"], r["chance"], r["centered_accuracy"]) == (0.5, 0.5, 0.0)


def test_fact_choice_substitutes_every_value_of_the_type(loaded, run, world, monkeypatch):
    model, tok = loaded
    task = world_task("fact-choice", run / "world")
    for item in task.items:
        e = world.by_name[item.meta["entity"]]
        vt = item.meta["value_type"]
        values = len(world.kinds[vt]) - (vt == e.kind) if vt in world.kinds else len(VALUES[vt])
        assert item.choices[item.label] == world.answer(e, item.meta["attr"]) and len(set(item.choices)) == len(item.choices) == values
        assert all(c.count(e.name) == item.answer.count(e.name) for c in item.choices)  # never its own value
    answers = {it.prompt: it.answer for it in task.items}
    _choice_stub(monkeypatch, tok, lambda prompt: next(a for p, a in answers.items() if prompt.endswith(f"Q: {p}\nA:")))
    r = evaluate(model, tok, task, FewShotConfig(shots=1))
    chance = sum(1 / len(it.choices) for it in task.items) / len(task.items)
    assert r["accuracy"] == 1.0 and r["centered_accuracy"] == 1.0 and r["chance"] == pytest.approx(chance)


# ------------------------------------------------------------------ scoring generations


def _generate_stub(monkeypatch, tok, answer_for):
    """generate replaced: the answer `answer_for(prompt_text)` gives, finished."""

    def fake(model, prompts, params, pad_id=0, decode=None):
        return [Generation(tok.encode(answer_for(tok.decode(p))), True, []) for p in prompts]

    monkeypatch.setattr(fewshot, "generate", fake)


def test_checker_scores_and_question_rate(loaded, run, world, monkeypatch):
    model, tok = loaded
    task = world_task("all", run / "world")
    by_prompt = {it.prompt: it for it in task.items}
    asks = set(list(by_prompt)[::3])  # every third item is answered with a question

    def answer(prompt_text):
        item = by_prompt[prompt_text.removeprefix("<|endoftext|>").removesuffix("\n")]
        return "What do you think?" if item.prompt in asks else fewshot._reference(world, item.task, item.meta)

    _generate_stub(monkeypatch, tok, answer)
    r = evaluate(model, tok, task, FewShotConfig(show=2))
    n, asked = len(task.items), sum(it.prompt in asks for it in task.items)
    assert r["question_rate"] == pytest.approx(asked / n)
    stories = sum(it.task == "story" and it.prompt not in asks for it in task.items)  # eval.jsonl holds no reference story: empty answers
    assert r["accuracy"] == pytest.approx((n - asked - stories) / n)
    assert r["finished_rate"] == 1.0 and set(r["per_task"]) == {it.task for it in task.items}
    assert [e["prompt"] for e in r["examples"]] == [it.prompt for it in task.items[:2]]


def test_user_file_scored_by_normalised_exact_match(loaded, tmp_path, monkeypatch):
    model, tok = loaded
    f = tmp_path / "capitals.jsonl"
    rows = [("Capital of France?", "Paris"), ("Capital of Italy?", "Rome"), ("Capital of Spain?", "Madrid"), ("Capital of Peru?", "Lima")]
    f.write_text("".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in rows))
    said = {"Capital of France?": " paris. ", "Capital of Italy?": "Rome!", "Capital of Spain?": "Barcelona", "Capital of Peru?": "Is it Lima?"}
    _generate_stub(monkeypatch, tok, lambda text: said[text.splitlines()[-2].removeprefix("Q: ")])
    task = load_task(str(f))
    r = evaluate(model, tok, task, FewShotConfig(shots=2))
    assert (r["accuracy"], r["question_rate"], r["format"]) == (0.5, 0.25, "qa")


# ------------------------------------------------------------------ finding the world


def test_world_is_found_next_to_the_model(run, tmp_path):
    assert find_world(run) == run / "world"
    ckpt = tmp_path / "r" / "checkpoints" / "step-00000010"
    ckpt.mkdir(parents=True)
    (tmp_path / "r" / "world").symlink_to(run / "world")
    assert find_world(ckpt) == tmp_path / "r" / "world"
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "config.yaml").write_text(f"init: {run}\ndata:\n  train: world\n")
    assert find_world(sft) == run / "world"
    beside = tmp_path / "cmp"
    (beside / "gpt").mkdir(parents=True)
    (beside / "world").symlink_to(run / "world")
    (beside / "gpt" / "config.yaml").write_text(f"data:\n  shards: {beside / 'data' / 'shards'}\n")
    assert find_world(beside / "gpt") == beside / "world"
    with pytest.raises(InputError, match="--world"):
        find_world(tmp_path / "nothing")


# ------------------------------------------------------------------ the command line


def test_cli_world_task_json(cli, run):
    code, out, err = cli("eval", "fewshot", "--model", run, "--task", "all", "--shots", 2, "--limit", 6, "--max-new-tokens", 6, "--show", 1, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert (r["task"], r["format"], r["shots"], r["n"]) == ("all", "qa", 2, 6)
    for key in ("accuracy", "score", "question_rate", "mean_length", "finished_rate", "examples", "seconds"):
        assert key in r
    assert r["examples"][0]["input"].endswith("\nA:") and r["examples"][0]["input"].count("Q: ") == 3
    code, out, err = cli("eval", "fewshot", "--model", run, "--task", "sentiment-choice", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["format"] == "raw" and r["chance"] == 0.5 and "centered_accuracy" in r


def test_cli_chat_model_uses_the_template_and_its_base_models_world(cli, run, tmp_path):
    sft = tmp_path / "sft"
    shutil.copytree(run, sft, ignore=shutil.ignore_patterns("world"))
    config = json.loads((sft / "config.json").read_text())
    (sft / "config.json").write_text(json.dumps({**config, "chat_template": "lmforge"}))
    (sft / "config.yaml").write_text(f"init: {run}\n")
    code, out, err = cli("eval", "fewshot", "--model", sft, "--task", "fact", "--shots", 1, "--limit", 3, "--max-new-tokens", 4, "--show", 1, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["format"] == "chat" and r["examples"][0]["input"].startswith("<|user|>") and r["examples"][0]["input"].endswith("<|assistant|>")
    code, out, err = cli("eval", "fewshot", "--model", sft, "--task", "fact", "--limit", 3, "--max-new-tokens", 4)
    assert code == 0 and "accuracy" in out and "chat format" in out


def test_cli_user_file_with_choices(cli, run, tmp_path):
    f = tmp_path / "mc.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"Pick {i}", "answer": "yes", "choices": ["yes", "no", "maybe"]}) + "\n" for i in range(4)))
    code, out, err = cli("eval", "fewshot", "--model", run, "--task", f, "--shots", 1, "--json")
    assert code == 0, err
    assert json.loads(out)["chance"] == pytest.approx(1 / 3)


def test_cli_bad_inputs(cli, run, tmp_path):
    fs = ("eval", "fewshot", "--model", run)
    assert_clean_failure(cli(*fs, "--task", "weather"), "unknown task 'weather'", "sentiment-choice")
    assert_clean_failure(cli(*fs, "--task", "fact", "--shots", -1), "field 'shots'", ">= 0")
    assert_clean_failure(cli(*fs, "--task", "fact", "--limit", 0), "field 'limit'")
    assert_clean_failure(cli(*fs, "--task", "fact", "--shots", 1000), "1000 demonstrations")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "answer": "b"}\n{"prompt": "c"}\n')
    assert_clean_failure(cli(*fs, "--task", bad), f"{bad}:2", "field 'answer'")
    bad.write_text('{"prompt": "a", "answer": "b", "choices": ["x", "y"]}\n')
    assert_clean_failure(cli(*fs, "--task", bad), f"{bad}:1", "one of the choices")
    bad.write_text(json.dumps({"prompt": "word " * 600, "answer": "b"}) + "\n")
    assert_clean_failure(cli(*fs, "--task", bad), "context of 512")
    lone = tmp_path / "lone"
    shutil.copytree(run, lone, ignore=shutil.ignore_patterns("world"))
    assert_clean_failure(cli("eval", "fewshot", "--model", lone, "--task", "fact"), "--world")
    assert_clean_failure(cli("eval", "fewshot", "--model", lone, "--task", "fact", "--world", tmp_path), "not a world directory")


def test_help_names_every_option(cli):
    code, out, _ = cli("eval", "fewshot", "--help")
    assert code == 0
    for opt in ("--model", "--task", "--shots", "--format", "--limit", "--world", "--demos", "--max-new-tokens", "--seed", "--show", "--json", "fact-choice"):
        assert opt in out
