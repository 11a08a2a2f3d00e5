#!/usr/bin/env bash
# One GPU command for the leaderboard's six GPU rows, for one lent H100/H200:
#
#   bash scripts/gpu_leaderboard.sh              # on the GPU machine: about 8 minutes on an H200
#   bash scripts/gpu_leaderboard.sh --dry-run    # the same steps on the CPU, a few batches each (prove it first)
#   LANES="softmax lenet|mlp" bash scripts/gpu_leaderboard.sh --dry-run   # the plumbing alone, in a minute
#   LANES="googlenet|nin" bash scripts/gpu_leaderboard.sh                   # only some rows
#
# Three lanes of trainings run side by side on the one GPU (an H200 stayed 98-100 % busy that way;
# one training alone leaves it idle between small kernels). Everything comes back through $OUT in
# at most 8 files: meta.tgz (leaderboard.csv, each run's logs, plots, the calibration benchmark,
# the console logs) and weights.tar.part-NNN (+ weights.tar.sha256), the checkpoints as float16
# split into 16 MiB parts. alexnet and vgg11 are left out of the parts (about 90 MiB each as
# float16: too large to bundle; they stay on the Hub only). Back on the development machine:
#
#   mkdir -p results/gpu-run && tar xzf OUT/meta.tgz -C results/gpu-run
#   python scripts/reproduce_leaderboard.py --merge results/gpu-run/leaderboard.csv   # rows, plots, README
#   python scripts/bundle_weights.py --from OUT                                         # one step: unpack, bundle, re-score
set -euo pipefail
cd "$(dirname "$0")/.."
dry=""; [ "${1:-}" = "--dry-run" ] && dry=1
out=${OUT:-results/gpu}
work=$(mktemp -d)
mkdir -p "$out" "$work/logs" "$work/plots"
export ZOO_HOME=$PWD/.zoo_home PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
IFS='|' read -r -a lanes <<< "${LANES:-resnet18 nin|densenet vgg11|googlenet alexnet}"

if [ -n "$dry" ]; then
  run_args=(--quick --accelerator cpu)
  echo "dry run on the CPU" > "$work/gpu.txt"
else
  run_args=(--accelerator gpu --devices 1 --precision bf16-mixed --channels-last)
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$work/gpu.txt"
  # Calibration first, alone on the GPU: images/s of the real loop (SKIP_CALIBRATION=1: when
  # scripts/benchmarks/gpu_speed.sh measures the step in the same call).
  [ -n "${SKIP_CALIBRATION:-}" ] || python3 scripts/benchmarks/benchmark.py --model resnet18 --device cuda --precision bf16-mixed --channels-last \
      --train-steps 40 --warmup 10 --repeats 1 --json "$work/bench-resnet18.json" > "$work/bench-resnet18.txt" 2>&1
fi

start=$SECONDS
for lane in "${lanes[@]}"; do
  (
    for m in $lane; do
      python3 scripts/reproduce_leaderboard.py --models "$m" "${run_args[@]}" --no-progress --no-readme \
          --results "$work/lb-$m.csv" --plots "$work/plots" --out runs/leaderboard > "$work/log-$m.txt" 2>&1 \
        && echo "done $m ($((SECONDS - start)) s)" || echo "FAILED $m (see log-$m.txt in meta.tgz)"
    done
  ) &
done
wait
echo "all lanes finished in $((SECONDS - start)) s" | tee -a "$work/gpu.txt"

# One leaderboard.csv, and each run's CSV log, hyperparameters and metrics.
python3 - "$work" <<'PY'
import shutil, sys
from pathlib import Path
import zoo
from zoo.report import read_leaderboard_csv, write_leaderboard_csv
work = Path(sys.argv[1])
rows = {}
for csv in sorted(work.glob("lb-*.csv")):
    rows.update(read_leaderboard_csv(csv))
write_leaderboard_csv(rows.values(), work / "leaderboard.csv", zoo.list_models())
for name in rows:
    runs = sorted(Path("runs/leaderboard", name).glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if runs:
        dst = work / "logs" / name
        dst.mkdir(parents=True, exist_ok=True)
        if (runs[-1] / "metrics.json").is_file():  # absent when the run failed
            shutil.copyfile(runs[-1] / "metrics.json", dst / "metrics.json")
        # One CSV log per (re)start; a run that never restarted has only version_0.
        for f in sorted((runs[-1] / "logs").glob("version_*/*")):
            shutil.copyfile(f, dst / (f.name if f.parent.name == "version_0" else f"{f.parent.name}-{f.name}"))
print(f"leaderboard: {', '.join(rows)}")
PY

# Every trained checkpoint small enough to bundle (24 MiB as float16): at most 6 parts + their sha256 + meta.tgz = 8 files.
folders=()
for m in ${lanes[*]}; do
  if [ -f "$ZOO_HOME/checkpoints/$m/model.safetensors" ]; then folders+=("$ZOO_HOME/checkpoints/$m"); fi
done
if [ ${#folders[@]} -gt 0 ]; then
  python3 scripts/pack_weights.py pack "${folders[@]}" --out "$out" --max-mb 24 --max-parts 6
fi
tar czf "$out/meta.tgz" -C "$work" .
rm -rf "$work"
ls -l "$out"
