#!/usr/bin/env bash
# The whole pipeline, one command: SFT -> PPO -> GRPO -> expert iteration -> ORM and PRM -> eval.py (maj@k, rerank,
# best-of-N) -> distillation, every stage at its defaults, ending in a report card (out/report.md, out/report.png).
#
#   bash runs/speedrun.sh        # under half an hour on a 2-core CPU, from a fresh clone
#
# A stage that fails stops the run with its own one-line error; every finished stage's outputs stay in out/.
# Re-running skips the stages that already finished (their summary file exists): delete out/<stage>/ to redo one.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
TIMES=out/speedrun_times.tsv          # stage <TAB> wall seconds, appended as each stage finishes

source runs/stage.sh

stage sft              out/sft/summary.json              python train_sft.py
stage ppo              out/ppo/summary.json              python train_ppo.py
stage grpo             out/grpo/summary.json             python train_grpo.py
stage expert_iteration out/expert_iteration/summary.json python train_expert_iteration.py
stage orm              out/orm/summary.json              python train_orm.py
stage prm              out/prm/summary.json              python train_prm.py
stage eval             out/eval/sft_k16.json             python eval.py --ckpt=out/sft/ckpt.pt --k=16 \
                                                             --orm_ckpt=out/orm/ckpt.pt --prm_ckpt=out/prm/ckpt.pt
stage distill          out/distill/summary.json          python train_distill.py
python runs/report.py
