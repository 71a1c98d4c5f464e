"""`lmforge run`: the whole pipeline, stage by stage, resumable.

    world -> tokenizer -> pretrain (the policy's size) -> pretrain_large (3x the parameters or
    more, and a better language model: by default the base model grown in depth and trained on) -> baselines (n-grams, an RNN, beside both GPTs) -> sft
    (the best SFT model the demonstrations give: epochs and learning rate chosen by held-out
    loss; PPO's, DPO's and the reward model's start) -> sft_rm (an own start for the reward
    model, only with rm_from=sft_rm) -> samples (K answers of the SFT model a prompt) -> labels
    (ranked by the world's labelers) -> rm -> ppo -> dpo -> eval (oracle metrics and win rates
    against the best SFT, sampled and greedy, best-of-n, arena, reward model, bits per byte) ->
    report (DIR/report.md, DIR/results.json, DIR/plots/)

InstructGPT's recipe (Ouyang et al. 2022, Figure 2) in miniature, each stage the library
function its own command runs (`lmforge world`, `prepare`, `pretrain`, `compare`, `sft`,
`sample`, `label`, `rm`, `ppo`, `dpo`, `eval policy`, `arena`), in its own folder of DIR:

    DIR/world  DIR/data  DIR/base  DIR/base_large  DIR/baselines  DIR/sft  DIR/sft_rm
    DIR/samples/samples.jsonl  DIR/labels/rankings.jsonl  DIR/rm  DIR/ppo  DIR/dpo  DIR/eval

The run's config is one YAML file (`RunConfig`): a preset (lmforge/presets/tiny.yaml,
lmforge/presets/default.yaml) under the user's recipe under key=value overrides. Each stage's
section is that stage's own config (`pretrain:` is a PretrainConfig, `ppo:` an RLConfig, ...);
what links the stages (the model a stage starts from, the world's files) is filled in here, so
a recipe can replace any stage's data with a user's files (`data.corpus`, `sft.data.train`,
`rm.data.train`, `dpo.data.train`, `ppo.rollout.prompts`, `samples.prompts`, or `world_dir`
for a world generated elsewhere); "samples" in `rm.data.train` or `dpo.data.train` stands for
the labeled samples of this run.

DIR/pipeline.json records which stages finished, the hash of the config each ran with, and its
seconds. Re-running skips finished stages (refusing if their config changed) and resumes an
interrupted one: training stages from their last checkpoint (the one loop restores weights,
optimizer, data position and RNG states, so the result is the same as an uninterrupted run's),
the others (atomic writes) from their start. `--from STAGE` deletes that stage's output and every
later one's and redoes them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .compare import CompareConfig
from .config import _validate, dump_yaml, from_dict, layered_data, to_dict
from .errors import ConfigError, InputError
from .io import atomic_write_text
from .report import duration, write_report
from .tokenizer import TokenizerConfig
from .train.dpo import DPOConfig
from .train.ppo import RLConfig
from .train.pretrain import PretrainConfig
from .train.reward import RMConfig
from .train.sft import SFTConfig
from .world.build import WorldConfig

STAGES = ("world", "tokenizer", "pretrain", "pretrain_large", "baselines", "sft", "sft_rm", "samples", "labels", "rm", "ppo", "dpo", "eval", "report")
PRESETS = ("tiny", "default")
PRESET_DIR = Path(__file__).resolve().parent / "presets"  # packaged with lmforge (pyproject: package-data)
# the models the evaluation compares, as results.json names them
MODELS = ("base", "base_fewshot", "base_large_fewshot", "sft", "best_of_4", "best_of_16", "ppo", "dpo")


@dataclass
class DataSection:
    corpus: str = "world"  # the pretraining corpus: a data PATH, or "world" (the world's pretrain.jsonl)
    tokenizer: TokenizerConfig = field(default_factory=lambda: TokenizerConfig(kind="bpe", vocab_size=2048))
    val_fraction: float = 0.05
    group_by: str = ""  # the corpus's sources for temperature sampling (language, for a multilingual world)
    temperature: float = 1.0  # source i sampled with p_i proportional to n_i^(1/T) (mT5); 1: as the corpus is


@dataclass
class SamplesSection:
    prompts: str = "world"  # prompts the SFT model answers K times: a PATH, or "world" (ppo_prompts.jsonl)
    limit: int = 0  # the first N prompts only (0: all)
    k: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    labeler: str = "world"  # who ranks them: world | world:NAME | judge:DIR | rm:DIR | human:FILE (lmforge label)


@dataclass
class EvalSection:
    prompts: str = "world"  # held-out prompts with the world's task and meta; "world": eval.jsonl
    limit: int = 0  # the first N prompts only (0: all)
    max_new_tokens: int = 48
    temperature: float = 0.0  # 0: greedy answers; above 0: one sampled answer a prompt, seeded
    top_p: float = 1.0
    shots: int = 3  # demonstrations in the few-shot prefix of the base models
    arena_limit: int = 0  # prompts of the arena's round robin (0: all evaluated prompts)
    bootstrap: int = 200  # resamples for the arena's 95% intervals
    greedy: bool = True  # SFT, PPO and DPO also answer greedily (when temperature > 0)
    best_of: list[int] = field(default_factory=lambda: [4, 16])  # best-of-n baselines: n SFT samples, the reward model's pick (when temperature > 0)
    judge: str = ""  # a run on a user's data (no oracle): a judge model (a chat model, `lmforge label judge-data`) that also compares the answers


@dataclass
class StudySection:
    """Settings of `lmforge study rlhf-gain` (lmforge/study.py), read from the run's config; `lmforge run` ignores them."""

    reference: bool = True  # a point whose demonstrations are the tasks' reference answers (perfect writers)
    care: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # the labelers' flaw rates scaled: careful .. careless
    demo_share: list[float] = field(default_factory=lambda: [0.2, 0.7])  # shares of the budget spent on demonstrations (beside the default split)
    cost_ratio: float = 1.0  # labeler time of one demonstration, in ranked prompts (K answers): an assumption, see lmforge/study.py

    def validate(self) -> None:
        if any(c < 0 for c in self.care):
            raise ConfigError(f"scales must be >= 0, got {self.care}", field="study.care")
        if any(not 0 < s < 1 for s in self.demo_share):
            raise ConfigError(f"shares must be between 0 and 1, got {self.demo_share}", field="study.demo_share")
        if self.cost_ratio <= 0:
            raise ConfigError(f"must be positive, got {self.cost_ratio}", field="study.cost_ratio")


