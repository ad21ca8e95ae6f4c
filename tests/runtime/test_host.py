"""`hrm-mlir doctor` and `--version`: what this machine is, read independently where we can."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from hrm_mlir.cli import main
from hrm_mlir.runtime.target import HOST, resolve_cpu


def _cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {w for line in text.splitlines() if line.startswith("flags") for w in line.split()}


def test_version_prints_the_pinned_versions_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "hrm_mlir", "--version"], capture_output=True, text=True, check=True
    )
    line = result.stdout.strip()
    assert "\n" not in line
    for package in ("torch", "torch-mlir", "iree-base-compiler", "iree-base-runtime"):
        assert f"{package} {importlib.metadata.version(package)}" in line


def test_doctor_json_says_what_this_machine_is(capsys):
    assert main(["doctor", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["versions"]["iree-base-compiler"] == importlib.metadata.version("iree-base-compiler")
    assert doc["cpu"]["llvm_cpu"] == resolve_cpu(HOST).name
    flags = _cpuinfo_flags()
    classes = " ".join(doc["cpu"]["feature_classes"])
    if {"avx2", "fma"} <= flags:
        assert "AVX2+FMA" in classes
    assert ("AVX-512" in classes) == ("avx512f" in flags)
    assert "llvm-cpu" in doc["targets"]["compile"]
    assert doc["targets"]["run"]["local-task"] != "no device"
    assert set(doc["tools"]) >= {"qemu-aarch64", "onnxruntime", "openvino", "ray"}


def test_doctor_table_names_the_cpu(capsys):
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert resolve_cpu(HOST).name in text and "runs on local-task" in text
