#!/usr/bin/env bash
# `make demo` (and `make demo-trm`): the whole pipeline on a bundled example checkpoint.
#   info -> verify @step -> export @act -> compile -> run (fixed steps, then Q-halting)
#   -> evaluate the held-out split with upstream's metrics
set -euo pipefail
example=${1:-examples/sudoku6x6}
out=${2:-out/demo}
hrm=".venv/bin/hrm-mlir"
mkdir -p "$out"
step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "1. the checkpoint" $hrm info "$example"
step "2. one ACT step (@step) to MLIR with the original command" \
  .venv/bin/python generate_mlir.py --torch_checkpoint_dir "$example" \
  --output_mlir_path "$out/step.mlir" --dtype float32
step "   ... and compile it with IREE, run it, compare it with PyTorch" \
  $hrm verify "$example" --mlir "$out/step.mlir"
step "3. the whole ACT loop (@act) to MLIR" \
  $hrm export "$example" --entry act --output_type linalg-on-tensors --dtype float32 \
  --batch_size 8 -o "$out/act.mlirbc"
step "4. compile for this CPU (float32: exact, and faster than bf16 on CPUs without bf16 units)" \
  $hrm compile "$out/act.mlirbc" -o "$out/act.vmfb"
step "5. solve the sample puzzles, every step budget used" \
  $hrm run "$out/act.vmfb" --puzzle "$example/puzzles.txt" \
  --checkpoint "$example" --compare-pytorch --json "$out/fixed.json"
step "6. the same with Q-halting (stop when the model says it is done)" \
  $hrm run "$out/act.vmfb" --puzzle "$example/puzzles.txt" --q_halt \
  --checkpoint "$example" --compare-pytorch --json "$out/q_halt.json"
step "7. upstream's metrics on the held-out split (upstream's dataset layout, data/test)" \
  $hrm evaluate "$out/act.vmfb" --data "$example/data" --json "$out/evaluate.json"
printf '\ndemo outputs are in %s\n' "$out"
