#!/usr/bin/env bash
# FID of bundled cards against their dataset's test split, and the real-vs-real floor at the same n, recorded in
# the cards and in zoo/fid_floors.toml with the commands that reproduce them. Inception on 2 CPU cores runs at
# about 9 images/s, so plan this like a training run:
#   N=2048 THREADS=1 bash scripts/fid_cards.sh mnist var-mnist pixelcnn-mnist made-mnist
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
THREADS=${THREADS:-2}
DATASET=$1
shift
zoo fid-floor "$DATASET" -n "$N" --threads "$THREADS" --write zoo/fid_floors.toml
for id in "$@"; do
  card=$(python -c "import zoo; print(zoo.get_card('$id').path)")
  zoo eval "$id" --fid -n "$N" --seed 0 --threads "$THREADS" --write-card "$card"
done
