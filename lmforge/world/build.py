"""`lmforge world`: generate the built-in world and write every split in standard formats.

    DIR/world.json          entities and facts, labelers (with their calibrated temperature), config
    DIR/pretrain.jsonl      {"text", "genre"}                       the pretraining corpus
    DIR/sft.jsonl           {"messages", "task", "meta", "labeler"} demonstrations (TRL conversational),
                                                                    written by the labelers
    DIR/sft_val.jsonl       the same, held out for validation loss
    DIR/comparisons.jsonl   {"prompt", "completions", "ranking", "labeler", "finished", "task", "meta"}
                            K = 4..9 answers from the synthetic response mixture, ranked best first
    DIR/pairs.jsonl         {"prompt", "chosen", "rejected"}        the best answer against each other
    DIR/ppo_prompts.jsonl   {"prompt", "task", "meta"}              prompts for RL
    DIR/eval.jsonl          {"prompt", "task", "meta"}              held-out prompts: combinations
                                                                    (entity and attribute, operands,
                                                                    lists) no training prompt uses
    DIR/heldout.jsonl       multilingual worlds: held-out documents, each in every language
    DIR/sft_{en,translated,multilingual,en_prompts}.jsonl
                            multilingual worlds: demonstrations for mT0's four instruction-tuning
                            settings (English only, translate-train, native, English instructions)
    DIR/{comparisons,ppo_prompts}_en.jsonl
                            multilingual worlds: the English records alone (alignment on English
                            preferences, evaluated in every language)
    DIR/manifest.json       counts, and the sha256 of every file

With `languages` (`lmforge.world.languages`), the world is told in English and generated
languages: every document and prompt is drawn in one language by `language_shares` and written
in it, its records say which (`language`, and `meta.language` for prompts), and the held-out
prompts (eval.jsonl) and documents (heldout.jsonl) are each in every language.

Demonstrations are written by the simulated labelers (`Labeler.write`: drafts with each
labeler's habits, the one it judges best written down), as InstructGPT's were; with
`demonstrations: reference` they are the tasks' reference answers instead (perfect writers, a
point of `lmforge study rlhf-gain`). The manifest records their mean oracle score beside the
reference answers' and the best the tasks admit.

Prompt counts follow InstructGPT's proportions (SFT ~13k, RM ~33k, PPO ~31k prompts) scaled
down by ten. Every part draws from its own random stream seeded by (seed, part), so the
output is byte-identical for a seed, and changing one part's size leaves the others alone.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..config import to_dict
from ..errors import ConfigError, InputError
from ..io import atomic_output_dir, atomic_write_text, sha256_file
from . import corpus
from .labelers import (
    Labeler,
    calibrate_temperature,
    condorcet_labelers,
    default_labelers,
    demonstration_quality,
    measure_agreement,
    mixture_pairs,
)
from .ontology import World, make_world
from .responses import sample_responses
from .tasks import TASK_MIX, Example, sample_example, words
from .writing import WritingHabits


@dataclass
class GenreMix:
    """Share of each genre in the pretraining corpus (normalised; 0 leaves a genre out)."""

    encyclopedia: float = corpus.GENRE_MIX["encyclopedia"]
    story: float = corpus.GENRE_MIX["story"]
    worksheet: float = corpus.GENRE_MIX["worksheet"]
    qa: float = corpus.GENRE_MIX["qa"]
    quiz: float = corpus.GENRE_MIX["quiz"]
    forum: float = corpus.GENRE_MIX["forum"]
    rumour: float = corpus.GENRE_MIX["rumour"]
    review: float = corpus.GENRE_MIX["review"]


@dataclass
class WorldConfig:
    seed: int = 0
    entities: int = 48  # creatures, people, towns and products together
    documents: int = 20000  # pretraining documents
    genres: GenreMix = field(default_factory=GenreMix)
    qa_good: float = corpus.QA_GOOD  # share of good answers on the corpus's Q&A and question pages
    sft_prompts: int = 1300
    sft_val_prompts: int = 100
    rm_prompts: int = 3300
    ppo_prompts: int = 3100
    eval_prompts: int = 500
    k_min: int = 4  # answers ranked per comparison prompt: K drawn from [k_min, k_max]
    k_max: int = 9
    labelers: int = 5
    population: Literal["agree", "condorcet"] = "agree"  # the labelers value what the oracle does (and one likes length); or three groups with rotated priorities whose majority is intransitive (labelers a multiple of 3)
    agreement: float = 0.73  # target agreement of two labelers, which sets their temperature
    calibration_prompts: int = 600  # prompts (x 6 pairs) used to calibrate the temperature
    demonstrations: Literal["labelers", "reference"] = "labelers"  # who writes sft.jsonl: the labelers, or the tasks' reference answers
    writing: WritingHabits = field(default_factory=WritingHabits)  # the labelers' habits on average (each scaled 0.5x to 1.5x)
    languages: list[str] = field(default_factory=list)  # e.g. [en, xv, xt]: the same world told in these languages; empty: English only, as always
    language_shares: list[float] = field(default_factory=list)  # each language's share of documents and prompts (default 0.80 / 0.15 / 0.05, normalised)
    heldout_documents: int = 300  # multilingual worlds: held-out documents, each in every language (heldout.jsonl)

    def validate(self) -> None:
        from .languages import check_codes

        self.writing.validate()
        check_codes(self.languages)
        if self.language_shares and len(self.language_shares) != len(self.languages):
            raise ConfigError(f"needs one share per language ({len(self.languages)}), got {len(self.language_shares)}", field="language_shares")
        if self.language_shares and (min(self.language_shares) <= 0 or not all(math.isfinite(x) for x in self.language_shares)):
            raise ConfigError(f"shares must be positive, got {self.language_shares}", field="language_shares")
        if self.population not in ("agree", "condorcet"):
            raise ConfigError(f"expected agree or condorcet, got {self.population!r}", field="population")
        if self.population == "condorcet" and self.labelers % 3:
            raise ConfigError(f"a Condorcet population has three groups of equal size: a multiple of 3, got {self.labelers}", field="labelers")
        if self.demonstrations not in ("labelers", "reference"):
            raise ConfigError(f"expected labelers or reference, got {self.demonstrations!r}", field="demonstrations")
        if self.entities < 12:
            raise ConfigError(f"must be at least 12, got {self.entities}", field="entities")
        if not 2 <= self.k_min <= self.k_max:
            raise ConfigError(f"need 2 <= k_min <= k_max, got {self.k_min}, {self.k_max}", field="k_min")
        if not 0.5 < self.agreement < 1.0:
            raise ConfigError(f"must be between 0.5 and 1, got {self.agreement}", field="agreement")
        if not 0.0 <= self.qa_good <= 1.0:
            raise ConfigError(f"must be between 0 and 1, got {self.qa_good}", field="qa_good")
        if sum(asdict(self.genres).values()) <= 0 or min(asdict(self.genres).values()) < 0:
            raise ConfigError("genre shares must be non-negative and not all zero", field="genres")
        for name in ("documents", "sft_prompts", "rm_prompts", "ppo_prompts", "eval_prompts", "labelers", "calibration_prompts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be at least 1, got {getattr(self, name)}", field=name)


def _rng(cfg: WorldConfig, part: str) -> random.Random:
    return random.Random(f"{cfg.seed}:{part}")


def _parallel_documents(cfg: WorldConfig, voices: dict, world: World, mix: dict):
    """`heldout_documents` documents from a stream of their own, each told in every language
    (the same draws; only a sorted list's order follows the language)."""
    rng = _rng(cfg, "heldout")
    for _ in range(cfg.heldout_documents):
        state = rng.getstate()
        for code, voice in voices.items():
            rng.setstate(state)
            g, text, e = next(corpus.documents(voice, rng, 1, mix, cfg.qa_good, subjects=True))
            yield {"text": world.tell(text, code), "genre": g, "language": code, **({"entity": e} if e else {})}


def language_shares(cfg: WorldConfig) -> dict[str, float]:
    """Each language's share of the documents and prompts, normalised (English alone: 1)."""
    from .languages import DEFAULT_SHARES

    if not cfg.languages:
        return {"en": 1.0}
    raw = cfg.language_shares or [DEFAULT_SHARES.get(code, 0.05) for code in cfg.languages]
    total = sum(raw)
    return {code: x / total for code, x in zip(cfg.languages, raw)}


def _jsonl(path: Path, records) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n")
            n += 1
    return n


def load_world(directory: str | Path) -> tuple[World, list[Labeler], dict]:
    """The world, its labelers and its config from a world directory."""
    path = Path(directory) / "world.json"
    if not path.exists():
        raise InputError("not a world directory (no world.json); make one with `lmforge world --out DIR`", path=directory)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        world = World.from_json(data)
        labelers = [Labeler.from_json(d) for d in data["labelers"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(f"corrupt world file: {e}", path=path) from None
    return world, labelers, data.get("config", {})


class _Writer:
    """What `build_world` writes each record with: the world, its labelers, and each language's
    voice; every part draws from its own streams seeded by (seed, part)."""

    def __init__(self, cfg: WorldConfig, world: World, labelers: list[Labeler]):
        self.cfg, self.world, self.labelers = cfg, world, labelers
        self.multilingual = bool(cfg.languages)
        self.shares = language_shares(cfg)
        self.voices = {code: world.speaking(code) for code in self.shares}  # the world as each language tells it

    def language(self, part: str):
        """Each record's language, drawn by the shares from the part's own stream (English
        alone draws nothing, so a one-language world is what it always was)."""
        rng = _rng(self.cfg, part + ":language")
        while True:
            yield rng.choices(list(self.shares), weights=list(self.shares.values()))[0] if self.multilingual else "en"

    def uniform(self, part: str):
        """Languages drawn uniformly, from the part's own stream."""
        rng = _rng(self.cfg, part + ":language")
        while True:
            yield rng.choice(list(self.shares))

    def tag(self, meta: dict, code: str) -> dict:
        return {**meta, "language": code} if self.multilingual else meta

    def written_demos(self, part: str, n: int, codes=None):
        """(example, text, flaws, writer, language) for `n` prompts of `part`, each drawn in
        its language (by the shares, or from `codes`) and written by a labeler in English."""
        cfg = self.cfg
        rng, pen = _rng(cfg, part), _rng(cfg, part + ":writing")  # the same prompts whoever writes
        codes = codes or self.language(part)
        for _ in range(n):
            code = next(codes)
            ex = sample_example(self.voices[code], rng, split="train")
            if cfg.demonstrations == "reference":
                text, flaws, who = ex.reference, [], "reference"
            else:
                labeler = pen.choice(self.labelers)
                text, flaws, _ = labeler.write(self.world, ex, pen)
                who = labeler.name
            yield ex, text, flaws, who, code

    def demo(self, ex: Example, text: str, who: str, code: str, instruction: str | None = None) -> dict:
        """The chat record, said in `code`; with `instruction`, the prompt's instruction in that
        language and its data (and the answer) in `code`."""
        tell = self.world.tell
        prompt = tell(ex.prompt, code) if instruction is None else ex.prompt_in(instruction, code, tell)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": tell(text, code)}]
        return {"messages": messages, "task": ex.task, "meta": self.tag(ex.meta, code), "labeler": who}

    def instruction_settings(self, tmp: Path) -> dict[str, int]:
        """mT0's instruction-tuning settings (Muennighoff et al. 2023), the same number of
        demonstrations each: English only; the English ones translated, each into a language drawn
        uniformly (translate-train: a sorted list keeps its English order, as a translation would);
        native prompts in every language; and those same prompts with their instruction in English
        and their data and answer in the language (xP3's)."""
        n, counts = self.cfg.sft_prompts, {}
        english = list(self.written_demos("sft_en", n, itertools.repeat("en")))
        counts["sft_en"] = _jsonl(tmp / "sft_en.jsonl", (self.demo(ex, text, who, code) for ex, text, _, who, code in english))
        to = self.uniform("sft_translated")
        counts["sft_translated"] = _jsonl(tmp / "sft_translated.jsonl", (self.demo(ex, text, who, next(to)) for ex, text, _, who, _ in english))
        native = list(self.written_demos("sft_multilingual", n, self.uniform("sft_multilingual")))
        counts["sft_multilingual"] = _jsonl(tmp / "sft_multilingual.jsonl", (self.demo(ex, text, who, code) for ex, text, _, who, code in native))
        counts["sft_en_prompts"] = _jsonl(tmp / "sft_en_prompts.jsonl", (self.demo(ex, text, who, code, instruction="en") for ex, text, _, who, code in native))
        return counts

    def comparisons(self) -> list[dict]:
        """K synthetic answers to each RM prompt, ranked by a labeler (in English: the oracle reads
        a translation back exactly), said in the prompt's language."""
        cfg, world, tell = self.cfg, self.world, self.world.tell
        out = []
        rng, codes = _rng(cfg, "rm"), self.language("rm")
        for _ in range(cfg.rm_prompts):
            code = next(codes)
            ex = sample_example(self.voices[code], rng, split="train")
            k = rng.randint(cfg.k_min, cfg.k_max)
            resp = sample_responses(world, ex, k, rng)
            texts, finished = [t for t, _, _ in resp], [f for _, f, _ in resp]
            labeler = rng.choice(self.labelers)
            ranking = labeler.rank(world, ex.task, ex.meta, texts, finished, rng)
            out.append({"prompt": tell(ex.prompt, code), "completions": [tell(t, code) for t in texts], "ranking": ranking, "labeler": labeler.name, "finished": finished, "task": ex.task, "meta": self.tag(ex.meta, code)})
        return out

    def prompts(self, part: str, n: int, split: str):
        rng, codes = _rng(self.cfg, part), self.language(part)
        for _ in range(n):
            code = next(codes)
            ex = sample_example(self.voices[code], rng, split=split)
            yield {"prompt": self.world.tell(ex.prompt, code), "task": ex.task, "meta": self.tag(ex.meta, code)}

    def parallel(self, part: str, n: int, split: str):
        """Each held-out prompt in every language (the same draws: only a sort's order follows
        the language), so languages are compared on the same questions."""
        rng = _rng(self.cfg, part)
        for _ in range(n):
            state = rng.getstate()
            for code in self.shares:
                rng.setstate(state)
                ex = sample_example(self.voices[code], rng, split=split)
                yield {"prompt": self.world.tell(ex.prompt, code), "task": ex.task, "meta": self.tag(ex.meta, code)}

    def documents(self, mix: dict):
        """The pretraining corpus's records, each in its language."""
        cfg, rng = self.cfg, _rng(self.cfg, "pretrain")
        if not self.multilingual:
            for g, text, e in corpus.documents(self.world, rng, cfg.documents, mix, cfg.qa_good, subjects=True):  # an article's or story's entity, for clustering by entity
                yield {"text": text, "genre": g, **({"entity": e} if e else {})}
            return
        codes = self.language("pretrain")
        for _ in range(cfg.documents):
            code = next(codes)
            g, text, e = next(corpus.documents(self.voices[code], rng, 1, mix, cfg.qa_good, subjects=True))
            yield {"text": self.world.tell(text, code), "genre": g, "language": code, **({"entity": e} if e else {})}


def build_world(cfg: WorldConfig, out: str | Path, *, overwrite: bool = False, progress=None) -> dict:
    """Generate everything into `out`; returns the manifest."""
    cfg.validate()
    tick = progress or (lambda *_: None)
    world = make_world(cfg.seed, cfg.entities)
    multilingual = bool(cfg.languages)
    if multilingual:
        from .languages import make_languages

        world.languages = make_languages(cfg.seed, cfg.languages, world.names)

    # Labelers: one temperature, calibrated on the synthetic mixture to the target agreement.
    pairs = mixture_pairs(world, _rng(cfg, "calibration"), cfg.calibration_prompts)
    temperature = calibrate_temperature(np.array([a - b for a, b, *_ in pairs]), cfg.agreement)
    labelers = (condorcet_labelers if cfg.population == "condorcet" else default_labelers)(temperature, cfg.labelers, cfg.writing)
    writer = _Writer(cfg, world, labelers)
    tick("labelers")

    counts = {}
    with atomic_output_dir(out, overwrite) as tmp:
        mix = asdict(cfg.genres)
        counts["pretrain"] = _jsonl(tmp / "pretrain.jsonl", writer.documents(mix))
        if multilingual:  # the same held-out documents in every language: bits per byte compared on one content
            counts["heldout"] = _jsonl(tmp / "heldout.jsonl", _parallel_documents(cfg, writer.voices, world, mix))
        tick("pretrain")

        written: list[tuple[Example, str, list[str]]] = []

        def demos(part, n):
            for ex, text, flaws, who, code in writer.written_demos(part, n):
                if part == "sft":
                    written.append((ex, text, flaws))
                yield writer.demo(ex, text, who, code)

        counts["sft"] = _jsonl(tmp / "sft.jsonl", demos("sft", cfg.sft_prompts))
        counts["sft_val"] = _jsonl(tmp / "sft_val.jsonl", demos("sft_val", cfg.sft_val_prompts))
        demonstrations = demonstration_quality(world, written)
        if multilingual:
            counts.update(writer.instruction_settings(tmp))
        tick("sft")

        comparisons = writer.comparisons()
        counts["comparisons"] = _jsonl(tmp / "comparisons.jsonl", comparisons)
        counts["pairs"] = _jsonl(
            tmp / "pairs.jsonl",
            ({"prompt": c["prompt"], "chosen": c["completions"][c["ranking"][0]], "rejected": c["completions"][j]} for c in comparisons for j in c["ranking"][1:]),
        )
        tick("comparisons")

        ppo_prompts = list(writer.prompts("ppo", cfg.ppo_prompts, "train"))
        counts["ppo_prompts"] = _jsonl(tmp / "ppo_prompts.jsonl", ppo_prompts)
        if multilingual:  # preferences gathered in English only, as most RLHF data is
            english = lambda records: (r for r in records if r["meta"]["language"] == "en")  # noqa: E731
            counts["comparisons_en"] = _jsonl(tmp / "comparisons_en.jsonl", english(comparisons))
            counts["ppo_prompts_en"] = _jsonl(tmp / "ppo_prompts_en.jsonl", english(ppo_prompts))
        counts["eval"] = _jsonl(tmp / "eval.jsonl", (writer.parallel if multilingual else writer.prompts)("eval", cfg.eval_prompts, "eval"))
        tick("prompts")

        data = world.to_json()
        data["labelers"] = [lab.to_json() for lab in labelers]
        data["config"] = to_dict(cfg)
        if not multilingual:  # a one-language world's files stay byte for byte what they were
            for key in ("languages", "language_shares", "heldout_documents"):
                del data["config"][key]
        if cfg.population == "agree":  # and a world of the usual labelers what it was
            del data["config"]["population"]
        atomic_write_text(tmp / "world.json", json.dumps(data, indent=1, sort_keys=True) + "\n")
        manifest = {
            "seed": cfg.seed,
            **({"languages": writer.shares} if multilingual else {}),
            "counts": counts,
            "labeler_temperature": temperature,
            "demonstrations": demonstrations,
            "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.suffix in (".json", ".jsonl")},
        }
        atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def _read_jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def world_stats(directory: str | Path, *, agreement_prompts: int = 1000, seed: int = 1) -> dict:
    """What is in a world directory, and the measured agreement of two of its labelers."""
    d = Path(directory)
    world, labelers, cfg = load_world(d)
    for name in ("pretrain.jsonl", "sft.jsonl", "comparisons.jsonl", "eval.jsonl"):
        if not (d / name).exists():
            raise InputError("world directory is incomplete", path=d / name)
    genres: Counter = Counter()
    vocab: Counter = Counter()
    n_bytes = 0
    by_language: dict[str, Counter] = {}
    for r in _read_jsonl(d / "pretrain.jsonl"):
        genres[r["genre"]] += 1
        ws = words(r["text"])
        vocab.update(w.lower() for w in ws)
        n_bytes += len(r["text"].encode("utf-8"))
        if "language" in r:
            c = by_language.setdefault(r["language"], Counter())
            c.update(documents=1, bytes=len(r["text"].encode("utf-8")), words=len(ws))
    total_docs = sum(genres.values())
    tasks = {name: Counter(r["task"] for r in _read_jsonl(d / name)) for name in ("sft.jsonl", "ppo_prompts.jsonl", "eval.jsonl") if (d / name).exists()}
    ks = Counter(len(r["completions"]) for r in _read_jsonl(d / "comparisons.jsonl"))
    unbiased = [lab for lab in labelers if lab.length_bias == 0.0]
    a, b = (unbiased + labelers)[:2]
    measured = measure_agreement(world, a, b, random.Random(seed), agreement_prompts) if len(labelers) >= 2 else None
    return {
        "seed": world.seed,
        "entities": {k: len(v) for k, v in world.kinds.items()},
        "facts": len(world.facts()),
        "pretrain": {
            "documents": total_docs,
            "bytes": n_bytes,
            "words": sum(vocab.values()),
            "vocabulary": len(vocab),
            "genres": {g: round(n / total_docs, 4) for g, n in sorted(genres.items())},
            **({"languages": {code: {**c, "share": round(c["documents"] / total_docs, 4)} for code, c in by_language.items()}} if by_language else {}),
        },
        "splits": {name: sum(1 for _ in _read_jsonl(d / name)) for name in sorted(p.name for p in d.glob("*.jsonl"))},
        "tasks": {name: dict(sorted(c.items())) for name, c in tasks.items()},
        "task_mix": TASK_MIX,
        "comparisons_k": dict(sorted(ks.items())),
        "labelers": [lab.to_json() for lab in labelers],
        "labeler_agreement": {"target": cfg.get("agreement"), "measured": measured, "labelers": [a.name, b.name], "pairs_from_prompts": agreement_prompts},
        "demonstrations": _demonstration_stats(d, world, cfg),
    }


def _demonstration_stats(d: Path, world: World, cfg: dict) -> dict:
    """The manifest's record of how good the demonstrations are (written at generation time, when
    the reference and best answers were at hand), with the mean oracle score of sft.jsonl as it
    is now, measured again."""
    from .labelers import score_texts

    manifest = d / "manifest.json"
    recorded = json.loads(manifest.read_text(encoding="utf-8")).get("demonstrations", {}) if manifest.exists() else {}
    records = list(_read_jsonl(d / "sft.jsonl"))
    texts = [r["messages"][-1]["content"] for r in records]
    now = score_texts(world, [(r.get("task"), r.get("meta") or {}) for r in records], texts)
    out = dict(recorded)
    out["written_by"] = cfg.get("demonstrations", "reference answers" if not recorded else "labelers")
    if now is not None:
        out.setdefault("oracle_score", {})["written"] = round(now, 4)
    return out


def is_world(spec: str) -> bool:
    """A data setting that names the built-in world: "world" (the stage's own file) or "world:NAME"."""
    return spec == "world" or spec.startswith("world:")


def world_file(world_dir: Path, spec: str, default: str) -> str:
    """The file a "world" / "world:NAME" setting names: `default` in the world's directory, or its
    NAME.jsonl (world:comparisons_en is a multilingual world's English comparisons)."""
    name = spec.partition(":")[2]
    path = world_dir / (f"{name}.jsonl" if name else default)
    if not path.exists():
        raise InputError(f"the world has no {path.name} ({spec!r}; a multilingual world's files need `languages`)", path=world_dir)
    return str(path)


def find_world(model_path: str | Path | None) -> Path:
    """The world a model was trained on, for the stages and evaluations that follow it: its run
    directory's world/ (pretrain), the world beside the shards it was trained on (compare:
    DIR/world, DIR/data/shards), the world whose pretrain.jsonl was its corpus, or, for a fine-tuned model (config.yaml with `init:`), the
    world of the model it started from."""
    if model_path is None:
        raise InputError("give --world DIR (the world directory to take the task from)", field="world")
    path, seen = Path(model_path), []
    while True:
        run = path.parent.parent if path.parent.name == "checkpoints" else path  # a checkpoint's run directory
        seen.append(run.resolve())
        cfg = _read_run_config(run)
        candidates = [run / "world"]
        data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
        shards = data.get("shards")
        if shards:
            candidates += [Path(shards).parent / "world", Path(shards).parent.parent / "world"]
        corpus = data.get("corpus")
        if isinstance(corpus, str) and corpus != "world":  # pretrained on a world's pretrain.jsonl
            candidates.append(Path(corpus).parent)
        for d in candidates:
            if (d / "world.json").exists():
                return d
        init = cfg.get("init")
        if not init:
            break
        path = Path(init) if Path(init).exists() else run / init
        if path.resolve() in seen:
            break
    raise InputError(f"found no world directory for this model (looked in {', '.join(str(p) + '/world' for p in seen)}); give --world DIR", path=model_path)


def _read_run_config(run: Path) -> dict:
    import yaml

    f = run / "config.yaml"
    if not f.exists():
        return {}
    try:
        cfg = yaml.safe_load(f.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return {}
    return cfg if isinstance(cfg, dict) else {}
