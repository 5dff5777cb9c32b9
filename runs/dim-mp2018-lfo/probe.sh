#!/usr/bin/env bash
# The leave-family-out probe of this run (dim-bench probe --families), with the label-free diagnosis, the
# pooled readout, Magpie and the combinations beside it. Resumable: run it again to continue.
cd "$(dirname "$0")/../.." || exit 1
DATA=${DIM_DATA_DIR:-../shared/data}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec dim-bench probe "$DATA/mp2018_e_form_gap.json.gz" --split "$DATA/mp2018_folds.json" \
    --exclude-ids runs/families/families.csv --run-dir runs/dim-mp2018-lfo --no-progress \
    --families runs/families/families.csv --diagnose --readouts global_mu pooled --peers magpie chgnet \
    --combos kept+start kept+magpie start+magpie "$@"
