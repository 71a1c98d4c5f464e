"""Tables and the plot of issue 35's study across world seeds (2026-12-04-languages-seeds.md).

    python docs/experiments/scripts/2026-12-04-languages-summary.py RESULTS_DIR [PLOT.png]

RESULTS_DIR holds one sNN/ folder per world seed, as 2026-12-04-languages-all.sh leaves them.
Every interval is a 95% t-interval over seeds (the seeds are the unit: each is a new world, base
model and fine-tuning); differences between two models or two temperatures are paired by seed.
"""

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

TS = ["1", "2", "3.3", "5"]
LANGS = ["en", "xv", "xt"]
NAMES = {"en": "English", "xv": "Velish", "xt": "Torin"}
MODELS = {
    "base": "base, zero-shot",
    "base-3shot": "base, 3-shot (in-language prefix and markers)",
    "sft-en": "SFT, English only",
    "sft-translate-train": "SFT, translate-train",
    "sft-multilingual": "SFT, multilingual (native)",
    "sft-en-prompts": "SFT, English instructions + data in the language",
    "ppo-en": "PPO on English preferences (from multilingual SFT)",
    "ppo-all": "PPO on all languages' preferences (same start)",
}


def interval(xs) -> tuple[float, float, float]:
    x = np.asarray(xs, float)
    m = float(x.mean())
    h = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0
    return m, m - h, m + h


def fmt(xs, digits=3, sign=False) -> str:
    m, lo, hi = interval(xs)
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{f.format(m)} [{f.format(lo)}, {f.format(hi)}]"


def main(root: Path, plot: Path | None) -> None:
    seeds = sorted(p for p in root.glob("s*") if (p / "eval.json").exists())
    print(f"world seeds: {', '.join(p.name[1:] for p in seeds)}\n")
    bpb = {(s, t, lang): json.loads((s / f"T{t}.ppl.json").read_text())["by"][lang]["bpb"] for s in seeds for t in TS for lang in LANGS}
    seen = {t: json.loads((seeds[0] / f"T{t}" / "tokens_seen.json").read_text())["by_source"] for t in TS}
    print("| T | " + " | ".join(f"{NAMES[lang]} bpb" for lang in LANGS) + " | tokens: " + " / ".join(NAMES[lang] for lang in LANGS) + " |")
    print("|---:|" + "---:|" * len(LANGS) + "---|")
    for t in TS:
        total = sum(seen[t].values())
        print(f"| {t} | " + " | ".join(fmt([bpb[s, t, lang] for s in seeds], 4) for lang in LANGS) + " | " + " / ".join(f"{seen[t][lang] / total:.0%}" for lang in LANGS) + " |")
    print("\nchange against T = 1, paired by seed:\n")
    print("| T | " + " | ".join(NAMES[lang] for lang in LANGS) + " |")
    print("|---:|" + "---:|" * len(LANGS))
    for t in TS[1:]:
        print(f"| {t} | " + " | ".join(fmt([bpb[s, t, lang] - bpb[s, "1", lang] for s in seeds], 4, sign=True) for lang in LANGS) + " |")

    print("\ntokenizer (2,048), tokens per word and premium over English:\n")
    print("| T | " + " | ".join(f"{NAMES[lang]} tokens/word" for lang in LANGS) + " | Torin's premium |")
    print("|---:|" + "---:|" * (len(LANGS) + 1))
    for t in TS:
        tok = [json.loads((s / f"T{t}.tok.json").read_text())["by"] for s in seeds]
        print(f"| {t} | " + " | ".join(f"{np.mean([x[lang]['tokens_per_word'] for x in tok]):.3f}" for lang in LANGS) + f" | {fmt([x['xt']['premium'] for x in tok])} |")

    ev = {s: json.loads((s / "eval.json").read_text()) for s in seeds}
    prompts = {lang: ev[seeds[0]]["by_language"]["base"][lang]["prompts"] for lang in LANGS}
    print(f"\ntask accuracy, {prompts['en']} prompts a language and seed (wrong-language share):\n")
    print("| model | " + " | ".join(NAMES[lang] for lang in LANGS) + " | win rate vs multilingual SFT (" + " / ".join(LANGS) + ") |")
    print("|---|" + "---|" * (len(LANGS) + 1))
    for key, name in MODELS.items():
        if not all(key in ev[s]["by_language"] for s in seeds):
            continue
        rows = [ev[s]["by_language"][key] for s in seeds]
        cells = [f"{fmt([r[lang]['task_accuracy'] for r in rows])} ({np.mean([r[lang]['wrong_language'] for r in rows]):.2f})" for lang in LANGS]
        wins = " / ".join(f"{np.mean([r[lang]['win_rate_vs_sft-multilingual'] for r in rows]):.2f}" for lang in LANGS)
        print(f"| {name} | " + " | ".join(cells) + f" | {wins} |")
    print("\npaired differences in task accuracy:\n")
    print("| difference | " + " | ".join(NAMES[lang] for lang in LANGS) + " |")
    print("|---|" + "---|" * len(LANGS))
    for a, b in [("sft-en", "base"), ("sft-en", "base-3shot"), ("sft-multilingual", "sft-en"), ("sft-multilingual", "sft-translate-train"), ("ppo-en", "sft-multilingual"), ("ppo-all", "sft-multilingual"), ("ppo-en", "ppo-all")]:
        d = {lang: [ev[s]["by_language"][a][lang]["task_accuracy"] - ev[s]["by_language"][b][lang]["task_accuracy"] for s in seeds] for lang in LANGS}
        print(f"| {a} - {b} | " + " | ".join(fmt(d[lang], sign=True) for lang in LANGS) + " |")
    if plot:
        _plot(seeds, bpb, seen, plot)
        print(f"\n-> {plot}")


def _plot(seeds, bpb, seen, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    x = [float(t) for t in TS]
    for lang, colour in zip(LANGS, ["C0", "C1", "C3"]):
        rows = [interval([bpb[s, t, lang] - bpb[s, "1", lang] for s in seeds]) for t in TS]
        m = [r[0] for r in rows]
        ax1.plot(x, m, "o-", color=colour, label=NAMES[lang])
        ax1.fill_between(x, [r[1] for r in rows], [r[2] for r in rows], color=colour, alpha=0.2)
        ax2.plot(x, [seen[t][lang] / sum(seen[t].values()) for t in TS], "o-", color=colour, label=NAMES[lang])
    ax1.axhline(0, color="grey", lw=0.8)
    ax1.set(xlabel="temperature T", ylabel="held-out bits per byte - at T = 1", title=f"change in bits per byte ({len(seeds)} world seeds, 95% interval)")
    ax2.set(xlabel="temperature T", ylabel="share of training tokens", title="tokens seen by language")
    for ax in (ax1, ax2):
        ax.set_xticks(x)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
