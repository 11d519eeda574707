#!/usr/bin/env bash
# The stage-1 models trained on the pool (midseg.datasets.REGISTRY: brats2013 training
# cases, sts, fetal_brain_atlas; never dev_unseen or a test object), as run on 2026-11-30:
# 2d (an ensemble), 3d, 2d_petct and 3d_petct are shipped (docs/decisions.md). Each
# network run fine-tunes a previous model, CPU, 1 torch thread each, the 2d and 3d
# runs side by side on a 2-core machine (2D about 40 min, 3D 75 min, cut by --max-minutes:
# repeat a cut run exactly with --max-iterations = its card's "iterations").
#   bash scripts/train_pool_models.sh [2d|ensemble2d|3d|petct2d|petct3d]
set -euo pipefail
case "${1:-all}" in
  2d|all)
    # shipped as 2d_egd, the EGD member of the 2d ensemble (ensemble2d below); it started
    # from the 2d shipped before it (commit 5c8bfc2, the sha256 in its card), as --init 2d
    # did then
    mkdir -p runs/init
    git show 5c8bfc2:models/2d.pt > runs/init/2d.pt
    git show 5c8bfc2:models/2d.json > runs/init/2d.json
    python -m midseg.train --dims 2 --pool sts,fetal_brain_atlas,brats2013:2 \
      --slice-step fetal_brain_atlas=4 --slice-step brats2013=2 --synthetic 100 \
      --synthetic-large 0.3 --init runs/init/2d.pt --lr 5e-4 --epochs 40 --seed 3 --threads 1 \
      --val-every 1000 --keep-best --checkpoint-minutes 5 --max-minutes 65 \
      --out runs/pool2d --name 2d --no-progress ;;&
  ensemble2d|all)
    # the shipped 2d: the mean of 2d_egd (above) and the Euclidean and Gaussian cue models of
    # scripts/encoding_comparison.sh (seed 5, 2730 iterations each), those two stored as float16
    # (docs/decisions.md, "2D stage 1: an ensemble of three cues")
    bash scripts/encoding_comparison.sh runs/cues2d
    python scripts/ensemble_card.py 2d runs/pool2d/2d.pt runs/cues2d/euclidean/2d_euclidean.pt \
      runs/cues2d/gaussian/2d_gaussian.pt --out runs/ensemble2d --fp16 euclidean,gaussian ;;&
  3d|all)
    # shipped as 3d on 2026-11-30 (docs/decisions.md): fine-tuned from the previous 3d (its
    # sha256 in the card) on sts and the BraTS training cases, no fetal atlas, 64 synthetic
    # shapes with inner parts; one sample worker; cut by --max-minutes at iteration 2519
    # (repeat exactly with --max-iterations 2519). --cache keeps the items it reads.
    # it started from the 3d shipped before it (unchanged since commit 5c8bfc2; the same
    # sha256 in the card), as --init 3d did then
    mkdir -p runs/init
    git show 5c8bfc2:models/3d.pt > runs/init/3d.pt
    git show 5c8bfc2:models/3d.json > runs/init/3d.json
    python -m midseg.train --dims 3 --pool sts:2,brats2013:3 --cache .cache/pool \
      --synthetic 64 --synthetic-large 0.5 --synthetic-inclusions 0.7 --workers 1 \
      --init runs/init/3d.pt \
      --lr 3e-4 --epochs 20 --seed 7 --threads 1 --val-every 300 --val-point-sets 2 \
      --keep-best --checkpoint-minutes 5 --max-minutes 70 --out runs/pool3d_incl --name 3d \
      --no-progress ;;&
  petct2d|all)
    # started from the 2d model before the pool models (commit 5c8bfc2; sha256 in the card)
    mkdir -p runs/init
    git show 5c8bfc2:models/2d.pt > runs/init/2d.pt
    git show 5c8bfc2:models/2d.json > runs/init/2d.json
    bash scripts/train_petct.sh 2 runs/init/2d.pt runs/petct2d ;;&
  petct3d|all)
    mkdir -p runs/init
    git show 5c8bfc2:models/3d.pt > runs/init/3d.pt
    git show 5c8bfc2:models/3d.json > runs/init/3d.json
    bash scripts/train_petct.sh 3 runs/init/3d.pt runs/petct3d ;;
esac
