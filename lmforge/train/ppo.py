"""RLHF: the policy learns from a reward model, kept near the SFT model by a KL penalty
(InstructGPT step 3, Ouyang et al. 2022, section 3.5 and eq. 2), with PPO (Schulman et al.
2017) or its simpler policy-gradient relatives.

The language model is a policy: a prompt is the state, each sampled token an action. An
iteration is a rollout and an update:

  rollout   `batch_size` prompts (each `group_size` times) are answered by the policy with the
            KV-cache engine at `temperature`; the policy's and the frozen reference's (the SFT
            model's) log-probabilities of the answers are recomputed in one forward pass each,
            with the logits divided by the sampling temperature (Huang et al.); the reward model
            scores each answer once; an answer that never emitted its end token gets a fixed low
            score instead (`unfinished_reward`, their "EOS trick").
  rewards   per token r_t = -beta * (log pi(a_t) - log pi_ref(a_t)), and the reward-model score
            added at the last token, so the return is R(x, y) = r(x, y) - beta * log(pi / pi_ref)
            (eq. 2). beta is fixed or follows the adaptive KL controller of Ziegler et al. (2019):
            beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon).
  update    (ppo) advantages by GAE (gamma, lambda) from a value model, whitened; `epochs` passes
            over the rollout in `minibatches`, each an optimizer step of the one loop: the
            clipped policy loss, the clipped value loss, and optionally the pretraining loss
            ("PPO-ptx", coefficient gamma in eq. 2).

The same rollouts serve the other algorithms (`algorithm=`):

  reinforce  the basic policy gradient: advantage = return-to-go minus a baseline (a moving
             average of the batches' returns); no value model.
  rloo       REINFORCE leave-one-out (Ahmadian et al. 2024): group_size answers per prompt, each
             answer's advantage its return (score minus its KL penalty) minus the mean return
             of the others.
  grpo       group-relative (Shao et al. 2024): each answer's score standardised within its
             group; the KL to the reference is a loss term (the k3 estimator) instead of a reward.
  nash-md    Nash learning from human feedback (Munos et al. 2023, section 7, the policy-gradient
             Nash-MD): no reward, a preference model P(y > y' | x). Each prompt's answer y from
             the policy plays an answer y' from the geometric mixture of the policy and the
             reference (`nash.mixture`, token-level: lmforge/train/nash.py GeometricMixture);
             y's return is P(y > y') - 1/2 (1/2, the value of a fair duel, the baseline) minus
             beta log(pi / pi_ref): the policy moves towards what is preferred to the mixture,
             held near the reference, and settles at the regularised Nash equilibrium rather
             than at a reward's maximum (the one-token game in tests/test_nash.py).

With one epoch and one minibatch the clipped surrogate equals the plain policy gradient, so all
of them share one loss. The value model starts from the reward model (as in InstructGPT), or is a
head on the policy (`value=head`).

Nothing here sees the ground truth: a `monitor` (on the world, the oracle, wired in by the
command line from lmforge/eval) may watch the same answers, and what it says is logged, never
used. `run_rl` is the algorithm on any policy, reference and reward function (tests use a
bandit with a known optimum); `run_ppo` is the stage `lmforge ppo` / `lmforge rl`.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError, InputError
from ..io import atomic_write_text
from ..world.build import is_world
from ..models.transformer import Transformer, positions_from_mask
from .loop import OptimConfig, ScheduleConfig, TrainConfig, pick_device, run_config_text, train

ALGORITHMS = ("ppo", "reinforce", "rloo", "grpo", "nash-md")


# --------------------------------------------------------------------------- configuration


@dataclass
class RolloutConfig:
    prompts: str = "world"  # prompts (text, messages or the world's {"prompt","task","meta"}); "world": the world's ppo_prompts.jsonl ("world:NAME": its NAME.jsonl)
    limit: int = 0  # the first N prompts only (0: all)
    batch_size: int = 32  # prompts an iteration
    group_size: int = 1  # answers a prompt (rloo and grpo need at least 2)
    temperature: float = 1.0
    max_new_tokens: int = 48
    unfinished_reward: float | None = -1.0  # the score of an answer that never ended (None: the reward model's)


@dataclass
class KLConfig:
    beta: float = 0.05  # the KL coefficient (InstructGPT 0.02; Huang et al.'s TL;DR 0.05)
    adaptive: bool = False  # Ziegler et al.'s controller toward `target`
    target: float = 6.0  # nats a sequence
    horizon: int = 10000


@dataclass
class PPOUpdateConfig:
    epochs: int = 1  # passes over each rollout (DeepSpeed-Chat found 1 the stable setting at small scale)
    minibatches: int = 4  # optimizer steps an epoch
    clip: float = 0.2  # policy ratio clip
    value_clip: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    entropy_coef: float = 0.0
    normalize_rewards: bool = False  # whiten the scores by running statistics
    clip_rewards: float = 0.0  # clip the (normalised) scores to [-c, c]; 0: no clipping


@dataclass
class PTXConfig:
    coef: float = 0.0  # gamma of eq. 2: weight of the pretraining loss (0: plain PPO)
    shards: str = ""  # a shard folder of pretraining text
    batch_size: int = 8
    seq_len: int = 128


@dataclass
class NashConfig:
    mixture: float = 0.125  # beta of the opponent pi^(1 - beta) mu^beta (Munos et al.'s eta * tau; their LM experiments: 0.125)


@dataclass
class RLEvalConfig:
    prompts: str = "world"  # held-out prompts, answered greedily at each evaluation; "world": eval.jsonl; "": none
    limit: int = 100
    every: int = 10  # iterations between evaluations (and the end)


def _rl_train() -> TrainConfig:
    return TrainConfig(
        steps=1, batch_size=1, eval_every=0, log_every=1, save_every=0, keep_last=1,
        optim=OptimConfig(lr=1e-5, weight_decay=0.0, eps=1e-5), schedule=ScheduleConfig(kind="constant", warmup_steps=0),
    )  # fmt: skip  # Huang et al.: a small Adam epsilon and a low learning rate


@dataclass
class RLConfig:
    algorithm: Literal["ppo", "reinforce", "rloo", "grpo", "nash-md"] = "ppo"
    policy: str = ""  # the SFT model: the policy's start and the frozen reference
    init: str = ""  # the policy's start when it is not the reference: an earlier round's policy (empty: `policy`)
    reward: str = ""  # the reward model; nash-md: the preference model (a judge, a chat model trained by `lmforge label judge-data` and `lmforge sft`; or a reward model, P = sigmoid(r - r'))
    value: Literal["model", "head"] = "model"  # ppo: a value model initialised from the reward model, or a head on the policy
    iterations: int = 100
    save_every: int = 0  # iterations between checkpoints (0: only at the end)
    seed: int = 0
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    ppo: PPOUpdateConfig = field(default_factory=PPOUpdateConfig)
    ptx: PTXConfig = field(default_factory=PTXConfig)
    nash: NashConfig = field(default_factory=NashConfig)
    eval: RLEvalConfig = field(default_factory=RLEvalConfig)
    train: TrainConfig = field(default_factory=_rl_train)  # optimizer and device; steps, logging and saving follow from the above

    def validate(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"must be >= 1, got {self.iterations}", field="iterations")
        r = self.rollout
        if r.batch_size < 1 or r.group_size < 1 or r.max_new_tokens < 1:
            raise ConfigError("rollout.batch_size, group_size and max_new_tokens must be >= 1", field="rollout")
        if r.temperature <= 0:
            raise ConfigError(f"must be > 0 (sampling; log-probs are taken at this temperature), got {r.temperature}", field="rollout.temperature")
        if self.algorithm in ("rloo", "grpo") and r.group_size < 2:
            raise ConfigError(f"{self.algorithm} compares answers to the same prompt: rollout.group_size must be >= 2", field="rollout.group_size")
        n = r.batch_size * r.group_size
        if not 1 <= self.ppo.minibatches <= n:
            raise ConfigError(f"must be between 1 and the {n} answers of a rollout", field="ppo.minibatches")
        if self.ppo.epochs < 1:
            raise ConfigError(f"must be >= 1, got {self.ppo.epochs}", field="ppo.epochs")
        if self.kl.beta < 0:
            raise ConfigError(f"must be >= 0, got {self.kl.beta}", field="kl.beta")
        if not 0 <= self.nash.mixture <= 1:
            raise ConfigError(f"must be between 0 (the policy itself) and 1 (the reference), got {self.nash.mixture}", field="nash.mixture")
        if self.ptx.coef < 0 or (self.ptx.coef > 0 and not self.ptx.shards):
            raise ConfigError("ptx.coef > 0 needs ptx.shards (pretraining text)", field="ptx.shards")

    @property
    def updates_per_iteration(self) -> int:
        return self.ppo.epochs * self.ppo.minibatches


# --------------------------------------------------------------------------- pieces with a formula


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the masked entries; without `shift_mean` the mean is put back."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return (out if shift_mean else out + mean) * mask


def kl_rewards(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token rewards: -beta * (log pi - log pi_ref) on every answer token, the score added at
    the last one (Ziegler et al. 2019; Ouyang et al. 2022, eq. 2)."""
    r = -beta * (logp - ref_logp) * mask
    last = mask.sum(1).long() - 1
    rows = torch.arange(len(scores), device=r.device)
    r[rows[last >= 0], last[last >= 0]] += scores[last >= 0]
    return r


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over answers of different lengths
    (mask marks each row's tokens, from the first position): delta_t = r_t + gamma V(t+1) - V(t),
    A_t = delta_t + gamma lambda A(t+1), zero past the end. Returns (advantages, returns = A + V)."""
    T = rewards.size(1)
    values = values * mask
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.size(0), device=rewards.device)
    for t in reversed(range(T)):
        nxt = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * nxt - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    return adv, (adv + values) * mask


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = sum over t' >= t of gamma^(t'-t) r_t' (REINFORCE's returns)."""
    out = torch.zeros_like(rewards)
    run = torch.zeros(rewards.size(0), device=rewards.device)
    for t in reversed(range(rewards.size(1))):
        run = (rewards[:, t] + gamma * run) * mask[:, t]
        out[:, t] = run
    return out


class AdaptiveKL:
    """Ziegler et al. (2019): beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon)."""

    def __init__(self, beta: float, target: float, horizon: int):
        self.beta, self.target, self.horizon = beta, target, horizon

    def update(self, kl: float, n: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n / self.horizon


class RunningMoments:
    """Running mean and variance (Chan et al.'s parallel update), for reward normalisation."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, x: torch.Tensor) -> None:
        n = x.numel()
        m, v = float(x.mean()), float(x.var(unbiased=False)) if n > 1 else 0.0
        total = self.count + n
        delta = m - self.mean
        self.var = (self.var * self.count + v * n + delta**2 * self.count * n / total) / total if self.count else v
        self.mean += delta * n / total
        self.count = total


# --------------------------------------------------------------------------- the models


class ActorCritic(nn.Module):
    """The policy and what estimates its values: a separate value model (a scalar-head
    transformer), a linear head on the policy's last hidden states, or nothing."""

    def __init__(self, policy: Transformer, value: Transformer | None = None, value_head: bool = False):
        super().__init__()
        self.policy, self.value = policy, value
        self.value_head = nn.Linear(policy.cfg.d_model, 1) if value_head else None
        if self.value_head is not None:
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    @property
    def has_values(self) -> bool:
        return self.value is not None or self.value_head is not None

    def forward(self, ids, *, positions=None, pad_mask=None):
        """Logits (B, T, V) and values (B, T) (None without a critic)."""
        h = self.policy.hidden(ids, positions=positions, pad_mask=pad_mask)
        logits = self.policy.lm_head(h)
        if self.value_head is not None:
            return logits, self.value_head(h).squeeze(-1).float()
        if self.value is not None:
            return logits, self.value(ids, positions=positions, pad_mask=pad_mask).float()
        return logits, None


def answer_logprobs(logits: torch.Tensor, ids: torch.Tensor, start: int, temperature: float, with_entropy: bool = False):
    """log pi(a_j) of the answer tokens ids[:, start + j] from logits (B, T, V) whose position
    start + j - 1 predicts them, at the sampling temperature; and the entropy there."""
    pred = logits[:, start - 1 : ids.size(1) - 1].float() / temperature
    logp_all = pred.log_softmax(-1)
    logp = logp_all.gather(2, ids[:, start:, None]).squeeze(-1)
    if not with_entropy:
        return logp, None
    return logp, -(logp_all.exp() * logp_all).sum(-1)


# --------------------------------------------------------------------------- rollouts


@dataclass
class PromptItem:
    ids: list[int]  # what the policy is asked with
    source: object = None  # what the reward function and the monitor get back (the prompt as read)


RewardFn = Callable[[list[PromptItem], list[list[int]], list[bool]], torch.Tensor]  # (prompts, answer tokens, finished) -> scores
PreferenceFn = Callable[[list[PromptItem], list[list[int]], list[bool], list[list[int]], list[bool]], torch.Tensor]  # (prompts, answers, finished, opponents' answers, finished) -> P(answer > opponent's)
Monitor = Callable[[list[PromptItem], list[str], list[bool]], dict]  # (prompts, answer texts, finished) -> metrics


def pack(prompts: list[list[int]], answers: list[list[int]], pad_id: int):
    """ids (N, P + R): prompts left-padded to P, answers right-padded to R; the real-token mask,
    positions from it, and the answers' mask (N, R)."""
    P, R = max(len(p) for p in prompts), max(1, max(len(a) for a in answers))
    N = len(prompts)
    ids = torch.full((N, P + R), pad_id, dtype=torch.long)
    mask = torch.zeros((N, P + R), dtype=torch.bool)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        ids[i, P - len(p) : P] = torch.tensor(p)
        mask[i, P - len(p) : P] = True
        if a:
            ids[i, P : P + len(a)] = torch.tensor(a)
            mask[i, P : P + len(a)] = True
    return ids, mask, positions_from_mask(mask), mask[:, P:].float(), P


class Rollouts:
    """The loop's batches: each `next()` is one minibatch of experience; when a rollout's epochs
    are used up, the next rollout is generated with the policy as it is then."""

    def __init__(self, ac: ActorCritic, ref: Transformer, reward_fn: RewardFn, prompts: list[PromptItem], cfg: RLConfig, *,
                 stop_ids: list[int], pad_id: int, monitor: Monitor | None = None, decode=None):  # fmt: skip
        self.ac, self.ref, self.reward_fn, self.prompts, self.cfg = ac, ref, reward_fn, prompts, cfg
        self.stop_ids, self.pad_id, self.monitor, self.decode = stop_ids, pad_id, monitor, decode
        self.kl = AdaptiveKL(cfg.kl.beta, cfg.kl.target, cfg.kl.horizon)
        self.moments = RunningMoments()
        self.baseline: float | None = None
        self.iteration = 0  # rollouts made
        self.update = 0  # minibatches handed out of the current rollout
        self.experience: dict | None = None
        self.history: list[dict] = []  # per-iteration statistics (for the curves and the hacking check)

    # -- the iterator protocol of the loop ---------------------------------------------------------
    def __iter__(self) -> "Rollouts":
        return self

    def __next__(self) -> dict:
        cfg = self.cfg
        if self.experience is None or self.update == cfg.updates_per_iteration:
            self.experience = self.make_experience()
            self.iteration += 1
            self.update = 0
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.iteration)
            self._order = [torch.randperm(self.experience["n"], generator=gen) for _ in range(cfg.ppo.epochs)]
        epoch, k = divmod(self.update, cfg.ppo.minibatches)
        idx = torch.tensor_split(self._order[epoch], cfg.ppo.minibatches)[k]  # sizes differ by at most one, none empty
        self.update += 1
        e = self.experience
        mb = {key: e[key][idx] for key in ("ids", "mask", "positions", "answer_mask", "old_logp", "ref_logp", "old_values", "returns", "advantages")}
        mb["start"] = e["start"]
        mb["stats"] = e["stats"]
        return mb

    @property
    def progress(self) -> float:
        return self.iteration

    def state_dict(self) -> dict:
        # checkpoints fall on iteration boundaries (RLConfig.save_every counts iterations)
        return {"iteration": self.iteration, "beta": self.kl.beta, "moments": [self.moments.mean, self.moments.var, self.moments.count],
                "baseline": self.baseline, "history": self.history}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.iteration, self.kl.beta = int(state["iteration"]), float(state["beta"])
        self.moments.mean, self.moments.var, self.moments.count = state["moments"]
        self.baseline, self.history = state["baseline"], list(state["history"])
        self.experience, self.update = None, 0

    # -- one rollout ----------------------------------------------------------------------------
    def _prompts_of(self, iteration: int) -> list[PromptItem]:
        B, n = self.cfg.rollout.batch_size, len(self.prompts)
        epoch, at = divmod(iteration * B, n)
        out = []
        while len(out) < B:
            order = np.random.default_rng([self.cfg.seed, epoch]).permutation(n)
            out += [self.prompts[i] for i in order[at : at + B - len(out)]]
            epoch, at = epoch + 1, 0
        return out

    @torch.no_grad()
    def make_experience(self) -> dict:
        from ..engine import SamplingParams, generate

        cfg, r = self.cfg, self.cfg.rollout
        policy = self.ac.policy
        device = next(policy.parameters()).device
        items = [p for p in self._prompts_of(self.iteration) for _ in range(r.group_size)]
        t0 = time.perf_counter()
        params = SamplingParams(max_new_tokens=r.max_new_tokens, temperature=r.temperature, stop_ids=self.stop_ids, seed=cfg.seed * 1_000_003 + self.iteration)
        gens = generate(policy, [p.ids for p in items], params, pad_id=self.pad_id)
        t_rollout = time.perf_counter() - t0
        answers = [g.tokens + ([g.stop_token] if g.finished else []) for g in gens]  # the end token is an action too
        finished = [g.finished for g in gens]
        if cfg.algorithm == "nash-md":  # the opponent: the geometric mixture of the policy and the reference
            from .nash import GeometricMixture

            params.seed += 500_009
            rivals = generate(GeometricMixture(policy, self.ref, cfg.nash.mixture), [p.ids for p in items], params, pad_id=self.pad_id)
            t_rollout = time.perf_counter() - t0

        t0 = time.perf_counter()
        ids, mask, positions, answer_mask, P = pack([p.ids for p in items], answers, self.pad_id)
        ids, mask, positions, answer_mask = ids.to(device), mask.to(device), positions.to(device), answer_mask.to(device)
        was = self.ac.training
        self.ac.eval()
        logits, values = self.ac(ids, positions=positions, pad_mask=mask)
        self.ac.train(was)
        old_logp, _ = answer_logprobs(logits, ids, P, r.temperature)
        ref_logp, _ = answer_logprobs(self.ref(ids, positions=positions, pad_mask=mask), ids, P, r.temperature)
        old_values = values[:, P - 1 : -1] * answer_mask if values is not None else torch.zeros_like(old_logp)
        if cfg.algorithm == "nash-md":  # P(y > y'); unfinished answers are judged by the preference function (_preference_fn)
            raw = self.reward_fn(items, [g.tokens for g in gens], finished, [g.tokens for g in rivals], [g.finished for g in rivals]).to(device).float()
        else:
            raw = self.reward_fn(items, [g.tokens for g in gens], finished).to(device).float()
        scores = raw.clone()
        if r.unfinished_reward is not None and cfg.algorithm != "nash-md":
            scores[~torch.tensor(finished, device=device)] = r.unfinished_reward
        if cfg.ppo.normalize_rewards:
            self.moments.update(scores)
            scores = (scores - self.moments.mean) / math.sqrt(self.moments.var + 1e-8)
        if cfg.ppo.clip_rewards:
            scores = scores.clamp(-cfg.ppo.clip_rewards, cfg.ppo.clip_rewards)
        t_score = time.perf_counter() - t0

        kl_tokens = (old_logp - ref_logp) * answer_mask
        kl_seq = kl_tokens.sum(1)
        beta = self.kl.beta
        advantages, returns = self._advantages(scores, old_logp, ref_logp, old_values, answer_mask, kl_seq, beta)

        lengths = answer_mask.sum(1)
        stats = {
            "rollout/score": float(raw.mean()),
            "rollout/shaped_score": float(scores.mean()),
            "rollout/kl": float(kl_seq.mean()),
            "rollout/length": float(lengths.mean()),
            "rollout/finished": float(np.mean(finished)),
            "rollout/return": float((scores - beta * kl_seq).mean()),
            "beta": beta,
            "time/rollout": t_rollout,
            "time/score": t_score,
        }
        if values is not None:
            resid = (returns - old_values)[answer_mask.bool()]
            target = returns[answer_mask.bool()]
            stats["value/explained_variance"] = float(1 - resid.var() / target.var().clamp(min=1e-8)) if target.numel() > 1 else 0.0
        if self.monitor is not None:  # evaluation only: never enters the loss
            stats.update({f"monitor/{k}": v for k, v in self.monitor(items, [self.decode(g.tokens) for g in gens], finished).items()})
        if cfg.kl.adaptive:
            self.kl.update(float(kl_seq.mean()), len(items))
        self.history.append({"iteration": self.iteration + 1, **stats})
        return {"n": len(items), "ids": ids, "mask": mask, "positions": positions, "answer_mask": answer_mask, "old_logp": old_logp,
                "ref_logp": ref_logp, "old_values": old_values, "returns": returns, "advantages": advantages, "start": P, "stats": stats}  # fmt: skip

    def _advantages(self, scores, logp, ref_logp, values, mask, kl_seq, beta):
        cfg, alg = self.cfg, self.cfg.algorithm
        G = self.cfg.rollout.group_size
        if alg == "ppo":
            rewards = kl_rewards(logp, ref_logp, mask, scores, beta)
            adv, returns = gae(rewards, values, mask, cfg.ppo.gamma, cfg.ppo.lam)
        elif alg == "reinforce":
            rewards = kl_rewards(logp, ref_logp, mask, scores, beta)
            returns = returns_to_go(rewards, mask, cfg.ppo.gamma)
            seq_return = float(returns[:, 0].mean())
            baseline = seq_return if self.baseline is None else self.baseline
            adv = (returns - baseline) * mask
            self.baseline = 0.9 * baseline + 0.1 * seq_return  # a baseline from past batches, then this one
        elif alg == "nash-md":  # P(y > y') - 1/2 - beta log(pi / pi_ref), for the whole answer
            adv = (scores - 0.5 - beta * kl_seq).reshape(-1, 1) * mask
            returns = torch.zeros_like(adv)
        else:
            seq = scores - beta * kl_seq if alg == "rloo" else scores  # grpo keeps the KL out of the reward
            groups = seq.view(-1, G)
            if alg == "rloo":
                a = groups - (groups.sum(1, keepdim=True) - groups) / (G - 1)
            else:
                a = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-6)
            adv = a.reshape(-1, 1) * mask
            returns = torch.zeros_like(adv)
        if cfg.ppo.whiten_advantages and alg in ("ppo", "reinforce"):
            adv = whiten(adv, mask)
        return adv, returns


