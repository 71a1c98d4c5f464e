"""Simulated labelers: noisy rankings of K answers, calibrated to human disagreement.

A labeler's utility for a response is the oracle's total plus its own bias (one of the
default labelers likes longer answers). To rank K responses it adds independent Gumbel noise
of scale T (its temperature) to each utility and sorts: a Plackett-Luce ranking, whose
pairwise marginals are exactly Bradley-Terry, P(i above j) = sigmoid((u_i - u_j) / T), for
every K. So rankings of 4 to 9 answers (InstructGPT's range) and pairwise choices follow one
noise model, the one a Bradley-Terry reward model assumes.

Two labelers with temperature T agree on a pair with probability p^2 + (1 - p)^2, where
p = sigmoid(delta / T). The default T is chosen by bisection so that, averaged over pairs of
responses from a realistic mixture (`responses.MIXTURE`), agreement is 73%, the
inter-labeler agreement InstructGPT measured (Ouyang et al. 2022, section 5.1 / appendix B).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import numpy as np

from . import oracle
from .ontology import World
from .responses import sample_responses
from .tasks import sample_example, words

TARGET_AGREEMENT = 0.73


@dataclass
class Labeler:
    name: str
    temperature: float
    length_bias: float = 0.0  # utility added per doubling of the answer's length in words

    def utility(self, total: float, response: str) -> float:
        return total + self.length_bias * math.log2(1 + len(words(response)))

    def rank_utilities(self, utilities: list[float], rng: random.Random) -> list[int]:
        """Indices best first: sort utilities perturbed by Gumbel(0, T) noise."""
        noisy = [u - self.temperature * math.log(-math.log(rng.random() or 1e-300)) for u in utilities]
        return sorted(range(len(utilities)), key=lambda i: -noisy[i])

    def rank(self, world: World, task: str, meta: dict, responses: list[str], finished: list[bool], rng: random.Random) -> list[int]:
        utilities = [self.utility(oracle.score(world, task, meta, r, f)["total"], r) for r, f in zip(responses, finished)]
        return self.rank_utilities(utilities, rng)

    def to_json(self) -> dict:
        return asdict(self)


def default_labelers(temperature: float, n: int = 5) -> list[Labeler]:
    """`n` labelers of one temperature; the last one likes longer answers."""
    out = [Labeler(f"labeler-{i + 1}", temperature) for i in range(n)]
    if n >= 2:
        out[-1].length_bias = 0.05
    return out


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
