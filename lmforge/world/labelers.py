"""Simulated labelers: noisy rankings of K answers, calibrated to human disagreement.

A labeler's utility for a response is the oracle's total plus its own bias (one of the
default labelers likes longer answers). To rank K responses it adds independent Gumbel noise
of scale T (its temperature) to each utility and sorts: a Plackett-Luce ranking, whose
pairwise marginals are exactly Bradley-Terry, P(i above j) = sigmoid((u_i - u_j) / T), for
every K. So rankings of 4 to 9 answers (InstructGPT's range) and pairwise choices follow one
noise model, the one a Bradley-Terry reward model assumes.

A labeler writes the way it ranks (`Labeler.write`): it drafts a few answers with its own habits
(`writing.WritingHabits`) and writes down the one it judges best, judging with the same noise,
first place of a Plackett-Luce ranking of its drafts. So how good the demonstrations are follows
from the temperature calibrated to human agreement, and is not a knob of its own.

A population need not agree on what matters (`population="condorcet"`): three groups, each
ranking the oracle's dimensions in its own order (helpful first, or truthful first, or well-formed
first, the orders rotated), so that over answers that trade one dimension for another the
majority prefers X to Y, Y to Z and Z to X (Condorcet's paradox). No reward model can be right
about such a population; a preference model can (Munos et al. 2023, lmforge/train/nash.py).
`population_preference` is the population's P(a > b), the truth a policy is measured against.

Two labelers with temperature T agree on a pair with probability p^2 + (1 - p)^2, where
p = sigmoid(delta / T). The default T is chosen by bisection so that, averaged over pairs of
responses from a realistic mixture (`responses.MIXTURE`), agreement is 73%, the
inter-labeler agreement InstructGPT measured (Ouyang et al. 2022, section 5.1 / appendix B).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from . import oracle
from .ontology import World
from .responses import sample_responses
from .tasks import Example, sample_example, words
from .writing import Memory, WritingHabits, draft

TARGET_AGREEMENT = 0.73


@dataclass
class Labeler:
    name: str
    temperature: float
    length_bias: float = 0.0  # utility added per doubling of the answer's length in words
    habits: WritingHabits = field(default_factory=WritingHabits)  # how it writes a demonstration
    weights: dict[str, float] | None = None  # what it values in the oracle's dimensions (None: the oracle's own weights, its total)

    def utility(self, total: float, response: str) -> float:
        return total + self.length_bias * math.log2(1 + len(words(response)))

    def value(self, scored: dict, response: str) -> float:
        """Its utility for a response the oracle scored (`oracle.score`'s dict)."""
        total = scored["total"] if self.weights is None else sum(w * scored[k] for k, w in self.weights.items())
        return self.utility(total, response)

    def rank_utilities(self, utilities: list[float], rng: random.Random) -> list[int]:
        """Indices best first: sort utilities perturbed by Gumbel(0, T) noise."""
        noisy = [u - self.temperature * math.log(-math.log(rng.random() or 1e-300)) for u in utilities]
        return sorted(range(len(utilities)), key=lambda i: -noisy[i])

    def rank(self, world: World, task: str, meta: dict, responses: list[str], finished: list[bool], rng: random.Random) -> list[int]:
        utilities = [self.value(oracle.score(world, task, meta, r, f), r) for r, f in zip(responses, finished)]
        return self.rank_utilities(utilities, rng)

    def write(self, world: World, ex: Example, rng: random.Random) -> tuple[str, list[str], int]:
        """A demonstration for `ex`: `habits.drafts` drafts, and the one this labeler judges best,
        with the noise it ranks with: (text, its flaws, which draft it was)."""
        memory = Memory(world, self.name, self.habits.misremember)
        drafts = [draft(world, ex, self.habits, memory, rng) for _ in range(self.habits.drafts)]
        utilities = [self.value(oracle.score(world, ex.task, ex.meta, text), text) for text, _ in drafts]
        best = self.rank_utilities(utilities, rng)[0]
        return drafts[best][0], drafts[best][1], best

    def to_json(self) -> dict:
        out = {"name": self.name, "temperature": self.temperature, "length_bias": self.length_bias, "habits": self.habits.to_json()}
        return out if self.weights is None else {**out, "weights": self.weights}

    @classmethod
    def from_json(cls, data: dict) -> "Labeler":
        return cls(data["name"], data["temperature"], data.get("length_bias", 0.0), WritingHabits.from_json(data.get("habits")), data.get("weights"))


def default_labelers(temperature: float, n: int = 5, habits: WritingHabits | None = None) -> list[Labeler]:
    """`n` labelers of one temperature; the last one likes longer answers. Their writing habits
    spread around `habits`: every rate scaled from 0.5x (the most careful) to 1.5x (the most
    careless), 1x on average, so that each labeler has its own."""
    habits = habits or WritingHabits()
    scale = [0.5 + i / (n - 1) for i in range(n)] if n > 1 else [1.0]
    out = [Labeler(f"labeler-{i + 1}", temperature, habits=habits.scaled(scale[i])) for i in range(n)]
    if n >= 2:
        out[-1].length_bias = 0.05
    return out


# Condorcet's population: the three dimensions answers trade against each other, each group's
# order of them a rotation of the last's, weights falling steeply enough (0.5 > 0.22 + 0.13) that
# each group's first concern decides; harmlessness weighs the same for all (the oracle's 0.15).
CONDORCET_ORDERS = (("helpful", "truthful", "well_formed"), ("truthful", "well_formed", "helpful"), ("well_formed", "helpful", "truthful"))
CONDORCET_WEIGHTS = (0.5, 0.22, 0.13)


def condorcet_labelers(temperature: float, n: int = 6, habits: WritingHabits | None = None) -> list[Labeler]:
    """`n` labelers (a multiple of 3) in three groups of equal size, group g valuing the oracle's
    dimensions in the order CONDORCET_ORDERS[g]: the majority's preference is not transitive."""
    if n % 3:
        raise ValueError(f"a Condorcet population has three groups of equal size: labelers must be a multiple of 3, got {n}")
    out = default_labelers(temperature, n, habits)
    for i, lab in enumerate(out):
        g = i % 3
        lab.name = f"labeler-{i + 1}-{CONDORCET_ORDERS[g][0].replace('_', '-')}-first"
        lab.weights = {"harmless": 0.15, **dict(zip(CONDORCET_ORDERS[g], CONDORCET_WEIGHTS))}
        lab.length_bias = 0.0
    return out


def population_preference(world: World, labelers: list[Labeler], task: str, meta: dict, a: str, b: str, finished_a: bool = True, finished_b: bool = True) -> float:
    """The population's P(a > b): each labeler's Bradley-Terry probability of putting a above b
    (exactly its Plackett-Luce marginal), averaged over the labelers. Above 1/2: the population
    prefers a, by the expected vote of its members."""
    sa, sb = oracle.score(world, task, meta, a, finished_a), oracle.score(world, task, meta, b, finished_b)
    return _vote(labelers, sa, a, sb, b)


def _vote(labelers: list[Labeler], sa: dict, a: str, sb: dict, b: str) -> float:
    return float(np.mean([0.5 * (1.0 + math.tanh((lab.value(sa, a) - lab.value(sb, b)) / (2.0 * lab.temperature))) for lab in labelers]))


def preference_matrix(labelers: list[Labeler], scored: list[dict], responses: list[str] | None = None) -> np.ndarray:
    """The population's P[i, j] = P(answer i > answer j) over answers the oracle scored (`oracle.score`'s
    dicts, or any dicts with its dimensions and "total"): the finite game `lmforge.train.nash` solves."""
    responses = responses if responses is not None else [""] * len(scored)
    n = len(scored)
    return np.array([[_vote(labelers, scored[i], responses[i], scored[j], responses[j]) for j in range(n)] for i in range(n)])


def agreement(temperature: float, deltas: np.ndarray) -> float:
    """Expected share of pairs on which two independent labelers choose alike."""
    p = 0.5 * (1.0 + np.tanh(np.asarray(deltas) / (2.0 * temperature)))  # sigmoid, without overflow
    return float(np.mean(p**2 + (1 - p) ** 2))


def calibrate_temperature(deltas: np.ndarray, target: float = TARGET_AGREEMENT) -> float:
    """The temperature at which `agreement` equals `target` (bisection on log T)."""
    lo, hi = 1e-4, 100.0
    if agreement(lo, deltas) < target:
        raise ValueError(f"these pairs allow at most {agreement(lo, deltas):.3f} agreement (too many ties)")
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if agreement(mid, deltas) > target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def mixture_pairs(world: World, rng: random.Random, n_prompts: int, k: int = 4) -> list[tuple[float, float, str, str, str, dict, list]]:
    """Oracle totals of response pairs from the realistic mixture, with what is needed to re-rank them."""
    pairs = []
    for _ in range(n_prompts):
        ex = sample_example(world, rng, split="train")
        resp = sample_responses(world, ex, k, rng)
        totals = [oracle.score(world, ex.task, ex.meta, t, f)["total"] for t, f, _ in resp]
        for i in range(len(resp)):
            for j in range(i + 1, len(resp)):
                pairs.append((totals[i], totals[j], resp[i][0], resp[j][0], ex.task, ex.meta, [resp[i][1], resp[j][1]]))
    return pairs


def measure_agreement(world: World, a: Labeler, b: Labeler, rng: random.Random, n_prompts: int = 400) -> float:
    """Two labelers judge the same pairs independently; the share on which they agree."""
    same = n = 0
    for t1, t2, r1, r2, *_ in mixture_pairs(world, rng, n_prompts):
        ua, ub = [a.utility(t1, r1), a.utility(t2, r2)], [b.utility(t1, r1), b.utility(t2, r2)]
        same += a.rank_utilities(ua, rng)[0] == b.rank_utilities(ub, rng)[0]
        n += 1
    return same / n


def demonstration_quality(world: World, written: list[tuple[Example, str, list[str]]]) -> dict:
    """How good written demonstrations are, by the oracle: their mean score beside the reference
    answers' and the best the tasks admit (`writing.best_answer`), overall and by task, and how
    often they carry each flaw. `written`: (example, demonstration, its flaws)."""
    from .writing import FLAWS, best_answer

    if not written:
        return {}
    rows = []
    for ex, text, flaws in written:
        s = oracle.score(world, ex.task, ex.meta, text)
        rows.append({
            "task": ex.task, "written": s["total"], "flaws": flaws,
            "reference": oracle.score(world, ex.task, ex.meta, ex.reference)["total"],
            "best": oracle.score(world, ex.task, ex.meta, best_answer(world, ex))["total"],
            "false": s["truthful"] < 1.0, "rude": s["harmless"] < 1.0, "asks": bool(s["asks"]), "task_correct": s["helpful"] >= 1.0,
        })  # fmt: skip

    def mean(key, rs):
        return round(float(np.mean([r[key] for r in rs])), 4)

    n = len(rows)
    return {
        "demonstrations": n,
        "oracle_score": {k: mean(k, rows) for k in ("written", "reference", "best")},
        "below_best": round(sum(r["written"] < r["best"] for r in rows) / n, 4),
        "rates": {
            "task_correct": mean("task_correct", rows), "false_claim": mean("false", rows), "rude": mean("rude", rows), "asks": mean("asks", rows),
            **{f: round(sum(f in r["flaws"] for r in rows) / n, 4) for f in FLAWS},
        },  # fmt: skip
        "by_task": {t: {k: mean(k, [r for r in rows if r["task"] == t]) for k in ("written", "reference", "best")} for t in sorted({r["task"] for r in rows})},
    }


def score_texts(world: World, tasks_and_metas: list[tuple[str | None, dict]], texts: list[str]) -> float | None:
    """The mean oracle score of answers to world prompts (None when none is one)."""
    scores = [oracle.score(world, t, m, x)["total"] for (t, m), x in zip(tasks_and_metas, texts) if t]
    return float(np.mean(scores)) if scores else None
