#!/usr/bin/env bash
# Debian packages the portability tests use, installed where this runs as root with apt:
#   qemu-user + libc6-arm64-cross + libstdc++6-arm64-cross: run aarch64 artifacts (qemu-aarch64);
#   mesa-vulkan-drivers + libvulkan1: lavapipe, a Vulkan 1.3 device on the CPU.
# Elsewhere it says what to install and leaves it: those tests then skip, saying why.
set -uo pipefail
packages=(qemu-user libc6-arm64-cross libstdc++6-arm64-cross mesa-vulkan-drivers libvulkan1)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null; } \
    || echo "note: could not install ${missing[*]}; the ARM64 and Vulkan tests will skip"
else
  echo "note: not root with apt: install ${missing[*]} for the ARM64 and Vulkan tests"
fi
exit 0
