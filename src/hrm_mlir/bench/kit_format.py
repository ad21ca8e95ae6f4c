"""What a kit is on disk, written by `hrm_mlir.bench.kit_build` and read by
`hrm_mlir.bench.kit_run`: a directory of `@step` artifacts (`.vmfb`, compiled with external
parameters), `kit.json` describing them, and with checkpoint weights `weights.safetensors`.

`kit.json` holds the format version, where and from what it was built, the model family, the
dtype, the target and its flags, where the weights come from (`Weights`), the model config per
puzzle length, and per artifact its file, entry, shape, size and sha256. Its fields are written
(`describe`, `artifact_entry`) and read back (`read_kit`) here only.

Needs neither torch nor the compiler.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.core.types import ChoiceEnum, DType

KIT_FILE = "kit.json"
KIT_FORMAT = 1
WEIGHTS_FILE = "weights.safetensors"
# The IREE HAL driver and torch device that run each target's artifacts.
DRIVERS = {"llvm-cpu": "local-task", "cuda": "cuda", "rocm": "hip", "vulkan": "vulkan"}
TORCH_DEVICES = {"llvm-cpu": "cpu", "cuda": "cuda", "rocm": "cuda", "vulkan": "cpu"}


class Weights(ChoiceEnum):
    """Where a kit's weights come from on the machine that runs it."""

    RANDOM = "random"
    CHECKPOINT = "checkpoint"


def artifact_entry(name: str, seq_len: int, tokens: int, batch: int, vmfb: bytes) -> dict[str, Any]:
    """`kit.json`'s record of one `@step` artifact."""
    return {
        "file": name,
        "entry": "step",
        "seq_len": seq_len,
        "tokens": tokens,
        "batch": batch,
        "bytes": len(vmfb),
        "sha256": hashlib.sha256(vmfb).hexdigest(),
    }


def describe(
    *,
    built_with: str,
    built_on: str,
    built_from: str,
    family: str,
    dtype: DType,
    target: str,
    flags: list[str],
    weights: Weights,
    seed: int,
    configs: dict[str, Any],
    artifacts: list[dict[str, Any]],
    notes: list[str],
) -> dict[str, Any]:
    """`kit.json`'s content, built now.

    Args:
        built_with / built_on / built_from: the tool versions, the CPU, the checkpoint.
        configs: puzzle length (as text) -> the model config as JSON.
        artifacts: `artifact_entry` of each artifact.
    """
    return {
        "kit": KIT_FORMAT,
        "built": {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "with": built_with,
            "on": built_on,
            "from": built_from,
        },
        "family": family,
        "dtype": dtype.value,
        "target": target,
        "flags": flags,
        "weights": {"source": weights.value, "seed": seed}
        | ({"file": WEIGHTS_FILE} if weights == Weights.CHECKPOINT else {}),
        "configs": configs,
        "artifacts": artifacts,
        "notes": notes,
    }


def read_kit(kit: str | Path) -> tuple[Path, dict[str, Any]]:
    """The kit's directory and `kit.json`, with every artifact present and intact."""
    kit = Path(kit)
    path = kit / KIT_FILE
    if not path.is_file():
        raise HrmMlirError(f"{kit}: not a kit (no {KIT_FILE}; hrm-mlir kit build writes one)")
    try:
        doc = json.loads(path.read_text())
        if doc.get("kit") != KIT_FORMAT:
            raise HrmMlirError(f"{path}: kit format {doc.get('kit')!r}, expected {KIT_FORMAT}")
        if doc["target"].split(":")[0] not in DRIVERS:
            raise HrmMlirError(f"{path}: target {doc['target']!r} is not one kits run on")
        DType.parse(doc["dtype"])
        files = {a["file"]: a["sha256"] for a in doc["artifacts"]}
        for a in doc["artifacts"]:  # each artifact's config
            doc["configs"][str(a["seq_len"])]["seq_len"]  # a KeyError where it has none
        source = doc["weights"]["source"]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise HrmMlirError(f"{path}: not a readable kit description ({e!r})") from None
    for name, sha256 in files.items():
        f = kit / name
        if not f.is_file():
            raise HrmMlirError(f"{f}: missing from the kit")
        if hashlib.sha256(f.read_bytes()).hexdigest() != sha256:
            raise HrmMlirError(f"{f}: does not match its sha256 in {KIT_FILE} (damaged copy?)")
    if source == Weights.CHECKPOINT.value and not (kit / WEIGHTS_FILE).is_file():
        raise HrmMlirError(f"{kit / WEIGHTS_FILE}: missing from the kit")
    return kit, doc
