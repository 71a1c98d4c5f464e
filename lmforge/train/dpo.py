"""Direct preference optimisation: the policy learns from comparisons with no reward model and no
RL (Rafailov et al. 2023), and its relatives IPO, conservative DPO, hinge (SLiC) and KTO.

The policy's log-ratio to the reference (the SFT model) is an implicit reward,
r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)), and the comparisons are fitted with it. With
l = log pi(y|x) - log pi_ref(y|x) summed over the answer's tokens (the prompt is context only)
and delta = l_chosen - l_rejected, each pair's loss is (`loss=`):

  dpo    -log sigmoid(beta * delta)                                   Rafailov et al. eq. 7
  cdpo   -(1 - eps) log sigmoid(beta delta) - eps log sigmoid(-beta delta)
         (conservative DPO: the labels are trusted with probability 1 - eps, `label_smoothing`)
  ipo    (delta_avg - 1 / (2 beta))^2, delta_avg from per-token *averaged* log-ratios
         (Azar et al. 2023, eq. 17, as its authors specify)
  hinge  max(0, 1 - beta * delta)                                     SLiC (Zhao et al. 2023)
  kto    unpaired: an answer marked desirable or not (Ethayarajh et al. 2024, eq. 8):
         desirable   lambda_D * (1 - sigmoid(beta (l - z)))
         undesirable lambda_U * (1 - sigmoid(beta (z - l)))
         z, the reference point, is a batch estimate of KL(pi || pi_ref): the mean log-ratio of
         answers paired with other examples' prompts, clamped at 0, no gradient through it.

Data: the comparisons of `lmforge.data.comparisons` (K-way rankings, expanded to their C(K,2)
pairs or only best vs worst; TRL's preference pairs), or TRL's unpaired records
{"prompt", "completion", "label"} for KTO (a ranking gives KTO its best answer as desirable and
its worst as undesirable). As for the reward model, the pairs of one prompt stay in one batch
element: each answer's log-probability is computed once and the loss averages over the
prompt's pairs.

The reference's log-probabilities are computed once before training and stored with the data
(`reference_logps.npz` in the run directory, reused on resume), so no reference model is in
memory while training; `reference=online` keeps the reference and computes them each step.

Logged: the implicit-reward accuracy (chosen above rejected), the margin beta * delta, the
chosen and rejected log-ratios to the reference and the policy's log-probabilities. Both
log-ratios falling (the chosen answer losing probability too, only less than the rejected) is a
known failure of DPO (Pal et al. 2024); the run reports it.

`lmforge dpo [RECIPE] init=SFT [key=value ...] --out DIR` runs the stage.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..data.comparisons import Comparison, ComparisonLoader, fill_rows, read_comparisons, split_by_prompt
from ..errors import ConfigError, InputError
from ..io import atomic_write_text
from ..models.lora import LoRAConfig, apply_lora
from .loop import OptimConfig, ScheduleConfig, TrainConfig, pick_device, run_config_text, train

LOSSES = ("dpo", "cdpo", "ipo", "hinge", "kto")


# --------------------------------------------------------------------------- configuration


@dataclass
class DPODataConfig:
    train: list[str] = field(default_factory=lambda: ["world"])  # rankings, preference pairs or (kto) unpaired records; "world": the world's comparisons.jsonl ("world:NAME": its NAME.jsonl)
    val: str = ""  # held-out comparisons; "": val_fraction of the train prompts, split by prompt
    val_fraction: float = 0.05
    pairs: Literal["all", "best_worst"] = "all"  # a ranking of K answers: all its C(K,2) pairs, or only best vs worst
    limit: int = 0  # the first N training comparisons only (0: all)
    seq_len: int = 0  # longest prompt + answer (0: the length the model was trained on)
    long: Literal["skip", "error"] = "skip"  # an answer that does not fit seq_len: skipped (counted), or an error naming it

    def validate(self) -> None:
        if not self.train:
            raise ConfigError("give at least one file of comparisons", field="data.train")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.val_fraction}", field="data.val_fraction")
        if self.limit < 0:
            raise ConfigError(f"must be >= 0, got {self.limit}", field="data.limit")


@dataclass
class DPOEvalConfig:
    prompts: str = "world"  # held-out prompts answered greedily at each evaluation; "world": eval.jsonl; "": none
    limit: int = 100
    max_new_tokens: int = 48


def _dpo_train() -> TrainConfig:
    return TrainConfig(
        steps=1, batch_size=8, eval_every=0, log_every=10, save_every=100, keep_last=1,
        optim=OptimConfig(lr=1e-5, weight_decay=0.0), schedule=ScheduleConfig(kind="cosine", warmup_steps=10, min_lr_ratio=0.1),
    )  # fmt: skip


@dataclass
class DPOConfig:
    init: str = ""  # the SFT model: the policy's start
    ref: str = ""  # the reference model ("": init)
    loss: Literal["dpo", "cdpo", "ipo", "hinge", "kto"] = "dpo"
    beta: float = 0.1
    label_smoothing: float = 0.1  # cdpo: eps, the probability that a label is wrong
    desirable_weight: float = 1.0  # kto: lambda_D
    undesirable_weight: float = 1.0  # kto: lambda_U
    nll_coef: float = 0.0  # pairwise losses: alpha of RPO (Pang et al. 2024, eq. 2), the chosen answer's per-token NLL added to each pair's loss
    reference: Literal["precompute", "online"] = "precompute"
    epochs: float = 1.0  # passes over the comparisons; 0: use train.steps
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # lora.r > 0: train low-rank adapters only, merged at the end
    data: DPODataConfig = field(default_factory=DPODataConfig)
    eval: DPOEvalConfig = field(default_factory=DPOEvalConfig)
    train: TrainConfig = field(default_factory=_dpo_train)  # batch_size counts comparisons (kto: answers)

    def validate(self) -> None:
        if not self.init:
            raise ConfigError("DPO starts from the SFT model: give init=PATH", field="init")
        if self.beta <= 0:
            raise ConfigError(f"must be > 0, got {self.beta}", field="beta")
        if self.loss == "cdpo" and not 0.0 < self.label_smoothing < 0.5:
            raise ConfigError(f"conservative DPO needs 0 < eps < 0.5, got {self.label_smoothing}", field="label_smoothing")
        if self.desirable_weight <= 0 or self.undesirable_weight <= 0:
            raise ConfigError("KTO's weights must be > 0", field="desirable_weight")
        if self.nll_coef < 0:
            raise ConfigError(f"must be >= 0, got {self.nll_coef}", field="nll_coef")
        if self.nll_coef and self.loss == "kto":
            raise ConfigError("the NLL term needs chosen answers: it applies to the pairwise losses, not kto (set nll_coef=0, or dpo.nll_coef=0 in a run)", field="nll_coef")
        self.lora.validate()
        if self.epochs < 0:
            raise ConfigError(f"must be >= 0, got {self.epochs}", field="epochs")
        self.data.validate()


# --------------------------------------------------------------------------- the losses


def preference_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, *,
    loss: str = "dpo", beta: float = 0.1, label_smoothing: float = 0.0,
    chosen_tokens: torch.Tensor | None = None, rejected_tokens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses from sequence log-probs (summed over answer tokens), and the implicit
    rewards beta * (log pi - log pi_ref) of the chosen and rejected answers."""  # fmt: skip
    l_w, l_l = chosen - ref_chosen, rejected - ref_rejected
    if loss == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("IPO averages the log-ratios per token: give chosen_tokens and rejected_tokens")
        delta = l_w / chosen_tokens.clamp(min=1) - l_l / rejected_tokens.clamp(min=1)
        losses = (delta - 1.0 / (2.0 * beta)) ** 2
    else:
        z = beta * (l_w - l_l)
        if loss == "dpo":
            losses = -F.logsigmoid(z)
        elif loss == "cdpo":
            losses = -(1.0 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
        elif loss == "hinge":
            losses = torch.relu(1.0 - z)
        else:
            raise ValueError(f"unknown pairwise loss {loss!r}; expected one of dpo, cdpo, ipo, hinge")
    return losses, beta * l_w.detach(), beta * l_l.detach()


def kto_loss(
    logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor, *,
    beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO's per-example losses (Ethayarajh et al. eq. 8) and implicit rewards. `kl` is the
    reference point z (a batch estimate of KL(pi || pi_ref)); it is clamped at 0 and detached."""  # fmt: skip
    z = kl.detach().clamp(min=0)
    ratio = logps - ref_logps
    losses = torch.where(
        desirable, desirable_weight * (1 - torch.sigmoid(beta * (ratio - z))), undesirable_weight * (1 - torch.sigmoid(beta * (z - ratio)))
    )
    return losses, beta * ratio.detach()


# --------------------------------------------------------------------------- data


@dataclass
class PrefItem:
    """One element of a batch: a prompt's answers (prompt + answer ids each) and what to learn.
    Pairs (better, worse) for the pairwise losses; for KTO one answer and its label, and a second
    sequence, another example's answer to this prompt, for the KL estimate."""

    seqs: list[np.ndarray]
    starts: list[int]  # where each answer begins in its sequence (the prompt's length)
    pairs: np.ndarray  # (P, 2); empty for KTO
    desirable: bool = False  # KTO
    ref: np.ndarray | None = None  # the reference's log-prob of each answer (summed over its tokens)
    where: str = ""


def answer_ids(tok, prompt: str | list[dict], answer: str, finished: bool, chat: bool) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) as the model is asked and answers: through the chat template
    (the answer an assistant turn closed by <|end|>) or as text after an end-of-text token (the
    answer closed by end-of-text); an answer that never finished has no closing token."""
    from ..data.chat import prompt_ids as chat_prompt_ids

    if chat and getattr(tok, "chat_template", None):  # an imported model's own template
        from ..data.chat import render, stop_ids

        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        p = chat_prompt_ids(tok, messages)
        full = render(tok, [*messages, {"role": "assistant", "content": answer}]).ids
        if full[: len(p)] != p:
            raise InputError("the chat template does not render the conversation as a continuation of its prompt; DPO needs it to")
        a = full[len(p) :]
        ends = [i for i, t in enumerate(a) if t in set(stop_ids(tok))]
        a = a[: ends[0] + 1] if ends else a  # the answer and the token that ends the turn
        if not finished and ends:
            a = a[: ends[0]]
    elif chat:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        p = chat_prompt_ids(tok, messages)
        a = tok.encode_plain(" " + answer) + ([tok.special_id("end_of_turn")] if finished else [])
    else:
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        p = tok.document_ids(text)
        a = tok.encode_plain(answer) + ([tok.eos_id] if finished else [])
    return p, a


def _too_long(where: str, n: int, max_len: int, long: str) -> bool:
    if n <= max_len:
        return False
    if long == "error":
        raise InputError(f"a prompt and answer of {n} tokens exceed seq_len {max_len} (data.long=skip skips such comparisons)", path=where)
    return True


def encode_pairs(comparisons: list[Comparison], tok, *, max_len: int, chat: bool, pairs: str = "all", long: str = "skip") -> tuple[list[PrefItem], int]:
    """PrefItems for the pairwise losses, and how many comparisons were skipped as too long."""
    out, skipped = [], 0
    for c in comparisons:
        chosen_pairs = c.pairs
        if pairs == "best_worst":
            chosen_pairs = [_best_worst(c)]
        used = sorted({i for p in chosen_pairs for i in p})
        index = {old: new for new, old in enumerate(used)}
        seqs, starts = [], []
        for i in used:
            p, a = answer_ids(tok, c.prompt, c.completions[i], c.finished[i], chat)
            seqs.append(np.asarray(p + a, dtype=np.int64))
            starts.append(len(p))
        if _too_long(c.where, max(len(s) for s in seqs), max_len, long):
            skipped += 1
            continue
        out.append(PrefItem(seqs, starts, np.asarray([(index[w], index[l_]) for w, l_ in chosen_pairs], dtype=np.int64).reshape(-1, 2), where=c.where))
    return out, skipped


def _best_worst(c: Comparison) -> tuple[int, int]:
    """A ranking's best and worst answers (from its pairs: the one never worse, the one never better)."""
    worse = {w for _, w in c.pairs}
    better = {b for b, _ in c.pairs}
    best = next(i for i in range(len(c.completions)) if i in better and i not in worse)
    worst = next(i for i in range(len(c.completions)) if i in worse and i not in better)
    return best, worst


@dataclass
class Unpaired:
    prompt: str | list[dict]
    completion: str
    desirable: bool
    where: str
    finished: bool = True


def read_unpaired(path: str | os.PathLike) -> list[Unpaired]:
    """KTO's examples: TRL's unpaired records {"prompt", "completion", "label"}, or comparisons
    (rankings, preference pairs) giving their best answer as desirable, their worst as not."""
    from ..data.schemas import detect_schema, iter_validated

    first = next(iter_validated(path), None)
    if first is None:
        raise InputError("no records", path=path)
    if detect_schema(*first) != "unpaired_preference":
        comparisons, _ = read_comparisons(path)
        out = []
        for c in comparisons:
            best, worst = _best_worst(c)
            out.append(Unpaired(c.prompt, c.completions[best], True, c.where, c.finished[best]))
            out.append(Unpaired(c.prompt, c.completions[worst], False, c.where, c.finished[worst]))
        return out
    out = []
    for record, loc in iter_validated(path, "unpaired_preference"):
        completion = record["completion"]
        if isinstance(completion, list):
            if not completion or completion[-1]["role"] != "assistant":
                raise loc.error("a conversational completion must end with an assistant message", field="completion")
            completion = completion[-1]["content"]
        out.append(Unpaired(record["prompt"], completion, record["label"], f"{loc.path}:{loc.line}"))
    return out


def encode_unpaired(examples: list[Unpaired], tok, *, max_len: int, chat: bool, seed: int = 0, long: str = "skip") -> tuple[list[PrefItem], int]:
    """PrefItems for KTO: each answer, and for the KL estimate the answer of another example
    (after a seeded shuffle, the next one's) to this example's prompt."""
    kept, skipped = [], 0
    encoded = []
    for e in examples:
        p, a = answer_ids(tok, e.prompt, e.completion, e.finished, chat)
        if _too_long(e.where, len(p) + len(a), max_len, long):
            skipped += 1
            continue
        encoded.append((e, p, a))
    if len(encoded) < 2:
        raise InputError(f"KTO needs at least 2 examples that fit seq_len {max_len}; {len(encoded)} do")
    order = np.random.default_rng(seed).permutation(len(encoded))
    for k, i in enumerate(order):
        e, p, a = encoded[i]
        _, _, other = encoded[order[(k + 1) % len(order)]]
        kl_seq = (p + other)[:max_len]  # the mismatched answer is cut if it does not fit: it only estimates a KL
        kept.append(PrefItem([np.asarray(p + a, dtype=np.int64), np.asarray(kl_seq, dtype=np.int64)], [len(p), len(p)], np.zeros((0, 2), dtype=np.int64), e.desirable, where=e.where))
    return kept, skipped


def collate(batch: list[PrefItem], pad_id: int = 0, pack: bool = True) -> dict:
    """One batch: every sequence (prompt + answer) of every item; the answer mask over next-token
    targets and `owner`, the sequence each target belongs to (its index in the items' order);
    `lengths` of the sequences; the reference log-probs; pairs as sequence indices and the item
    each is of; for KTO the label of each item (its answer is sequence 2i, its KL sequence 2i+1).

    Packed (the default), sequences share rows as wide as the longest one, with positions from 0
    and segment ids so each attends only to itself (the transformer's block-diagonal mask), as
    the reward model's batches do (lmforge.data.comparisons.collate): the same log-probs without
    computing padding. Unpacked, each sequence is right-padded in its own row."""
    seqs = [s for it in batch for s in it.seqs]
    starts = [st for it in batch for st in it.starts]
    ids, positions, segments, place = fill_rows(seqs, pad_id, pack)
    mask = np.zeros((ids.shape[0], ids.shape[1] - 1), dtype=np.float32)
    owner = np.zeros_like(mask, dtype=np.int64)
    for i, ((r, at), s, start) in enumerate(zip(place, seqs, starts)):
        # target t+1 is predicted at t: the answer's tokens; a sequence's last position would
        # predict the next one's first token, and is not in the mask
        mask[r, at + start - 1 : at + len(s) - 1] = 1.0
        owner[r, at : at + len(s) - 1] = i
    offsets = np.cumsum([0] + [len(it.seqs) for it in batch[:-1]])
    pairs = np.concatenate([it.pairs + off for it, off in zip(batch, offsets)]) if len(batch[0].pairs) else np.zeros((0, 2), dtype=np.int64)
    group = np.concatenate([np.full(len(it.pairs), g) for g, it in enumerate(batch)]).astype(np.int64)
    out = {
        "input_ids": ids, "answer_mask": mask, "owner": owner, "lengths": np.array([len(s) for s in seqs], dtype=np.int64),
        "pairs": pairs, "group": group, "desirable": np.array([it.desirable for it in batch]),
    }  # fmt: skip
    if pack:
        out.update(positions=positions, segments=segments)
    if all(it.ref is not None for it in batch):
        out["ref"] = np.concatenate([it.ref for it in batch]).astype(np.float32)
    return {k: torch.from_numpy(v) for k, v in out.items()}


# --------------------------------------------------------------------------- log-probabilities


def answer_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(answer | prompt) of each sequence of a collated batch, summed over its answer
    tokens, and the number of those tokens (both (N,), in the items' order)."""
    ids, mask, owner = batch["input_ids"], batch["answer_mask"], batch["owner"]
    kw = {k: batch[k][:, :-1] for k in ("positions", "segments") if k in batch}
    logits = model(ids[:, :-1], **kw).float()
    token_logp = -F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none").view_as(mask)
    n = len(batch["lengths"])
    lp = token_logp.new_zeros(n).index_add(0, owner.flatten(), (token_logp * mask).flatten())
    tokens = mask.new_zeros(n).index_add(0, owner.flatten(), mask.flatten())
    return lp, tokens


@torch.no_grad()
def reference_logps(ref, items: list[PrefItem], *, batch_size: int = 16, pad_id: int = 0, device=None) -> None:
    """Fill each item's `ref` with the reference model's log-probs of its answers."""
    ref.eval()
    device = device or next(ref.parameters()).device
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        b = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
        lp = answer_logps(ref, b)[0].cpu().numpy()
        k = 0
        for it in chunk:
            it.ref = lp[k : k + len(it.seqs)].astype(np.float64)
            k += len(it.seqs)


def _fingerprint(items: list[PrefItem], ref_file: Path) -> str:
    h = hashlib.sha256()
    with open(ref_file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    for it in items:
        for s in it.seqs:
            h.update(s.tobytes())
            h.update(b"|")
    return h.hexdigest()


def stored_reference(ref_path: str, items: list[PrefItem], run_dir: Path, *, batch_size: int, pad_id: int, device, write: bool = True) -> dict:
    """Reference log-probs for `items`: read from run_dir/reference_logps.npz when it was made
    from the same reference weights and the same token sequences, else computed and (by the
    process that `write`s: rank 0) saved."""
    from ..checkpoint import load_model_files
    from ..models import load_model

    _, _, folder = load_model_files(ref_path)
    weights = Path(folder) / "model.safetensors"
    fp = _fingerprint(items, weights) if weights.exists() else ""
    path = run_dir / "reference_logps.npz"
    if fp and path.exists():
        saved = np.load(path)
        if str(saved["fingerprint"]) == fp:
            flat = saved["logps"]
            k = 0
            for it in items:
                it.ref = flat[k : k + len(it.seqs)].astype(np.float64)
                k += len(it.seqs)
            return {"reference": "stored", "sequences": int(k)}
    ref, _ = load_model(ref_path)
    reference_logps(ref.to(device), items, batch_size=batch_size, pad_id=pad_id, device=device)
    del ref  # not needed again: training reads the stored numbers
    flat = np.concatenate([it.ref for it in items])
    if write:
        tmp = run_dir / f"reference_logps.{os.getpid()}.tmp.npz"
        np.savez(tmp, logps=flat, fingerprint=np.array(fp))
        os.replace(tmp, path)
    return {"reference": "computed", "sequences": int(len(flat))}


# --------------------------------------------------------------------------- the objective


def _pairwise_terms(lp: torch.Tensor, ref: torch.Tensor, tokens: torch.Tensor, batch: dict, cfg: DPOConfig):
    pw, pl = batch["pairs"][:, 0], batch["pairs"][:, 1]
    losses, rw, rl = preference_loss(
        lp[pw], lp[pl], ref[pw], ref[pl], loss=cfg.loss, beta=cfg.beta, label_smoothing=cfg.label_smoothing,
        chosen_tokens=tokens[pw], rejected_tokens=tokens[pl],
    )  # fmt: skip
    if cfg.nll_coef:
        # RPO (Pang et al. 2024, eq. 2): L_DPO + alpha * NLL(chosen) / |chosen|. It keeps the
        # chosen answers' likelihood rising, which the DPO term alone does not promise.
        losses = losses + cfg.nll_coef * (-lp[pw] / tokens[pw].clamp(min=1))
    group = batch["group"]
    n = int(group.max()) + 1
    count = torch.zeros(n, device=lp.device).index_add_(0, group, torch.ones_like(losses))
    per_item = torch.zeros(n, device=lp.device).index_add_(0, group, losses) / count  # a prompt's mean over its pairs
    return per_item.mean(), losses, rw, rl, pw, pl


def dpo_objective(cfg: DPOConfig, ref_model=None):
    """The loop's objective for cfg.loss; `ref_model` computes the reference on the fly (else
    the batch carries the stored reference log-probs)."""

    def objective(model, batch: dict):
        ids = batch["input_ids"]
        lp, tokens = answer_logps(model, batch)
        if ref_model is not None:
            with torch.no_grad():
                ref = answer_logps(ref_model, batch)[0]
        else:
            ref = batch["ref"]
        if cfg.loss == "kto":
            answer, kl_rows = lp[0::2], lp[1::2].detach()
            kl = (kl_rows - ref[1::2]).mean()
            if torch.distributed.is_available() and torch.distributed.is_initialized():  # z from the whole global batch
                torch.distributed.all_reduce(kl, op=torch.distributed.ReduceOp.AVG)
            desirable = batch["desirable"]
            losses, rewards = kto_loss(answer, ref[0::2], desirable, kl, beta=cfg.beta, desirable_weight=cfg.desirable_weight, undesirable_weight=cfg.undesirable_weight)
            metrics = {"kl": float(kl.clamp(min=0))}
            for name, sel in (("desirable", desirable), ("undesirable", ~desirable)):
                if sel.any():
                    metrics[f"rewards/{name}"] = float(rewards[sel].mean())
                    metrics[f"logps/{name}"] = float(answer[sel].detach().mean())
            return losses.mean(), {"tokens": int(ids.numel()), **metrics}
        loss, _, rw, rl, pw, pl = _pairwise_terms(lp, ref, tokens, batch, cfg)
        return loss, {
            "tokens": int(ids.numel()),
            "rewards/accuracy": float((rw > rl).float().mean()),
            "rewards/margin": float((rw - rl).mean()),
            "rewards/chosen": float(rw.mean()),
            "rewards/rejected": float(rl.mean()),
            "logps/chosen": float(lp[pw].detach().mean()),
            "logps/rejected": float(lp[pl].detach().mean()),
        }

    return objective


@torch.no_grad()
def evaluate_preferences(model, items: list[PrefItem], cfg: DPOConfig, *, pad_id: int = 0, batch_size: int = 16) -> dict:
    """Held-out: the loss, the implicit-reward accuracy (`reward_accuracy`, ties half) and margin, and the mean
    log-ratios to the reference of chosen and rejected answers (pairwise), or of desirable and
    undesirable ones (KTO)."""
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(name, values):
        sums[name] = sums.get(name, 0.0) + float(values.sum())
        counts[name] = counts.get(name, 0) + int(values.numel())

    for i in range(0, len(items), batch_size):
        b = {k: v.to(device) for k, v in collate(items[i : i + batch_size], pad_id).items()}
        lp, tokens = answer_logps(model, b)
        ref = b["ref"].to(lp.dtype)
        if cfg.loss == "kto":
            kl = (lp[1::2] - ref[1::2]).mean()
            losses, rewards = kto_loss(lp[0::2], ref[0::2], b["desirable"], kl, beta=cfg.beta, desirable_weight=cfg.desirable_weight, undesirable_weight=cfg.undesirable_weight)
            add("loss", losses)
            add("kl", kl.clamp(min=0)[None])
            d = b["desirable"]
            add("logratio_desirable", (rewards / cfg.beta)[d])
            add("logratio_undesirable", (rewards / cfg.beta)[~d])
            add("reward_accuracy", torch.where(d, rewards > 0, rewards < 0).float())  # desirable answers gained probability, undesirable lost it
            continue
        _, losses, rw, rl, _, _ = _pairwise_terms(lp, ref, tokens, b, cfg)
        add("loss", losses)
        tie = (rw - rl).abs() <= 1e-5 * cfg.beta  # equal up to float noise (the policy before training)
        add("reward_accuracy", ((rw > rl) & ~tie).float() + 0.5 * tie.float())
        add("margin", rw - rl)
        add("logratio_chosen", rw / cfg.beta)
        add("logratio_rejected", rl / cfg.beta)
    return {k: sums[k] / max(counts[k], 1) for k in sums}


# --------------------------------------------------------------------------- the stage


def _world_comparisons(path: str, init: str) -> str:
    from ..world.build import find_world, is_world, world_file

    if not is_world(path):
        return path
    try:
        world_dir = find_world(init)
    except InputError:
        raise InputError("'world' data needs the world the init model was trained on, and none was found next to it; give a PATH instead", path=init, field="data.train") from None
    return world_file(world_dir, path, "comparisons.jsonl")


def _read(cfg: DPOConfig, tok, chat: bool, seq_len: int) -> tuple[list[PrefItem], list[PrefItem], dict]:
    d = cfg.data
    paths = [_world_comparisons(p, cfg.init) for p in d.train]
    stats: dict = {}
    if cfg.loss == "kto":
        examples = [e for p in paths for e in read_unpaired(p)]
        if d.val:
            train_e, val_e = examples, read_unpaired(d.val)
        else:
            train_e, val_e = split_by_prompt(examples, d.val_fraction)  # anything with a .prompt
        if d.limit:
            train_e = train_e[: d.limit]
        train_items, s1 = encode_unpaired(train_e, tok, max_len=seq_len, chat=chat, seed=cfg.train.seed, long=d.long)
        val_items, s2 = encode_unpaired(val_e, tok, max_len=seq_len, chat=chat, seed=cfg.train.seed, long=d.long) if len(val_e) >= 2 else ([], 0)
        stats = {"desirable": sum(it.desirable for it in train_items), "undesirable": sum(not it.desirable for it in train_items)}
    else:
        comparisons = []
        for p in paths:
            found, s = read_comparisons(p)
            comparisons += found
            stats = {k: stats.get(k, 0) + v for k, v in s.items()}
        if d.val:
            train_c, (val_c, _) = comparisons, read_comparisons(d.val)
        else:
            train_c, val_c = split_by_prompt(comparisons, d.val_fraction)
        if d.limit:
            train_c = train_c[: d.limit]
        train_items, s1 = encode_pairs(train_c, tok, max_len=seq_len, chat=chat, pairs=d.pairs, long=d.long)
        val_items, s2 = encode_pairs(val_c, tok, max_len=seq_len, chat=chat, pairs=d.pairs, long=d.long)
        stats["train_pairs"] = int(sum(len(it.pairs) for it in train_items))
    stats.update({"train_items": len(train_items), "val_items": len(val_items), "skipped_too_long": s1 + s2})
    # the world's prompts carry its task: only then is the world's evaluation about this data
    stats["world_prompts"] = any(getattr(c, "task", "") for c in (train_e if cfg.loss == "kto" else train_c))
    if not train_items:
        raise InputError(f"nothing to train on: every example is longer than seq_len {seq_len}", path=paths[0], field="data.seq_len")
    return train_items, val_items, stats


def _generation_eval(cfg: DPOConfig, tok, chat: bool, context: int, monitor):
    """Held-out prompts answered greedily: length, how many finish, what the monitor says."""
    from ..data import chat as chat_mod
    from ..eval.policy import greedy_answers
    from ..sample import prompt_tokens, read_prompts

    path = cfg.eval.prompts
    if path == "world":
        from ..world.build import find_world

        path = str(find_world(cfg.init) / "eval.jsonl")
    prompts = read_prompts(path, cfg.eval.limit or None)
    ids = []
    for p in prompts:
        x = prompt_tokens(tok, p.prompt, chat, p.where, p.field)
        if len(x) + cfg.eval.max_new_tokens > context:
            raise p.where.error(f"the prompt has {len(x)} tokens: with {cfg.eval.max_new_tokens} for the answer it exceeds the model's context of {context}", field=p.field)
        ids.append(x)
    stops = chat_mod.stop_ids(tok) if chat else [tok.eos_id]

    class _Item:  # what a monitor reads: the prompt's source record
        def __init__(self, source):
            self.source = source

    items = [_Item(p) for p in prompts]

    def evaluate(model) -> dict:
        policy = getattr(model, "module", model)
        tokens, finished = greedy_answers(policy, ids, stops=stops, pad_id=tok.pad_id, max_new_tokens=cfg.eval.max_new_tokens)
        texts = [chat_mod.answer_text(tok, t) if chat else tok.decode(t) for t in tokens]
        out = {"gen_length": float(np.mean([len(t) for t in tokens])), "finished": float(np.mean(finished))}
        if monitor is not None:
            out.update(monitor(items, texts, finished))
        return out

    return evaluate


def run_dpo(cfg: DPOConfig, out: str | Path, *, monitor_factory: Callable | None = None) -> dict:
    """`lmforge dpo`: read and encode the comparisons, compute (or load) the reference
    log-probs, train on the one loop, and write the policy (a chat model like its init) and
    dpo_summary.json. `monitor_factory(world_dir)` (from lmforge/eval) watches held-out greedy
    answers on the world's prompts."""
    from ..models import load_model, model_config_json
    from ..models.transformer import Transformer
    from ..tokenizer import Tokenizer

    cfg.validate()
    out = Path(out)
    model, folder = load_model(cfg.init)
    if not isinstance(model, Transformer) or model.head_kind != "lm":
        raise InputError("DPO fine-tunes a transformer language model (the SFT model); this is not one", path=folder, field="init")
    tok = Tokenizer.load(folder)
    ref_path = cfg.ref or cfg.init
    if cfg.ref:
        ref_probe, rfolder = load_model(cfg.ref)
        if Tokenizer.load(rfolder).sha256 != tok.sha256:
            raise InputError("the reference model's tokenizer differs from the policy's", path=rfolder, field="ref")
        if not isinstance(ref_probe, Transformer) or ref_probe.head_kind != "lm":
            raise InputError("the reference must be a language model", path=rfolder, field="ref")
        del ref_probe
    chat = model.chat_template is not None
    seq_len = cfg.data.seq_len or model.trained_seq_len or model.cfg.max_seq_len
    if seq_len > model.cfg.max_seq_len:
        raise ConfigError(f"({seq_len}) must not exceed the model's context ({model.cfg.max_seq_len})", field="data.seq_len")
    train_items, val_items, stats = _read(cfg, tok, chat, seq_len)
    if not val_items:
        warnings.warn("DPO trains with no held-out comparisons (data.val_fraction is 0 or too few prompts): no held-out reward accuracy", stacklevel=2)
    evaluate_gen = None
    if cfg.eval.prompts == "world" and not stats["world_prompts"]:  # no world unless asked
        warnings.warn("DPO's answers to the world's held-out prompts are skipped: the training data is not the world's (eval.prompts=PATH for prompts of your own)", stacklevel=2)
    elif cfg.eval.prompts:
        world_dir = None
        if monitor_factory is not None and cfg.eval.prompts == "world":
            from .ppo import find_world_or_none

            world_dir = find_world_or_none(cfg.init)
        evaluate_gen = _generation_eval(cfg, tok, chat, model.cfg.max_seq_len, monitor_factory(world_dir) if world_dir is not None else None)

    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    batches = ComparisonLoader(train_items, cfg.train.batch_size, seed=cfg.train.seed, rank=rank, world_size=world_size, pad_id=tok.pad_id, collate_fn=collate, shrink=True)
    cfg.train.batch_size = batches.batch_size  # smaller when the data has fewer comparisons than one batch (warned)
    if cfg.epochs > 0:
        cfg.train.steps = max(1, math.ceil(cfg.epochs * batches.batches_per_epoch))
    cfg.data.seq_len = seq_len
    out.mkdir(parents=True, exist_ok=True)
    text = run_config_text(cfg, out)
    atomic_write_text(out / "config.yaml", text)

    device = pick_device(cfg.train, int(os.environ.get("LOCAL_RANK", "0")))
    ref_model = None
    all_items = train_items + val_items
    if cfg.reference == "precompute":
        stats.update(stored_reference(ref_path, all_items, out, batch_size=2 * cfg.train.batch_size, pad_id=tok.pad_id, device=device, write=rank == 0))
    else:
        ref_model = load_model(ref_path)[0].to(device).eval().requires_grad_(False)
        if val_items:
            reference_logps(ref_model, val_items, batch_size=2 * cfg.train.batch_size, pad_id=tok.pad_id, device=device)
    atomic_write_text(out / "data_stats.json", json.dumps(stats, indent=2))
    extra = {"trainable_parameters": apply_lora(model, cfg.lora)} if cfg.lora.r else {}

    def evaluate(m) -> dict:
        metrics = evaluate_preferences(m, val_items, cfg, pad_id=tok.pad_id, batch_size=cfg.train.batch_size) if val_items else {}
        if evaluate_gen is not None:
            metrics.update(evaluate_gen(m))
        return metrics

    initial_file = out / "dpo_initial_eval.json"  # the starting policy's held-out numbers
    if rank == 0 and not initial_file.exists() and (val_items or evaluate_gen is not None):
        model.to(device).eval()
        atomic_write_text(initial_file, json.dumps(evaluate(model), indent=2))
        model.train()

    model_config = {**model_config_json(model), "trained_seq_len": seq_len, "chat_template": model.chat_template}
    last = train(
        model, dpo_objective(cfg, ref_model), batches, cfg.train, out,
        model_config=model_config, tokenizer=tok, evaluate=evaluate if (val_items or evaluate_gen) else None,
        log_config={"config": text},
    )  # fmt: skip
    summary = {"steps": cfg.train.steps, **extra, "last": last, "data": stats}
    if initial_file.exists():
        summary["initial_eval"] = json.loads(initial_file.read_text())
    summary["likelihood_displacement"] = likelihood_displacement(last, cfg.loss)
    if rank == 0:
        atomic_write_text(out / "dpo_summary.json", json.dumps(summary, indent=2))
        if summary["likelihood_displacement"].get("detected"):
            warnings.warn(summary["likelihood_displacement"]["message"], stacklevel=2)
    return summary


def likelihood_displacement(last: dict, loss: str) -> dict:
    """DPO's known failure, from the held-out log-ratios: the chosen answers lose probability
    relative to the reference too (only less than the rejected ones do)."""
    key = "eval/logratio_desirable" if loss == "kto" else "eval/logratio_chosen"
    other = "eval/logratio_undesirable" if loss == "kto" else "eval/logratio_rejected"
    if key not in last:
        return {}
    chosen, rejected = float(last[key]), float(last.get(other, float("nan")))
    detected = chosen < 0
    out = {"detected": detected, "chosen_logratio": chosen, "rejected_logratio": rejected}
    if detected:
        out["message"] = (
            f"the preferred answers' log-probability fell by {-chosen:.2f} nats on average against the reference "
            f"(the rejected ones' by {-rejected:.2f}): the margin grew by pushing both down, a known failure of DPO; "
            "probability moved to answers in neither set"
        )
    return out
