"""The evaluation and report of `lmforge run` on a user's own data, where no oracle exists.

The built-in world knows the truth; a user's corpus, demonstrations and preferences do not. So
this measures what can be measured honestly, and says whose judgement each number is:

  language models   bits per byte of the base models (and n-grams, an RNN) on the corpus's held-out
                    text; the SFT model's held-out answer loss (its selection.json)
  preferences       the reward model's accuracy on the held-out preferences (people's choices it
                    did not train on); a judge model's too, when `eval.judge` names one
  answers           SFT, PPO and DPO answer the held-out prompts (`eval.prompts`, a file of the
                    user's); win rates against SFT as judged by the reward model (which PPO was
                    trained to please: an interested judge) and by the judge model (both orders,
                    position bias removed), with 95% bootstrap intervals; answer length, share
                    finished, and answers side by side

Nothing here reads the built-in world. `write_own_data_report` writes DIR/report.md and
DIR/results.json.
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import InputError
from ..io import atomic_write_json, atomic_write_text
from .policy import answer_prompts, mean_interval


def _win(p: np.ndarray, seed: int) -> dict:
    """A judge's mean P(model > SFT) over prompts, with its 95% bootstrap interval."""
    return {"win_rate_vs_sft": float(p.mean()), "win_rate_vs_sft_ci": mean_interval(p, seed=seed)}


def _judged_by_rm(run, items, answers: dict, seed: int) -> dict:
    from ..models import load_model
    from ..tokenizer import Tokenizer
    from ..train.reward import reward_scores

    rm, folder = load_model(run.path("rm"))
    tok = Tokenizer.load(folder)
    prompts = [p.prompt for p in items]
    scores = {name: reward_scores(rm.eval(), tok, prompts, texts, finished).numpy() for name, (texts, finished) in answers.items()}
    base = scores["sft"]
    return {name: {**_win((s > base) + 0.5 * (s == base), seed), "mean_reward": float(s.mean())} for name, s in scores.items() if name != "sft"}


def _judged_by_model(judge_dir: str, items, answers: dict, seed: int) -> dict:
    from ..label import JudgeLabeler, prompt_text
    from ..models import load_model
    from ..tokenizer import Tokenizer

    model, folder = load_model(judge_dir)
    if getattr(model, "chat_template", None) is None:
        raise InputError("a judge is a chat model (train one with `lmforge label judge-data` and `lmforge sft`)", path=judge_dir, field="eval.judge")
    judge = JudgeLabeler(model.eval(), Tokenizer.load(folder), "judge")
    questions = [prompt_text(p.prompt) for p in items]
    sft = answers["sft"][0]
    return {name: _win(judge.preference(questions, texts, sft).numpy(), seed) for name, (texts, _) in answers.items() if name != "sft"}


def _preference_agreement(run, judge_dir: str) -> dict:
    """Each judge's accuracy on the held-out preferences (the reward model's own split of its data)."""
    from ..data.comparisons import read_comparisons
    from ..models import load_model
    from ..tokenizer import Tokenizer
    from .reward import evaluate_rm, held_out

    d = run.cfg.rm.data
    if d.val:
        held = read_comparisons(d.val)[0]
    else:
        held = held_out([c for p in run._data_paths(d.train) for c in read_comparisons(p)[0]], d.val_fraction)
    out = {"comparisons": len(held)}
    for name, path in (("reward_model", run.path("rm")), ("judge", judge_dir)):
        if path and held:
            model, folder = load_model(path)
            r = evaluate_rm(model.eval(), Tokenizer.load(folder), held)
            out[name] = {"accuracy": r["acc_labelers"], "pairs": r["pairs"]}
    return out


def evaluate_own_data(run, ecfg) -> dict:
    """The eval stage's result for a run with no world (the module docstring)."""
    from .pipeline import _lm, _read

    models = {name: str(run.path(name)) for name in ("sft", "ppo", "dpo")}
    _, items, answers = answer_prompts(models, ecfg.prompts, limit=ecfg.limit, max_new_tokens=ecfg.max_new_tokens, seed=run.cfg.seed, temperature=ecfg.temperature, top_p=ecfg.top_p, oracle=False)
    lengths = {name: {"mean_words": float(np.mean([len(t.split()) for t in texts])), "finished": float(np.mean(fin))} for name, (texts, fin) in answers.items()}
    judges = {"reward_model": _judged_by_rm(run, items, answers, run.cfg.seed)}
    if ecfg.judge:
        judges["judge"] = _judged_by_model(ecfg.judge, items, answers, run.cfg.seed)
    examples = [{"prompt": item.prompt, **{name: answers[name][0][i] for name in answers}} for i, item in enumerate(items[:10])]
    stats = next(iter(sorted(run.path("sft").glob("**/data_stats.json"))), None)  # the SFT data as read (a trial's, with selection)
    demos = {k: v for k, v in json.loads(stats.read_text(encoding="utf-8")).items() if isinstance(v, dict) and "answer_tokens" in v} if stats else {}
    return {
        "oracle": False,
        "prompts": len(items),
        "answers": lengths,
        "judges": judges,
        "agreement": _preference_agreement(run, ecfg.judge),
        "lm": _lm(run) if run.cfg.pretrains() else {},
        "sft": _read(run.path("sft") / "selection.json"),
        "examples": examples,
        "max_new_tokens": ecfg.max_new_tokens,
        "demonstration_answer_tokens": sum(v["answer_tokens"] for v in demos.values()) / max(1, sum(v["examples"] for v in demos.values())) if demos else None,
        "demonstrations_truncated": sum(v["truncated"] for v in demos.values()),
    }


