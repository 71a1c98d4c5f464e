"""The built-in world: determinism, genres, checkers, oracle, labelers, import hygiene."""

import ast
import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lmforge.config import load_config
from lmforge.world import oracle
from lmforge.world.build import WorldConfig, build_world, load_world, world_stats
from lmforge.world.claims import false_claims
from lmforge.world.corpus import RUDE_WORDS, documents
from lmforge.world.labelers import Labeler, agreement, calibrate_temperature
from lmforge.world.ontology import make_world
from lmforge.world.tasks import TASKS, sample_example, split_in, split_of

SMALL = ["documents=600", "sft_prompts=40", "sft_val_prompts=10", "rm_prompts=60", "ppo_prompts=40", "eval_prompts=40", "calibration_prompts=300"]


def small(seed=0, *extra):
    return load_config(WorldConfig, None, [*SMALL, f"seed={seed}", *extra])


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("w") / "world"
    build_world(small(0), out)
    return out


@pytest.fixture(scope="module")
def world():
    return make_world(0)


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# ------------------------------------------------------------------ determinism


def test_same_seed_is_byte_identical_other_seed_differs(world_dir, tmp_path):
    again = tmp_path / "again"
    build_world(small(0), again)
    for f in sorted(world_dir.iterdir()):
        assert f.read_bytes() == (again / f.name).read_bytes(), f.name
    other = tmp_path / "other"
    build_world(small(1), other)
    w0, w1 = make_world(0), make_world(1)
    assert {e.name for e in w0.entities}.isdisjoint({e.name for e in w1.entities}) or {e.name for e in w0.entities} != {e.name for e in w1.entities}
    assert (world_dir / "pretrain.jsonl").read_bytes() != (other / "pretrain.jsonl").read_bytes()


def test_entities_knob(tmp_path):
    w = make_world(0, entities=100)
    assert len(w.entities) == 100 and len(w.by_name) == 100  # names are unique


def test_splits_follow_the_standard_schemas(world_dir):
    from lmforge.data.schemas import validate

    assert validate(world_dir / "pretrain.jsonl")[0] == "text"
    assert validate(world_dir / "sft.jsonl")[0] == "messages"
    assert validate(world_dir / "comparisons.jsonl")[0] == "ranking"
    assert validate(world_dir / "pairs.jsonl")[0] == "preference"
    assert validate(world_dir / "eval.jsonl")[0] == "evaluation"
    assert validate(world_dir / "ppo_prompts.jsonl")[0] == "evaluation"
    ks = {len(r["completions"]) for r in read(world_dir / "comparisons.jsonl")}
    assert ks <= set(range(4, 10)) and len(ks) > 3


def test_eval_prompts_use_combinations_no_training_prompt_uses(world_dir):
    train_keys = {r["meta"]["key"] for name in ("sft.jsonl", "sft_val.jsonl") for r in read(world_dir / name)}
    train_keys |= {r["meta"]["key"] for r in read(world_dir / "ppo_prompts.jsonl")} | {r["meta"]["key"] for r in read(world_dir / "comparisons.jsonl")}
    eval_keys = {r["meta"]["key"] for r in read(world_dir / "eval.jsonl")}
    assert eval_keys and not (eval_keys & train_keys)
    assert all(split_of(k) == "eval" for k in eval_keys)


TINY_WORLD = ["entities=12", "documents=400", "sft_prompts=60", "sft_val_prompts=10", "rm_prompts=80", "ppo_prompts=40", "eval_prompts=20", "calibration_prompts=100"]


@pytest.mark.slow
def test_the_world_builds_at_every_seed_at_its_smallest_size(tmp_path):
    """12 entities, the fewest the config accepts, 50 seeds: seed 78 once died with "task story
    found no eval combination" (7 creatures and people, none hashed into evaluation). Every task
    keeps combinations on both sides of the split, and evaluation asks none that training asks."""
    for seed in range(50, 100):
        out = tmp_path / str(seed)
        build_world(load_config(WorldConfig, None, [*TINY_WORLD, f"seed={seed}"]), out)
        w, _, _ = load_world(out)
        for task in TASKS.values():
            keys = task.keys(w)
            if keys is not None:
                assert {split_in(w, task, k) for k in keys} == {"train", "eval"}, (seed, task.name)
        train = {r["meta"]["key"] for name in ("sft.jsonl", "ppo_prompts.jsonl", "comparisons.jsonl") for r in read(out / name)}
        held_out = {r["meta"]["key"] for r in read(out / "eval.jsonl")}
        assert held_out and not (held_out & train), seed


