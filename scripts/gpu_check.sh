#!/usr/bin/env bash
# The CUDA check of issue 17, in two halves: `prepare` here (a machine with .venv: torch-mlir and
# the IREE compiler), `device` on the GPU machine (PyTorch with CUDA; no network, no compiler).
#
#   bash scripts/gpu_check.sh prepare [DIR]        # here: a kit + the wheels it needs, in DIR
#   bash scripts/gpu_check.sh device [DIR] [OUT]   # there: check and time; report into OUT
#
# DIR (default out/gpu) holds a kit of the 27M HRM step (random non-degenerate weights, drawn
# again there from the kit's seed), bfloat16, for cuda:sm_80 (IREE 3.13 has no sm_90 target; the
# driver JIT-compiles sm_80 PTX for Hopper), at 82 tokens batch 1/64/256 and 901 tokens batch
# 1/16; and wheels/ with what the GPU machine lacks: IREE's runtime and pydantic, for its Python.
# `device` installs those, then runs `hrm-mlir kit run`: every artifact is checked against
# PyTorch eager (bf16) on the GPU, then IREE and PyTorch eager bf16 + SDPA (FlashAttention) are
# timed interleaved. OUT (default $OUT, else DIR) gets gpu-kit.json and gpu-kit.log.
# With the device tool: run `prepare`, then `device` with carry ["out/gpu"] and timeout_s 540.
set -euo pipefail
mode=${1:-}
dir=${2:-out/gpu}
case "$mode" in
prepare)
  venv=.venv
  py="$venv/bin/python"
  ckpt=$(mktemp -d)
  trap 'rm -rf "$ckpt"' EXIT
  rm -rf "$dir"
  mkdir -p "$dir"
  "$py" scripts/make_arc_checkpoint.py --out "$ckpt" --rows 1 # the 27M model, 900-token shape
  "$venv/bin/hrm-mlir" kit build "$ckpt" -o "$dir/kit" --target cuda --dtype bfloat16 \
    --weights random --shape 81:1,64,256 --shape 900:1,16
  # The GPU machine's python (3.12) has torch, numpy, rich, PyYAML, safetensors and ml_dtypes;
  # not IREE's runtime nor pydantic (typing-extensions: the version pydantic needs). Same
  # versions as here.
  v() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dir/wheels" \
    "iree-base-runtime==$(v iree-base-runtime)" "pydantic==$(v pydantic)" \
    "pydantic-core==$(v pydantic-core)" "annotated-types==$(v annotated-types)" \
    "typing-inspection==$(v typing-inspection)" "typing-extensions==$(v typing-extensions)"
  du -sh "$dir"/kit "$dir"/wheels
  echo "prepared $dir; on the GPU machine: bash scripts/gpu_check.sh device $dir"
  ;;
device)
  out=${3:-${OUT:-$dir}}
  mkdir -p "$out"
  exec > >(tee "$out/gpu-kit.log") 2>&1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/hrm-site "$dir"/wheels/*.whl
  export PYTHONPATH="/tmp/hrm-site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  python3 -c "import iree.runtime as rt; print('IREE cuda devices:', rt.get_driver('cuda').query_available_devices())" ||
    echo "IREE's cuda driver found no device (kit run says why below)"
  python3 -m hrm_mlir kit run "$dir/kit" --iterations "${ITERATIONS:-20}" --warmup 3 \
    --peers "${PEERS:-eager}" --time-limit "${TIME_LIMIT:-30}" --json "$out/gpu-kit.json"
  ;;
*)
  echo "usage: bash scripts/gpu_check.sh prepare|device [DIR] [OUT]" >&2
  exit 2
  ;;
esac
