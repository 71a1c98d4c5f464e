# docs/experiments/2026-12-05-feedback-condorcet62.md (commit 4c4490e)
set -ex
lmforge run --seed 62 world.population=condorcet world.labelers=6 --out runs/cond62/run
lmforge study feedback --seed 62 world.population=condorcet world.labelers=6 "feedback.methods=[nash]" --base runs/cond62/run --out runs/cond62/feedback
python docs/experiments/scripts/2026-12-05-condorcet-cycles.py runs/cond62/run
