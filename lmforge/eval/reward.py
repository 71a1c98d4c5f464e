"""How good is a reward model, or a judge: `lmforge eval rm`.

On held-out comparisons, every answer is scored once and every pair the ranking implies is
checked. A judge (a chat language model, `lmforge.label.JudgeLabeler`) is asked each pair in
both orders instead, its P(w > l) the position-corrected preference; the same numbers follow,
with the same meaning: whether an AI labeler can stand in for people (RLAIF) is its acc_oracle
and acc_labelers beside labeler_agreement and oracle_vs_labels.

  acc_labelers       share of pairs where the reward model prefers the answer the labeler
                     ranked higher (ties count half): what InstructGPT reports (72.4% for its
                     6B reward model against held-out labelers)
  calibration, ece   pairs in a fixed orientation (the answer listed first against the other),
                     the predicted P(first better) = sigmoid(r_first - r_second) binned, against
                     the share of those pairs the labeler actually decided for the first;
                     expected calibration error over the bins

With the built-in world (comparisons carrying "task" and "meta"), the ground truth too:

  acc_oracle         share of pairs, among those the oracle does not tie, where the reward
                     model orders the answers as the oracle's total does
  labeler_agreement  a second world labeler ranks the same answers afresh: the share of pairs on
                     which the two labelers agree (InstructGPT's ~73% "inter-labeler agreement",
                     the ceiling a model of labelers' choices can hope to reach)
  oracle_vs_labels   the oracle's own ordering scored against the labels: the best accuracy
                     any reward model could get from these noisy labels
  by_task            acc_oracle for each task's comparisons (fact, arithmetic, sort ...), beside
                     labels_acc_oracle, the labels' own accuracy on the same pairs: where the
                     reward model cannot tell a right answer from a wrong one, PPO has nothing
                     to climb
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from ..data.comparisons import Comparison, answer_ids, split_by_prompt
from ..errors import InputError
from ..train.reward import reward_scores


@torch.no_grad()
def _reward_preferences(model, tokenizer, comparisons: list[Comparison]):
    """(comparisons that fit, skipped, P(i > j) for each, the scores): sigmoid(r_i - r_j)."""
    # a comparison with an answer the model cannot read whole is left out (counted), as in training
    chat = getattr(model, "chat_template", None) is not None
    fits = [c for c in comparisons if max(len(answer_ids(tokenizer, c.prompt, a, f, chat)) for a, f in zip(c.completions, c.finished)) <= model.cfg.max_seq_len]
    if not fits:
        raise InputError(f"none of the {len(comparisons)} comparisons fits the reward model's context of {model.cfg.max_seq_len} tokens")
    scores = reward_scores(model, tokenizer, [c.prompt for c in fits for _ in c.completions], [a for c in fits for a in c.completions], [f for c in fits for f in c.finished]).numpy()
    offsets = np.cumsum([0] + [len(c.completions) for c in fits[:-1]])
    prefs = [(lambda r: (lambda i, j: 1.0 / (1.0 + math.exp(-(r[i] - r[j])))))(scores[o : o + len(c.completions)]) for c, o in zip(fits, offsets)]
    return fits, len(comparisons) - len(fits), prefs, scores


def _judge_preferences(model, tokenizer, comparisons: list[Comparison]):
    """The same for a judge: every pair a ranking implies asked in both orders (one batch)."""
    from ..label import JudgeLabeler, prompt_text

    judge = JudgeLabeler(model, tokenizer, "judge")

    def fits(c):
        q = prompt_text(c.prompt)
        return all(judge.fits(q, c.completions[w], c.completions[l]) and judge.fits(q, c.completions[l], c.completions[w]) for w, l in c.pairs)

    kept = [c for c in comparisons if fits(c)]
    if not kept:
        raise InputError(f"none of the {len(comparisons)} comparisons fits the judge's context of {model.cfg.max_seq_len} tokens")
    asked = [(prompt_text(c.prompt), c.completions[w], c.completions[l]) for c in kept for w, l in c.pairs]
    p = judge.preference(*map(list, zip(*asked))).tolist()
    prefs, at = [], 0
    for c in kept:
        table = {}
        for w, l in c.pairs:
            table[w, l], table[l, w] = p[at], 1.0 - p[at]
            at += 1
        prefs.append(lambda i, j, t=table: t[i, j])
    return kept, len(comparisons) - len(kept), prefs, None


def evaluate_rm(model, tokenizer, comparisons: list[Comparison], *, world_dir=None, bins: int = 10, seed: int = 0) -> dict:
    """The numbers of the module's docstring for a reward model (scalar head) or a judge (a chat model)."""
    if model.head_kind != "scalar" and getattr(model, "chat_template", None) is None:
        raise InputError("neither a reward model nor a judge (a chat model trained on `lmforge label judge-data`)", field="model")
    comparisons, skipped, prefs, scores = (_reward_preferences if model.head_kind == "scalar" else _judge_preferences)(model, tokenizer, comparisons)

    correct = n = 0.0
    probs, outcomes = [], []
    for c, prefer in zip(comparisons, prefs):
        for w, l in c.pairs:
            p = prefer(w, l)
            correct += 1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0
            n += 1
            a, b = min(w, l), max(w, l)  # fixed orientation: the answer listed first
            probs.append(prefer(a, b))
            outcomes.append(1.0 if w == a else 0.0)
    probs_a, outcomes_a = np.asarray(probs), np.asarray(outcomes)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs_a, edges[1:-1]), 0, bins - 1)
    calibration, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            pred, obs = float(probs_a[sel].mean()), float(outcomes_a[sel].mean())
            calibration.append({"bin": [float(edges[b]), float(edges[b + 1])], "predicted": pred, "observed": obs, "pairs": int(sel.sum())})
            ece += sel.sum() / len(probs_a) * abs(pred - obs)
    result = {
        "comparisons": len(comparisons),
        "skipped_too_long": skipped,
        "pairs": int(n),
        "acc_labelers": correct / max(n, 1),
        "ece": float(ece),
        "calibration": calibration,
    }
    if scores is not None:
        result.update(reward_mean=float(scores.mean()), reward_std=float(scores.std()))
    if world_dir is not None:
        result.update(_against_the_world(comparisons, prefs, world_dir, seed))
    return result