# --------------------------------------------------------------------------- the objective


def rl_loss(cfg: RLConfig, ptx_batches=None):
    """The loss of one minibatch: the clipped surrogate (all algorithms), the clipped value loss
    (ppo with a critic), grpo's k3 KL term, an entropy bonus, the pretraining loss (ptx)."""
    u = cfg.ppo

    def objective(model, mb: dict):
        start, mask = mb["start"], mb["answer_mask"]
        logits, values = model(mb["ids"], positions=mb["positions"], pad_mask=mb["mask"])
        logp, entropy = answer_logprobs(logits, mb["ids"], start, cfg.rollout.temperature, with_entropy=True)
        log_ratio = (logp - mb["old_logp"]) * mask
        ratio = log_ratio.exp()
        adv = mb["advantages"]
        pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - u.clip, 1 + u.clip))
        loss = masked_mean(pg, mask)
        metrics = {
            "policy_loss": float(loss.detach()),
            "clip_fraction": float(masked_mean(((ratio - 1).abs() > u.clip).float(), mask)),
            "approx_kl": float(masked_mean((ratio - 1) - log_ratio, mask).detach()),  # k3 of KL(old || new)
            "entropy": float(masked_mean(entropy, mask).detach()),
        }
        if cfg.algorithm == "grpo" and cfg.kl.beta:
            d = (mb["ref_logp"] - logp) * mask  # k3 estimator of KL(pi || pi_ref) (Schulman 2020)
            kl = masked_mean(d.exp() - d - 1, mask)
            loss = loss + cfg.kl.beta * kl
            metrics["kl_loss"] = float(kl.detach())
        if cfg.algorithm == "ppo" and values is not None:
            v = values[:, start - 1 : -1]
            old_v, ret = mb["old_values"], mb["returns"]
            v_clipped = old_v + (v - old_v).clamp(-u.value_clip, u.value_clip)
            vf = 0.5 * masked_mean(torch.max((v - ret) ** 2, (v_clipped - ret) ** 2), mask)
            loss = loss + u.vf_coef * vf
            metrics["value_loss"] = float(vf.detach())
        if u.entropy_coef:
            loss = loss - u.entropy_coef * masked_mean(entropy, mask)
        if ptx_batches is not None:  # PPO-ptx: + gamma * the pretraining log-likelihood loss
            x, y = (t.to(mb["ids"].device) for t in next(ptx_batches))
            lm = model.policy(x) if hasattr(model, "policy") else model.module.policy(x)
            ptx = F.cross_entropy(lm.float().flatten(0, 1), y.flatten())
            loss = loss + cfg.ptx.coef * ptx
            metrics["ptx_loss"] = float(ptx.detach())
        metrics.update(mb["stats"])
        metrics["tokens"] = int(mask.sum())
        return loss, metrics

    return objective


