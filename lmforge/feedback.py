"""`lmforge study feedback`: beyond one reward model, measured against the best SFT.

On a finished `lmforge run` (its best SFT model, labelers' rankings, reward model, PPO and DPO),
the lectures' outlook past InstructGPT, each started from the same SFT model and trained with the
run's own settings, then all of them evaluated on the same held-out prompts:

  judge       an AI labeler: the SFT model fine-tuned on the labelers' rankings to say which of two
              answers is better, asked in both orders (`label.judge_demonstrations`; the rankings'
              training split, as the reward model split them). Measured on the held-out rankings of
              the SFT model's own answers against the oracle and the labelers, beside the reward
              model: can it replace people?
  rlaif_ppo   RLAIF (Bai et al. 2022, Constitutional AI; Lee et al. 2023): the judge ranks a fresh
              draw of the SFT model's samples that no labeler saw, a reward model trains on its
              rankings (the run's `rm` section, "samples" replaced), PPO runs on that reward model.
  ei1..eiR    expert iteration / rejection-sampling fine-tuning (Anthony et al. 2017; RAFT, Dong et
              al. 2023; ReST, Gulcehre et al. 2023): each round the policy samples K answers a
              prompt, the reward model (or the judge) picks the best, one epoch of SFT on them.
              The oracle watches each round for collapse (its score, false claims, length).
  nash_md     Nash learning from human feedback (Munos et al. 2023): `lmforge rl --algorithm
              nash-md` against the judge (a preference model) or the reward model (sigmoid(r - r')).

The evaluation: each model against the best SFT on the run's held-out prompts (sampled, and greedy
when the run's eval samples), win rate by the oracle with a 95% bootstrap interval; the labeler
population's expected vote (`world.labelers.population_preference`: the truth for a Condorcet
world, where no reward can be right) against SFT and Nash-MD against PPO; the time of each method
and its labeler cost (rankings by people, judgements by a model). DIR/study.json, DIR/report.md.

Every step is a folder of DIR and a line in DIR/feedback.json: running again skips what finished
(training steps resume from their checkpoints).
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .config import to_dict
from .errors import InputError
from .io import atomic_write_json, atomic_write_text
from .pipeline import FeedbackSection, Run, run_pipeline

# the base run's stages this study starts from
BASE_STAGES = ("world", "sft", "samples", "labels", "rm", "ppo", "dpo")


def steps(f: FeedbackSection) -> list[str]:
    """The study's steps, in order."""
    out = ["judge", "judge_eval"] if f.needs_judge() else []
    if "rlaif" in f.methods:
        out += ["rlaif_labels", "rlaif_rm", "rlaif_ppo"]
    if "expert" in f.methods:
        out += [f"ei{r}" for r in range(1, f.rounds + 1)]
    if "nash" in f.methods:
        out.append("nash_md")
    return out + ["eval"]


