"""Is a model's failure in a language its answers' language or their content? Each answer to a
Velish or Torin prompt that came back in another language is scored again, by the oracle, as an
answer to the same question asked in English (eval.jsonl holds each question in every language,
English first). Prints accuracy, wrong-language share and "right in any language", by task.

    python docs/experiments/scripts/2026-12-04-languages-content.py WORLD_DIR MODEL_DIR [LIMIT]
"""

import sys
from collections import defaultdict

import numpy as np

from lmforge.eval.policy import answer_prompts
from lmforge.world import oracle
from lmforge.world.build import load_world

world_dir, model = sys.argv[1], sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else 900
world = load_world(world_dir)[0]
_, items, answers = answer_prompts({"model": model}, f"{world_dir}/eval.jsonl", limit=limit)
codes = [item.meta["language"] for item in items[: 1 + len(world.languages)]]  # each question's languages, in the file's order
texts, finished = answers["model"]
rows = defaultdict(lambda: defaultdict(list))  # code -> column -> values
by_task = defaultdict(list)
for i, item in enumerate(items):
    code = item.meta["language"]
    english = items[i - codes.index(code)]
    assert english.meta["language"] == "en" and english.task == item.task
    s = oracle.score(world, item.task, item.meta, texts[i], finished[i])
    right = s["helpful"] >= 1.0
    anywhere = right or (s.get("wrong_language", False) and oracle.score(world, english.task, english.meta, texts[i], finished[i])["helpful"] >= 1.0)
    rows[code]["accuracy"].append(right)
    rows[code]["wrong_language"].append(s.get("wrong_language", False))
    rows[code]["right_in_any_language"].append(anywhere)
    by_task[(item.task, code)].append(anywhere)
print("language  accuracy  wrong language  right in any language")
for code in codes:
    print(f"{code:8}  " + "  ".join(f"{np.mean(rows[code][k]):.3f}".rjust(w) for k, w in (("accuracy", 8), ("wrong_language", 14), ("right_in_any_language", 21))))
print("\nright in any language, by task")
for task in sorted({t for t, _ in by_task}):
    print(f"{task:12}" + "  ".join(f"{c} {np.mean(by_task[(task, c)]):.2f}" for c in codes))
