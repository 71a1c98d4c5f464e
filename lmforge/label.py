"""Labelers: who ranks the K sampled answers, behind one interface (InstructGPT step 2).

A labeler has a `name` (written into each ranking it makes) and one method,

    rank(sample) -> list[int] | None

the indices of `sample.completions` from best to worst, or None when it cannot rank this
sample (a person who left it out; a judge whose context it does not fit): a counted skip.

`make_labelers(spec, ctx)` turns a `--labeler` spec into labelers through the `LABELERS`
registry; a new kind is a factory `(argument, ctx) -> list[Labeler]` added to it
(`register_labeler`). The kinds here:

  world            the built-in world's simulated labelers (oracle total + bias + calibrated
                   Gumbel noise); each sample goes to one of them, in turn
  world:NAME       one of them, by name (labeler-3)
  rm:MODEL_DIR     a trained reward model as judge: answers ranked by their reward
  judge:MODEL_DIR  a language model as judge (the RLAIF route, Bai et al. 2022; Lee et al.
                   2023): for every ordered pair of answers it is asked "Question ... Answer A
                   ... Answer B ... Which answer is better?" and its verdict is whichever of
                   " A" / " B" it finds more likely. Each pair is asked in both orders, so a
                   judge that always says "A" gives every answer the same number of wins; the
                   answers are ranked by wins, ties broken by summed log-odds.
  human:FILE       rankings a person made (the ranking schema), matched to samples by prompt
                   and completions; a sample nobody ranked is skipped and counted.

`run_label` reads a samples file (what `lmforge sample` writes), has each sample ranked, and
writes ranking records in the form the world's own comparisons.jsonl has:

    {"prompt", "completions", "ranking", "labeler", "finished"?, "task"?, "meta"?}

This module ranks; it does not sample (`lmforge.sample`), check rankings for training (the
reward model's reader does) or score anything against the oracle (`lmforge.eval`).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from .data.readers import Location, iter_records
from .data.schemas import check_messages, iter_validated
from .errors import InputError
from .io import atomic_write_text


@dataclass
class Sample:
    """One prompt and its K answers, as `lmforge sample` writes them."""

    prompt: str | list[dict]
    completions: list[str]
    finished: list[bool] | None = None  # None: not recorded
    task: str | None = None
    meta: dict | None = None
    model: str | None = None
    where: Location = field(default_factory=lambda: Location("<memory>", 0))

    def error(self, message: str, field: str | None = None) -> InputError:
        return self.where.error(message, field=field)


class Labeler(Protocol):
    """What `run_label` needs of a labeler. Optional extras: `labeler_of(sample) -> str`, the
    name to record when it is not `name` (a file of rankings by several people), and
    `skip_reason`, a phrase saying why it returns None."""

    name: str

    def rank(self, sample: Sample) -> list[int] | None:
        """Indices of sample.completions, best first; None: cannot rank this one (a counted skip)."""


@dataclass
class LabelContext:
    """What a labeler factory may need besides its own argument."""

    samples_path: str | None = None
    model: str | None = None  # the model that wrote the samples (to find its world)
    world: str | None = None  # --world
    seed: int = 0
    batch_size: int = 32
    device: str = "cpu"
    constitution: str = ""  # principles a judge is shown before each question (read from --constitution)


def read_constitution(path: str | Path) -> str:
    """A constitution (Bai et al. 2022, Constitutional AI): the principles a judge compares
    answers by, plain text, one or more lines. Empty or unreadable is an InputError."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InputError("no such file", path=path, field="constitution") from None
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start})", path=path, field="constitution") from None
    if not text:
        raise InputError("the constitution is empty: write the principles the judge should compare answers by, one a line", path=path, field="constitution")
    return text


# --------------------------------------------------------------------------- reading samples


def _kind(value) -> str:
    return {dict: "an object", list: "a list", type(None): "null", bool: "a boolean"}.get(type(value), type(value).__name__)


