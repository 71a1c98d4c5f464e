"""Watching a policy with the ground truth while it trains: the world's oracle on its answers.

`oracle_monitor(world_dir)` returns what `lmforge.train.ppo` calls a monitor: given the prompts
(with their world task and meta), the answers' texts and whether each ended by itself, the mean
oracle scores. The training code only logs what it returns; it never learns from it (nothing
under lmforge/train imports the oracle; this module is handed in by the command line).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def oracle_monitor(world_dir: str | Path):
    from .policy import oracle_scorer

    scorer = oracle_scorer(world_dir)

    def monitor(items, texts: list[str], finished: list[bool]) -> dict:
        scores = [s for s in scorer([getattr(i, "source", None) for i in items], texts, finished) if s is not None]
        if not scores:
            return {}
        mean = {k: float(np.mean([s[k] for s in scores])) for k in ("total", "helpful", "truthful", "harmless", "well_formed")}
        return {
            "oracle_score": mean["total"],
            "oracle_helpful": mean["helpful"],
            "oracle_truthful": mean["truthful"],
            "oracle_harmless": mean["harmless"],
            "oracle_well_formed": mean["well_formed"],
            "accuracy": float(np.mean([s["helpful"] >= 1.0 for s in scores])),
            "question_rate": float(np.mean([s["asks"] for s in scores])),
        }

    return monitor
