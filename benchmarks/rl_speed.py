"""PPO iteration time, split into rollout, scoring and update, for the `small` recipe's model.

    python benchmarks/rl_speed.py [--prompts 32] [--new-tokens 48] [--rounds 3]

Models: recipes/small.yaml's GPT (llama flavour, 4 layers, d=192, vocab 2048) as the policy, its
frozen copy as the reference, and two scalar-head copies as the reward and value models, all
freshly initialised (speed does not depend on the weights). A random policy never emits its end
token, so every answer runs to --new-tokens: the worst case of a rollout.

  rollout   `Rollouts.make_experience`'s generation: the engine, batched, KV cache
  scoring   the rest of make_experience: one forward pass each of policy+value and reference over
            the rollout, the reward model over it, the per-token rewards and GAE
  update    the PPO loss, backward and AdamW step over the rollout's minibatches (epochs=1,
            minibatches=4)

Beside them, the same rollout generated the naive way (each new token a forward pass over the
whole sequence so far, no cache), to show what the cache saves. Rounds are interleaved; the
best of each is kept.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
os.environ.setdefault("LMFORGE_PROGRESS", "0")

import argparse  # noqa: E402
import copy  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from lmforge.models.transformer import ModelConfig, Transformer  # noqa: E402
from lmforge.train.ppo import ActorCritic, PromptItem, RLConfig, Rollouts, pack, rl_loss  # noqa: E402


def models():
    torch.manual_seed(0)
    cfg = ModelConfig(flavour="llama", vocab_size=2048, n_layer=4, n_head=4, n_kv_head=2, d_model=192, max_seq_len=256)
    policy = Transformer(cfg)
    value = Transformer(cfg, head="scalar")
    rm = copy.deepcopy(value).eval().requires_grad_(False)
    return policy, copy.deepcopy(policy), value, rm


def reward_from(rm):
    @torch.no_grad()
    def score(items, answers, finished):
        ids, mask, positions, _, P = pack([p.ids for p in items], answers, 0)
        out = rm(ids, positions=positions, pad_mask=mask)
        last = P + torch.tensor([len(a) for a in answers]) - 1
        return out[torch.arange(len(answers)), last]

    return score


@torch.no_grad()
def naive_rollout(policy, prompts, n_new):
    for p in prompts:
        ids = list(p)
        for _ in range(n_new):
            ids.append(int(policy(torch.tensor([ids]))[0, -1].argmax()))


def one_round(n_prompts: int, n_new: int) -> dict:
    policy, ref, value, rm = models()
    g = torch.Generator().manual_seed(1)
    prompts = [PromptItem(torch.randint(8, 2048, (int(torch.randint(16, 25, (1,), generator=g)),), generator=g).tolist()) for _ in range(n_prompts)]
    cfg = RLConfig(iterations=1)
    cfg.rollout.batch_size, cfg.rollout.max_new_tokens, cfg.rollout.unfinished_reward = n_prompts, n_new, None
    ac = ActorCritic(policy, value)
    ro = Rollouts(ac, ref.eval(), reward_from(rm), prompts, cfg, stop_ids=[2], pad_id=0)
    t0 = time.perf_counter()
    e = ro.make_experience()
    total = time.perf_counter() - t0
    rollout = e["stats"]["time/rollout"]
    ro.experience, ro.iteration, ro.update = e, 1, 0
    ro._order = [torch.randperm(e["n"])]
    objective = rl_loss(cfg)
    opt = torch.optim.AdamW(ac.parameters(), lr=1e-5, eps=1e-5)
    t0 = time.perf_counter()
    for _ in range(cfg.updates_per_iteration):
        mb = next(ro)
        loss, _ = objective(ac, mb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ac.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    update = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive_rollout(policy, [p.ids for p in prompts[:4]], n_new)
    naive = (time.perf_counter() - t0) * n_prompts / 4
    return {"rollout": rollout, "scoring": total - rollout, "update": update, "naive_rollout": naive, "tokens": int(e["answer_mask"].sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rounds = [one_round(args.prompts, args.new_tokens) for _ in range(args.rounds)]
    best = {k: min(r[k] for r in rounds) for k in ("rollout", "scoring", "update", "naive_rollout")}
    total = best["rollout"] + best["scoring"] + best["update"]
    print(f"one PPO iteration, small model, {args.prompts} prompts x {args.new_tokens} new tokens ({rounds[0]['tokens']} answer tokens); {torch.get_num_threads()} threads")
    print("| phase | seconds | share |")
    print("|---|---:|---:|")
    for k in ("rollout", "scoring", "update"):
        print(f"| {k} | {best[k]:.2f} | {100 * best[k] / total:.0f}% |")
    print(f"| iteration | {total:.2f} | |")
    print(f"| rollout without the KV cache (one prompt at a time, full recompute per token; extrapolated from 4) | {best['naive_rollout']:.2f} | {best['naive_rollout'] / best['rollout']:.1f}x the cached, batched rollout |")


if __name__ == "__main__":
    main()
