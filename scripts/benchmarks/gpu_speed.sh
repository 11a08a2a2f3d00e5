#!/usr/bin/env bash
# The speed measurements that need a GPU, as one command for one lent H100/H200 (about 4 minutes):
#
#   bash scripts/benchmarks/gpu_speed.sh              # on the GPU machine, with OUT set
#   bash scripts/benchmarks/gpu_speed.sh --dry-run    # the same steps on the CPU, small (prove it first)
#
# 1. scripts/benchmarks/benchmark.py on ResNet-18 at 96x96 (bf16, channels-last, static shapes, fused
#    optimizer): eager vs torch.compile(mode="reduce-overhead"), with MFU; alone on the GPU.
# 2. The speedrun, `zoo train resnet18 --recipe speedrun`, timed two ways: from before its process
#    starts to its exit (imports, data, compilation, training and the test pass all count), and
#    its training loops alone by CUDA events (metrics.json's train_seconds, as airbench times its
#    runs; the compiled runs after the first find a warm compile cache). Eager, then compiled, then
#    one more chosen on the validation score of the first two.
# Everything comes back as $OUT/speed.tgz: the benchmark's text and JSON, each speedrun's console
# log and metrics.json, and speedrun.tsv (one row a run). Steps that would start after DEADLINE
# seconds (default 420) are skipped, so the call ends inside its limit.
set -euo pipefail
cd "$(dirname "$0")/../.."
dry=""; [ "${1:-}" = "--dry-run" ] && dry=1
out=${OUT:-results/gpu}
work=$(mktemp -d)
mkdir -p "$out"
export ZOO_HOME=$PWD/.zoo_home PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
deadline=${DEADLINE:-420}

if [ -n "$dry" ]; then
  bench=(--model lenet --device cpu --train-steps 20 --warmup 5 --only train)
  run=(--accelerator cpu --train-limit 1024 --eval-limit 512 --epochs 1 --precision 32-true)
else
  bench=(--model resnet18 --device cuda --precision bf16-mixed --channels-last --train-steps 200 --warmup 15)
  run=(--accelerator gpu --devices 1)
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee "$work/gpu.txt"
fi

# 1. The step, eager vs compiled; perf_hints says when (and why) CUDA graphs are skipped.
TORCH_LOGS=perf_hints timeout 240 python3 scripts/benchmarks/benchmark.py "${bench[@]}" --static-shapes --fused \
    --compile reduce-overhead --repeats 1 --json "$work/bench.json" > "$work/bench.txt" 2>&1 \
  || echo "benchmark FAILED or timed out (bench.txt)"
tail -20 "$work/bench.txt"

# 2. The speedrun: wall time from before the process starts.
printf 'variant\twall_s\tprocess_s\tfit_s\ttrain_s\tepochs\tval_top1\ttest_top1\tcommand\n' > "$work/speedrun.tsv"
speedrun() {  # name, extra flags...
  local name=$1; shift
  if [ "$SECONDS" -gt "$deadline" ]; then echo "skipped $name (past ${deadline} s)"; return; fi
  local cmd=(python3 -m zoo.cli train resnet18 --recipe speedrun "${run[@]}" --no-progress --out "runs/speedrun-$name" "$@")
  local t0 t1
  t0=$(date +%s.%N)
  timeout 100 "${cmd[@]}" > "$work/speedrun-$name.txt" 2>&1 || echo "speedrun $name FAILED (speedrun-$name.txt)"
  t1=$(date +%s.%N)
  local m
  m=$( (ls -d runs/speedrun-"$name"/version_* 2>/dev/null || true) | sort -V | tail -1)/metrics.json
  if [ -f "$m" ]; then cp "$m" "$work/speedrun-$name.json"; fi
  python3 - "$name" "$t0" "$t1" "$m" "${cmd[*]}" >> "$work/speedrun.tsv" <<'PY'
import json, sys
from pathlib import Path
name, t0, t1, path, cmd = sys.argv[1:]
m = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
get = lambda k: m.get(k, "")
print("\t".join(str(v) for v in (name, f"{float(t1) - float(t0):.1f}", get("process_seconds"), get("fit_seconds"), get("train_seconds"),
                                   get("epochs"), get("val/acc"), get("test/acc"), cmd)))
PY
  tail -1 "$work/speedrun.tsv"
}
val_of() { python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('val/acc', 0))" "$work/speedrun-$1.json" 2>/dev/null || echo 0; }

speedrun eager
speedrun compiled --compile --compile-mode reduce-overhead
# The third run is chosen on validation only: fewer epochs when the compiled run already clears
# 0.945, more when it falls short of 0.94.
v=$(val_of compiled)
if python3 -c "import sys; sys.exit(not float('$v') >= 0.945)"; then
  speedrun compiled-8ep --compile --compile-mode reduce-overhead --epochs 8
elif python3 -c "import sys; sys.exit(not float('$v') < 0.94)"; then
  speedrun compiled-14ep --compile --compile-mode reduce-overhead --epochs 14
fi
column -t -s $'\t' "$work/speedrun.tsv" | cut -c1-150 || cat "$work/speedrun.tsv"
echo "gpu_speed.sh finished in $SECONDS s" | tee -a "$work/speedrun.tsv.log"
tar czf "$out/speed.tgz" -C "$work" .
rm -rf "$work"