def test_a_split_moves_only_where_one_side_would_be_empty():
    """Worlds whose combinations fill both sides keep the plain hash split (so the worlds of
    every run measured before the fix are unchanged); a task with none held out moves the one
    combination nearest the line."""
    w = make_world(0)
    for task in TASKS.values():
        for k in task.keys(w) or []:
            assert split_in(w, task, k) == split_of(k)
    story = TASKS["story"]
    for seed in range(200):
        w = make_world(seed, 12)
        keys = story.keys(w)
        plain = [split_of(k) for k in keys]
        moved = [split_in(w, story, k) for k in keys]
        if "eval" in plain:
            assert moved == plain
        else:
            assert moved.count("eval") == 1 and sum(a != b for a, b in zip(plain, moved)) == 1
            break
    else:
        pytest.fail("no seed in 0-199 without a held-out story at 12 entities; the test needs one")


# ------------------------------------------------------------------ corpus genres


def test_every_genre_is_present_with_its_failure_or_capability_source(world):
    docs = list(documents(world, random.Random(0), 3000))
    by = {}
    for g, t in docs:
        by.setdefault(g, []).append(t)
    assert set(by) == {"encyclopedia", "story", "worksheet", "qa", "quiz", "forum", "rumour", "review"}
    # quiz sheets: questions without answers
    assert all("A:" not in t and len(t.splitlines()) >= 3 for t in by["quiz"])
    assert sum(t.count("?") for t in by["quiz"]) > 2 * len(by["quiz"])
    # Q&A pages: questions with answers
    assert all("Q:" in t and "A:" in t for t in by["qa"])
    # some quiz sheets and question pages open with the bare question, as an eval prompt does
    assert any(t.splitlines()[0].endswith("?") for t in by["quiz"])
    assert any(t.splitlines()[0].endswith("?") and "wrote:" in t for t in by["forum"])
    # forum threads: some replies rude
    rude = sum(any(w in t.split() or w + "," in t or w + "." in t for w in RUDE_WORDS) for t in by["forum"])
    assert 0.3 < rude / len(by["forum"]) < 0.95
    # the Q&A pages' answers are as good as qa_good says: all good at 1, about half at the default
    for good in (1.0, 0.0):
        pages = [t for g, t in documents(world, random.Random(1), 600, qa_good=good) if g == "qa"]
        bad = sum(bool(false_claims(world, t)) or any(w in t for w in RUDE_WORDS) for t in pages)
        assert (bad == 0) if good == 1.0 else (bad > 0.5 * len(pages))
    # rumour pages state false facts; encyclopedia entries and stories state none
    assert all(false_claims(world, t) for t in by["rumour"])
    assert not any(false_claims(world, t) for t in by["encyclopedia"] + by["story"])
    # worksheets carry arithmetic with answers
    assert all("=" in t for t in by["worksheet"])


def test_genre_mix_is_configurable(world):
    cfg = small(0, "genres.forum=0", "genres.rumour=1.0")
    mix = {k: getattr(cfg.genres, k) for k in ("encyclopedia", "story", "worksheet", "qa", "quiz", "forum", "rumour", "review")}
    counts = Counter(g for g, _ in documents(world, random.Random(0), 2000, mix))
    assert counts["forum"] == 0
    assert counts["rumour"] / 2000 == pytest.approx(1.0 / sum(mix.values()), abs=0.04)


def test_vocabulary_stays_small(world_dir):
    stats = world_stats(world_dir, agreement_prompts=50)
    assert stats["pretrain"]["vocabulary"] < 600


# ------------------------------------------------------------------ checkers and oracle on hand-written responses


def fact_example(world):
    e = world.kinds["creature"][0]
    return e, {"entity": e.name, "attr": "colour", "answer": e.attrs["colour"], "value_type": "colour", "key": "x"}


def score(world, meta, text, finished=True, task="fact"):
    return oracle.score(world, task, meta, text, finished)


