"""What each round of expert iteration sampled from (lmforge.feedback._collapse), for a study
directory made before `lmforge study feedback` reported it (docs/experiments/2026-12-05-feedback-seed63.md).

    python docs/experiments/scripts/2026-12-05-ei-collapse.py runs/fb61/run runs/fb61/feedback
"""

import sys
from pathlib import Path
from types import SimpleNamespace

from lmforge.feedback import _collapse

run, study = Path(sys.argv[1]), Path(sys.argv[2])
fake = SimpleNamespace(base=SimpleNamespace(world=run / "world"), out=study)
print("| round | different answers a prompt | distinct bigrams | words | false claims | task accuracy |\n|---:|---:|---:|---:|---:|---:|")
for r in (1, 2, 3):
    c = _collapse(fake, r)
    print(f"| {r} | {c['distinct_answers']:.2f} | {c['distinct_2']:.3f} | {c['words']:.1f} | {c['false_claims']:.3f} | {c['task_accuracy']:.3f} |")
