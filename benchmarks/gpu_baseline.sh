#!/usr/bin/env bash
# The prepared GPU measurement run that a lent H100/H200 executes (one call, a few minutes):
#   bash benchmarks/gpu_baseline.sh OUT_DIR [BUDGET_S] [--dry-run]
# Needs only the machine's own python3 with torch + transformers; nothing is installed.
# Writes OUT_DIR/gpu.json (rewritten after every section), OUT_DIR/log.txt, nvidia-smi.txt.
set -u
out=${1:?usage: gpu_baseline.sh OUT_DIR [BUDGET_S] [--dry-run]}
budget=${2:-240}
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$out"
py=${PYTHON:-python3}
(nvidia-smi; nvidia-smi -q -d CLOCK,POWER) >"$out/nvidia-smi.txt" 2>&1
start=$(date +%s)
PYTHONUNBUFFERED=1 PYTHONPATH=. HF_HUB_OFFLINE=1 "$py" -m kernels.measure --model llama2-7b \
    --out "$out/gpu.json" --budget-s "$budget" "$@" 2>&1 | tee "$out/log.txt"
echo "wall $(( $(date +%s) - start )) s" | tee -a "$out/log.txt"