# --------------------------------------------------------------------------- the algorithm


def run_rl(
    cfg: RLConfig,
    ac: ActorCritic,
    ref: Transformer,
    reward_fn: RewardFn,
    prompts: list[PromptItem],
    out: str | Path,
    *,
    stop_ids: list[int],
    pad_id: int,
    model_config: dict,
    tokenizer=None,
    decode=None,
    monitor: Monitor | None = None,
    evaluate=None,
    ptx_batches=None,
) -> tuple[dict, Rollouts]:
    """Train `ac` by `cfg.algorithm` for `cfg.iterations` rollouts on the one loop."""
    cfg.validate()
    ref.eval().requires_grad_(False)
    u = cfg.updates_per_iteration
    cfg.train.steps = cfg.iterations * u
    cfg.train.log_every = u  # one log line an iteration, with that rollout's statistics
    cfg.train.save_every = cfg.save_every * u
    cfg.train.eval_every = (cfg.eval.every * u) if evaluate is not None and cfg.eval.every else 0
    cfg.train.seed = cfg.seed
    batches = Rollouts(ac, ref, reward_fn, prompts, cfg, stop_ids=stop_ids, pad_id=pad_id, monitor=monitor, decode=decode)
    last = train(ac, rl_loss(cfg, ptx_batches), batches, cfg.train, out, model_config=model_config, tokenizer=tokenizer, evaluate=evaluate,
                 to_device=lambda b, dev: b, log_config={"config": json.dumps(_plain(cfg))})  # fmt: skip  # experience is made on the device
    return last, batches


