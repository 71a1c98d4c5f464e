"""How long generating the built-in world takes, part by part (issue: under 30 s on 2 cores).

    python benchmarks/world.py [--seed N] [--entities N]

Prints a table of seconds per part for the default config, and `world stats` timing.
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py would shadow the standard library's `tokenize` (see its header).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from lmforge.world.build import WorldConfig, build_world, world_stats  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--entities", type=int, default=48)
    args = ap.parse_args()
    cfg = WorldConfig(seed=args.seed, entities=args.entities)
    marks = [("start", time.perf_counter())]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "world")
        build_world(cfg, out, progress=lambda part: marks.append((part, time.perf_counter())))
        marks.append(("written", time.perf_counter()))
        t = time.perf_counter()
        stats = world_stats(out)
        t_stats = time.perf_counter() - t
    print(f"cores: {os.cpu_count()}, seed {args.seed}, {args.entities} entities, {cfg.documents} documents")
    print("| part | seconds |\n|---|---:|")
    for (name, t1), (_, t0) in zip(marks[1:], marks[:-1]):
        print(f"| {name} | {t1 - t0:.2f} |")
    total = marks[-1][1] - marks[0][1]
    print(f"| **total** | **{total:.2f}** |")
    print(f"| world stats (incl. agreement) | {t_stats:.2f} |")
    print(f"measured labeler agreement {stats['labeler_agreement']['measured']:.3f} (target 0.73)")
    print(f"verdict: generating the default world takes {total:.1f} s ({'under' if total < 30 else 'OVER'} the 30 s budget)")


if __name__ == "__main__":
    main()
