#!/usr/bin/env bash
# Train cards (their [training] tables are the recipes; cards/*/recipes/ID.toml for recipes with no card)
# in parallel on one GPU (the device machine); each run evaluates itself on its test split (NLL) when it stops.
# RECIPES names them: card or recipe ids, or "gpu" for every GPU-sized recipe (cards/*/recipes/*-gpu.toml, one
# per shipped model, issue 11); the default is the four MADE recipes, as they were trained. Writes weights and a
# results tarball (cards, logs, run states) under $OUT (default: runs/device).
# Data: DATA=DIR names a data root that holds the datasets; otherwise .devdata/ (copies of ../shared/data and
# its materialize-data tool) is laid out in /tmp/data.
# Usage: [RECIPES="id ..." | RECIPES=gpu] [DATA=DIR] bash scripts/device_train.sh [TIME_LIMIT_SECONDS] [DEVICE]
# TRAIN_ARGS: more `zoo train` flags for every run. A check on a CPU with tiny settings (2 steps, 64 validation
# images, no test NLL): RECIPES=gpu DATA=/work/data OUT=/tmp/dev TRAIN_ARGS="--max-steps 2 --val-n 64 --no-test \
#   --batch-size 8" bash scripts/device_train.sh 60 cpu
set -u
LIMIT=${1:-330}
DEV=${2:-cuda}
OUT=${OUT:-runs/device}
mkdir -p "$OUT"
python3 -c "import zoo" 2>/dev/null ||
  python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . >/tmp/pip.log 2>&1 || { cat /tmp/pip.log; exit 1; }
DATA=${DATA:-}
if [ -z "$DATA" ]; then python3 .devdata/tools/materialize-data /tmp/data >/dev/null || exit 1; DATA=/tmp/data; fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
zoo plugins
# decode each image-folder dataset once, before the runs start in parallel (they share its cache)
python3 -c "from zoo.data import load_dataset
for d in ('mnist', 'cifar10'):
    for s in ('train', 'test'):
        load_dataset(d, s, '$DATA')" || exit 1
pids=()
RECIPES=${RECIPES:-made-mnist-bin made-mnist-bin-agnostic made-mnist made-cifar10-gray}
[ "$RECIPES" = gpu ] && RECIPES=$(cd cards && ls */recipes/*-gpu.toml | sed 's|.*/||; s|\.toml$||')
RUNS=${RUNS:-/tmp/runs}
mkdir -p "$RUNS"
for r in $RECIPES; do
  src=$r; for f in cards/*/recipes/$r.toml; do [ -f "$f" ] && src=$f; done
  ( zoo train "$src" --out $RUNS/$r --data-dir "$DATA" --device "$DEV" \
      --time-limit "$LIMIT" --threads ${THREADS:-3} ${TRAIN_ARGS:-} > $RUNS/$r.log 2>&1; echo "exit $?" >> $RUNS/$r.log ) &
  pids+=($!)
done
wait "${pids[@]}"
for r in $RECIPES; do
  echo "== $r"; grep -v "━" $RUNS/$r.log | tail -8
  # weights of at most 16 MiB (the device tool's limit) come back as files of their own, larger ones as a
  # float16 copy, NAME.f16.safetensors; every run's card, log, state and metrics go into the results tarball
  f=$RUNS/$r/$r.safetensors
  [ -f "$f" ] && python3 -c "import sys, os, torch; from safetensors.torch import load_file, save_file
f, out = sys.argv[1], sys.argv[2]
if os.path.getsize(f) <= 16000000:
    import shutil; shutil.copy(f, out)
else:
    t = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(f).items()}
    save_file(t, os.path.join(out, os.path.basename(f)[:-12] + '.f16.safetensors'))" "$f" "$OUT"
done
tar czf "$OUT/results.tar.gz" -C $RUNS $(cd $RUNS && ls *.log */card.toml */state.json */metrics.jsonl 2>/dev/null)
ls -la "$OUT"