def _plain(cfg) -> dict:
    from ..config import to_dict

    return to_dict(cfg)


# --------------------------------------------------------------------------- the stage


def _reward_fn(rm, tokenizer, decode) -> RewardFn:
    from .reward import reward_scores

    def score(items: list[PromptItem], answers: list[list[int]], finished: list[bool]) -> torch.Tensor:
        return reward_scores(rm, tokenizer, [p.source.prompt for p in items], [decode(a) for a in answers], finished)

    return score


def _preference_fn(model, tokenizer, decode, unfinished_loses: bool) -> PreferenceFn:
    """nash-md's P(y > y' | x): from a judge (a chat model asked which answer is better, in both
    orders: `lmforge.label.JudgeLabeler.preference`) or from a reward model, whose preference is
    Bradley-Terry's sigmoid(r(y) - r(y')) (transitive by construction: the baseline a judge can
    beat when people's preferences are not). With `unfinished_loses` an answer that never ended
    loses to one that did (the pairwise form of PPO's `unfinished_reward`), two such tie."""
    if model.head_kind == "scalar":
        from .reward import reward_scores

        def judged(questions, a, fa, b, fb):
            return torch.sigmoid(reward_scores(model, tokenizer, questions, a, fa) - reward_scores(model, tokenizer, questions, b, fb))
    else:
        from ..label import JudgeLabeler, prompt_text

        judge = JudgeLabeler(model, tokenizer, "judge")

        def judged(questions, a, fa, b, fb):
            return judge.preference([prompt_text(q) for q in questions], a, b)

    def prefer(items: list[PromptItem], a: list[list[int]], fa: list[bool], b: list[list[int]], fb: list[bool]) -> torch.Tensor:
        p = judged([i.source.prompt for i in items], [decode(x) for x in a], fa, [decode(x) for x in b], fb).float().cpu()
        if unfinished_loses:
            ea, eb = torch.tensor(fa), torch.tensor(fb)
            p = torch.where(ea == eb, torch.where(ea, p, torch.full_like(p, 0.5)), ea.float())
        return p

    return prefer