def sample_of(record: dict, loc: Location) -> Sample:
    """A sample record, checked: prompt (text or messages), completions (K >= 2 strings),
    finished (K booleans, optional), task (string) and meta (object), optional."""
    if "prompt" not in record:
        raise loc.error(f"missing (record has: {', '.join(map(str, record)) or 'no fields'})", field="prompt")
    prompt = record["prompt"]
    if isinstance(prompt, list):
        check_messages(prompt, loc, "prompt")
    elif not isinstance(prompt, str):
        raise loc.error(f"must be a string or a list of messages, got {_kind(prompt)}", field="prompt")
    if "completions" not in record:
        raise loc.error(f"missing (record has: {', '.join(map(str, record))})", field="completions")
    completions = record["completions"]
    if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
        raise loc.error("must be a list of strings", field="completions")
    if len(completions) < 2:
        raise loc.error(f"needs at least 2 answers to rank, got {len(completions)} (sample with --k 2 or more)", field="completions")
    finished = record.get("finished")
    if finished is not None and (not isinstance(finished, list) or not all(isinstance(f, bool) for f in finished) or len(finished) != len(completions)):
        raise loc.error(f"must be a list of {len(completions)} booleans, one per completion", field="finished")
    task, meta, model = record.get("task"), record.get("meta"), record.get("model")
    if task is not None and not isinstance(task, str):
        raise loc.error(f"must be a string, got {_kind(task)}", field="task")
    if meta is not None and not isinstance(meta, dict):
        raise loc.error(f"must be an object, got {_kind(meta)}", field="meta")
    if model is not None and not isinstance(model, str):
        raise loc.error(f"must be a string, got {_kind(model)}", field="model")
    return Sample(prompt, completions, finished, task, meta, model, loc)


def read_samples(path: str | Path, limit: int | None = None) -> list[Sample]:
    out = []
    for record, loc in iter_records(path):
        if limit is not None and len(out) >= limit:
            break
        out.append(sample_of(record, loc))
    return out


def prompt_key(prompt: str | list[dict], completions: list[str]) -> str:
    """What identifies a sample: its prompt and its answers, in order."""
    return json.dumps([prompt, completions], ensure_ascii=False, sort_keys=True)


