#!/usr/bin/env bash
# Train cards (their [training] tables are the recipes; cards/*/recipes/ID.toml for models with no card yet)
# in parallel on one GPU (the device machine), then evaluate each on its test split. RECIPES names them (default: the four MADE recipes, as they were trained). Writes weights and a results tarball (cards, logs, run states) under $OUT (default: runs/device).
# Data comes from .devdata/ (copies of ../shared/data and its materialize-data tool), laid out in /tmp/data.
# Usage: [RECIPES="id ..."] bash scripts/device_train.sh [TIME_LIMIT_SECONDS] [DEVICE]
set -u
LIMIT=${1:-330}
DEV=${2:-cuda}
OUT=${OUT:-runs/device}
mkdir -p "$OUT" /tmp/runs
python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . >/tmp/pip.log 2>&1 || { cat /tmp/pip.log; exit 1; }
python3 .devdata/tools/materialize-data /tmp/data >/dev/null || exit 1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
zoo plugins
pids=()
RECIPES=${RECIPES:-made-mnist-bin made-mnist-bin-agnostic made-mnist made-cifar10-gray}
for r in $RECIPES; do
  src=$r; for f in cards/*/recipes/$r.toml; do [ -f "$f" ] && src=$f; done
  ( zoo train "$src" --out /tmp/runs/$r --data-dir /tmp/data --device "$DEV" \
      --time-limit "$LIMIT" --threads 3 > /tmp/runs/$r.log 2>&1; echo "exit $?" >> /tmp/runs/$r.log ) &
  pids+=($!)
done
wait "${pids[@]}"
for r in $RECIPES; do
  echo "== $r"; grep -v "━" /tmp/runs/$r.log | tail -8
  cp /tmp/runs/$r/$r.safetensors "$OUT/" 2>/dev/null
done
tar czf "$OUT/results.tar.gz" -C /tmp/runs $(cd /tmp/runs && ls *.log */card.toml */state.json 2>/dev/null)
ls -la "$OUT"
