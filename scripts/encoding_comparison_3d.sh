#!/usr/bin/env bash
# Paper Table 2 with the 3D pool recipe of the shipped `3d` (sts + BraTS + synthetic shapes
# with inner parts), at a short budget: one model per cue (EGD, image only, Euclidean,
# Gaussian, geodesic), each from random weights on the same items, seed and number of
# iterations; then their stage-1 Dice (CNN alone) on dev_unseen 3D and the BraTS 3D objects.
# CPU, 1 torch thread and 1 sample worker each: about 20 minutes per model at 600 iterations.
#   bash scripts/encoding_comparison_3d.sh [RUNS_DIR] [ITERATIONS]
set -euo pipefail
RUNS=${1:-runs/cues3d}
ITERS=${2:-600}
mkdir -p "$RUNS"
for cue in egd none euclidean gaussian geodesic; do
  if [ -f "$RUNS/$cue/3d_$cue.pt" ]; then continue; fi
  python -m midseg.train --dims 3 --pool sts:2,brats2013:3 --cache .cache/pool \
    --synthetic 64 --synthetic-large 0.5 --synthetic-inclusions 0.7 --workers 1 \
    --cue "$cue" --lr 1e-3 --epochs 20 --max-iterations "$ITERS" --seed 5 --threads 1 \
    --val-every 300 --val-point-sets 2 --keep-best --checkpoint-minutes 5 --resume auto \
    --out "$RUNS/$cue" --name "3d_$cue" --no-progress > "$RUNS/$cue.log" 2>&1
done
python benchmarks/stage1.py --threads 1 --tasks dev3d,tc3d,wt3d \
  --models $(for cue in egd none euclidean gaussian geodesic; do echo "$RUNS/$cue/3d_$cue.pt"; done) \
  --json "$RUNS/stage1.json" | tee "$RUNS/stage1.md"
