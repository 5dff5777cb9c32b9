#!/usr/bin/env bash
# The Fig. 11 ablation of dim-mp2018: the same options, only 'other crystal' false samples.
# Every option is stated, since the trainer's defaults follow the default weights. Finished (validation plateau);
# its checkpoint is not kept, so this line retrains it from the start.
cd "$(dirname "$0")/../.." || exit 1
DATA=${DIM_DATA_DIR:-../shared/data}
exec dim-train fit "$DATA/mp2018_e_form_gap.json.gz" --split "$DATA/mp2018_folds.json" \
    --run-dir runs/dim-mp2018-ablation --n-jobs 2 --no-progress --only-other \
    --local-weighting uniform --permutation sites --reconstruction 0 --local-sample neighbour \
    --lr 8.12e-4 --no-amsgrad --eps 1e-8 --weight-decay 0.01 --grad-clip 5 --masked-sites 0 --jitter 0 --shell-reconstruction 0 \
    --epochs 40 --hidden 64 --element-reconstruction 0
