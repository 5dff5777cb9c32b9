#!/usr/bin/env bash
# The full run of proxy v30 (runs/proxy-sweep: v5's recipe with --hidden 128 and --element-reconstruction 1.0,
# the sweep's best μ_G on both seeds run), 10 epochs as the default r2,
# with only 'other' false samples (the Fig. 11 ablation). Resumable: run it again to continue.
cd "$(dirname "$0")/../.." || exit 1
DATA=${DIM_DATA_DIR:-../shared/data}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec dim-train fit "$DATA/mp2018_e_form_gap.json.gz" --split "$DATA/mp2018_folds.json" \
    --run-dir runs/dim-mp2018-r4-ablation --no-progress --resume --epochs 10 --compile --hidden 128 --only-other \
    --local-weighting distance --permutation supercell --reconstruction 1.0 --element-reconstruction 1.0 \
    --lr 1e-4 --amsgrad --eps 1e-7 --weight-decay 1e-4 --grad-clip 0 --masked-sites 0 --jitter 0 \
    --shell-reconstruction 0 --local-sample neighbour --no-vacancies
