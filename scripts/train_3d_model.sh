#!/bin/bash
# Train the shipped `3d` model from random weights: the three runs of models/3d.json's
# "lineage", each cut at the iteration it kept (--max-iterations in place of the original
# --max-minutes; the learning-rate schedule depends on --epochs only, so the kept weights
# are the same). On a 2-core CPU (round 1 on 1 thread, rounds 2-3 on 2, as originally)
# this took 88 min and wrote weights bitwise identical to models/3d.pt at every round.
#
# Usage: scripts/train_3d_model.sh [OUT]     (default OUT: runs/3d_recipe)
# Needs ../shared/data/brats2013 (see its README). Run from the repository root.
set -euo pipefail
OUT=${1:-runs/3d_recipe}
DATA=${MIDSEG_BRATS:-../shared/data/brats2013}
C=(--dims 3 --data "$DATA"
   --train-cases brats_2013_pat0003_1,brats_2013_pat0004_1,brats_2013_pat0005_1
   --val-cases brats_2013_pat0006_1 --cue egd --keep-best --checkpoint-minutes 4
   --name 3d --no-progress)
echo "round 1 of 3 ($(date))"
midseg train "${C[@]}" --epochs 160 --lr 1e-3 --seed 0 --threads 1 --val-every 100 \
    --synthetic 12 --max-iterations 1700 --out "$OUT/r1"
echo "round 2 of 3 ($(date))"
midseg train "${C[@]}" --init "$OUT/r1/3d.pt" --epochs 200 --lr 5e-4 --seed 1 --threads 2 \
    --val-every 150 --val-point-sets 4 --synthetic 12 --max-iterations 1350 --out "$OUT/r2"
echo "round 3 of 3 ($(date))"
midseg train "${C[@]}" --init "$OUT/r2/3d.pt" --epochs 90 --lr 2.5e-4 --seed 2 --threads 2 \
    --val-every 150 --val-point-sets 4 --synthetic 24 --max-iterations 1350 --out "$OUT/r3"
echo "done ($(date)): $OUT/r3/3d.pt"
sha256sum "$OUT/r3/3d.pt" models/3d.pt