class FeedbackStudy:
    """The study in `out` on the finished run `base` (lmforge.pipeline.Run)."""

    def __init__(self, cfg, base, out: Path, log: Callable[[str], None]):
        self.cfg, self.base, self.out, self.log = cfg, base, out, log
        self.f: FeedbackSection = cfg.feedback
        self.state_path = out / "feedback.json"

    # state: each finished step and its seconds, with the settings they ran with
    def _key(self) -> str:
        c = to_dict(self.cfg)
        mine = {k: c[k] for k in ("seed", "feedback", "sft", "samples", "rm", "ppo", "eval")} | {"base": str(self.base.out.resolve())}
        return hashlib.sha256(json.dumps(mine, sort_keys=True).encode()).hexdigest()[:16]

    def state(self) -> dict:
        if not self.state_path.exists():
            return {"key": self._key(), "steps": {}}
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"not valid JSON ({e.msg}); delete it to start the study again", path=self.state_path) from None
        if state.get("key") != self._key():
            raise InputError("this study ran with other settings or another base run; choose a new --out", path=self.out)
        return state

    def execute(self) -> dict:
        state = self.state()
        self.out.mkdir(parents=True, exist_ok=True)
        todo = steps(self.f)
        for i, step in enumerate(todo, 1):
            if step in state["steps"]:
                continue
            self.log(f"[{i}/{len(todo)}] {step}")
            t0 = time.perf_counter()
            if step.startswith("ei"):
                self.step_round(int(step[2:]))
            else:
                getattr(self, "step_" + step)()
            state["steps"][step] = {"seconds": round(time.perf_counter() - t0, 2)}
            atomic_write_json(self.state_path, state)
        study = summarize(self, state)
        atomic_write_json(self.out / "study.json", study)
        atomic_write_text(self.out / "report.md", markdown(study))
        return study

    # paths
    def model(self, name: str) -> Path:
        """Where a method's model is: the base run's (sft, ppo, dpo, rm) or this study's."""
        if name in ("sft", "ppo", "dpo", "rm"):
            return self.base.path(name)
        return self.out / {"judge": "judge/model", "nash_md": "nash_md", "rlaif_ppo": "rlaif_ppo", "rlaif_rm": "rlaif_rm"}.get(name, f"{name}/model")

    def rankings_split(self) -> tuple[list, list]:
        """The labelers' rankings of the SFT model's samples, split by prompt as the reward model split them."""
        from .data.comparisons import read_comparisons, split_by_prompt

        return split_by_prompt(read_comparisons(self.base.rankings)[0], self.cfg.rm.data.val_fraction)

    def _sft(self, init: Path, train: list[str], val: str, out: Path, *, epochs: float, lr: float, select: bool) -> None:
        from .train.sft import run_sft

        c = copy.deepcopy(self.cfg.sft)
        c.init, c.data.train, c.data.val, c.epochs = str(init), train, val, epochs
        c.select.val_loss, c.select.lr = select, [lr] if select else []
        c.train.optim.lr = lr
        run_sft(c, out)

    def _json(self, path: Path, data: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data)

    def _records(self, path: Path, records: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    # ------------------------------------------------------------------ the steps

    def step_judge(self) -> None:
        from .label import judge_demonstrations

        train, val = self.rankings_split()
        d = self.out / "judge"
        self._records(d / "train.jsonl", judge_demonstrations(train, pairs_per_comparison=self.f.judge_pairs, seed=self.cfg.seed))
        held = judge_demonstrations(val, pairs_per_comparison=self.f.judge_pairs, seed=self.cfg.seed + 1)
        if held:  # the epoch of lowest held-out verdict loss is kept
            self._records(d / "val.jsonl", held)
        else:
            self.log("judge: no held-out rankings (rm.data.val_fraction too small for so few prompts): trained for judge_epochs, not chosen")
        self._sft(self.model("sft"), [str(d / "train.jsonl")], str(d / "val.jsonl") if held else "", self.model("judge"), epochs=self.f.judge_epochs, lr=self.f.judge_lr, select=bool(held))

    def step_judge_eval(self) -> None:
        """The judge and the reward model on the held-out rankings of the SFT model's answers."""
        from .eval.reward import evaluate_rm
        from .models import load_model
        from .tokenizer import Tokenizer

        _, val = self.rankings_split()
        result = {"rankings": len(val)}
        for name in ("judge", "rm") if val else ():
            model, folder = load_model(self.model(name))
            r = evaluate_rm(model.eval(), Tokenizer.load(folder), val, world_dir=self.base.world, seed=self.cfg.seed)
            result[name] = {k: r[k] for k in ("acc_labelers", "acc_oracle", "labeler_agreement", "oracle_vs_labels", "pairs") if k in r}
        self._json(self.out / "judge_eval" / "eval.json", result)

    def step_rlaif_labels(self) -> None:
        from .label import run_label

        d = self.out / "rlaif_labels"
        self.base.sample(self.model("sft"), d / "samples.jsonl", self.cfg.seed + 1000)  # answers no labeler ranked
        summary = run_label(d / "samples.jsonl", [f"judge:{self.model('judge')}"], d / "rankings.jsonl", seed=self.cfg.seed)
        self._json(d / "summary.json", summary)

    def step_rlaif_rm(self) -> None:
        self.base.train_rm(self.model("rlaif_rm"), self.out / "rlaif_labels" / "rankings.jsonl")

    def step_rlaif_ppo(self) -> None:
        self.base.train_rl(self.model("rlaif_ppo"), reward=self.model("rlaif_rm"))

    def step_nash_md(self) -> None:
        self.base.train_rl(self.model("nash_md"), reward=self.model(self.f.preference), algorithm="nash-md")

    def step_round(self, r: int) -> None:
        """Expert iteration's round r: the last round's policy samples, the picker ranks, SFT on the best."""
        from .data.comparisons import read_comparisons
        from .label import best_demonstrations, run_label

        d = self.out / f"ei{r}"
        policy = self.model("sft") if r == 1 else self.model(f"ei{r - 1}")
        self.base.sample(policy, d / "samples.jsonl", self.cfg.seed + 2000 + r)
        picker = f"{self.f.picker}:{self.model(self.f.picker)}"
        run_label(d / "samples.jsonl", [picker], d / "rankings.jsonl", seed=self.cfg.seed)
        records, counts = best_demonstrations(read_comparisons(d / "rankings.jsonl")[0])
        if not records:
            raise InputError(f"round {r}: no ranking has a finished answer above all others ({counts})", path=d / "rankings.jsonl")
        self._records(d / "best.jsonl", records)
        self._json(d / "best_summary.json", counts)
        self._sft(policy, [str(d / "best.jsonl")], "", self.model(f"ei{r}"), epochs=self.f.round_epochs, lr=self.f.round_lr, select=False)

    def step_eval(self) -> None:
        self._json(self.out / "eval" / "eval.json", evaluate(self))

    def trained(self) -> list[str]:
        """The study's policies, in the table's order."""
        names = ["rlaif_ppo"] if "rlaif" in self.f.methods else []
        names += [f"ei{r}" for r in range(1, self.f.rounds + 1)] if "expert" in self.f.methods else []
        return names + (["nash_md"] if "nash" in self.f.methods else [])


def evaluate(study: FeedbackStudy) -> dict:
    """Every policy and the best SFT answer the run's held-out prompts; the oracle's win rates
    against SFT (sampled, and greedy), the population's vote against SFT, Nash-MD against PPO."""
    from .eval.policy import answer_prompts, mean_interval, score_answers
    from .world.build import is_world, load_world, world_file

    cfg, e = study.cfg, study.cfg.eval
    names = ["sft", "ppo", "dpo", *study.trained()]
    models = {n: str(study.model(n)) for n in names}
    prompts = world_file(study.base.world, e.prompts, "eval.jsonl") if is_world(e.prompts) else e.prompts
    world, labelers, _ = load_world(study.base.world)
    out = {"prompts": 0, "labelers": [lab.name for lab in labelers]}
    modes = [("sampled", e.temperature)] + ([("greedy", 0.0)] if e.greedy and e.temperature > 0 else [])
    for mode, temperature in modes:
        world_dir, items, answers = answer_prompts(models, prompts, limit=e.limit, max_new_tokens=e.max_new_tokens, world=str(study.base.world), seed=cfg.seed, temperature=temperature, top_p=e.top_p)
        metrics, _ = score_answers(world_dir, items, answers, baseline="sft")
        vote = {n: _population_votes(world, labelers, items, answers[n], answers["sft"]) for n in names}
        for n in names:
            metrics[n]["population_vs_sft"] = sum(vote[n]) / len(vote[n])
            metrics[n]["population_vs_sft_ci"] = mean_interval(vote[n], seed=cfg.seed)
        if "nash_md" in names:
            head = _population_votes(world, labelers, items, answers["nash_md"], answers["ppo"])
            metrics["nash_md"]["population_vs_ppo"] = sum(head) / len(head)
            metrics["nash_md"]["population_vs_ppo_ci"] = mean_interval(head, seed=cfg.seed)
        out[mode] = metrics
        out["prompts"] = len(items)
    return out


def _population_votes(world, labelers, items, mine: tuple, theirs: tuple) -> list[float]:
    """Per prompt, the labeler population's P(my answer > theirs) (ties: 1/2)."""
    from .world.labelers import population_preference

    (ta, fa), (tb, fb) = mine, theirs
    return [population_preference(world, labelers, it.task, it.meta, a, b, x, y) for it, a, b, x, y in zip(items, ta, tb, fa, fb)]


# --------------------------------------------------------------------------- time, cost, the table


def summarize(study: FeedbackStudy, state: dict) -> dict:
    """study.json: the judge's agreement, each method's win rates, time and labeler cost."""
    cfg = study.cfg
    ev = json.loads((study.out / "eval" / "eval.json").read_text(encoding="utf-8"))
    base_seconds = {k: v.get("seconds", 0.0) for k, v in study.base.state()["stages"].items()}
    seconds = {k: v["seconds"] for k, v in state["steps"].items()}
    train, val = study.rankings_split()
    k = cfg.samples.k
    human = {"ranked_prompts": len(train) + len(val), "answers_each": k}
    judge_s = seconds.get("judge", 0.0)
    rows = {
        "ppo": {"seconds": sum(base_seconds.get(s, 0.0) for s in ("samples", "labels", "rm", "ppo")), "human_rankings": human["ranked_prompts"], "model_judgements": 0},
        "dpo": {"seconds": sum(base_seconds.get(s, 0.0) for s in ("samples", "labels", "dpo")), "human_rankings": human["ranked_prompts"], "model_judgements": 0},
    }
    if "rlaif_ppo" in study.trained():
        labelled = json.loads((study.out / "rlaif_labels" / "summary.json").read_text(encoding="utf-8"))
        rows["rlaif_ppo"] = {"seconds": judge_s + sum(seconds[s] for s in ("rlaif_labels", "rlaif_rm", "rlaif_ppo")), "human_rankings": len(train), "model_judgements": labelled["rankings"] * k * (k - 1)}
    total = judge_s if study.f.picker == "judge" else base_seconds.get("rm", 0.0) + base_seconds.get("labels", 0.0)
    for r in range(1, study.f.rounds + 1) if "expert" in study.f.methods else ():
        total += seconds[f"ei{r}"]
        ranked = len((study.out / f"ei{r}" / "rankings.jsonl").read_text(encoding="utf-8").splitlines())
        picks = ranked * (k * (k - 1) if study.f.picker == "judge" else k)
        rows[f"ei{r}"] = {"seconds": total, "human_rankings": len(train) if study.f.picker == "judge" else human["ranked_prompts"], "model_judgements": (rows.get(f"ei{r - 1}", {}).get("model_judgements", 0)) + picks}
    if "nash_md" in study.trained():
        p = cfg.ppo
        per_pair = 2 if study.f.preference == "judge" else 1  # a judge asked in both orders; a reward model scores each answer once
        rows["nash_md"] = {"seconds": seconds["nash_md"] + (judge_s if study.f.preference == "judge" else base_seconds.get("rm", 0.0) + base_seconds.get("labels", 0.0)),
                           "human_rankings": len(train) if study.f.preference == "judge" else human["ranked_prompts"],
                           "model_judgements": p.iterations * p.rollout.batch_size * p.rollout.group_size * per_pair}  # fmt: skip
    judge = json.loads((study.out / "judge_eval" / "eval.json").read_text(encoding="utf-8")) if "judge_eval" in seconds else {}
    rounds = [_collapse(study, r) for r in range(1, study.f.rounds + 1)] if "expert" in study.f.methods else []
    return {"seed": cfg.seed, "base": str(study.base.out), "settings": to_dict(study.f), "prompts": ev["prompts"], "labelers": ev["labelers"],
            "human_labels": human, "judge": judge, "methods": rows, "sampled": ev["sampled"], "greedy": ev.get("greedy", {}),
            "rounds": rounds, "steps": seconds}  # fmt: skip


def _collapse(study: FeedbackStudy, r: int) -> dict:
    """What expert iteration's round r drew its K samples a prompt from (the SFT model in round 1,
    round r-1's model after), as `eval.policy.sample_collapse` measures it."""
    from .eval.policy import sample_collapse

    return {"round": r, "sampled_from": "sft" if r == 1 else f"ei{r - 1}", **sample_collapse(study.base.world, study.out / f"ei{r}" / "samples.jsonl")}


NAMES = {"sft": "best SFT", "ppo": "PPO (RLHF)", "dpo": "DPO", "rlaif_ppo": "RLAIF-PPO", "nash_md": "Nash-MD"}


def label(name: str) -> str:
    """A method's name in the table: ei2 is expert iteration's round 2."""
    return NAMES.get(name) or f"expert iteration, round {name[2:]}"


def markdown(study: dict) -> str:
    def cell(m: dict, key: str) -> str:
        return f"{m[key]:.3f} [{m[key + '_ci'][0]:.2f}, {m[key + '_ci'][1]:.2f}]" if key in m else ""

    s, g = study["sampled"], study["greedy"]
    lines = [
        "# Beyond one reward model: AI feedback, expert iteration, Nash-MD",
        "",
        (f"Seed {study['seed']}, base run `{study['base']}`; {study['prompts']} held-out prompts. Win rates against the best SFT by the oracle "
        "(ties half) and the labeler population's expected vote, with 95% bootstrap intervals over prompts; time is this host's seconds of "
        f"each method's own stages; labeler cost: rankings of {study['human_labels']['answers_each']} answers by people the method rests on, and judgements made by a model."),
        "",
        "| method | win vs SFT, sampled | greedy | population vote vs SFT | oracle score | false claims | length | minutes | human rankings | model judgements |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in s.items():
        row = study["methods"].get(name, {})
        minutes = f"{row['seconds'] / 60:.1f}" if row else ""
        lines.append(f"| {label(name)} | {cell(m, 'win_rate_vs_sft') if name != 'sft' else ''} | "
                     f"{cell(g.get(name, {}), 'win_rate_vs_sft') if name != 'sft' else ''} | {cell(m, 'population_vs_sft') if name != 'sft' else ''} | "
                     f"{m['oracle_score']:.3f} | {m.get('false_claim_rate', 0.0):.3f} | {m.get('mean_length', 0.0):.1f} | {minutes} | "
                     f"{row.get('human_rankings', '')} | {row.get('model_judgements', '')} |")  # fmt: skip
    if "nash_md" in s and "population_vs_ppo" in s["nash_md"]:
        lines += ["", f"Nash-MD against PPO, by the labeler population's vote: {cell(s['nash_md'], 'population_vs_ppo')} (sampled)."]
    if study.get("rounds"):
        lines += ["", "## What each round of expert iteration sampled from", "",
                  "| round | from | different answers a prompt | distinct bigrams | words | false claims | task accuracy |", "|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {c['round']} | {label(c['sampled_from'])} | {c['distinct_answers']:.2f} | {c['distinct_2']:.3f} | {c['words']:.1f} | {c['false_claims']:.3f} | {c['task_accuracy']:.3f} |" for c in study["rounds"]]
    j = study.get("judge") or {}
    if j.get("judge"):
        lines += ["", f"## The judge on {j['rankings']} held-out rankings of the SFT model's answers", "",
                  "| | agrees with the oracle | agrees with the labeler |", "|---|---:|---:|",
                  f"| the labels themselves | {j['rm'].get('oracle_vs_labels', float('nan')):.3f} | - |",
                  f"| the fine-tuned judge | {j['judge'].get('acc_oracle', float('nan')):.3f} | {j['judge'].get('acc_labelers', float('nan')):.3f} |",
                  f"| the reward model | {j['rm'].get('acc_oracle', float('nan')):.3f} | {j['rm'].get('acc_labelers', float('nan')):.3f} |"]  # fmt: skip
    return "\n".join(lines) + "\n"


def run_feedback(cfg, out: str | Path, *, base: str | None = None, log: Callable[[str], None] | None = None) -> dict:
    """The study into `out` on the finished run `base` (the same seed and settings); without it
    the pipeline's stages up to dpo run into out/run."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    cfg.feedback.validate()
    out = Path(out)
    if base is None:
        base_dir = out / "run"
        run_pipeline(cfg, base_dir, until="dpo", log=lambda m: log("run: " + m))
    else:
        base_dir = Path(base)
    if not (cfg.uses_world() and cfg.uses_samples()):
        raise InputError("the study measures by the built-in world's oracle and learns from the run's labelled samples: a run on your own data has neither", field="base")
    run = Run(cfg, base_dir)
    done = run.state()["stages"]
    missing = [s for s in BASE_STAGES if s not in done]
    if missing:
        raise InputError(f"not a finished run (no {', '.join(missing)}); run `lmforge run --until dpo --out {base_dir}` first", path=base_dir, field="base")
    changed = [s for s in BASE_STAGES if done[s].get("hash") != run._hash(s)]
    if changed:
        raise InputError(f"the run's {', '.join(changed)} ran with other settings than the study's (give the run's preset, recipe and --seed)", path=base_dir, field="base")
    return FeedbackStudy(cfg, run, out, log).execute()
