"""The noise runs' held-out losses beside the study's own (training seed 0): run after
2026-12-05-scaling-noise.sh.

    python docs/experiments/scripts/2026-12-05-scaling-noise-table.py runs/scaling/world53
"""

import json
import statistics
import sys
from pathlib import Path

from lmforge.tracking import read_metrics

root = Path(sys.argv[1])
for folder in sorted((root / "study" / "runs").iterdir()):
    seeds = sorted(root.glob(f"noise/{folder.name}-s*"))
    if not seeds:
        continue
    losses = [json.loads((folder / "scaling.json").read_text())["loss"]]
    done = [[r["eval/loss"] for r in read_metrics(s) if "eval/loss" in r] for s in seeds if (s / "model.safetensors").exists()]
    losses += [e[-1] for e in done if e]
    if len(losses) < 2:
        continue
    sd = statistics.stdev(losses)
    print(f"{folder.name}: " + ", ".join(f"{x:.4f}" for x in losses) + f"  sd {sd:.4f} ({100 * sd / statistics.mean(losses):.1f}%)")
