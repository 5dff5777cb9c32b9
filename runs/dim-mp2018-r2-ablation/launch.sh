#!/usr/bin/env bash
# The Fig. 11 ablation of dim-mp2018-r2: the same options and the same 10 epochs, but only the
# 'other crystal' false samples (--only-other), so it isolates the synthetic false samples.
# Resumable: run it again to continue.
cd "$(dirname "$0")/../.." || exit 1
DATA=${DIM_DATA_DIR:-../shared/data}
exec dim-train fit "$DATA/mp2018_e_form_gap.json.gz" --split "$DATA/mp2018_folds.json" \
    --run-dir runs/dim-mp2018-r2-ablation --n-jobs 2 --no-progress --resume --only-other --epochs 10 \
    --local-weighting distance --permutation supercell --reconstruction 1.0 \
    --local-sample neighbour --lr 1e-4 --amsgrad --eps 1e-7 --weight-decay 1e-4 --grad-clip 0 --masked-sites 0 --jitter 0 --shell-reconstruction 0 \
    --hidden 64 --element-reconstruction 0
