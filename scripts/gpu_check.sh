#!/usr/bin/env bash
# GPU performance check (a few minutes on an H100-class card): `gdas bench search` in fp32, NCHW and
# channels_last (the measurement the CUDA side of the `auto` memory format waits for), and in bf16 +
# channels_last, `gdas bench data`, and one timed search epoch of the cifar10 preset on synthetic
# CIFAR-sized data (50,000 images) in the same settings with the projected 240-epoch search time. One
# JSON file per measurement goes to $OUT (or ./gpu-check); record the card and the numbers in
# docs/performance.md.
# Usage: scripts/gpu_check.sh            (PYTHON=/path/to/python to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
DEST="${OUT:-gpu-check}"
mkdir -p "$DEST"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"

"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
PYEOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$DEST/nvidia-smi.csv" 2>/dev/null || true

measure() {  # name, then the gdas arguments
    local name=$1; shift
    echo "== gdas $*"
    local began=$SECONDS
    "$PY" -m gdas "$@" --json > "$DEST/$name.json"
    echo "   $(( SECONDS - began )) s -> $DEST/$name.json"
    "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print('  ', {k: v for k, v in r.items() if not isinstance(v, (dict, list))})" "$DEST/$name.json"
}

measure search_fp32 bench search --device cuda --no-channels-last
measure search_fp32_cl bench search --device cuda --channels-last
measure search_bf16_cl bench search --device cuda --amp bf16 --channels-last
measure data bench data --device cuda
EPOCH=(bench epoch --preset cifar10 --dataset synthetic --synthetic-train 50000 --device cuda)
measure epoch_fp32 "${EPOCH[@]}" --no-channels-last
measure epoch_fp32_cl "${EPOCH[@]}" --channels-last
measure epoch_bf16_cl "${EPOCH[@]}" --amp bf16 --channels-last