def _load_scorer(cfg: RLConfig, tok, prompts: list[PromptItem], room: int):
    """The reward model (for nash-md, the preference model), checked before any work: a reward
    model of the policy's tokenizer whose context holds the longest prompt with an answer; for
    nash-md also a judge - a chat model (its tokenizer may be its own: it reads text) whose
    context holds the longest prompt with two answers. (model, its tokenizer)"""
    from ..label import JudgeLabeler, prompt_text
    from ..models import load_model
    from ..tokenizer import Tokenizer

    model, folder = load_model(cfg.reward)
    mtok = Tokenizer.load(folder)
    if model.head_kind == "scalar":
        if mtok.sha256 != tok.sha256:
            raise InputError("the reward model's tokenizer differs from the policy's: train the reward model from this policy's SFT model", path=folder, field="reward")
        need = max(len(p.ids) for p in prompts) + room
        if need > model.cfg.max_seq_len:
            raise InputError(f"a prompt and an answer of up to {room} tokens need {need} tokens, more than the reward model's context of {model.cfg.max_seq_len}; lower rollout.max_new_tokens", field="rollout.max_new_tokens")
        return model, mtok
    if cfg.algorithm != "nash-md":
        raise InputError("not a reward model (train one with `lmforge rm`)", path=folder, field="reward")
    if not isinstance(model, Transformer) or model.head_kind != "lm":
        raise InputError("nash-md's preference model is a judge (a chat language model) or a reward model", path=folder, field="reward")
    if model.chat_template is None:
        raise InputError("the judge has no chat template: train one on `lmforge label judge-data` conversations with `lmforge sft` (a chat model)", path=folder, field="reward")
    longest = max(prompts, key=lambda p: len(p.ids))
    need = len(JudgeLabeler(model, mtok, "judge").prompt(prompt_text(longest.source.prompt), "", "")[0]) + 2 * room
    if need > model.cfg.max_seq_len:
        raise InputError(f"the longest prompt with two answers of up to {room} tokens needs about {need} tokens, more than the judge's context of {model.cfg.max_seq_len}; lower rollout.max_new_tokens", path=folder, field="rollout.max_new_tokens")
    return model, mtok


