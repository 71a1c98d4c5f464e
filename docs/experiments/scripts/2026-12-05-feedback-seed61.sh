# docs/experiments/2026-12-05-feedback-seed61.md: a fresh seed's run and the feedback study on it
# (the run at commit 273b866, the study at cc238de; the study's settings are its defaults).
set -ex
lmforge run --seed 61 --out runs/fb61/run
lmforge study feedback --base runs/fb61/run --seed 61 --out runs/fb61/feedback
