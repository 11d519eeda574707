#!/usr/bin/env bash
# Paper Table 2 with the pool recipe, in 2D: one model per cue (EGD, image only, Euclidean,
# Gaussian, geodesic), each trained from random weights on the same items, seed and
# iterations; then their stage-1 Dice on dev_unseen (2D) and the 2D test objects.
# CPU, 1 thread each: about 6-8 minutes per model on a 2-core machine.
#   bash scripts/encoding_comparison.sh [RUNS_DIR]
set -euo pipefail
RUNS=${1:-runs/cues2d}
mkdir -p "$RUNS"
for cue in egd none euclidean gaussian geodesic; do
  if [ -f "$RUNS/$cue/2d_$cue.pt" ]; then continue; fi
  python -m midseg.train --dims 2 --pool sts,fetal_brain_atlas,brats2013:2 \
    --slice-step fetal_brain_atlas=4 --slice-step brats2013=2 --synthetic 100 \
    --synthetic-large 0.3 --cue "$cue" --lr 1e-3 --epochs 6 --seed 5 --threads 1 \
    --val-every 1000 --keep-best --checkpoint-minutes 5 --resume auto \
    --out "$RUNS/$cue" --name "2d_$cue" --no-progress > "$RUNS/$cue.log" 2>&1
done
python benchmarks/stage1.py --threads 1 --tasks dev2d,tc2d,wt2d,brain2d,hc18 \
  --models $(for cue in egd none euclidean gaussian geodesic; do echo "$RUNS/$cue/2d_$cue.pt"; done) \
  --json "$RUNS/stage1.json" | tee "$RUNS/stage1.md"