def _world_prompts(spec: str, policy_path: str, name: str) -> str:
    from ..world.build import find_world, is_world, world_file

    if not is_world(spec):
        return spec
    return world_file(find_world(policy_path), spec, name)


def read_rl_prompts(path: str, tokenizer, as_chat: bool, limit: int, room: int, context: int) -> list[PromptItem]:
    """The prompts as the policy is asked with them; one that leaves fewer than `room` tokens of
    the `context` for an answer is an error naming its line, before any work starts."""
    from ..sample import prompt_tokens, read_prompts

    items = []
    for p in read_prompts(path, limit or None):
        ids = prompt_tokens(tokenizer, p.prompt, as_chat, p.where, p.field)
        if len(ids) + room > context:
            raise p.where.error(f"the prompt has {len(ids)} tokens: with {room} for the answer it exceeds the model's context of {context}", field=p.field)
        items.append(PromptItem(ids, p))
    if not items:
        raise InputError("no prompts", path=path)
    return items


def run_ppo(cfg: RLConfig, out: str | Path, *, monitor_factory=None) -> dict:
    """`lmforge ppo` / `lmforge rl`: load the SFT policy, its frozen copy, the reward model (and the
    value model from it), check everything, train, and write the policy, the value model, the
    curves and the summary. `monitor_factory(world_dir) -> Monitor` (from lmforge/eval) watches
    the answers to the world's prompts (rollouts and evaluations)."""
    from ..checkpoint import save_model
    from ..data import chat
    from ..models import load_model, model_config_json
    from ..tokenizer import Tokenizer

    cfg.validate()
    out = Path(out)
    if not cfg.policy or not cfg.reward:
        raise ConfigError("give the SFT model and the reward model: policy=PATH reward=PATH", field="policy" if not cfg.policy else "reward")
    policy, pfolder = load_model(cfg.policy)
    if not isinstance(policy, Transformer) or policy.head_kind != "lm":
        raise InputError("the policy must be a transformer language model (the SFT model)", path=pfolder, field="policy")
    tok = Tokenizer.load(pfolder)
    pairwise = cfg.algorithm == "nash-md"  # a preference model P(y > y') instead of a reward
    if cfg.init:  # a later round (iterated RLHF): go on from the earlier policy, still held near the SFT model
        ref, (policy, ifolder) = policy, load_model(cfg.init)
        if not isinstance(policy, Transformer) or policy.head_kind != "lm" or policy.cfg != ref.cfg:
            raise InputError("the policy's start must be a language model of the reference's architecture (an earlier PPO policy from it)", path=ifolder, field="init")
        if Tokenizer.load(ifolder).sha256 != tok.sha256:
            raise InputError("the policy's start has another tokenizer than the reference", path=ifolder, field="init")
    else:
        ref = copy.deepcopy(policy)
    as_chat = policy.chat_template is not None
    r = cfg.rollout
    prompts_path = _world_prompts(r.prompts, cfg.policy, "ppo_prompts.jsonl")
    room = r.max_new_tokens + 1
    prompts = read_rl_prompts(prompts_path, tok, as_chat, r.limit, room, policy.cfg.max_seq_len)
    rm, rtok = _load_scorer(cfg, tok, prompts, room)
    eval_items = []
    if is_world(cfg.eval.prompts) and not (is_world(r.prompts) or any(getattr(p.source, "task", None) for p in prompts)):  # no world unless asked
        warnings.warn("the evaluation on the world's held-out prompts is skipped: the rollout prompts are not the world's (eval.prompts=PATH for prompts of your own)", stacklevel=2)
    elif cfg.eval.prompts:
        eval_items = read_rl_prompts(_world_prompts(cfg.eval.prompts, cfg.policy, "eval.jsonl"), tok, as_chat, cfg.eval.limit, room, policy.cfg.max_seq_len)
    ptx_batches = None
    if cfg.ptx.coef:
        from ..data.shards import BatchLoader, TokenShards

        ptx_batches = BatchLoader(TokenShards(cfg.ptx.shards, "train"), cfg.ptx.batch_size, cfg.ptx.seq_len, seed=cfg.seed)

    world_dir = find_world_or_none(cfg.policy) if monitor_factory is not None else None
    monitor = monitor_factory(world_dir) if world_dir is not None and is_world(r.prompts) else None
    eval_monitor = monitor_factory(world_dir) if world_dir is not None and is_world(cfg.eval.prompts) else None

    value = None
    if cfg.algorithm == "ppo" and cfg.value == "model":
        value = copy.deepcopy(rm)  # the value function starts from the reward model (Ouyang et al.)
        value.prior = None  # a value is read at every position; a reward model's answer prior is not part of it
    ac = ActorCritic(policy, value, value_head=cfg.algorithm == "ppo" and cfg.value == "head")
    decode = (lambda a: chat.answer_text(tok, a)) if as_chat else tok.decode  # noqa: E731
    rm.eval().requires_grad_(False)
    reward_fn = _preference_fn(rm, rtok, decode, r.unfinished_reward is not None) if pairwise else _reward_fn(rm, tok, decode)
    stops = chat.stop_ids(tok) if as_chat else [tok.eos_id]

    out.mkdir(parents=True, exist_ok=True)
    text = run_config_text(cfg, out)
    atomic_write_text(out / "config.yaml", text)
    model_config = {"architecture": "actor_critic", "policy": model_config_json(policy), "value": model_config_json(value) if value is not None else None}

    evaluate = _greedy_evaluation(eval_items, ref, reward_fn, stops, tok.pad_id, r.max_new_tokens, eval_monitor, decode, pairwise) if eval_items else None
    device = pick_device(cfg.train)
    rm.to(device)
    ref.to(device)
    before = out / "rl_initial_eval.json"  # the SFT policy's held-out numbers, the curves' starting point
    if evaluate is not None and not before.exists():
        atomic_write_text(before, json.dumps(evaluate(ActorCritic(copy.deepcopy(policy).to(device))), indent=2))
    last, rollouts = run_rl(cfg, ac, ref, reward_fn, prompts, out, stop_ids=stops, pad_id=tok.pad_id, model_config=model_config,
                            tokenizer=tok, decode=decode, monitor=monitor, evaluate=evaluate, ptx_batches=ptx_batches)  # fmt: skip

    # the result: the policy as a chat model of its own, the value model beside it
    state = {k: v.detach().cpu() for k, v in ac.state_dict().items()}
    pconfig = {**model_config_json(policy), "trained_seq_len": policy.trained_seq_len, "chat_template": policy.chat_template}
    save_model(out, {k[len("policy.") :]: v for k, v in state.items() if k.startswith("policy.")}, pconfig, tok)
    if value is not None:
        save_model(out / "value", {k[len("value.") :]: v for k, v in state.items() if k.startswith("value.")}, {**model_config_json(value), "chat_template": rm.chat_template}, tok)
    history = rollouts.history
    summary = {"iterations": cfg.iterations, "last": last, "reward_hacking": detect_reward_hacking(history)}
    if before.exists():
        summary["initial_eval"] = json.loads(before.read_text())
    atomic_write_text(out / "rl_history.json", json.dumps(history, indent=1))
    atomic_write_text(out / "rl_summary.json", json.dumps(summary, indent=2))
    plot_curves(history, out / "rl_curves.png", _evaluations(out, cfg.updates_per_iteration), summary["reward_hacking"])
    return summary


