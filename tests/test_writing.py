"""The labelers write demonstrations as people do: drafts with their habits' flaws, the one they
judge best written down, judged with the noise they rank with."""

import json
import math
import random

import pytest
from scipy.stats import binomtest

from lmforge.world import labelers as labelers_module
from lmforge.world import oracle
from lmforge.world.build import WorldConfig, build_world, load_world, world_stats
from lmforge.world.labelers import Labeler, default_labelers
from lmforge.world.ontology import make_world
from lmforge.world.tasks import TASKS, sample_example
from lmforge.world.writing import FLAWS, Memory, WritingHabits, best_answer, draft, flaws_of


@pytest.fixture(scope="module")
def world():
    return make_world(0)


def test_each_flaw_of_a_draft_comes_at_its_configured_rate(world):
    """Over many drafts, each flaw appears at the habits' rate among the drafts of tasks that
    admit it (a two-sided binomial test per flaw)."""
    habits = WritingHabits(slip=0.1, terse=0.3, padding=0.2, rumour=0.08, hedge=0.15, rude=0.05, question=0.07, ramble=0.04)
    memory = Memory(world, "tester", habits.misremember)
    rng = random.Random(0)
    seen = {f: [0, 0] for f in FLAWS}  # flaw -> [drafts that have it, drafts that could]
    for _ in range(6000):
        ex = sample_example(world, rng)
        text, flaws = draft(world, ex, habits, memory, rng)
        assert text.strip()
        for f in flaws_of(ex.task):
            seen[f][0] += f in flaws
            seen[f][1] += 1
        assert set(flaws) <= set(flaws_of(ex.task))
    for f, (k, n) in seen.items():
        assert n > 300, f
        assert binomtest(k, n, getattr(habits, f)).pvalue > 1e-3, (f, k / n, getattr(habits, f))


def test_flaws_do_what_they_say_to_the_oracle(world):
    rng = random.Random(1)
    memory = Memory(world, "perfect", 0.0)
    for flaw, dimension in [("rude", "harmless"), ("rumour", "truthful"), ("question", "answers"), ("ramble", "no_repetition")]:
        habits = WritingHabits(**{f: 0.0 for f in FLAWS}, misremember=0.0)
        setattr(habits, flaw, 1.0)
        for _ in range(50):
            ex = sample_example(world, rng)
            text, flaws = draft(world, ex, habits, memory, rng)
            s = oracle.score(world, ex.task, ex.meta, text)
            clean = oracle.score(world, ex.task, ex.meta, best_answer(world, ex))
            assert s["total"] < clean["total"] == 1.0, (flaw, text)
            if dimension in ("harmless", "truthful"):
                assert s[dimension] == 0.0, (flaw, text)
            elif dimension == "answers":
                assert s["asks"], text


def test_a_labeler_misremembers_its_own_fixed_share_of_facts(world):
    facts = [(e, a) for e, a, _ in world.facts()]
    a, b = Memory(world, "labeler-1", 0.2), Memory(world, "labeler-2", 0.2)
    wrong_a = {(e.name, attr) for e, attr in facts if a.wrong(e, attr)}
    wrong_b = {(e.name, attr) for e, attr in facts if b.wrong(e, attr)}
    assert binomtest(len(wrong_a), len(facts), 0.2).pvalue > 1e-3
    assert wrong_a != wrong_b  # each its own
    for e, attr in facts[:40]:
        v = a.recall(e, attr)
        assert v == a.recall(e, attr)  # the same wrong value every time
        assert (v != e.attrs[attr]) == ((e.name, attr) in wrong_a)


def test_writing_and_ranking_share_one_noise_model(world, monkeypatch):
    """A labeler choosing which of two drafts to write down picks draft i with the probability
    that it ranks draft i first, sigmoid((u_i - u_j) / T): the same Plackett-Luce choice."""
    lab = Labeler("labeler-x", temperature=0.15, habits=WritingHabits(drafts=2))
    ex = TASKS["fact"].generate(world, random.Random(3))
    good = best_answer(world, ex)
    e = world.by_name[ex.meta["entity"]]
    value = world.say(ex.meta["value_type"], e.attrs[ex.meta["attr"]])
    texts = [good, value[0].upper() + value[1:] + "."]  # a complete answer and the bare value
    u = [oracle.score(world, ex.task, ex.meta, t)["total"] for t in texts]
    assert u[0] > u[1]
    calls = iter(range(10**9))
    monkeypatch.setattr(labelers_module, "draft", lambda *args: (texts[next(calls) % 2], []))
    rng = random.Random(0)
    n = 20000
    written = sum(lab.write(world, ex, rng)[2] == 0 for _ in range(n))
    ranked = sum(lab.rank(world, ex.task, ex.meta, texts, [True, True], rng)[0] == 0 for _ in range(n))
    expected = 1 / (1 + math.exp(-(u[0] - u[1]) / lab.temperature))
    assert written / n == pytest.approx(expected, abs=0.015)
    assert ranked / n == pytest.approx(expected, abs=0.015)


def test_more_drafts_and_fewer_flaws_write_better_demonstrations(world):
    rng = random.Random(0)
    examples = [sample_example(world, rng) for _ in range(400)]

    def mean_score(lab):
        r = random.Random(1)
        return sum(oracle.score(world, ex.task, ex.meta, lab.write(world, ex, r)[0])["total"] for ex in examples) / len(examples)

    habits = WritingHabits()
    careless = mean_score(Labeler("a", 0.15, habits=habits.scaled(2.0)))
    default = mean_score(Labeler("a", 0.15, habits=habits))
    careful = mean_score(Labeler("a", 0.15, habits=WritingHabits(drafts=4)))
    assert careless < default < careful < 1.0


def test_default_labelers_each_have_their_own_habits():
    labs = default_labelers(0.15, 5, WritingHabits())
    rates = [lab.habits.padding for lab in labs]
    assert rates == sorted(rates) and len(set(rates)) == 5
    assert sum(rates) / 5 == pytest.approx(WritingHabits().padding)
    assert Labeler.from_json(json.loads(json.dumps(labs[2].to_json()))) == labs[2]


def test_the_world_writes_its_demonstrations_with_its_labelers(tmp_path):
    cfg = WorldConfig(seed=2, documents=50, sft_prompts=300, sft_val_prompts=20, rm_prompts=20, ppo_prompts=10, eval_prompts=10, calibration_prompts=100)
    manifest = build_world(cfg, tmp_path / "w")
    world, labs, _ = load_world(tmp_path / "w")
    records = [json.loads(line) for line in (tmp_path / "w" / "sft.jsonl").read_text().splitlines()]
    assert {r["labeler"] for r in records} == {lab.name for lab in labs}
    q = manifest["demonstrations"]["oracle_score"]
    assert q["written"] < q["reference"] <= q["best"] == 1.0  # written unevenly; better answers exist
    assert 0.0 < manifest["demonstrations"]["below_best"] < 1.0

    stats = world_stats(tmp_path / "w", agreement_prompts=50)["demonstrations"]
    assert stats["written_by"] == "labelers" and stats["oracle_score"]["written"] == pytest.approx(q["written"], abs=1e-3)
    assert stats["oracle_score"]["best"] == 1.0 and set(FLAWS) <= set(stats["rates"])

    cfg.demonstrations = "reference"
    build_world(cfg, tmp_path / "r")
    refs = [json.loads(line) for line in (tmp_path / "r" / "sft.jsonl").read_text().splitlines()]
    assert [r["meta"] for r in refs] == [r["meta"] for r in records]  # the same prompts, other writers
    assert {r["labeler"] for r in refs} == {"reference"}
