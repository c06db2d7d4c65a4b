#!/usr/bin/env bash
# The verifier figures of docs/reward_models.md, for two SFT seeds: SFT -> ORM -> PRM -> the test-time-compute figure
# (eval.py: best-of-N for N = 1..64 with every scorer, the weighted votes, PRM-guided beam search at equal tokens),
# then the reward-head read-out at the same settings and bench/rm_diagnosis.py for both read-outs.
#
#   bash runs/verifiers.sh        # about 35 minutes on a 2-core CPU; seed 0 reuses the speedrun's out/sft, orm, prm
#
# Re-running skips the stages that already finished (their summary file exists): delete out/<stage>/ to redo one.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
TIMES=out/verifiers_times.tsv         # stage <TAB> wall seconds, appended as each stage finishes
source runs/stage.sh

for seed in 0 1; do
    s=$([ "$seed" = 0 ] && echo "" || echo "_seed$seed")          # out/sft, out/sft_seed1, ...
    stage "sft$s"  "out/sft$s/summary.json"  python train_sft.py --seed="$seed" --out_dir="out/sft$s"
    stage "orm$s"  "out/orm$s/summary.json"  python train_orm.py --init_from="out/sft$s/ckpt.pt" --out_dir="out/orm$s"
    stage "prm$s"  "out/prm$s/summary.json"  python train_prm.py --init_from="out/sft$s/ckpt.pt" --out_dir="out/prm$s"
    stage "eval$s" "out/eval/sft${s}_k64.json" python eval.py --ckpt="out/sft$s/ckpt.pt" --k=64 \
        --best_of=1,2,4,8,16,32,64 --orm_ckpt="out/orm$s/ckpt.pt" --prm_ckpt="out/prm$s/ckpt.pt" --beam=1,2,4,8
done

# The same levers with the reward-head read-out, and what each verifier's score follows (bench/rm_diagnosis.py)
stage orm_head out/orm_head/summary.json python train_orm.py --readout=head --out_dir=out/orm_head
stage prm_head out/prm_head/summary.json python train_prm.py --readout=head --out_dir=out/prm_head
stage diagnosis_head out/rm_diagnosis_head/summary.json python bench/rm_diagnosis.py --out_dir=out/rm_diagnosis_head \
    --orm_ckpt=out/orm_head/ckpt.pt --prm_ckpt=out/prm_head/ckpt.pt
stage diagnosis out/rm_diagnosis/summary.json python bench/rm_diagnosis.py
stage diagnosis_seed1 out/rm_diagnosis_seed1/summary.json python bench/rm_diagnosis.py --ckpt=out/sft_seed1/ckpt.pt \
    --orm_ckpt=out/orm_seed1/ckpt.pt --prm_ckpt=out/prm_seed1/ckpt.pt --out_dir=out/rm_diagnosis_seed1

# Diverse sampling: a vote over 4 of 16 samples chosen by maximal marginal relevance (PRM-min relevance) vs the first 4
stage mmr out/eval_mmr/sft_k16.json python eval.py --ckpt=out/sft/ckpt.pt --k=16 --best_of=1,4,16 \
    --prm_ckpt=out/prm/ckpt.pt --mmr=4 --out_dir=out/eval_mmr
