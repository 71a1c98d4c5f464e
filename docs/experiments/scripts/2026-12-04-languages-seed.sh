#!/bin/bash
# One world seed of issue 35's study: the T sweep, mT0's four SFT settings from the T=3.3 base,
# reward models and PPO on English-only and on all-language preferences, one evaluation by language.
# usage: 2026-12-04-languages-seed.sh SEED WORKDIR DEADLINE_EPOCH [tiny]  (started by ...-all.sh)
S=$1; R=$2/s$S; END=$3; TINY=$4
mkdir -p $R; cd "$(dirname "$0")/../../.."
L() { python3 -m lmforge "$@"; }
left() { echo $(( END - $(date +%s) )); }
if [ -n "$TINY" ]; then
  P="train.steps=30 train.eval_every=10 data.tokenizer.vocab_size=512"; SF="epochs=1 select.lr=[1e-3]"; RMX="data.limit=40"; PX="iterations=2 eval.limit=12 rollout.batch_size=8"; EL=30; W="documents=2000 sft_prompts=200 rm_prompts=100 ppo_prompts=100 eval_prompts=30 calibration_prompts=60 heldout_documents=30"
else
  P=""; SF=""; RMX=""; PX=""; EL=900; W=""
fi
t0=$(date +%s)
L world --out $R/world --seed $S languages=[en,xv,xt] $W > $R/world.log 2>&1 || exit 1
echo "s$S world $(( $(date +%s) - t0 ))s"
for T in 1 2 3.3 5; do
  ( L pretrain recipes/small.yaml data.corpus=$R/world/pretrain.jsonl data.group_by=language data.temperature=$T $P --out $R/T$T > $R/T$T.log 2>&1 \
    && L eval ppl --model $R/T$T --data $R/world/heldout.jsonl --by language --json > $R/T$T.ppl.json 2>>$R/T$T.log \
    && L tokenizer stats --tokenizer $R/T$T/data --data $R/world/heldout.jsonl --by language --json > $R/T$T.tok.json 2>>$R/T$T.log
    echo "s$S T$T $(( $(date +%s) - t0 ))s rc=$?" ) &
done
B=$R/T3.3
while [ ! -f $R/T3.3.ppl.json ] && [ $(left) -gt 0 ]; do sleep 3; done
for s in en translate-train multilingual en-prompts; do
  ( L sft recipes/mt0/$s.yaml init=$B $SF --out $R/sft-$s > $R/sft-$s.log 2>&1; echo "s$S sft-$s $(( $(date +%s) - t0 ))s rc=$?" ) &
done
while [ ! -f $R/sft-multilingual/config.json ] && [ ! -f $R/sft-multilingual/summary.json ] && [ $(left) -gt 0 ]; do sleep 3; done
wait_for() { while [ ! -f "$1" ] && [ $(left) -gt "$2" ]; do sleep 3; done; }
wait_for $R/sft-multilingual/selection.json 0
for p in en all; do
  [ $p = en ] && C="data.train=[world:comparisons_en]" PP="rollout.prompts=world:ppo_prompts_en" || C="" PP=""
  ( L rm recipes/rm.yaml init=$R/sft-multilingual $C $RMX --out $R/rm-$p > $R/rm-$p.log 2>&1 && echo "s$S rm-$p $(( $(date +%s) - t0 ))s" \
    && timeout $(( $(left) - 75 )) python3 -m lmforge ppo recipes/ppo.yaml policy=$R/sft-multilingual reward=$R/rm-$p $PP $PX --out $R/ppo-$p > $R/ppo-$p.log 2>&1
    echo "s$S ppo-$p $(( $(date +%s) - t0 ))s rc=$?" ) &
done
while [ $(jobs -r | wc -l) -gt 0 ] && [ $(left) -gt 70 ]; do sleep 3; done
M="--model base=$B --model base-3shot=$B --shots base-3shot=3"
for s in en translate-train multilingual en-prompts; do [ -f $R/sft-$s/selection.json ] && M="$M --model sft-$s=$R/sft-$s"; done
for p in en all; do [ -f $R/ppo-$p/rl_summary.json ] && M="$M --model ppo-$p=$R/ppo-$p"; done
L eval policy $M --baseline sft-multilingual --prompts $R/world/eval.jsonl --limit $EL --device ${DEVICE:-cuda} --json > $R/eval.json 2> $R/eval.log
echo "s$S eval $(( $(date +%s) - t0 ))s rc=$?"
wait