def _against_the_world(comparisons, prefs, world_dir, seed) -> dict:
    from ..world import oracle
    from ..world.build import load_world

    world, labelers, _ = load_world(world_dir)
    by_name = {lab.name: i for i, lab in enumerate(labelers)}
    rng = random.Random(seed)
    rm_right = oracle_pairs = agree = pairs = oracle_right = 0.0
    # task -> [pairs the reward model orders as the oracle, pairs the label orders so, pairs the oracle orders]
    by_task: dict[str, list[float]] = {}
    for c, prefer in zip(comparisons, prefs):
        if not c.task:
            continue
        tally = by_task.setdefault(c.task, [0.0, 0.0, 0.0])
        totals = [oracle.score(world, c.task, c.meta, a, f)["total"] for a, f in zip(c.completions, c.finished)]
        # a second labeler, another than the one who ranked these answers, ranks them afresh
        other = labelers[(by_name.get(c.labeler, -1) + 1) % len(labelers)]
        position = {i: p for p, i in enumerate(other.rank(world, c.task, c.meta, c.completions, c.finished, rng))}
        for w, l in c.pairs:
            pairs += 1
            agree += position[w] < position[l]
            oracle_right += 1.0 if totals[w] > totals[l] else 0.5 if totals[w] == totals[l] else 0.0
            if totals[w] != totals[l]:
                p = prefer(w, l)
                right = float((p > 0.5) == (totals[w] > totals[l])) if p != 0.5 else 0.5
                oracle_pairs += 1
                rm_right += right
                tally[0] += right
                tally[1] += totals[w] > totals[l]  # the label (w above l) agrees with the oracle
                tally[2] += 1
    if not pairs:
        return {}
    return {
        "acc_oracle": rm_right / max(oracle_pairs, 1),
        "oracle_pairs": int(oracle_pairs),
        "labeler_agreement": agree / pairs,
        "oracle_vs_labels": oracle_right / pairs,
        # which tasks' answers the reward model can order (PPO can only gain there), beside the
        # labels' own accuracy on the same pairs (what a model of these labels could reach)
        "by_task": {t: {"acc_oracle": right / n, "labels_acc_oracle": labels / n, "oracle_pairs": int(n)} for t, (right, labels, n) in sorted(by_task.items()) if n},
    }


def held_out(comparisons: list[Comparison], val_fraction: float) -> list[Comparison]:
    """The comparisons a reward model trained with this val_fraction did not see."""
    return split_by_prompt(comparisons, val_fraction)[1]
