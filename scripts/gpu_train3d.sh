#!/usr/bin/env bash
# Prepared on 2026-11-30 for a lent GPU that was then not available: not run yet.
# Two 3D stage-1 runs side by side on one GPU machine without TorchIO/SimpleITK (as lent on
# 2026-11-30: 16 cores, one H200): the pool read from a cache made beforehand with
#   python -m midseg.train --dims 3 --pool sts:2,fetal_brain_atlas,brats2013:3 --cache .cache/pool ...
# (any run that names --cache writes it), samples made by 7 worker processes per run.
#   a: sts:2 + fetal_brain_atlas + brats2013:3 + 192 synthetic shapes
#   b: the same without the fetal atlas
# Epochs give about 2,000 iterations each (41 and 33 per epoch), what 6.5 minutes were
# estimated to allow (0.12 s per sample and core); --max-minutes stops a slower machine.
# Usage: bash scripts/gpu_train3d.sh OUT_DIR MINUTES [PYTHON]
set -euo pipefail
out=${1:?OUT_DIR}; minutes=${2:?MINUTES}; py=${3:-python3}
common=(--dims 3 --cache .cache/pool --no-validation --synthetic 192 --synthetic-large 0.5
        --synthetic-inclusions 0.5 --augment-backend torch --workers 7 --batch-size 8
        --init 3d --lr 3e-4 --seed 5 --threads 2 --checkpoint-minutes 2
        --max-minutes "$minutes" --no-progress --name 3d)
"$py" -m midseg.train --pool sts:2,fetal_brain_atlas,brats2013:3 "${common[@]}" --epochs 48 \
  --out "$out/a" > "$out/a.log" 2>&1 &
"$py" -m midseg.train --pool sts:2,brats2013:3 "${common[@]}" --epochs 60 \
  --out "$out/b" > "$out/b.log" 2>&1 &
wait