# --------------------------------------------------------------------------- the report


def write_own_data_report(run) -> dict:
    """DIR/results.json and DIR/report.md of a run with no world."""
    ev = json.loads((run.path("eval") / "eval.json").read_text(encoding="utf-8"))
    seconds = {k: v.get("seconds") for k, v in run.state()["stages"].items()}
    results = {**{k: ev[k] for k in ("oracle", "prompts", "answers", "judges", "agreement", "lm")}, "sft_selection": ev.get("sft", {}).get("chosen"), "seconds": seconds}
    atomic_write_json(run.out / "results.json", results)
    atomic_write_text(run.out / "report.md", _markdown(run, ev))
    return results


def _cell(w: dict | None) -> str:
    return f"{w['win_rate_vs_sft']:.3f} [{w['win_rate_vs_sft_ci'][0]:.2f}, {w['win_rate_vs_sft_ci'][1]:.2f}]" if w else ""


def _markdown(run, ev: dict) -> str:
    judges, agree = ev["judges"], ev["agreement"]
    names = {"reward_model": "the reward model (trained on these preferences; PPO was trained to please it)", "judge": f"the judge model `{run.cfg.eval.judge}`"}
    lines = [
        "# lmforge run on your own data",
        "",
        ("**No oracle.** This run trained on your data, which has no ground truth to score answers by. Every win rate below is a "
         "model's judgement, named in its column, beside that judge's agreement with the held-out human preferences: read them as such."),
        "",
        f"{ev['prompts']} held-out prompts (`{run.cfg.eval.prompts}`), each answered by SFT, PPO and DPO. Judges: " + "; ".join(names[k] for k in judges) + ".",
        "",
        "| model | win vs SFT, by the reward model | " + ("by the judge | " if "judge" in judges else "") + "mean words | finished |",
        "|---|---|" + ("---|" if "judge" in judges else "") + "---:|---:|",
    ]
    for name in ("sft", "ppo", "dpo"):
        a = ev["answers"][name]
        judged = " | ".join(_cell(judges[k].get(name)) for k in judges)
        lines.append(f"| {name.upper()} | {judged} | {a['mean_words']:.1f} | {a['finished']:.2f} |")
    cut = [n.upper() for n in ("sft", "ppo", "dpo") if ev["answers"][n]["finished"] < 0.5]
    if cut:  # what a user most needs to know about these answers
        mean = ev.get("demonstration_answer_tokens")
        lines += ["", f"Most answers of {', '.join(cut)} were cut at eval.max_new_tokens ({ev.get('max_new_tokens')} tokens) before they ended"
                  + (f"; your demonstrations' answers average {mean:.0f} tokens" if mean else "") + ": raise eval.max_new_tokens to see them whole."]
    if ev.get("demonstrations_truncated"):
        lines += ["", f"{ev['demonstrations_truncated']} demonstrations were longer than SFT's sequence length and cut (their end never learnt): raise sft.data.seq_len, up to the model's context."]
    lines += ["", f"## The judges on {agree['comparisons']} held-out preferences", "", "| judge | agrees with the people's choice | pairs |", "|---|---:|---:|"]
    for k in ("reward_model", "judge"):
        if k in agree:
            lines.append(f"| {names[k].split(' (')[0]} | {agree[k]['accuracy']:.3f} | {agree[k]['pairs']} |")
    if ev.get("lm"):
        lines += ["", "## Language models on the corpus's held-out text", "", "| model | bits per byte | perplexity |", "|---|---:|---:|"]
        for family, r in ev["lm"].items():
            lines.append(f"| {family} ({r.get('name', '')}) | {r['bpb']:.3f} | {r['perplexity']:.2f} |")
    else:
        lines += ["", f"No corpus: the run started from `{run.cfg.sft.init}` instead of pretraining its own base models."]
    chosen = ev.get("sft", {}).get("chosen")
    if chosen:
        lines += ["", f"SFT: held-out answer loss {chosen.get('loss', float('nan')):.4f} (learning rate {chosen.get('lr', 0):g}, epoch {chosen.get('epoch', 0):g}, chosen by it)."]
    lines += ["", "## Answers side by side", ""]
    for ex in ev["examples"]:
        prompt = ex["prompt"] if isinstance(ex["prompt"], str) else ex["prompt"][-1]["content"]
        lines += [f"**{prompt.strip()[:200]}**", ""] + [f"- {name.upper()}: {ex[name].strip()[:300] or '(nothing)'}" for name in ("sft", "ppo", "dpo")] + [""]
    return "\n".join(lines) + "\n"