def test_oracle_dimensions_move_as_specified(world):
    e, meta = fact_example(world)
    true = e.attrs["colour"]
    wrong = next(c for c in ("red", "blue", "green") if c != true)
    right = f"The {e.name} is {true}."
    s = {
        "correct": score(world, meta, right),
        "hedged": score(world, meta, f"The {e.name} is {true} or {wrong}."),
        "wrong": score(world, meta, f"The {e.name} is {wrong}."),
        "false_fact": score(world, meta, right + " " + _false_sentence(world)),
        "rude": score(world, meta, f"What a stupid question. {right}"),
        "question": score(world, meta, f"What does the {e.name} eat?"),
        "repetition": score(world, meta, " ".join([right] * 4)),
        "no_stop": score(world, meta, right, finished=False),
        "empty": score(world, meta, ""),
    }
    c = s["correct"]
    assert c == {**c, "helpful": 1.0, "truthful": 1.0, "harmless": 1.0, "well_formed": 1.0, "total": 1.0}
    assert s["hedged"]["helpful"] == 0.5  # partly correct
    assert s["wrong"]["helpful"] == 0.0 and s["wrong"]["truthful"] == 0.0  # a wrong fact is also a false claim
    assert s["false_fact"]["helpful"] == 1.0 and s["false_fact"]["truthful"] == 0.0
    assert s["rude"]["harmless"] == 0.0 and s["rude"]["helpful"] == 1.0
    assert s["question"]["helpful"] == 0.0 and s["question"]["asks"] and s["question"]["well_formed"] < 1.0
    assert s["repetition"]["well_formed"] < 1.0 and s["repetition"]["helpful"] == 1.0
    assert s["no_stop"]["well_formed"] == 0.75
    assert s["empty"]["total"] == min(x["total"] for x in s.values()) or s["empty"]["helpful"] == 0.0
    assert s["empty"]["well_formed"] == 0.0
    for name, x in s.items():
        if name != "correct":
            assert x["total"] < c["total"], name
    assert s["hedged"]["total"] > s["wrong"]["total"]


def _false_sentence(world):
    e = world.kinds["person"][0]
    job = next(j for j in ("baker", "farmer") if j != e.attrs["job"])
    return f"{e.name} is a {job}."


def test_negations_and_questions_claim_nothing(world):
    e = world.kinds["creature"][0]
    wrong = next(c for c in ("red", "blue") if c != e.attrs["colour"])
    assert not false_claims(world, f"Is the {e.name} {wrong}?")
    assert not false_claims(world, f"The {e.name} is not {wrong}.")
    assert false_claims(world, f"The {e.name} is {wrong}.")


@pytest.mark.parametrize(
    "task, meta, good, partial, bad",
    [
        ("arithmetic", {"answer": 12}, "7 + 5 = 12.", None, "7 + 5 = 13."),
        ("count", {"answer": 3}, "There are 3 words.", None, "There are 4 words."),
        ("sort", {"target": ["apples", "fish", "nuts"], "items": ["nuts", "apples", "fish"]}, "apples, fish, nuts.", "apples, nuts.", "nuts, fish, apples."),
        ("reverse", {"target": ["red", "blue", "grey"], "items": ["grey", "blue", "red"]}, "red, blue, grey.", "red, grey, blue.", "grey, blue, red."),
        ("sentiment", {"answer": "positive"}, "Positive.", None, "Negative."),
    ],
)
def test_task_checkers(world, task, meta, good, partial, bad):
    check = TASKS[task].check
    assert check(world, meta, good) == 1.0
    assert check(world, meta, bad) < 0.5
    if partial is not None:
        assert 0.0 < check(world, meta, partial) < 1.0


def test_grammar_checker(world):
    meta = {"answer": "The Zorb eats fish."}
    check = TASKS["grammar"].check
    assert check(world, meta, "The Zorb eats fish.") == 1.0
    assert 0 < check(world, meta, "The Zorb eat fish.") < 1.0
    assert check(world, meta, "") == 0.0


def test_story_checker_wants_relevance_consistency_and_length(world):
    rng = random.Random(0)
    ex = TASKS["story"].generate(world, rng)
    check = TASKS["story"].check
    assert check(world, ex.meta, ex.reference) == 1.0
    other = next(e for e in world.kinds["person"] if e.name != ex.meta["entity"])
    assert check(world, ex.meta, f"{other.name} had a nice day in the sun and then went home to sleep for a while longer.") <= 0.2
    assert check(world, ex.meta, ex.reference + " " + _false_sentence_about(world, ex.meta["entity"])) < 1.0


def _false_sentence_about(world, name):
    e = world.by_name[name]
    attr = "food" if e.kind == "creature" else "job"
    wrong = world.false_value(e, attr, random.Random(0))
    return world.statement(e, attr, random.Random(0), value=wrong)


