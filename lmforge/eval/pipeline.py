"""The evaluation stage of `lmforge run`: what each stage did, measured with the world's truth.

InstructGPT's comparisons in miniature (Ouyang et al. 2022, Figures 1, 4, 6, 7): the base model
asked zero-shot ("GPT-3") and behind a few-shot prefix ("GPT-3 prompted"), the larger base model
behind the same prefix, the SFT model (trained to its held-out optimum), best-of-n (the SFT
model's samples, the reward model picking one), and the PPO and DPO policies all answer the same
held-out prompts, greedily or sampled (`policy.answer_prompts`; the default run samples at
temperature 1, the answers a user of the policy gets and the labelers ranked); the oracle scores them (`policy.score_answers`:
win rate against SFT, ties half; task accuracy; false-claim, rude-word and question rates; length;
oracle score; the same split by task, `policy.by_task`); SFT, PPO and DPO also answer greedily;
the same answers meet in the arena (`arena.arena_of_answers`: round robin judged by
the simulated labelers, Bradley-Terry on the Elo scale, bootstrap intervals). Beside them: the
reward model's accuracy on held-out comparisons against the labelers and the oracle
(`reward.evaluate_rm`), and the language models' bits per byte (the baselines stage's table).
"""

from __future__ import annotations

import json
from pathlib import Path



def evaluate_run(run, ecfg, *, base_models: bool = True) -> dict:
    """The eval stage's result for a pipeline `run` (lmforge.pipeline.Run) with its EvalSection;
    without `base_models`, only the chat models (SFT, best-of-n, PPO, DPO), no arena and no
    bits per byte (`lmforge study rlhf-gain`'s points)."""
    from .arena import arena_of_answers
    from .policy import answer_prompts, best_of_n_answers, by_language, by_task, score_answers, win_rate

    world = run.world
    models = {"sft": str(run.path("sft")), "ppo": str(run.path("ppo")), "dpo": str(run.path("dpo"))}
    if base_models:
        models = {"base": str(run.path("pretrain")), "base_fewshot": str(run.path("pretrain")), "base_large_fewshot": str(run.path("pretrain_large")), **models}
    shots = {"base_fewshot": ecfg.shots, "base_large_fewshot": ecfg.shots} if base_models else {}
    world_dir, items, answers = answer_prompts(models, ecfg.prompts, limit=ecfg.limit, max_new_tokens=ecfg.max_new_tokens, world=str(world), shots=shots, seed=run.cfg.seed, temperature=ecfg.temperature, top_p=ecfg.top_p)
    if ecfg.best_of and ecfg.temperature > 0:  # the SFT model's samples, the reward model picking one
        answers.update(best_of_n_answers(models["sft"], run.path("rm"), items, list(ecfg.best_of), max_new_tokens=ecfg.max_new_tokens, temperature=ecfg.temperature, top_p=ecfg.top_p, seed=run.cfg.seed + 1))
    metrics, per_answer = score_answers(world_dir, items, answers, baseline="sft")
    totals = {name: [s["total"] for s in scores] for name, scores in per_answer.items()}
    for name in metrics:
        metrics[name]["win_rate_vs_sft_ci"] = _win_rate_interval(totals[name], totals["sft"], seed=run.cfg.seed)
    for name in ("ppo", "dpo"):  # InstructGPT's headline: the aligned small model against the prompted larger one
        if base_models:
            metrics[name]["win_rate_vs_base_large_fewshot"] = win_rate(totals[name], totals["base_large_fewshot"])
        for n in ecfg.best_of if ecfg.temperature > 0 else ():
            key = f"best_of_{n}"
            metrics[name][f"win_rate_vs_{key}"] = win_rate(totals[name], totals[key])
            metrics[name][f"win_rate_vs_{key}_ci"] = _win_rate_interval(totals[name], totals[key], seed=run.cfg.seed)

    greedy = {}
    if ecfg.greedy and ecfg.temperature > 0:  # the same prompts answered greedily by the chat models
        chat_models = {k: models[k] for k in ("sft", "ppo", "dpo")}
        _, _, g_answers = answer_prompts(chat_models, ecfg.prompts, limit=ecfg.limit, max_new_tokens=ecfg.max_new_tokens, world=str(world), seed=run.cfg.seed, temperature=0.0)
        greedy, g_per_answer = score_answers(world_dir, items, g_answers, baseline="sft")
        for name in greedy:
            greedy[name]["win_rate_vs_sft_ci"] = _win_rate_interval([s["total"] for s in g_per_answer[name]], [s["total"] for s in g_per_answer["sft"]], seed=run.cfg.seed)

    arena = {}
    if base_models:
        n_arena = min(ecfg.arena_limit or len(items), len(items))
        arena = arena_of_answers(world_dir, items[:n_arena], {k: (t[:n_arena], f[:n_arena]) for k, (t, f) in answers.items()}, bootstrap=ecfg.bootstrap, seed=run.cfg.seed)

    examples = []
    for i, item in enumerate(items[:20]):
        examples.append({"prompt": item.prompt, "task": item.task, **{name: {"answer": answers[name][0][i], "oracle": per_answer[name][i]["total"]} for name in answers}})
    languages = by_language(items, per_answer, baseline="sft")  # a multilingual world's: MEGA's table
    return {
        "prompts": len(items),
        "models": metrics,
        "greedy": greedy,
        "by_task": by_task(items, per_answer, baseline="sft"),
        **({"by_language": languages} if languages else {}),
        "arena": arena,
        "rm": _rm(run, world),
        "lm": _lm(run) if base_models else {},
        "ppo": _read(run.path("ppo") / "rl_summary.json"),
        "sft": _read(run.path("sft") / "selection.json"),
        "examples": examples,
    }


