#!/usr/bin/env bash
# The PET/CT models and their same-recipe CT-only controls, fine-tuned from the pool models
# (runs/pool2d/2d.pt, runs/pool3d/3d.pt or the shipped ones) on the sts training patients;
# validation on the held-back sts patients (midseg.datasets.REGISTRY["sts"]).
#   bash scripts/train_petct.sh 2|3 [INIT_MODEL] [RUNS_DIR]
set -euo pipefail
DIMS=$1
# default: the shipped single network of that dimensionality (2d is an ensemble: its EGD member)
if [ "$DIMS" = 2 ]; then DEFAULT_INIT=2d_egd; else DEFAULT_INIT=3d; fi
INIT=${2:-$DEFAULT_INIT}
RUNS=${3:-runs/petct${DIMS}d}
if [ "$DIMS" = 2 ]; then EPOCHS=40; VAL=500; else EPOCHS=30; VAL=100; fi
for target in tumour_petct tumour_ct; do
  python -m midseg.train --dims "$DIMS" --pool sts --pool-targets "sts=$target" \
    --init "$INIT" --lr 3e-4 --epochs "$EPOCHS" --seed 7 --threads 1 --val-every "$VAL" \
    --keep-best --checkpoint-minutes 5 --max-minutes 40 --resume auto \
    --out "$RUNS/$target" --name "${DIMS}d_${target#tumour_}" --no-progress \
    > "$RUNS.$target.log" 2>&1
done