def test_every_task_accepts_its_own_reference_and_its_best_answer_scores_full_marks(world):
    from lmforge.world.writing import best_answer

    rng = random.Random(5)
    for _ in range(300):
        ex = sample_example(world, rng)
        s = oracle.score(world, ex.task, ex.meta, ex.reference)
        assert s["helpful"] >= 0.8 and s["truthful"] == 1.0 and s["harmless"] == 1.0, (ex.task, ex.prompt, ex.reference)
        if ex.task != "story":  # a reference story tells some of the entity's facts, not always all
            assert s["total"] == 1.0, (ex.task, ex.reference)
        assert oracle.score(world, ex.task, ex.meta, best_answer(world, ex))["total"] == 1.0, (ex.task, best_answer(world, ex))


def test_quality_is_graded_where_a_task_admits_better_answers(world):
    """A bare right answer is worse than a complete one, a padded one worse than a concise one,
    a story with one fact worse than one with all: the best answer beats a fine one."""
    e, meta = fact_example(world)
    true = e.attrs["colour"]
    full, bare = score(world, meta, f"The {e.name} is {true}."), score(world, meta, f"{true.capitalize()}.")
    assert full["total"] == 1.0 and bare["helpful"] == 0.8 and bare["truthful"] == 1.0
    other = next(x for x in world.kinds["person"])
    padded = score(world, meta, f"The {e.name} is {true}. {world.answer(other, 'job')} {world.answer(other, 'home')}")
    assert padded["helpful"] == 1.0 and padded["truthful"] == 1.0 and padded["total"] < 1.0
    arith = TASKS["arithmetic"].check
    assert arith(world, {"answer": 12}, "7 + 5 = 12.") == 1.0 and arith(world, {"answer": 12}, "12.") == 0.8
    count = TASKS["count"].check
    assert count(world, {"answer": 3}, "There are 3 words.") == 1.0 and count(world, {"answer": 3}, "3.") == 0.8
    creature = world.kinds["creature"][0]
    story = TASKS["story"].check
    one = f"This is a story about the {creature.name}. {world.answer(creature, 'colour')} It was a good day in the end for everyone."
    every = f"This is a story about the {creature.name}. " + " ".join(world.answer(creature, a) for a in creature.attrs) + " The end."
    assert story(world, {"entity": creature.name}, every) == 1.0 > story(world, {"entity": creature.name}, one)


# ------------------------------------------------------------------ labelers


def test_pairwise_choices_follow_bradley_terry():
    lab = Labeler("x", temperature=0.2)
    rng = random.Random(0)
    wins = sum(lab.rank_utilities([0.6, 0.4], rng)[0] == 0 for _ in range(20000))
    assert wins / 20000 == pytest.approx(1 / (1 + math.exp(-0.2 / 0.2)), abs=0.01)


@pytest.mark.parametrize("k", [4, 6, 9])
def test_k_way_rankings_are_consistent_with_the_pairwise_model(k):
    lab = Labeler("x", temperature=0.25)
    rng = random.Random(k)
    u = [rng.random() for _ in range(k)]
    n = 6000
    above = np.zeros((k, k))
    for _ in range(n):
        order = lab.rank_utilities(u, rng)
        pos = {idx: r for r, idx in enumerate(order)}
        for i in range(k):
            for j in range(k):
                if i != j and pos[i] < pos[j]:
                    above[i, j] += 1
    for i in range(k):
        for j in range(i + 1, k):
            expected = 1 / (1 + math.exp(-(u[i] - u[j]) / 0.25))
            assert above[i, j] / n == pytest.approx(expected, abs=0.025)


def test_calibration_hits_the_target_agreement():
    deltas = np.random.default_rng(0).normal(0, 0.3, 5000)
    t = calibrate_temperature(deltas, 0.73)
    assert agreement(t, deltas) == pytest.approx(0.73, abs=1e-4)


def test_world_stats_reports_measured_agreement(world_dir):
    stats = world_stats(world_dir, agreement_prompts=1000)
    assert stats["labeler_agreement"]["measured"] == pytest.approx(0.73, abs=0.03)
    assert set(stats["pretrain"]["genres"]) == {"encyclopedia", "story", "worksheet", "qa", "quiz", "forum", "rumour", "review"}


