# The dev run's AI-feedback measurements (docs/experiments/2026-12-04-nash-rlaif.md), run from the
# repository root on runs/dev1 (`lmforge run --seed 1 --out runs/dev1`). rl.yaml is the run's own ppo
# section (config.yaml) without policy, reward and algorithm; train_rankings / heldout_rankings are
# labels/rankings.jsonl split by prompt with lmforge.eval.reward.held_out(comparisons, 0.1), the
# reward model's own split.
set -ex
W=runs/rlaif; D=runs/dev1
lmforge label judge-data --rankings $W/train_rankings.jsonl --out $W/judge_train.jsonl --pairs 2 --seed 0
lmforge label judge-data --rankings $W/heldout_rankings.jsonl --out $W/judge_val.jsonl --pairs 2 --seed 1
lmforge sft init=$D/sft "data.train=[$W/judge_train.jsonl]" data.val=$W/judge_val.jsonl epochs=2 "select.lr=[0.001]" --out $W/judge
for m in judge:$W/judge sft_as_judge:$D/sft rm:$D/rm; do
  lmforge eval rm --model ${m#*:} --data $W/heldout_rankings.jsonl --world $D/world --json > $W/eval_${m%%:*}.json
done
lmforge rl $W/rl.yaml --algorithm nash-md policy=$D/sft reward=$W/judge --out $W/nash_judge
# expert iteration: three rounds
P=$D/sft
for r in 1 2 3; do
  lmforge sample --model $P --prompts $D/world/ppo_prompts.jsonl --k 4 --max-new-tokens 16 --seed $r --out $W/ei/samples$r.jsonl --json > $W/ei/sample$r.json
  lmforge label --samples $W/ei/samples$r.jsonl --labeler rm:$D/rm --out $W/ei/rankings$r.jsonl
  lmforge label best-data --rankings $W/ei/rankings$r.jsonl --out $W/ei/best$r.jsonl --json > $W/ei/best$r.json
  lmforge sft init=$P "data.train=[$W/ei/best$r.jsonl]" epochs=1 select.val_loss=false train.optim.lr=3.0e-4 --out $W/ei/round$r
  P=$W/ei/round$r
done
lmforge eval policy --model sft=$D/sft --model ppo=$D/ppo --model dpo=$D/dpo --model nash_judge=$W/nash_judge \
  --model ei1=$W/ei/round1 --model ei2=$W/ei/round2 --model ei3=$W/ei/round3 --baseline sft --json > $W/policy_eval.json
