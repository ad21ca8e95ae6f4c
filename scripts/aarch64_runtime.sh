#!/usr/bin/env bash
# Unpack IREE's aarch64 runtime tools (iree-run-module and friends, from the iree-base-runtime
# wheel for manylinux aarch64, the same version as this venv's) into <venv>/aarch64, where
# hrm_mlir.runtime.tool finds them to run ARM64 artifacts under qemu-aarch64.
#   bash scripts/aarch64_runtime.sh [.venv]
set -euo pipefail
venv=${1:-.venv}
dest="$venv/aarch64"
tool="$dest/iree/_runtime_libs/iree-run-module"
[ -x "$tool" ] && exit 0
version=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('iree-base-runtime'))")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/python" -m pip download -q --no-deps --only-binary=:all: \
  --platform manylinux_2_28_aarch64 --python-version 3.11 \
  "iree-base-runtime==$version" -d "$tmp"
"$venv/bin/python" -m zipfile -e "$tmp"/iree_base_runtime-*.whl "$tmp/wheel"
mkdir -p "$dest/iree"
rm -rf "$dest/iree/_runtime_libs"
cp -r "$tmp/wheel/iree/_runtime_libs" "$dest/iree/"
chmod +x "$dest"/iree/_runtime_libs/iree-*
echo "unpacked IREE $version's aarch64 runtime tools into $dest"
