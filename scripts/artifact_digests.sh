#!/usr/bin/env bash
# The sha256 of what export and compile write for one checkpoint, through the command line only,
# so that a refactoring can show that it changed no byte: run it before and after, and diff.
#
#   bash scripts/artifact_digests.sh CKPT OUT_DIR > before.txt   (then again, after, and diff)
#
# Covers @step and @act, static (batch 1) and symbolic batch, float32 (the kernels' dtype) and
# the checkpoint's dtype; each compiled for the host (the
# default) and for x86-64-v3 (the AVX2 kernels) where the host is x86-64.
set -euo pipefail
ckpt=${1:?usage: artifact_digests.sh CKPT OUT_DIR}
out=${2:?usage: artifact_digests.sh CKPT OUT_DIR}
bin=${HRM_MLIR:-.venv/bin/hrm-mlir}  # a command, maybe of several words
mkdir -p "$out"

export_one() {  # name, then export's options
  local name=$1
  shift
  $bin export "$ckpt" -o "$out/$name.mlir" "$@" >/dev/null
}
export_one step-b1 --batch_size 1
export_one step-b1-f32 --batch_size 1 --dtype float32
export_one step-dyn-f32 --batch_size dynamic --dtype float32
export_one act-b1-f32 --entry act --output_type linalg-on-tensors --batch_size 1 --dtype float32
export_one act-dyn-f32 --entry act --output_type linalg-on-tensors --batch_size dynamic --dtype float32

cpus=(host)
[[ $(uname -m) == x86_64 ]] && cpus+=(x86-64-v3)
for mlir in "$out"/*.mlir; do
  for cpu in "${cpus[@]}"; do
    $bin compile "$mlir" --cpu "$cpu" -o "${mlir%.mlir}.$cpu.vmfb" >/dev/null
  done
done
(cd "$out" && sha256sum -- *.mlir *.vmfb)
