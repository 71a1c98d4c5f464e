"""How often the Condorcet population's majority cycles on the SFT model's own answers
(docs/experiments/2026-12-05-feedback-condorcet62.md).

    python docs/experiments/scripts/2026-12-05-condorcet-cycles.py runs/cond62/run

Every triple of distinct finished-or-not answers among each prompt's K samples
(samples/samples.jsonl), the population's P(a > b) for each pair (world.labelers.population_preference):
a cycle is a > b > c > a by majority (P > 1/2 each way round)."""

import itertools
import json
import sys
from pathlib import Path

from lmforge.world.build import load_world
from lmforge.world.labelers import population_preference

run = Path(sys.argv[1])
world, labelers, _ = load_world(run / "world")
triples = cycles = 0
for line in (run / "samples" / "samples.jsonl").read_text().splitlines():
    r = json.loads(line)
    answers = {}
    for text, fin in zip(r["completions"], r.get("finished", [True] * len(r["completions"]))):
        answers.setdefault(text, fin)
    items = list(answers.items())
    for (a, fa), (b, fb), (c, fc) in itertools.combinations(items, 3):
        p = lambda x, fx, y, fy: population_preference(world, labelers, r["task"], r["meta"], x, y, fx, fy)  # noqa: E731
        ab, bc, ca = p(a, fa, b, fb), p(b, fb, c, fc), p(c, fc, a, fa)
        triples += 1
        cycles += (ab > 0.5 and bc > 0.5 and ca > 0.5) or (ab < 0.5 and bc < 0.5 and ca < 0.5)
print(f"{triples} triples of distinct answers, {cycles} cycle ({100 * cycles / max(1, triples):.2f}%)")
