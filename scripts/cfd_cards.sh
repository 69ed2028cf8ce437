#!/usr/bin/env bash
# cfd (classifier Frechet distance, zoo.evaluate.cfd) of bundled cards at n samples against the full test split,
# recorded in each card with the command that reproduces it; the real-vs-real floor at the same n goes into the
# note. Each card is sampled the way its card recommends (its [sampling] preset), as its FID is. Seconds of
# classifier features per card; the sampling is most of the cost.
#   N=10000 THREADS=1 bash scripts/cfd_cards.sh made-mnist-bin made-mnist pixelcnn-mnist var-mnist
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
THREADS=${THREADS:-1}
for id in "$@"; do
  card=$(python -c "import zoo; print(zoo.get_card('$id').path)")
  zoo eval "$id" --cfd -n "$N" --seed 0 --threads "$THREADS" --write-card "$card"
done
