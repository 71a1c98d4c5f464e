#!/bin/bash
# Issue 35's study on fresh world seeds, several seeds side by side on one machine (run on one H200:
# three seeds in 5.7 minutes; docs/experiments/2026-12-04-languages-seeds.md).
#   SEEDS="41 42 43" bash docs/experiments/scripts/2026-12-04-languages-all.sh OUTDIR SECONDS [tiny]
# SECONDS bounds the whole (PPO is cut short and the evaluation runs on what finished); `tiny`: a
# small world and a few steps, to try the script on a CPU (DEVICE=cpu). The results (JSON, logs; no
# weights) are tarred into OUTDIR/results.tgz; 2026-12-04-languages-summary.py reads them.
O=$1; END=$(( $(date +%s) + $2 )); R=${WORK:-/tmp/ml35}
export LMFORGE_PROGRESS=0 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=2 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
H=$(cd "$(dirname "$0")" && pwd); cd "$H/../../.."; export PYTHONPATH=$PWD
mkdir -p $R $O
(nvidia-smi --query-gpu=name,memory.used --format=csv; python3 -c "import torch;print(torch.__version__, torch.cuda.is_available())") > $O/env.txt 2>&1
for S in ${SEEDS:-41 42 43}; do bash "$H/2026-12-04-languages-seed.sh" $S $R $END $3 > $R/chain$S.log 2>&1 & done
while [ $(jobs -r | wc -l) -gt 0 ] && [ $(date +%s) -lt $(( END + 60 )) ]; do sleep 5; done
cat $R/chain*.log
cd $R && tar czf $O/results.tgz --exclude='*.safetensors' --exclude='checkpoints' --exclude='trials' --exclude='*.jsonl' --exclude='*.bin' --exclude='data' --exclude='world' --exclude='*.png' --exclude='value' . ; ls -la $O