def _win_rate_interval(a: list[float], b: list[float], *, seed: int = 0) -> list[float]:
    from .policy import win_rate_interval

    return win_rate_interval(a, b, seed=seed)


def _rm(run, world: Path) -> dict:
    """The reward model on the world's comparisons it did not train on."""
    from ..data.comparisons import read_comparisons
    from ..models import load_model
    from ..tokenizer import Tokenizer
    from .reward import evaluate_rm, held_out

    model, folder = load_model(run.path("rm"))
    tok = Tokenizer.load(folder)
    comparisons = held_out(read_comparisons(world / "comparisons.jsonl")[0], run.cfg.rm.data.val_fraction)
    r = evaluate_rm(model, tok, comparisons, world_dir=world, seed=run.cfg.seed)
    return {k: r[k] for k in ("acc_labelers", "acc_oracle", "labeler_agreement", "oracle_vs_labels", "ece", "comparisons", "pairs") if k in r}


def _lm(run) -> dict:
    """Bits per byte of the best model of each family (the baselines stage's table; gpt is the
    policy's base model, gpt_large the larger one), with their sizes."""
    table = json.loads((run.path("baselines") / "comparison.json").read_text(encoding="utf-8"))
    params = {}
    for row in table["models"]:
        params.setdefault(row["family"], row.get("params"))
    out = {family: {"bpb": row["bpb"], "perplexity": row["perplexity"], "name": row["name"], "params": params.get(family)} for family, row in table["best"].items()}
    heldout = run.world / "heldout.jsonl"
    if heldout.exists():  # a multilingual world: the same held-out documents in every language
        from ..models import load_model
        from ..tokenizer import Tokenizer
        from .perplexity import perplexity

        for family, stage in (("gpt", "pretrain"), ("gpt_large", "pretrain_large")):
            model, folder = load_model(run.path(stage))
            r = perplexity(model.eval(), Tokenizer.load(folder), heldout, by="language")
            out.setdefault(family, {})["bpb_by_language"] = {lang: g["bpb"] for lang, g in r["by"].items()}
    return out


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