def _evaluations(out: Path, updates: int) -> list[dict]:
    """The held-out evaluations logged in metrics.jsonl, by iteration."""
    from ..tracking import read_metrics

    first = [{"iteration": 0, **json.loads((out / "rl_initial_eval.json").read_text())}] if (out / "rl_initial_eval.json").exists() else []
    return first + [{"iteration": r["step"] // updates, **{k[5:]: v for k, v in r.items() if k.startswith("eval/")}} for r in read_metrics(out) if "eval/score" in r]


def find_world_or_none(path):
    from ..world.build import find_world

    try:
        return find_world(path)
    except InputError:
        return None


def _greedy_evaluation(items: list[PromptItem], ref, reward_fn, stops, pad_id: int, max_new_tokens: int, monitor, decode, pairwise: bool = False):
    """The loop's evaluate(): held-out prompts answered greedily; reward-model score (`pairwise`,
    for nash-md: the preference model's P(the policy's answer > the reference's greedy answer)),
    KL of those answers to the reference, length, and what the monitor says."""
    from ..engine import SamplingParams, generate

    greedy = SamplingParams(max_new_tokens=max_new_tokens, temperature=0, stop_ids=stops)
    theirs: list = []  # the reference's answers, made once

    @torch.no_grad()
    def evaluate(model) -> dict:
        ac = getattr(model, "module", model)
        gens = generate(ac.policy, [p.ids for p in items], greedy, pad_id=pad_id)
        answers = [g.tokens + ([g.stop_token] if g.finished else []) for g in gens]
        finished = [g.finished for g in gens]
        device = next(ac.parameters()).device
        ids, mask, positions, amask, P = pack([p.ids for p in items], answers, pad_id)
        ids, mask, positions, amask = ids.to(device), mask.to(device), positions.to(device), amask.to(device)
        # the KL of the whole next-token distributions along the greedy answers (a sampled log-ratio
        # would be no estimate of KL here: greedy tokens are not samples)
        logq = (ac.policy(ids, positions=positions, pad_mask=mask)[:, P - 1 : -1].float()).log_softmax(-1)
        logr = (ref(ids, positions=positions, pad_mask=mask)[:, P - 1 : -1].float()).log_softmax(-1)
        kl = ((logq.exp() * (logq - logr)).sum(-1) * amask).sum(1)
        out = {
            "score": float(score(gens, finished).mean()),
            "kl": float(kl.mean()),
            "length": float(amask.sum(1).mean()),
            "finished": float(np.mean(finished)),
        }
        if monitor is not None:
            out.update(monitor(items, [decode(g.tokens) for g in gens], finished))
        return out

    def score(gens, finished):
        if not pairwise:
            return reward_fn(items, [g.tokens for g in gens], finished)
        if not theirs:
            theirs.extend(generate(ref, [p.ids for p in items], greedy, pad_id=pad_id))
        return reward_fn(items, [g.tokens for g in gens], finished, [g.tokens for g in theirs], [g.finished for g in theirs])

    return evaluate


# --------------------------------------------------------------------------- reporting


def detect_reward_hacking(history: list[dict], window: int = 5, rm_rise: float = 0.05, oracle_drop: float = 0.02) -> dict:
    """Reward hacking: the reward model's score still rising while the ground truth falls. Over
    moving averages of `window` iterations, from the iteration where the monitored (oracle)
    score peaked to the end: the reward model's score rose by more than `rm_rise` and the
    oracle's fell by more than `oracle_drop`. Without a monitor there is nothing to check."""
    key = "monitor/oracle_score"
    if len(history) < 2 * window or key not in history[0]:
        return {"checked": False}

    def smooth(name):
        x = np.array([h[name] for h in history], dtype=float)
        return np.convolve(x, np.ones(window) / window, mode="valid")

    rm, oracle = smooth("rollout/score"), smooth(key)
    peak = int(np.argmax(oracle))
    rise, drop = float(rm[-1] - rm[peak]), float(oracle[peak] - oracle[-1])
    detected = rise > rm_rise and drop > oracle_drop
    return {"checked": True, "detected": detected, "oracle_peak_iteration": peak + window, "rm_rise_since_peak": rise, "oracle_drop_since_peak": drop}


def plot_curves(history: list[dict], path: Path, evals: list[dict] | None = None, hacking: dict | None = None, window: int = 10) -> None:
    """The run at a glance: reward-model and oracle scores against KL to the reference (moving
    averages of `window` rollouts, in iteration order), both over the iterations with the
    held-out greedy evaluations as markers, and the KL; the oracle's peak marked when reward
    hacking was detected."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def smooth(key):
        x = np.array([h[key] for h in history], dtype=float)
        w = min(window, len(x))
        return np.convolve(x, np.ones(w) / w, mode="valid")

    w = min(window, len(history))
    it = np.array([h["iteration"] for h in history])[w - 1 :]
    rm, kl = smooth("rollout/score"), smooth("rollout/kl")
    oracle = smooth("monitor/oracle_score") if "monitor/oracle_score" in history[0] else None
    blue, orange = "#4c72b0", "#dd8452"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ax.plot(kl, rm, "-", color=blue)
    ax.set_xlabel("KL(policy || SFT), nats a sequence")
    ax.set_ylabel("reward-model score", color=blue)
    if oracle is not None:
        ax2 = ax.twinx()
        ax2.plot(kl, oracle, "-", color=orange)
        ax2.set_ylabel("oracle score (the truth)", color=orange)
    ax.set_title(f"rewards against KL ({w}-rollout averages)")
    ax = axes[1]
    ax.plot(it, rm, color=blue, label="reward model (rollouts)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("reward-model score", color=blue)
    if oracle is not None:
        ax2 = ax.twinx()
        ax2.plot(it, oracle, color=orange, label="oracle (rollouts)")
        if evals:
            ax2.plot([e["iteration"] for e in evals], [e["oracle_score"] for e in evals if "oracle_score" in e], "o", color=orange, label="oracle (held-out, greedy)")
        ax2.set_ylabel("oracle score", color=orange)
        ax2.legend(loc="lower right", fontsize=8)
        if hacking and hacking.get("detected"):
            ax.axvline(hacking["oracle_peak_iteration"], color="red", linestyle=":", label="reward hacking from here")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("over training")
    ax = axes[2]
    ax.plot(it, kl, color="#55a868")
    ax.set_xlabel("iteration")
    ax.set_ylabel("KL(policy || SFT), nats a sequence")
    ax.set_title("KL to the reference")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


__all__ = ["ALGORITHMS", "ActorCritic", "AdaptiveKL", "PromptItem", "RLConfig", "Rollouts", "detect_reward_hacking", "gae", "kl_rewards",
           "returns_to_go", "rl_loss", "run_ppo", "run_rl", "whiten"]  # fmt: skip
