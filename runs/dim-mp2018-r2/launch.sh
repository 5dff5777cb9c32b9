#!/usr/bin/env bash
# The full run of the proxy sweep's winner (runs/proxy-sweep, v5): the authors' per-site (d+1)^-2 local
# weighting, supercell-atom false permutations, the label-free reconstruction term, and the authors'
# optimiser settings; everything else as dim-mp2018. Resumable: run it again to continue.
cd "$(dirname "$0")/../.." || exit 1
DATA=${DIM_DATA_DIR:-../shared/data}
exec dim-train fit "$DATA/mp2018_e_form_gap.json.gz" --split "$DATA/mp2018_folds.json" \
    --run-dir runs/dim-mp2018-r2 --n-jobs 2 --no-progress --resume \
    --local-weighting distance --permutation supercell --reconstruction 1.0 \
    --lr 1e-4 --amsgrad --eps 1e-7 --weight-decay 1e-4 --grad-clip 0 --masked-sites 0 --jitter 0 --shell-reconstruction 0 --local-sample neighbour \
    --epochs 40 --hidden 64 --element-reconstruction 0
