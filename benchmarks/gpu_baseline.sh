#!/usr/bin/env bash
# The prepared GPU measurement run that a lent H100/H200 executes (one call, under 5 minutes):
#   bash benchmarks/gpu_baseline.sh OUT_DIR [BUDGET_S] [--dry-run] [--only SECTIONS]
# Needs only the machine's own python3 with torch + transformers; nothing is installed.
# Writes OUT_DIR/gpu.json (rewritten after every section), OUT_DIR/log.txt, nvidia-smi.txt.
# Sections (kernels.measure, in this order): generate, attention_nomask, quant_ops, batch_steps
# (issue 19, kernels/measure_extra.py), then decode_steps, ops, model_steps, power and the other
# models' decode_steps; a section that would start after BUDGET_S seconds is skipped and listed.
# CPU check of every path, tiny shapes, seconds: bash benchmarks/gpu_baseline.sh /tmp/x 60 --dry-run
set -u
out=${1:?usage: gpu_baseline.sh OUT_DIR [BUDGET_S] [--dry-run] [--only SECTIONS]}
budget=${2:-230}
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$out"
py=${PYTHON:-python3}
(nvidia-smi; nvidia-smi -q -d CLOCK,POWER) >"$out/nvidia-smi.txt" 2>&1
start=$(date +%s)
model=llama2-7b
case " $* " in *" --dry-run "*) model=llama-68m ;; esac
LLMCOSIM_MEASURE_COMMAND="bash benchmarks/gpu_baseline.sh OUT_DIR $budget $*" \
PYTHONUNBUFFERED=1 PYTHONPATH=. HF_HUB_OFFLINE=1 "$py" -m kernels.measure --model "$model" \
    --out "$out/gpu.json" --budget-s "$budget" "$@" 2>&1 | tee "$out/log.txt"
echo "wall $(( $(date +%s) - start )) s" | tee -a "$out/log.txt"
# the file's issue-19 sections and provenance, checked where they were written
PYTHONPATH=. "$py" -c "import json, sys; from kernels.measure_extra import schema_problems as p
print('schema:', p(json.load(open(sys.argv[1]))) or 'ok')" "$out/gpu.json" 2>&1 | tee -a "$out/log.txt"
