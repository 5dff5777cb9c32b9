#!/usr/bin/env bash
# The default recipe (r4's, the trainer's defaults) with the five leave-family-out families left out
# (runs/families/families.csv, dim-bench families): the run whose family probe measures transfer to
# chemistry and structure types pretraining never saw. Resumable: run it again to continue.
cd "$(dirname "$0")/../.." || exit 1
DATA=${DIM_DATA_DIR:-../shared/data}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec dim-train fit "$DATA/mp2018_e_form_gap.json.gz" --split "$DATA/mp2018_folds.json" \
    --exclude-ids runs/families/families.csv --run-dir runs/dim-mp2018-lfo --no-progress --resume --compile