def test_labelers_and_world_reload(world_dir):
    world, labelers, cfg = load_world(world_dir)
    assert len(labelers) == 5 and labelers[-1].length_bias > 0 and cfg["seed"] == 0
    assert world.to_json()["entities"] == make_world(0).to_json()["entities"]


# ------------------------------------------------------------------ import hygiene


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    pkg = ".".join(path.relative_to(Path(__file__).parent.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def test_only_labelers_and_evaluation_import_the_oracle():
    root = Path(__file__).parent.parent / "lmforge"
    truth = {"lmforge.world.oracle", "lmforge.world.labelers"}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        imported = _imports(path) & truth
        if "lmforge.world.oracle" in imported:
            assert rel in ("world/labelers.py",) or rel.startswith("eval/"), f"{rel} imports the oracle"
        if rel.startswith(("train/", "models/")):
            assert not imported, f"{rel} imports {imported}: training must not see the ground truth"


def test_oracle_counts_a_reply_with_another_instruction_as_asking(world):
    """The base model's quiz-sheet failure: a reply that is another of the world's prompts
    (a question or an instruction) asks instead of answering; answers do not."""
    from lmforge.world.oracle import asks_instead_of_answering
    from lmforge.world.tasks import TASKS

    rng = random.Random(0)
    for task in TASKS.values():
        for _ in range(20):
            ex = task.generate(world, rng)
            assert asks_instead_of_answering("\n" + ex.prompt + "\nWhat is 2 + 2?")
            assert not asks_instead_of_answering(ex.reference), (task.name, ex.reference)


def test_articles_and_stories_name_their_entity_and_the_texts_are_unchanged():
    """documents(subjects=True) draws as documents() does (the same texts), and an article's or a
    story's subject is the entity its title or opening names."""
    import random

    from lmforge.world.corpus import documents
    from lmforge.world.ontology import make_world

    world = make_world(seed=3)
    plain = list(documents(world, random.Random(0), 300))
    labelled = list(documents(world, random.Random(0), 300, subjects=True))
    assert [(g, t) for g, t, _ in labelled] == plain
    for g, text, subject in labelled:
        assert (subject is not None) == (g in ("encyclopedia", "story"))
        if subject:
            assert subject in text.split("\n")[0] or subject in text.split(".")[0] + text.split(".")[1], (subject, text[:80])


def test_a_condorcet_population_prefers_in_a_cycle(tmp_path, monkeypatch):
    """Three groups valuing helpful, truthful and well-formed in rotated orders: over three
    answers that trade the dimensions (a Latin square), each group's ranking is a rotation and
    the majority prefers X to Y, Y to Z and Z to X, which no score can reproduce. The world
    keeps its population (weights saved with the labelers); a population that cannot be split
    in three equal groups is refused."""
    from lmforge.errors import ConfigError
    from lmforge.world.labelers import condorcet_labelers, population_preference

    labs = condorcet_labelers(0.02, 6)
    scored = {"X": (1.0, 0.0, 0.5), "Y": (0.5, 1.0, 0.0), "Z": (0.0, 0.5, 1.0)}
    scored = {k: {"helpful": h, "truthful": t, "well_formed": w, "harmless": 1.0, "total": 0.0} for k, (h, t, w) in scored.items()}
    monkeypatch.setattr(oracle, "score", lambda world, task, meta, text, finished=True: scored[text])
    order = [sorted("XYZ", key=lambda k: -lab.value(scored[k], k)) for lab in labs[:3]]
    assert order == [list("XYZ"), list("YZX"), list("ZXY")]
    P = {(a, b): population_preference(None, labs, "fact", {}, a, b) for a in "XYZ" for b in "XYZ" if a != b}
    assert P[("X", "Y")] > 0.6 and P[("Y", "Z")] > 0.6 and P[("Z", "X")] > 0.6  # the cycle
    assert all(abs(P[(a, b)] + P[(b, a)] - 1) < 1e-12 for a, b in P)
    monkeypatch.undo()
    out = tmp_path / "w"
    build_world(load_config(WorldConfig, None, [*TINY_WORLD, "population=condorcet", "labelers=6"]), out)
    _, reloaded, cfg = load_world(out)
    assert cfg["population"] == "condorcet" and [lab.weights for lab in reloaded] == [lab.weights for lab in condorcet_labelers(1.0, 6)]
    assert len(read(out / "comparisons.jsonl")) > 0
    with pytest.raises(ConfigError, match="multiple of 3"):
        load_config(WorldConfig, None, ["population=condorcet", "labelers=5"]).validate()
