"""The reward model: step 2 of InstructGPT (Ouyang et al. 2022, section 3.5).

A transformer with a scalar head, started from the SFT model (its unembedding replaced by one
output), reads a prompt and an answer and gives one number, read at the answer's last token.
Trained on labelers' rankings: for a prompt with K ranked answers, every one of the C(K,2)
pairs (y_w better than y_l) contributes (eq. 1)

    loss(prompt) = -1/C(K,2) * sum over pairs of log sigmoid(r(x, y_w) - r(x, y_l) - m)

and the pairs of one prompt form one element of a batch, each answer scored once (the paper
found that shuffling the pairs of a prompt across batches overfit). Options from TRL's
RewardTrainer: a margin m (constant, plus a pair's own "margin"), and a centering term
eta * mean((r_w + r_l)^2) that keeps rewards near zero.

With `prior=true` (off by default: a departure from the paper's last-token head), the reward
adds a learned linear term in the frozen init language model's log-likelihood of the answer
(`lmforge.models.transformer.AnswerPrior`): the model is saved with that LM inside it.

After training, the head's bias is shifted so that the reference answers (the SFT
demonstrations, as the paper does) have mean reward 0 before RL.

`lmforge rm [RECIPE] init=SFT [key=value ...] --out DIR` runs the stage; `reward_scores`
scores answers with a trained reward model (for evaluation, a judge, or PPO).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.comparisons import ComparisonLoader, Encoded, answer_ids, answer_start, collate, encode_comparisons, read_comparisons, split_by_prompt
from ..errors import ConfigError, InputError
from ..io import atomic_write_text
from ..models import load_model, model_config_json
from ..models.transformer import AnswerPrior, Transformer
from ..tokenizer import Tokenizer
from ..world.build import is_world
from .loop import OptimConfig, ScheduleConfig, TrainConfig, run_config_text, train


@dataclass
class RMDataConfig:
    train: list[str] = field(default_factory=lambda: ["world"])  # rankings or preference pairs (files are joined); "world": the world's comparisons.jsonl ("world:NAME": its NAME.jsonl)
    val: str = ""  # held-out comparisons; "": val_fraction of the train prompts, split by prompt
    val_fraction: float = 0.1
    limit: int = 0  # use only the first N training comparisons (0: all): how accuracy grows with data
    seq_len: int = 0  # longest prompt + answer (0: the length the base model was trained on); longer: skipped, counted
    normalize: str = "world"  # answers whose mean reward is set to 0 after training: "world" (the SFT demonstrations; with a user's data only, the best answer of each training comparison), a PATH, or ""
    world_seed: int = 0

    def validate(self) -> None:
        if not self.train:
            raise ConfigError("give at least one file of comparisons", field="train")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.val_fraction}", field="val_fraction")
        if self.limit < 0:
            raise ConfigError(f"must be >= 0, got {self.limit}", field="limit")


def _rm_train() -> TrainConfig:
    return TrainConfig(
        steps=1, batch_size=8, eval_every=0, log_every=10, save_every=100, keep_last=1,
        optim=OptimConfig(lr=1e-4, weight_decay=0.0), schedule=ScheduleConfig(kind="cosine", warmup_steps=10, min_lr_ratio=0.1),
    )  # fmt: skip


@dataclass
class RMConfig:
    init: str = ""  # the SFT model (or any transformer LM) the reward model starts from, or a reward model to train further
    data: RMDataConfig = field(default_factory=RMDataConfig)
    margin: float = 0.0  # m in log sigmoid(r_w - r_l - m), added to each pair's own margin
    center: float = 0.0  # eta: weight of mean((r_w + r_l)^2), TRL's center_rewards_coefficient (~0.01)
    epochs: float = 1.0  # passes over the comparisons (the paper trains one epoch); 0: use train.steps
    # hidden-state regularisation (Yang et al. 2024, GRM): weight of the next-token loss on each
    # comparison's top-ranked answer, read through the init's own unembedding, kept frozen, so the
    # body keeps what the language model knew; 0: the plain reward model of Ouyang et al.
    lm_coef: float = 0.0
    # add w . z(x, y) to the reward, z four numbers of the frozen init LM's log-probabilities of
    # the answer (sum, mean, min, count) and w learned with the rest (models.transformer.AnswerPrior);
    # (w starts at the fit of these four alone); false: the last-token head alone, as Ouyang et al.
    prior: bool = False
    train: TrainConfig = field(default_factory=_rm_train)  # batch_size counts comparisons (prompts), not pairs

    def validate(self) -> None:
        if not self.init:
            raise ConfigError("the reward model starts from a model: give init=PATH (the SFT model)", field="init")
        if self.center < 0:
            raise ConfigError(f"must be >= 0, got {self.center}", field="center")
        if self.epochs < 0:
            raise ConfigError(f"must be >= 0, got {self.epochs}", field="epochs")
        if self.lm_coef < 0:
            raise ConfigError(f"must be >= 0, got {self.lm_coef}", field="lm_coef")


# --------------------------------------------------------------------------- the model


def rewards_at_last(model, ids: torch.Tensor, last: torch.Tensor, positions=None, segments=None, starts=None, *, hidden: bool = False):
    """The reward of each answer: (N,), the scalar head's output at its last token, plus the
    model's answer prior if it has one (which reads the answer from `starts`). `last` and
    `starts` index the flattened (rows, width) ids; rows are right-padded answers, or packed ones
    (`positions` and `segments` from `lmforge.data.comparisons.collate`). Causal attention, so
    what follows an answer in its row changes nothing. hidden: also return the hidden states."""
    inner = getattr(model, "module", model)  # under DistributedDataParallel
    inner = getattr(inner, "_orig_mod", inner)  # under torch.compile
    h = None
    if hidden:
        h = inner.hidden(ids, positions=positions, segments=segments)  # (rows, width, d)
        scores = inner.score_head(h).squeeze(-1)
    else:
        scores = model(ids, positions=positions, segments=segments)  # through forward, as DDP needs
    r = scores.reshape(-1)[last].float()
    if getattr(inner, "prior", None) is not None:
        if starts is None:
            raise ValueError("a reward model with an answer prior needs where each answer starts")
        r = r + inner.prior(ids, starts, last, positions, segments)
    return (r, h) if hidden else r


def reward_model_from(init: str | os.PathLike) -> tuple[Transformer, Path]:
    """A reward model built on a language model's weights: same body, a scalar head instead of
    the unembedding (initialised small, Ouyang et al.: "removed the final unembedding layer").
    A reward model given as `init` is returned as it is, head and all: a later round of
    labeling trains it further on the new comparisons."""
    lm, folder = load_model(init)
    if not isinstance(lm, Transformer):
        raise InputError("the reward model is a transformer; this model is not one", path=folder, field="init")
    if lm.head_kind == "scalar":
        return lm, folder
    rm = Transformer(lm.cfg, head="scalar")
    state = {k: v for k, v in lm.state_dict().items() if not k.startswith(("lm_head.", "score_head."))}
    missing, unexpected = rm.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"score_head.weight", "score_head.bias"}:
        raise InputError(f"weights do not fit a reward model: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}", path=folder)
    # as OpenAI's lm-human-preferences initialised its reward head: N(0, 1/(d + 1))
    torch.nn.init.normal_(rm.score_head.weight, std=1.0 / math.sqrt(lm.cfg.d_model + 1))
    torch.nn.init.zeros_(rm.score_head.bias)
    rm.trained_seq_len, rm.chat_template = lm.trained_seq_len, lm.chat_template
    return rm, folder


@torch.no_grad()
def reward_scores(model, tokenizer, prompts: list, answers: list[str], finished: list[bool] | None = None, *, batch_size: int = 32) -> torch.Tensor:
    """r(x, y) for each (prompt, answer) with a trained reward model, rendered as it was trained."""
    chat = getattr(model, "chat_template", None) is not None
    finished = finished or [True] * len(answers)
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(answers), batch_size):
        seqs = [answer_ids(tokenizer, p, a, f, chat) for p, a, f in zip(prompts[i : i + batch_size], answers[i : i + batch_size], finished[i : i + batch_size])]
        if max(len(s) for s in seqs) > model.cfg.max_seq_len:
            raise InputError(f"a prompt and answer of {max(len(s) for s in seqs)} tokens exceed the reward model's context of {model.cfg.max_seq_len}")
        L = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), L), tokenizer.pad_id, dtype=torch.long)
        for j, s in enumerate(seqs):
            ids[j, : len(s)] = torch.tensor(s)
        last = torch.tensor([j * L + len(s) - 1 for j, s in enumerate(seqs)])
        starts = None
        if getattr(model, "prior", None) is not None:  # only the answer prior reads where answers start
            starts = torch.tensor([j * L + answer_start(tokenizer, p, chat) for j, p in enumerate(prompts[i : i + batch_size])]).to(device)
        out.append(rewards_at_last(model, ids.to(device), last.to(device), starts=starts).cpu())
    return torch.cat(out) if out else torch.zeros(0)


# --------------------------------------------------------------------------- the objective


def pairwise_loss(r: torch.Tensor, pairs: torch.Tensor, group: torch.Tensor, margins: torch.Tensor, margin: float = 0.0, center: float = 0.0):
    """Ouyang et al. eq. 1 on one batch: each comparison's mean over its pairs of
    -log sigmoid(r_w - r_l - m), averaged over comparisons; plus center * mean((r_w + r_l)^2).
    Returns (loss, accuracy of the batch's pairs, mean margin r_w - r_l)."""
    rw, rl = r[pairs[:, 0]], r[pairs[:, 1]]
    diff = rw - rl
    per_pair = -F.logsigmoid(diff - margins - margin)
    n_groups = int(group.max()) + 1
    count = torch.zeros(n_groups, device=r.device).index_add_(0, group, torch.ones_like(per_pair))
    per_group = torch.zeros(n_groups, device=r.device).index_add_(0, group, per_pair) / count
    loss = per_group.mean()
    if center:
        loss = loss + center * ((rw + rl) ** 2).mean()
    return loss, (diff > 0).float().mean(), diff.mean()


def best_answer_targets(batch: dict) -> torch.Tensor:
    """Next-token targets (rows * width,) for the answer of each comparison that no other beats
    (its top-ranked one), -100 elsewhere: at the position before each of its answer tokens, that
    token. The answer starts where the comparison's answers stop sharing tokens (they share the
    prompt, and whatever words they all begin with, which no target then covers)."""
    ids, last = batch["input_ids"], batch["last"]
    width = ids.shape[1]
    flat = ids.reshape(-1)
    if batch.get("positions") is not None:
        starts = last - batch["positions"].reshape(-1)[last]  # packed: where each answer's sequence begins
    else:
        starts = (last // width) * width
    targets = torch.full_like(flat, -100)
    pairs, group = batch["pairs"].tolist(), batch["group"].tolist()
    answers_of: dict[int, set[int]] = {}
    for (w, l), g in zip(pairs, group):
        answers_of.setdefault(g, set()).update((w, l))
    losers = {l for _, l in pairs}
    for members in answers_of.values():
        seqs = {a: flat[int(starts[a]) : int(last[a]) + 1].tolist() for a in members}
        shared = min(len(x) for x in seqs.values())
        first = next(iter(seqs.values()))
        for i in range(shared):
            if any(x[i] != first[i] for x in seqs.values()):
                shared = i
                break
        shared = max(shared, 1)  # the first token has no position before it in its own sequence
        for a in members - losers:
            begin, n = int(starts[a]), len(seqs[a])
            if shared < n:  # predict tokens shared..n-1 from the positions before them
                targets[begin + shared - 1 : begin + n - 1] = flat[begin + shared : begin + n]
    return targets


def rm_loss(margin: float = 0.0, center: float = 0.0, lm_coef: float = 0.0, unembedding: torch.Tensor | None = None):
    """The reward model's objective: Ouyang et al. eq. 1 (`pairwise_loss`), plus, with lm_coef,
    GRM's text-generation regulariser: lm_coef x the next-token loss of the top-ranked answers,
    the body's hidden states read through the init's frozen `unembedding` (vocab, d_model)."""

    def objective(model, batch: dict):
        extra = {}
        scored = rewards_at_last(model, batch["input_ids"], batch["last"], batch.get("positions"), batch.get("segments"), batch.get("starts"), hidden=bool(lm_coef))
        r, h = scored if lm_coef else (scored, None)
        if lm_coef:
            logits = F.linear(h, unembedding.to(device=h.device, dtype=h.dtype)).reshape(-1, unembedding.shape[0]).float()
            lm = F.cross_entropy(logits, best_answer_targets(batch).to(h.device), ignore_index=-100)
        loss, acc, gap = pairwise_loss(r, batch["pairs"], batch["group"], batch["margins"], margin, center)
        if lm_coef:
            loss = loss + lm_coef * lm
            extra["lm_loss"] = float(lm.detach())
        return loss, {"tokens": int(batch["input_ids"].numel()), "accuracy": float(acc.detach()), "reward_gap": float(gap.detach()), "pairs": int(len(batch["pairs"])), **extra}

    return objective


@torch.no_grad()
def evaluate_pairs(model, data: list[Encoded], batch_size: int = 16, pad_id: int = 0) -> dict:
    """Held-out pairwise accuracy (ties count half) and loss (the same per-comparison mean)."""
    device = next(model.parameters()).device
    correct, pairs, loss_sum, groups = 0.0, 0, 0.0, 0
    for i in range(0, len(data), batch_size):
        b = {k: v.to(device) for k, v in collate(data[i : i + batch_size], pad_id).items()}
        r = rewards_at_last(model, b["input_ids"], b["last"], b.get("positions"), b.get("segments"), b.get("starts"))
        loss, _, _ = pairwise_loss(r, b["pairs"], b["group"], b["margins"])
        diff = r[b["pairs"][:, 0]] - r[b["pairs"][:, 1]]
        correct += float((diff > 0).sum() + 0.5 * (diff == 0).sum())
        pairs += len(diff)
        n = int(b["group"].max()) + 1
        loss_sum += float(loss) * n
        groups += n
    return {"accuracy": correct / max(pairs, 1), "loss": loss_sum / max(groups, 1), "pairs": pairs}


def init_prior(prior: AnswerPrior, data: list[Encoded], batch_size: int, pad_id: int, limit: int = 512) -> dict:
    """Start the answer prior where its features alone do best: standardise each over the
    answers of `limit` comparisons spread over `data`, then fit w by the same Bradley-Terry loss (eq. 1)
    on their pairs with the language model frozen (a 4-parameter logistic regression). Training
    then moves w with the rest; from 0, Adam's steps of about the learning rate each (1e-3) would
    take hundreds of steps to reach weights of this size (~0.5). Returns the fit's accuracy, loss
    and weights."""
    picked = data[:: max(1, len(data) // limit)][:limit]  # spread over the files joined for training
    feats, pairs, at = [], [], 0
    with torch.no_grad():
        for i in range(0, len(picked), batch_size):
            b = collate(picked[i : i + batch_size], pad_id)
            feats.append(prior.features(b["input_ids"], b["starts"], b["last"], b.get("positions"), b.get("segments")))
            pairs.append(b["pairs"] + at)
            at += len(feats[-1])
    f, pairs = torch.cat(feats), torch.cat(pairs)
    mean, std = f.mean(0), (f.std(0) if len(f) > 1 else torch.ones(f.shape[1])).clamp(min=1e-3)
    z = (f - mean) / std
    dz = z[pairs[:, 0]] - z[pairs[:, 1]]
    w = torch.zeros(z.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -F.logsigmoid(dz @ w).mean() + 1e-3 * (w**2).sum()  # a little L2: correlated features, no runaway
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        prior.mean.copy_(mean)
        prior.std.copy_(std)
        prior.weight.copy_(w.detach())
        diff = dz @ w
        return {"prior_fit_accuracy": float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean()), "prior_fit_loss": float(-F.logsigmoid(diff).mean()), "prior_weight": [round(float(x), 4) for x in w]}


# --------------------------------------------------------------------------- the stage


def _world_file(cfg: RMConfig, name: str, spec: str = "world") -> str:
    from ..world.build import find_world, world_file

    try:
        world_dir = find_world(cfg.init)
    except InputError:
        raise InputError("'world' data needs the world the init model was trained on, and none was found next to it; give a PATH instead", path=cfg.init, field="data") from None
    return world_file(world_dir, spec, name)


def _normalize_answers(cfg: RMConfig) -> tuple[list, list[str]]:
    """(prompts, answers) whose mean reward is set to 0: demonstrations (messages) or comparisons' best answers."""
    from ..data.schemas import iter_validated

    path = _world_file(cfg, "sft.jsonl") if cfg.data.normalize == "world" else cfg.data.normalize
    prompts, answers = [], []
    for record, loc in iter_validated(path):
        if "messages" in record:
            msgs = record["messages"]
            if msgs[-1]["role"] != "assistant":
                raise loc.error("a reference conversation must end with an assistant turn", field="messages")
            prompts.append(msgs[:-1])
            answers.append(msgs[-1]["content"])
        elif "completion" in record and isinstance(record["completion"], str):
            prompts.append(record["prompt"])
            answers.append(record["completion"])
        elif "ranking" in record:
            prompts.append(record["prompt"])
            answers.append(record["completions"][record["ranking"][0]])
        else:
            raise loc.error("reference answers are messages, prompt/completion or ranking records", field="normalize")
    return prompts, answers


def _best_answers(comparisons: list) -> tuple[list, list[str]]:
    """(prompts, answers): of each comparison, the answers no other beat (a pair's chosen one)."""
    prompts, answers = [], []
    for c in comparisons:
        losers = {lo for _, lo in c.pairs}
        for i in sorted({w for w, _ in c.pairs} - losers):
            prompts.append(c.prompt)
            answers.append(c.completions[i])
    return prompts, answers


def run_rm(cfg: RMConfig, out: str | Path) -> dict:
    cfg.validate()
    out = Path(out)
    torch.manual_seed(cfg.train.seed)  # the new head's initialisation, whatever ran before in this process
    model, folder = reward_model_from(cfg.init)
    unembedding = None
    new_prior = cfg.prior and model.prior is None
    lm = load_model(cfg.init)[0] if cfg.lm_coef or new_prior else None  # once, for whichever needs the init LM
    if cfg.lm_coef:
        if getattr(lm, "head_kind", None) != "lm":
            raise ConfigError("needs an init with an unembedding to read the answers through (a language model, not a reward model)", field="lm_coef")
        unembedding = lm.lm_head.weight.detach().clone()
    if new_prior:
        if getattr(lm, "head_kind", None) != "lm":
            raise ConfigError("needs an init language model whose likelihood of the answers the reward adds (not a reward model without a prior)", field="prior")
        model.prior = AnswerPrior(lm.cfg)
        model.prior.lm.load_state_dict(lm.state_dict())
    del lm
    tokenizer = Tokenizer.load(folder)
    chat = model.chat_template is not None
    d = cfg.data
    seq_len = d.seq_len or model.trained_seq_len or model.cfg.max_seq_len
    if seq_len > model.cfg.max_seq_len:
        raise ConfigError(f"({seq_len}) must not exceed the base model's context ({model.cfg.max_seq_len})", field="data.seq_len")

    comparisons, stats = [], {}
    for path in d.train:
        found, s = read_comparisons(_world_file(cfg, "comparisons.jsonl", path) if is_world(path) else path)
        comparisons += found
        stats = {k: stats.get(k, 0) + v for k, v in s.items()}
    if d.val:
        train_c, (val_c, _) = comparisons, read_comparisons(d.val)
    else:
        train_c, val_c = split_by_prompt(comparisons, d.val_fraction)
    if d.limit:
        train_c = train_c[: d.limit]
    train_data, skipped = encode_comparisons(train_c, tokenizer, max_len=seq_len, chat=chat)
    val_data, val_skipped = encode_comparisons(val_c, tokenizer, max_len=seq_len, chat=chat)
    stats.update({"train_comparisons": len(train_data), "val_comparisons": len(val_data), "skipped_too_long": skipped + val_skipped})

    if new_prior:  # (a resumed run gets the same from its checkpoint)
        stats.update(init_prior(model.prior, train_data, cfg.train.batch_size, tokenizer.pad_id))

    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    batches = ComparisonLoader(train_data, cfg.train.batch_size, seed=cfg.train.seed, rank=rank, world_size=world_size, pad_id=tokenizer.pad_id, shrink=True)
    cfg.train.batch_size = batches.batch_size  # smaller when the data has fewer comparisons than one batch (warned)
    if cfg.epochs > 0:
        cfg.train.steps = max(1, math.ceil(cfg.epochs * batches.batches_per_epoch))
    cfg.data.seq_len = seq_len
    out.mkdir(parents=True, exist_ok=True)
    text = run_config_text(cfg, out)
    atomic_write_text(out / "config.yaml", text)

    evaluate = (lambda m: evaluate_pairs(m, val_data, cfg.train.batch_size, tokenizer.pad_id)) if val_data else None  # noqa: E731
    if evaluate is None:
        warnings.warn("the reward model trains with no held-out comparisons (data.val_fraction is 0 or too few prompts): no held-out accuracy", stacklevel=2)
    model_config = {**model_config_json(model), "trained_seq_len": seq_len, "chat_template": model.chat_template}
    last = train(
        model, rm_loss(cfg.margin, cfg.center, cfg.lm_coef, unembedding), batches, cfg.train, out,
        model_config=model_config, tokenizer=tokenizer, evaluate=evaluate,
        log_config={"config": text},
    )  # fmt: skip

    offset = 0.0
    if d.normalize and rank == 0:  # shift the head so the reference answers score 0 on average
        final, _ = load_model(out)
        if d.normalize == "world" and not any(is_world(p) for p in d.train) and not any(c.task for c in train_c):  # a user's own data: their best answers
            prompts, answers = _best_answers(train_c)
        else:
            prompts, answers = _normalize_answers(cfg)
        fits = [i for i, (p, a) in enumerate(zip(prompts, answers)) if len(answer_ids(tokenizer, p, a, True, chat)) <= final.cfg.max_seq_len]
        if not fits:
            raise InputError("no reference answer fits the reward model's context", field="data.normalize")
        offset = float(reward_scores(final, tokenizer, [prompts[i] for i in fits], [answers[i] for i in fits]).mean())
        state = {k: v.clone() for k, v in final.state_dict().items()}
        state["score_head.bias"] -= offset
        from ..checkpoint import save_model

        save_model(out, state, model_config, tokenizer)
    atomic_write_text(out / "reward_stats.json", json.dumps({**stats, "normalize_offset": offset}, indent=2))
    return {**last, "steps": cfg.train.steps, "normalize_offset": offset, "data": stats}
