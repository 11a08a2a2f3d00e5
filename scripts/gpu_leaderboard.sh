#!/usr/bin/env bash
# The prepared GPU run for the leaderboard's six GPU rows (issue 5), for one lent H100/H200.
# Proven on CPU first with:  python scripts/reproduce_leaderboard.py --quick
# On the device (torch 2.11, no network; its image has lightning, timm, torchmetrics, matplotlib):
#   bash scripts/gpu_leaderboard.sh "resnet18,densenet,googlenet" 30   # one call, < 10 min
#   bash scripts/gpu_leaderboard.sh "alexnet,vgg11,nin" 20             # a second call
# Back through $OUT (at most 8 files of 16 MiB, 64 MiB a call): meta.tgz (CSV, log, plots,
# calibration); the checkpoint folders as 15 MiB parts, fetched by later calls (see below).
set -euo pipefail
models=${1:-resnet18,densenet,googlenet,alexnet,vgg11,nin}
epochs=${2:-}
out=${OUT:-results/gpu}
mkdir -p "$out"
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || export PYTHONPATH=$PWD
export ZOO_HOME=$PWD/.zoo_home
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
# Calibration first: 30 s that tell whether the epoch budget fits (images/s of the real loop).
python3 scripts/benchmark.py --model resnet18 --device cuda --precision bf16-mixed --channels-last \
    --train-steps 30 --warmup 10 --repeats 1 --only train,infer --json "$out/bench-resnet18.json" | tail -12
python3 scripts/reproduce_leaderboard.py --models "$models" --accelerator gpu --devices 1 --precision bf16-mixed \
    --channels-last --no-progress --results "$out/leaderboard.csv" --plots "$out/plots" --no-readme \
    ${epochs:+--epochs "$epochs"} 2>&1 | tee "$out/log.txt" | grep -E "^===|FAILED|wrote"
# One file for everything small; checkpoints split into 15 MiB parts kept on the machine (they stay
# while it is warm) for follow-up calls to copy into $OUT a few at a time (64 MiB per call):
#   run: mkdir -p $OUT && cp .zoo_home/parts/resnet18.tar.part-0* $OUT/
tar czf "$out/meta.tgz" -C "$out" leaderboard.csv log.txt plots gpu.txt bench-resnet18.json
rm -rf "$out/plots" "$out/leaderboard.csv" "$out/log.txt" "$out/gpu.txt" "$out/bench-resnet18.json"
mkdir -p "$ZOO_HOME/parts"
for m in ${models//,/ }; do
  [ -f "$ZOO_HOME/checkpoints/$m/model.safetensors" ] || continue
  tar cf - -C "$ZOO_HOME/checkpoints" "$m" | split -b 15m -d - "$ZOO_HOME/parts/$m.tar.part-"
done
ls -l "$ZOO_HOME/parts"
