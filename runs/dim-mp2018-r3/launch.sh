#!/usr/bin/env bash
# The full run of proxy v17 (runs/proxy-sweep, v5's recipe with --hidden 128): the default weights' options
# with twice the embedding and attention width; everything else as dim-mp2018-r2. Resumable: run it again.
cd "$(dirname "$0")/../.." || exit 1
DATA=${DIM_DATA_DIR:-../shared/data}
exec dim-train fit "$DATA/mp2018_e_form_gap.json.gz" --split "$DATA/mp2018_folds.json" \
    --run-dir runs/dim-mp2018-r3 --n-jobs 2 --no-progress --resume --hidden 128 \
    --local-weighting distance --permutation supercell --reconstruction 1.0 \
    --lr 1e-4 --amsgrad --eps 1e-7 --weight-decay 1e-4 --grad-clip 0 --masked-sites 0 --jitter 0 \
    --shell-reconstruction 0 --local-sample neighbour \
    --epochs 40 --element-reconstruction 0
