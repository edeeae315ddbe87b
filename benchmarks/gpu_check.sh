#!/usr/bin/env bash
# One-shot GPU check for the speed work: the benchmark (and speed=max at batch 1024 checkpointing
# every 10 epochs, to show what per-epoch checkpoints cost), the epoch boundary's host time,
# speed=default vs speed=max training to accuracy with timing and memory, the CUDA tests, and a
# bf16-mixed speed=max figure. Logs go
# to $OUT (default ./gpu_out); run folders to a temporary directory. Run from the repository
# root: `bash benchmarks/gpu_check.sh`. Without CUDA it still runs, smaller (CUDA tests skip).
# SPEEDS (default "default max") picks the training runs; BF16=0 skips the bf16 figure;
# STEPS and EPOCHS override the benchmark's step options and the training runs' epochs.
# Its timeouts add up to under 10 minutes, one call of a lent GPU machine.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
RUNS=$(mktemp -d)
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
TIMEFORMAT="%R s"
log() { echo "== $*" | tee -a "$OUT/$LOG"; }
if [ "$($PY -c 'import torch; print(int(torch.cuda.is_available()))')" = 1 ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/env.txt"
  steps=${STEPS:-"--steps 200 --repeats 5 --warmup 30"}
  epochs=${EPOCHS:-5}
else
  steps="--steps 20 --repeats 2 --warmup 5 --batch-sizes 128 --nets mnist --threads 1"
  epochs=1
fi
$PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" \
  | tee -a "$OUT/env.txt"

LOG=bench.log
log "benchmark: benchmarks/speed.py $steps"
timeout 170 $PY benchmarks/speed.py $steps --json "$OUT/bench.json" 2>&1 \
  | grep -v -e "it/s" -e "Warning" -e "warn(" -e "litlogger" -e "available:" | tee -a "$OUT/$LOG"

log "speed=max at batch 1024 with checkpoints every 10 epochs instead of every epoch"
timeout 90 $PY benchmarks/speed.py $steps --batch-sizes 1024 --paths nnlab_max bare_graph \
  --max-overrides +callbacks.model_checkpoint.every_n_epochs=10 2>&1 \
  | grep -e "samples/s" -e "FAILED" -e "|" | tee -a "$OUT/$LOG"

log "epoch boundary, speed=max, batch 1024: host time, and from its first host read on"
timeout 45 $PY benchmarks/epoch_boundary.py --speed max --epochs 60 2>&1 \
  | grep -e "boundary median" -e "Error" | tee -a "$OUT/$LOG"

LOG=train.log
log "training to accuracy: synthetic MNIST, 784-64-128-64-10 BatchNorm, Adam, batch 128, $epochs epochs"
for speed in ${SPEEDS:-default max}; do
  log "speed=$speed"
  timeout 60 $PY train.py data=synthetic_mnist "model.hidden_sizes=[64,128,64]" model.norm=batchnorm \
    speed=$speed trainer.max_epochs=$epochs logger=csv hydra.run.dir="$RUNS/$speed" \
    +callbacks.speed_report._target_=nnlab.speed.SpeedReport 2>&1 \
    | grep -e "speed:" -e "Error" | tee -a "$OUT/$LOG"
  $PY -c "import json,sys; r=json.load(open(sys.argv[1])); print({k: round(v, 4) for k, v in {**r['val'], **r['test']}.items()})" \
    "$RUNS/$speed/results.json" 2>&1 | tee -a "$OUT/$LOG"
done
log "startup: python train.py --cfg job (3 times)"
for i in 1 2 3; do { time $PY train.py --cfg job >/dev/null; } 2>&1 | tee -a "$OUT/$LOG"; done

LOG=tests.log
log "tests/test_speed.py tests/test_loaders.py tests/test_checkpoint.py tests/test_lightning_internals.py (on the GPU)"
timeout 100 $PY -m pytest -q -x -p no:cacheprovider tests/test_speed.py tests/test_loaders.py tests/test_checkpoint.py tests/test_lightning_internals.py 2>&1 | tail -30 | tee -a "$OUT/$LOG"

[ "${BF16:-1}" = 1 ] || exit 0
LOG=bench.log
log "bf16-mixed speed=max, mnist net"
timeout 25 $PY benchmarks/speed.py $steps --nets mnist --paths nnlab_max \
  --max-overrides speed.gpu_precision=bf16-mixed 2>&1 | grep -e "samples/s" -e "FAILED" -e "|" \
  | tee -a "$OUT/$LOG"
rm -rf "$RUNS"