def prompt_text(prompt: str | list[dict]) -> str:
    """A prompt as plain text: itself, a single user turn's content, or the turns one per line."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1:
        return prompt[0]["content"]
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


# --------------------------------------------------------------------------- the world's labelers


class WorldLabeler:
    """One of the built-in world's simulated labelers. It judges by the oracle, so it needs the
    sample's task and meta (carried from the world's prompt files) and which answers finished.
    Its noise for a sample comes from a generator seeded by (seed, its name, the sample's line), so a
    ranking does not depend on which other samples were labeled before it."""

    def __init__(self, world, labeler, seed: int = 0):
        self.world, self.labeler, self.seed = world, labeler, seed
        self.name = labeler.name

    def rank(self, sample: Sample) -> list[int]:
        from .world.tasks import TASKS

        if sample.task is None or sample.meta is None:
            missing = "task" if sample.task is None else "meta"
            raise sample.error("missing; the world's labelers judge a world prompt by its task and meta (sample from the world's ppo_prompts.jsonl or eval.jsonl)", field=missing)
        if sample.task not in TASKS:
            raise sample.error(f"unknown world task {sample.task!r}; expected one of {', '.join(TASKS)}", field="task")
        if sample.finished is None:
            raise sample.error("missing; the world's labelers need to know which answers ended by themselves", field="finished")
        rng = random.Random(f"{self.seed}:{self.name}:{sample.where.line}")
        try:
            return self.labeler.rank(self.world, sample.task, sample.meta, sample.completions, sample.finished, rng)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise sample.error(f"does not fit this world ({type(e).__name__}: {e}); is --world the world these prompts came from?", field="meta") from None


def _world_labelers(arg: str | None, ctx: LabelContext) -> list[Labeler]:
    from .world.build import find_world, load_world

    if ctx.world:
        world_dir = Path(ctx.world)
    elif ctx.model:
        try:
            world_dir = find_world(ctx.model)
        except InputError as e:
            raise InputError(f"no world found for the samples' model {ctx.model} ({e.message}); give --world DIR", field="world") from None
    else:
        raise InputError("the samples do not name their model, so their world cannot be found; give --world DIR", field="world")
    world, labelers, _ = load_world(world_dir)
    if arg is None:
        return [WorldLabeler(world, lab, ctx.seed) for lab in labelers]
    chosen = [lab for lab in labelers if lab.name == arg]
    if not chosen:
        raise InputError(f"the world has no labeler {arg!r}; it has {', '.join(lab.name for lab in labelers)}", field="labeler")
    return [WorldLabeler(world, chosen[0], ctx.seed)]


# --------------------------------------------------------------------------- a model as judge


JUDGE_QUESTION = "Which answer is better?"


def judge_question(question: str, a: str, b: str, constitution: str = "") -> str:
    """The text a judge is asked about answer a (shown as A) against b (shown as B); with a
    constitution, its principles first."""
    principles = f"Compare the answers by these principles:\n{constitution}\n" if constitution else ""
    return f"{principles}Question: {question}\nAnswer A: {a}\nAnswer B: {b}\n{JUDGE_QUESTION}"


def judge_demonstrations(comparisons: list, *, pairs_per_comparison: int = 0, seed: int = 0) -> list[dict]:
    """SFT conversations that teach a chat model to be a judge: for each labelled pair (better,
    worse) of each comparison (lmforge.data.comparisons.Comparison), the judge's question with the
    better answer shown first and the reply "A", and with it shown second and the reply "B" - both
    orders, so the verdict cannot be learnt from the position (the bias a judge asked once has:
    Zheng et al. 2023). The reply is the token the judge is scored by (" A" after the assistant
    tag), so a model fine-tuned on these is a `judge:MODEL_DIR` as it stands.

    pairs_per_comparison: at most that many pairs of each comparison, drawn at random (0: all)."""
    rng = random.Random(seed)
    out = []
    for c in comparisons:
        pairs = list(c.pairs)
        if pairs_per_comparison and len(pairs) > pairs_per_comparison:
            pairs = rng.sample(pairs, pairs_per_comparison)
        q = prompt_text(c.prompt)
        for w, lo in pairs:
            for first, second, verdict in ((w, lo, "A"), (lo, w, "B")):
                out.append({"messages": [{"role": "user", "content": judge_question(q, c.completions[first], c.completions[second])}, {"role": "assistant", "content": verdict}]})
    rng.shuffle(out)
    return out


def best_demonstrations(comparisons: list) -> tuple[list[dict], dict]:
    """Expert iteration / rejection-sampling fine-tuning's data (Anthony et al. 2017; Dong et al.
    2023, RAFT; Gulcehre et al. 2023, ReST): of each ranking of K sampled answers, the one ranked
    above every other, as an SFT demonstration ({"prompt", "completion"}, or {"messages"} with the
    answer as the assistant's turn when the prompt is a conversation). The best may be sampled
    more than once (pairs of identical answers are no comparison and were dropped): one text.
    An answer that never ended is no demonstration, nor is an empty one (SFT data must have an
    answer to learn), nor a ranking with no answer above all others (pairs only); each is counted:
    (records, {"kept", "unfinished", "empty", "no_best"})."""
    out, counts = [], {"kept": 0, "unfinished": 0, "empty": 0, "no_best": 0}
    for c in comparisons:
        losers = {lo for _, lo in c.pairs}
        best = {w for w, _ in c.pairs} - losers
        if len({(c.completions[i], c.finished[i]) for i in best}) != 1:
            counts["no_best"] += 1
            continue
        i = best.pop()
        if not c.finished[i]:
            counts["unfinished"] += 1
            continue
        answer = c.completions[i]
        if not answer.strip():
            counts["empty"] += 1
            continue
        out.append({"messages": [*c.prompt, {"role": "assistant", "content": answer}]} if isinstance(c.prompt, list) else {"prompt": c.prompt, "completion": answer})
        counts["kept"] += 1
    return out, counts


class JudgeLabeler:
    """A language model that compares two answers by the log-probability of its verdict.

    For answers a (shown as A) and b (shown as B) it scores log p(" A") - log p(" B") after

        Question: {prompt}\\nAnswer A: {a}\\nAnswer B: {b}\\nWhich answer is better? Answer:

    (a chat model gets the same text as a user turn, minus the final "Answer:", and its reply is
    the assistant's turn). Every ordered pair is asked, so each pair twice, once in each order.
    """

    def __init__(self, model, tok, name: str, batch_size: int = 32, constitution: str = ""):
        self.model, self.tok, self.name, self.batch_size, self.constitution = model, tok, name, batch_size, constitution
        self.as_chat = getattr(model, "chat_template", None) is not None
        self.skip_reason = "a question with two of the answers does not fit the judge's context"

    def prompt(self, question: str, a: str, b: str) -> tuple[list[int], list[int], list[int]]:
        """(prompt ids, " A" ids, " B" ids) asking whether a (shown first) beats b."""
        from .data import chat

        text = judge_question(question, a, b, self.constitution)
        if self.as_chat:
            ids = chat.prompt_ids(self.tok, [{"role": "user", "content": text}])
            return ids, self.tok.encode_plain(" A"), self.tok.encode_plain(" B")
        text += " Answer:"
        ids = [self.tok.eos_id, *self.tok.encode(text)]
        return ids, self._after(text, ids, " A"), self._after(text, ids, " B")

    def fits(self, question: str, a: str, b: str) -> bool:
        """Whether the question about a (shown first) and b, with either verdict, fits the judge's context."""
        return self._fits(*self.prompt(question, a, b))

    def _fits(self, ids: list[int], a: list[int], b: list[int]) -> bool:
        return len(ids) + max(len(a), len(b)) <= self.model.cfg.max_seq_len

    def _after(self, text: str, ids: list[int], verdict: str) -> list[int]:
        full = [self.tok.eos_id, *self.tok.encode(text + verdict)]
        return full[len(ids) :] if full[: len(ids)] == ids else self.tok.encode(verdict)

    def verdicts(self, asked: list[tuple[str, str, str]]) -> list[float] | None:
        """log p(" A") - log p(" B") for each (question, answer shown as A, answer shown as B);
        None if a question does not fit the judge's context."""
        import torch

        from .engine import sequence_logprobs

        prompts, conts = [], []
        for q, first, second in asked:
            ids, a, b = self.prompt(q, first, second)
            if not self._fits(ids, a, b):
                return None
            prompts += [ids, ids]
            conts += [a, b]
        scores = []
        with torch.no_grad():
            for lo in range(0, len(prompts), self.batch_size):
                scores += sequence_logprobs(self.model, prompts[lo : lo + self.batch_size], conts[lo : lo + self.batch_size], pad_id=self.tok.pad_id).tolist()
        return [scores[2 * n] - scores[2 * n + 1] for n in range(len(asked))]

    def log_odds(self, sample: Sample) -> dict[tuple[int, int], float] | None:
        """The verdict's log-odds for every ordered pair (i shown as A, j as B); None if a
        question does not fit the judge's context."""
        q, c = prompt_text(sample.prompt), sample.completions
        pairs = [(i, j) for i in range(len(c)) for j in range(len(c)) if i != j]
        d = self.verdicts([(q, c[i], c[j]) for i, j in pairs])
        return None if d is None else dict(zip(pairs, d))

    def preference(self, questions: list[str], a: list[str], b: list[str]):
        """P(a_i > b_i) for each question, as a pairwise preference model (Nash learning's
        P(y > y' | x), Munos et al. 2023): each pair asked in both orders, and with d the
        verdict's log-odds the position's share removed,

            P(a > b) = sigmoid((d(a shown first) - d(b shown first)) / 2),

        so P(a > b) + P(b > a) = 1 whatever the judge's position bias. A tensor (N,); a pair whose
        question does not fit the judge's context is an InputError."""
        import torch

        d = self.verdicts([x for q, y, z in zip(questions, a, b) for x in ((q, y, z), (q, z, y))])
        if d is None:
            raise InputError(f"{self.skip_reason} (the context is {self.model.cfg.max_seq_len} tokens)")
        d = torch.tensor(d).view(-1, 2)
        return torch.sigmoid((d[:, 0] - d[:, 1]) / 2)

    def rank(self, sample: Sample) -> list[int] | None:
        odds = self.log_odds(sample)
        if odds is None:
            return None
        return rank_by_verdicts(len(sample.completions), odds)


def rank_by_verdicts(k: int, odds: dict[tuple[int, int], float]) -> list[int]:
    """Answers ranked by pairwise wins (each ordered presentation a verdict), ties broken by the
    summed log-odds in each answer's favour, then by index."""
    wins, total = [0] * k, [0.0] * k
    for (i, j), d in odds.items():  # d > 0: i (shown first) preferred over j
        if d > 0:
            wins[i] += 1
        elif d < 0:
            wins[j] += 1
        total[i] += d
        total[j] -= d
    return sorted(range(k), key=lambda i: (-wins[i], -total[i], i))


def _judge(arg: str | None, ctx: LabelContext) -> list[Labeler]:
    from .models import load_model
    from .tokenizer import Tokenizer

    if not arg:
        raise InputError("judge needs a model: --labeler judge:MODEL_DIR", field="labeler")
    model, folder = load_model(arg, ctx.device)
    return [JudgeLabeler(model.eval(), Tokenizer.load(folder), f"judge:{arg}", ctx.batch_size, ctx.constitution)]


# --------------------------------------------------------------------------- rankings a person made


class HumanLabels:
    """Rankings read from a file in the ranking schema, matched to samples by prompt and
    completions. The labeler named in a record (default "human") is kept."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.name = "human"
        self.skip_reason = f"no ranking of the sample in {path}"
        self.rankings: dict[str, tuple[list[int], str]] = {}
        for record, loc in iter_validated(path, "ranking"):
            key = prompt_key(record["prompt"], record["completions"])
            self.rankings.setdefault(key, (record["ranking"], record.get("labeler") or "human"))
        self.used: set[str] = set()

    def rank(self, sample: Sample) -> list[int] | None:
        key = prompt_key(sample.prompt, sample.completions)
        found = self.rankings.get(key)
        if found is None:
            return None
        self.used.add(key)
        return found[0]

    def labeler_of(self, sample: Sample) -> str:
        return self.rankings[prompt_key(sample.prompt, sample.completions)][1]

    @property
    def unused(self) -> int:
        """Rankings in the file that matched no sample."""
        return len(self.rankings) - len(self.used)


def _human(arg: str | None, ctx: LabelContext) -> list[Labeler]:
    if not arg:
        raise InputError("human needs a file of rankings: --labeler human:RANKINGS.jsonl", field="labeler")
    return [HumanLabels(arg)]


# --------------------------------------------------------------------------- a reward model as judge


class RewardModelLabeler:
    """A trained reward model ranks the answers by their reward (the RLAIF route with a reward
    model: Bai et al. 2022). Deterministic; ties keep the answers' order."""

    def __init__(self, model, tokenizer, name: str, batch_size: int = 32):
        self.model, self.tokenizer, self.name, self.batch_size = model, tokenizer, name, batch_size
        self.skip_reason = "an answer too long for the reward model's context"

    def rank(self, sample: Sample) -> list[int] | None:
        from .train.reward import reward_scores

        finished = sample.finished or [True] * len(sample.completions)
        try:
            r = reward_scores(self.model, self.tokenizer, [sample.prompt] * len(sample.completions), sample.completions, finished, batch_size=self.batch_size)
        except InputError:  # does not fit the context
            return None
        return sorted(range(len(sample.completions)), key=lambda i: -float(r[i]))


def _reward_model(arg: str | None, ctx: LabelContext) -> list[Labeler]:
    from .models import load_model
    from .tokenizer import Tokenizer

    if not arg:
        raise InputError("rm needs a reward model: --labeler rm:MODEL_DIR", field="labeler")
    model, folder = load_model(arg, ctx.device)
    if model.head_kind != "scalar":
        raise InputError("not a reward model (its head is a language model's); use judge: for a language model", path=arg, field="labeler")
    return [RewardModelLabeler(model.eval(), Tokenizer.load(folder), f"rm:{arg}", ctx.batch_size)]


# --------------------------------------------------------------------------- the registry


LABELERS: dict[str, Callable[[str | None, LabelContext], list[Labeler]]] = {"world": _world_labelers, "judge": _judge, "human": _human, "rm": _reward_model}
SPEC_HELP = "world, world:NAME, judge:MODEL_DIR, rm:REWARD_MODEL_DIR, human:RANKINGS.jsonl"


def register_labeler(kind: str, factory: Callable[[str | None, LabelContext], list[Labeler]], spec_help: str | None = None) -> None:
    """Add a kind of labeler: `--labeler KIND[:ARG]` calls factory(ARG or None, ctx)."""
    global SPEC_HELP
    LABELERS[kind] = factory
    if spec_help:
        SPEC_HELP += f", {spec_help}"


def make_labelers(spec: str, ctx: LabelContext) -> list[Labeler]:
    """The labelers a `--labeler` spec names (KIND or KIND:ARG)."""
    kind, sep, arg = spec.partition(":")
    if kind not in LABELERS:
        raise InputError(f"unknown labeler {spec!r}; expected one of: {SPEC_HELP}", field="labeler")
    return LABELERS[kind](arg if sep else None, ctx)


# --------------------------------------------------------------------------- labeling a samples file


def ranking_record(sample: Sample, ranking: list[int], labeler: str) -> dict:
    record = {"prompt": sample.prompt, "completions": sample.completions, "ranking": ranking, "labeler": labeler}
    if sample.finished is not None:
        record["finished"] = sample.finished
    if sample.task is not None:
        record["task"] = sample.task
    if sample.meta is not None:
        record["meta"] = sample.meta
    return record


def run_label(
    samples_path: str | Path,
    specs: list[str],
    out: str | Path,
    *,
    world: str | None = None,
    each: bool = False,
    seed: int = 0,
    limit: int | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    constitution: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Rank every sample and write the rankings; returns a summary.

    With several labelers (`world`, or several specs), each sample goes to one of them in
    turn; with `each`, every labeler ranks every sample (one record each, e.g. to measure their
    agreement). `progress(samples done, samples in all)` is called after each sample."""
    if limit is not None and limit < 1:
        raise InputError(f"must be >= 1, got {limit}", field="limit")
    if not specs:
        raise InputError(f"give a labeler: {SPEC_HELP}", field="labeler")
    samples = read_samples(samples_path, limit)  # every sample checked before any ranking
    model = next((s.model for s in samples if s.model), None)
    ctx = LabelContext(samples_path=str(samples_path), model=model, world=world, seed=seed, batch_size=batch_size, device=device, constitution=constitution)
    labelers = [lab for spec in specs for lab in make_labelers(spec, ctx)]

    records, counts, skipped = [], {}, {}
    start = time.perf_counter()
    for n, sample in enumerate(samples):
        for lab in labelers if each else [labelers[n % len(labelers)]]:
            ranking = lab.rank(sample)
            if ranking is None:
                skipped[lab.name] = skipped.get(lab.name, 0) + 1
                continue
            if sorted(ranking) != list(range(len(sample.completions))):  # a labeler's bug, not the user's
                raise RuntimeError(f"labeler {lab.name} returned {ranking}, not a permutation of 0..{len(sample.completions) - 1}")
            name = lab.labeler_of(sample) if hasattr(lab, "labeler_of") else lab.name
            records.append(ranking_record(sample, ranking, name))
            counts[name] = counts.get(name, 0) + 1
        if progress:
            progress(n + 1, len(samples))
    seconds = time.perf_counter() - start
    reasons = {lab.name: lab.skip_reason for lab in labelers if lab.name in skipped and getattr(lab, "skip_reason", None)}
    if not records:
        why = "; ".join(f"{name}: {r}" for name, r in reasons.items())
        raise InputError(f"no sample was ranked ({sum(skipped.values())} skipped{': ' + why if why else ''})", path=samples_path)

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    summary = {
        "samples": len(samples),
        "rankings": len(records),
        "skipped": sum(skipped.values()),
        "labelers": dict(sorted(counts.items())),
        "skipped_by": dict(sorted(skipped.items())),
        "seconds": round(seconds, 2),
        "out": str(out),
    }
    if reasons:
        summary["skip_reasons"] = reasons
    humans = [lab for lab in labelers if isinstance(lab, HumanLabels)]
    if humans:
        summary["human_rankings_unused"] = sum(lab.unused for lab in humans)  # rankings that matched no sample
    return summary
