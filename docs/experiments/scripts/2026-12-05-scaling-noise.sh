# Run-to-run noise of the five-budget study's runs (docs/experiments/2026-12-05-scaling-five-budgets.md):
# the smallest budget's valley and the 1.5e13 budget's best run trained again with training seeds 1
# and 2 (initialisation and data order; the same data, model, steps and schedule).
set -ex
S=runs/scaling/world53/study/runs
for run in C5e11-16x1 C5e11-24x1 C5e11-32x1 C5e11-32x2 C5e11-48x2 C1.5e13-64x2; do
  for seed in 1 2; do
    lmforge pretrain $S/$run/config.yaml train.seed=$seed --out runs/scaling/world53/noise/$run-s$seed
  done
done
