#!/usr/bin/env bash
# The first default weights: the paper's plain mean over pairs, site permutations, the paper's learning rate.
# Every option is stated: the trainer's defaults are now dim-mp2018-r2's recipe. Finished (validation plateau);
# its checkpoint is not kept, so this line retrains it from the start.
cd "$(dirname "$0")/../.." || exit 1
DATA=${DIM_DATA_DIR:-../shared/data}
exec dim-train fit "$DATA/mp2018_e_form_gap.json.gz" --split "$DATA/mp2018_folds.json" \
    --run-dir runs/dim-mp2018 --n-jobs 2 --no-progress \
    --local-weighting uniform --permutation sites --reconstruction 0 --local-sample neighbour \
    --lr 8.12e-4 --no-amsgrad --eps 1e-8 --weight-decay 0.01 --grad-clip 5 --masked-sites 0 --jitter 0 --shell-reconstruction 0 \
    --epochs 40 --hidden 64 --element-reconstruction 0