METHODS = ("rlaif", "expert", "nash")  # `lmforge study feedback`'s


@dataclass
class FeedbackSection:
    """Settings of `lmforge study feedback` (lmforge/feedback.py), read from the run's config; `lmforge run` ignores them."""

    methods: list[str] = field(default_factory=lambda: list(METHODS))  # what to train: rlaif (judge -> reward model -> PPO), expert (iteration), nash (Nash-MD)
    judge_pairs: int = 2  # labelled pairs of each ranking the judge learns from (each in both orders); 0: all
    judge_epochs: float = 2.0  # the most; the epoch of lowest held-out verdict loss is kept
    judge_lr: float = 1.0e-3
    rounds: int = 3  # expert iteration's rounds
    picker: str = "rm"  # who picks expert iteration's best answer: rm (the run's reward model) | judge
    round_epochs: float = 1.0  # SFT epochs on a round's best answers
    round_lr: float = 3.0e-4
    preference: str = "judge"  # Nash-MD's preference model: judge | rm (sigmoid(r - r'), a transitive one)

    def validate(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError(f"expected some of {', '.join(METHODS)}, got {self.methods}", field="feedback.methods")
        for name in ("picker", "preference"):
            if getattr(self, name) not in ("rm", "judge"):
                raise ConfigError(f"expected rm or judge, got {getattr(self, name)!r}", field=f"feedback.{name}")
        if self.rounds < 1:
            raise ConfigError(f"must be >= 1, got {self.rounds}", field="feedback.rounds")
        if self.judge_pairs < 0 or self.judge_epochs <= 0 or self.round_epochs <= 0 or self.judge_lr <= 0 or self.round_lr <= 0:
            raise ConfigError("judge_pairs must be >= 0; epochs and learning rates positive", field="feedback")

    def needs_judge(self) -> bool:
        return "rlaif" in self.methods or ("expert" in self.methods and self.picker == "judge") or ("nash" in self.methods and self.preference == "judge")


@dataclass
class RunConfig:
    seed: int = 0  # the world's seed and every stage's
    world_dir: str = ""  # a world generated elsewhere, used instead of generating one
    world: WorldConfig = field(default_factory=WorldConfig)
    data: DataSection = field(default_factory=DataSection)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    pretrain_large: PretrainConfig = field(default_factory=PretrainConfig)
    baselines: CompareConfig = field(default_factory=CompareConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    sft_rm: SFTConfig = field(default_factory=SFTConfig)
    rm_from: str = "sft"  # the reward model starts from this stage's model: sft | sft_rm
    samples: SamplesSection = field(default_factory=SamplesSection)
    rm: RMConfig = field(default_factory=RMConfig)
    ppo: RLConfig = field(default_factory=RLConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    eval: EvalSection = field(default_factory=EvalSection)
    study: StudySection = field(default_factory=StudySection)  # `lmforge study rlhf-gain` only
    feedback: FeedbackSection = field(default_factory=FeedbackSection)  # `lmforge study feedback` only

    def uses_samples(self) -> bool:
        """Whether a stage trains on the run's labeled samples ("samples" in rm or dpo data)."""
        return "samples" in self.rm.data.train or "samples" in self.dpo.data.train

    def uses_world(self) -> bool:
        """Whether the run needs the built-in world: a data setting names it (defaults that follow
        the data, such as sft.data.val=auto or the RL evaluation's prompts, do not count)."""
        from .world.build import is_world

        specs = [self.data.corpus, self.eval.prompts, self.ppo.rollout.prompts, *self.sft.data.train, *self.rm.data.train, *self.dpo.data.train]
        if self.uses_samples():
            specs += [self.samples.prompts, self.samples.labeler]
        if self.rm_from == "sft_rm":
            specs += self.sft_rm.data.train
        return bool(self.world_dir) or any(is_world(s) for s in specs)

    def pretrains(self) -> bool:
        """Whether the run makes its own base models (else it starts from sft.init: an imported model)."""
        return self.data.corpus != ""

    def validate(self) -> None:
        if not self.pretrains() and (self.sft.init in ("", "<pretrain>") or self.uses_world()):
            raise ConfigError("with no corpus the run starts from a model of yours: give sft.init=MODEL_DIR (`lmforge import hf`), on your own data (recipes/own-data.yaml)", field="data.corpus")
        if self.rm_from not in ("sft_rm", "sft"):
            raise ConfigError(f"expected sft_rm or sft, got {self.rm_from!r}", field="rm_from")
        if any(n < 1 for n in self.eval.best_of):
            raise ConfigError(f"best-of-n needs n >= 1, got {self.eval.best_of}", field="eval.best_of")
        if self.samples.k < 2:
            raise ConfigError(f"a labeler ranks at least two answers, got {self.samples.k}", field="samples.k")


def load_run_config(recipe: str | None, preset: str | None, overrides: list[str], seed: int | None = None) -> RunConfig:
    """The preset (default: `default`), the recipe over it, the overrides over both."""
    name = preset or "default"
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}", field="preset")
    data, lines, source = layered_data(RunConfig, PRESET_DIR / f"{name}.yaml", recipe, overrides)
    if seed is not None:
        data["seed"] = seed
    # every section checked before any work, with the links between stages (filled in when they
    # run) standing in as placeholders
    cfg = from_dict(RunConfig, data, source=source, lines=lines, check=False)
    linked = copy.deepcopy(cfg)
    linked.sft.init = linked.sft.init or "<pretrain>"
    linked.sft_rm.init = linked.sft_rm.init or "<pretrain>"
    linked.rm.init = linked.rm.init or "<sft>"
    linked.ppo.policy, linked.ppo.reward = linked.ppo.policy or "<sft>", linked.ppo.reward or "<rm>"
    linked.dpo.init = linked.dpo.init or "<sft>"
    linked.baselines.gpt.load = "<pretrain>"
    try:
        for name in ("world", "data", "pretrain", "pretrain_large", "baselines", "sft", "sft_rm", "samples", "rm", "ppo", "dpo", "eval", "study", "feedback"):
            _validate(getattr(linked, name), name + ".")
        linked.validate()
    except ConfigError as e:
        if source and e.field in lines:
            e.path, e.line = source, lines[e.field]
        raise
    return cfg


# --------------------------------------------------------------------------- the stages


class Run:
    """One pipeline run in `out`: the stages, their state, their outputs' paths."""

    def __init__(self, cfg: RunConfig, out: str | Path, *, log: Callable[[str], None] | None = None):
        self.cfg, self.out = cfg, Path(out)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.state_path = self.out / "pipeline.json"
        self.hashes = {stage: self._hash(stage) for stage in STAGES}  # of the config as given, before stages fill in paths
        self.current: tuple[str, float] | None = None  # the stage running and when it began

    # paths
    def path(self, stage: str) -> Path:
        return self.out / {"pretrain": "base", "pretrain_large": "base_large", "tokenizer": "data"}.get(stage, stage)

    @property
    def world(self) -> Path:
        return self.out / "world"

    @property
    def rankings(self) -> Path:
        return self.path("labels") / "rankings.jsonl"

    def _data_paths(self, paths: list[str], rankings: Path | None = None) -> list[str]:
        return [str(rankings or self.rankings) if p == "samples" else p for p in paths]

    # state
    def state(self) -> dict:
        if not self.state_path.exists():
            return {"stages": {}}
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"not valid JSON ({e.msg}); delete it to start the run again", path=self.state_path) from None

    def _save_state(self, state: dict) -> None:
        atomic_write_text(self.state_path, json.dumps(state, indent=2))

    def _hash(self, stage: str) -> str:
        """What a stage's result depends on: its own section and the seed."""
        cfg = to_dict(self.cfg)
        section = {
            "world": ["world", "world_dir"], "tokenizer": ["data"], "pretrain": ["pretrain"], "pretrain_large": ["pretrain_large"],
            "baselines": ["baselines"], "sft": ["sft"], "sft_rm": ["sft_rm"], "samples": ["samples"], "labels": ["samples"],
            "rm": ["rm", "rm_from"], "ppo": ["ppo"], "dpo": ["dpo"], "eval": ["eval"], "report": [],
        }[stage]  # fmt: skip
        skipped = (stage == "world" and not self.cfg.uses_world()) or (stage in ("samples", "labels") and not self.cfg.uses_samples()) \
            or (stage in ("tokenizer", "pretrain", "pretrain_large", "baselines") and not self.cfg.pretrains())
        # a stage that did nothing is a different result from one that ran (only such stages carry the mark: built-in runs keep their hashes)
        mine = json.dumps({"seed": cfg["seed"], **{k: cfg[k] for k in section}, **({"skipped": True} if skipped else {})}, sort_keys=True)
        return hashlib.sha256(mine.encode()).hexdigest()[:16]

    def plan(self, start: str | None = None) -> list[str]:
        """The stages still to run; with `start`, that stage and every later one are redone
        (their outputs deleted). A finished stage whose config changed is refused."""
        if start is not None and start not in STAGES:
            raise InputError(f"unknown stage {start!r}; expected one of {', '.join(STAGES)}", field="from")
        state = self.state()
        done = state["stages"]
        redo = STAGES[STAGES.index(start) :] if start is not None else ()
        # refuse before deleting anything: a refused command leaves the run as it was
        for stage in STAGES:
            if stage not in redo and stage in done and done[stage].get("hash") != self.hashes[stage]:
                raise InputError(f"stage {stage!r} finished with another config; redo it and what follows with --from {stage} (or choose a new --out)", path=self.out, field=stage)
        for stage in redo:
            if stage in done or self.path(stage).exists():
                done.pop(stage, None)
                self._remove(stage)
        if redo and self.out.exists():
            self._save_state(state)
        return [s for s in STAGES if s not in done]

    def _remove(self, stage: str) -> None:
        target = self.path(stage)
        if stage == "world" and self.cfg.world_dir:
            return
        if stage == "report":
            for f in (self.out / "report.md", self.out / "results.json"):
                f.unlink(missing_ok=True)
            target = self.out / "plots"
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()

    def execute(self, start: str | None = None, until: str | None = None, only: tuple[str, ...] | None = None) -> dict:
        """Run every stage not finished yet (up to `until`, or of `only`, when given); returns
        results.json's content, or {} when the run stops before its report."""
        if until is not None and until not in STAGES:
            raise InputError(f"unknown stage {until!r}; expected one of {', '.join(STAGES)}", field="until")
        todo = self.plan(start)
        if until is not None:
            todo = [s for s in todo if STAGES.index(s) <= STAGES.index(until)]
        if only is not None:
            todo = [s for s in todo if s in only]
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "config.yaml", dump_yaml(self.cfg))
        for i, stage in enumerate(STAGES, 1):
            if stage not in todo:
                continue
            self.log(f"[{i}/{len(STAGES)}] {stage}")
            t0 = time.perf_counter()
            self.current = (stage, t0)
            _seed_everything(self.cfg.seed, stage)
            getattr(self, "stage_" + stage)()
            self.current = None
            seconds = time.perf_counter() - t0
            state = self.state()
            earlier = state.get("partial", {}).pop(stage, 0.0)
            state["stages"][stage] = {"hash": self.hashes[stage], "seconds": round(earlier + seconds, 2)}
            self._save_state(state)
            self.log(f"[{i}/{len(STAGES)}] {stage} done in {duration(seconds)}")
        if (until is not None and until != "report") or (only is not None and "report" not in only):
            return {}
        return json.loads((self.out / "results.json").read_text(encoding="utf-8"))

    def interrupted(self, stage: str, seconds: float) -> None:
        """Keep the seconds an interrupted stage spent, so results.json's timings add up."""
        state = self.state()
        partial = state.setdefault("partial", {})
        partial[stage] = round(partial.get(stage, 0.0) + seconds, 2)
        self._save_state(state)

    # ----------------------------------------------------------------- each stage

    def stage_world(self) -> None:
        from .world.build import build_world

        if not self.cfg.uses_world():  # no world unless asked: a run on a user's data only
            return
        if self.cfg.world_dir:
            src = Path(self.cfg.world_dir)
            if not (src / "world.json").exists():
                raise InputError("not a world directory (no world.json); make one with `lmforge world`", path=src, field="world_dir")
            tmp = self.out / ".world.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(src, tmp)
            shutil.rmtree(self.world, ignore_errors=True)
            tmp.rename(self.world)
            return
        w = copy.deepcopy(self.cfg.world)
        w.seed = self.cfg.seed
        build_world(w, self.world, overwrite=True)

    def stage_tokenizer(self) -> None:
        from .data.prepare import CorpusConfig, PrepareConfig, run_prepare
        from .data.shards import ShardConfig

        if not self.cfg.pretrains():  # the run starts from sft.init
            return
        d = self.cfg.data
        corpus = str(self.world / "pretrain.jsonl") if d.corpus == "world" else d.corpus
        source = CorpusConfig(path=corpus, group_by=d.group_by, temperature=d.temperature, seed=self.cfg.seed)
        run_prepare(PrepareConfig(data=source, tokenizer=d.tokenizer, shards=ShardConfig(val_fraction=d.val_fraction)), self.path("tokenizer"), overwrite=True)

    def _pretrain(self, c: PretrainConfig, out: Path) -> None:
        from .train.pretrain import run_pretrain

        c.data.shards = str(self.path("tokenizer"))
        c.train.seed = self.cfg.seed
        run_pretrain(c, out)

    def stage_pretrain(self) -> None:
        if not self.cfg.pretrains():  # the run starts from sft.init
            return
        self._pretrain(copy.deepcopy(self.cfg.pretrain), self.path("pretrain"))

    def stage_pretrain_large(self) -> None:
        if not self.cfg.pretrains():  # the run starts from sft.init
            return
        c = copy.deepcopy(self.cfg.pretrain_large)
        if c.grow_from == "pretrain":  # this run's base model, grown in depth
            c.grow_from = str(self.path("pretrain"))
        self._pretrain(c, self.path("pretrain_large"))

    def stage_baselines(self) -> None:
        from .compare import run_compare

        if not self.cfg.pretrains():  # the run starts from sft.init
            return
        c = copy.deepcopy(self.cfg.baselines)
        c.data.shards = str(self.path("tokenizer"))
        c.gpt.load = str(self.path("pretrain"))  # the policy's base model, scored beside them
        c.also = list(c.also) + [f"gpt_large={self.path('pretrain_large')}"]  # and the larger one
        c.rnn.train.seed = self.cfg.seed
        run_compare(c, self.path("baselines"), log=self.log)

    def _sft(self, c: SFTConfig, out: Path) -> None:
        from .train.sft import run_sft

        c.init = c.init or str(self.path("pretrain"))
        # The data order stays the section's own seed (the recipe's, 0 unless set), not the run's:
        # `lmforge sft recipes/sft.yaml init=RUN/base data.train=[RUN/world/sft.jsonl] ...` then
        # trains this very model, so anyone can check the report's baseline (issue 32). The world
        # and the base model still change with the run's seed.
        run_sft(c, out)

    def stage_sft(self) -> None:
        self._sft(copy.deepcopy(self.cfg.sft), self.path("sft"))

    def stage_sft_rm(self) -> None:
        if self.cfg.rm_from == "sft":
            self.path("sft_rm").mkdir(parents=True, exist_ok=True)  # nothing to train: the reward model starts from sft
            return
        self._sft(copy.deepcopy(self.cfg.sft_rm), self.path("sft_rm"))

    def stage_samples(self) -> None:
        if not self.cfg.uses_samples():  # the preferences are the user's own: nothing to sample and rank
            return
        self.sample(self.path("sft"), self.path("samples") / "samples.jsonl", self.cfg.seed)

    def sample(self, policy: Path, out: Path, seed: int) -> None:
        """K answers of `policy` to each of the samples section's prompts, into `out` (the samples
        stage's, and `lmforge study feedback`'s fresh draws)."""
        from .sample import SampleConfig, run_sample
        from .world.build import is_world, world_file

        s = self.cfg.samples
        prompts = world_file(self.world, s.prompts, "ppo_prompts.jsonl") if is_world(s.prompts) else s.prompts
        cfg = SampleConfig(k=s.k, max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, seed=seed, limit=s.limit or None, long="skip")
        run_sample(policy, prompts, out, cfg)

    def stage_labels(self) -> None:
        from .label import run_label

        if not self.cfg.uses_samples():
            return
        run_label(self.path("samples") / "samples.jsonl", [self.cfg.samples.labeler], self.rankings, world=str(self.world), seed=self.cfg.seed)

    def stage_rm(self) -> None:
        self.train_rm(self.path("rm"), self.rankings)

    def train_rm(self, out: Path, rankings: Path) -> None:
        """The rm section's reward model into `out`, "samples" in its data standing for `rankings`
        (the labels stage's; `lmforge study feedback`'s judge's for RLAIF)."""
        from .train.reward import run_rm

        c = copy.deepcopy(self.cfg.rm)
        c.init = c.init or str(self.path(self.cfg.rm_from))
        c.data.train = self._data_paths(c.data.train, rankings)
        c.data.world_seed = self.cfg.seed
        c.train.seed = self.cfg.seed
        run_rm(c, out)

    def stage_ppo(self) -> None:
        self.train_rl(self.path("ppo"))

    def train_rl(self, out: Path, *, reward: Path | None = None, algorithm: str | None = None) -> None:
        """The ppo section's RL from the SFT model into `out` (another reward or preference model,
        another algorithm: `lmforge study feedback`'s RLAIF and Nash-MD)."""
        from .eval.monitor import oracle_monitor
        from .train.ppo import run_ppo

        c = copy.deepcopy(self.cfg.ppo)
        c.policy = c.policy or str(self.path("sft"))
        c.reward = str(reward) if reward else c.reward or str(self.path("rm"))
        c.algorithm = algorithm or c.algorithm
        c.seed = self.cfg.seed
        c.train.seed = self.cfg.seed
        run_ppo(c, out, monitor_factory=oracle_monitor)

    def stage_dpo(self) -> None:
        import warnings

        from .eval.monitor import oracle_monitor
        from .train.dpo import run_dpo

        c = copy.deepcopy(self.cfg.dpo)
        c.init = c.init or str(self.path("sft"))
        c.data.train = self._data_paths(c.data.train)
        c.train.seed = self.cfg.seed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # likelihood displacement is in the run's summary and the report
            run_dpo(c, self.path("dpo"), monitor_factory=oracle_monitor)

    def stage_eval(self) -> None:
        from .eval.own_data import evaluate_own_data
        from .eval.pipeline import evaluate_run

        result = evaluate_run(self, self.cfg.eval) if self.cfg.uses_world() else evaluate_own_data(self, self.cfg.eval)
        out = self.path("eval")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "eval.json", json.dumps(result, indent=2))

    def stage_report(self) -> None:
        write_report(self)


def _seed_everything(seed: int, stage: str) -> None:
    """The global generators (torch, numpy, random) set from the seed and the stage before it
    starts, so that what a stage draws does not depend on the stages run before it in this
    process: a run resumed in a new process gives the same results as an uninterrupted one."""
    import random

    import numpy as np
    import torch

    s = int(np.random.SeedSequence([seed, STAGES.index(stage)]).generate_state(1)[0])
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


def run_pipeline(cfg: RunConfig, out: str | Path, *, start: str | None = None, until: str | None = None, log: Callable[[str], None] | None = None) -> dict:
    """`lmforge run`: every stage not finished in `out` (up to `until`), then results.json's content."""
    run = Run(cfg, out, log=log)
    try:
        return run.execute(start, until)
    except BaseException:
        if run.current is not None:  # the interrupted stage keeps the time it spent
            stage, t0 = run.current
            run.interrupted(stage, time.perf_counter() - t0)
        raise
