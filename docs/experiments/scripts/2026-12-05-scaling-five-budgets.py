"""The held-out checks of a finished five-budget scaling study (docs/experiments/2026-12-05-scaling-five-budgets.md).

    python docs/experiments/scripts/2026-12-05-scaling-five-budgets.py runs/scaling/world53/study

Prints, from the study's runs.json: the four-budget design's check (fit on the three smallest
budgets, predict the fourth's best loss: what `lmforge scaling` with the default preset reports)
and the five-budget check (fit on four, predict the fifth), with each fit's E, alpha and beta.
"""

import json
import sys
from pathlib import Path

from lmforge.eval.scaling_laws import flops_per_token_curve
from lmforge.eval.scaling_report import _held_out

study = Path(sys.argv[1])
runs = json.loads((study / "runs.json").read_text())
fpt = flops_per_token_curve(sorted({(r["non_embedding"], r["flops_per_token"]) for r in runs}))
budgets = sorted({r["budget"] for r in runs})
for k in range(4, len(budgets) + 1):
    h = _held_out([r for r in runs if r["budget"] <= budgets[k - 1]], fpt)
    f = h["fit"]
    print(f"fit on {', '.join(f'{b:.2g}' for b in h['fit_on'])}: E {f['E']:.3f} alpha {f['alpha']:.2f} beta {f['beta']:.2f}; "
          f"predicted best at {h['budget']:.2g} {h['predicted_best_loss']:.4f}, measured {h['best_loss']:.4f} ({h['best_run']}): {100 * h['relative_error']:.2f}% off")
