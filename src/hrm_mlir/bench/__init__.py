"""Time the step on every runtime a user could pick (eager, torch.compile, ONNX Runtime, OpenVINO,
IREE), each verified against eager first, interleaved in one process (`hrm_mlir.bench.measure`,
its ONNX peers in `.peers`, the timing loop in `.timing`); and kits, artifacts built here
(`.kit_build`) and checked and timed on a machine with only IREE's runtime and PyTorch, such as a
GPU machine (`.kit_run`), in the format of `.kit_format`.

The names below are imported on first use, so that running a kit imports no compiler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hrm_mlir.bench.measure import (
        BenchReport,
        bench,
        measure_phases,
        plot,
        step_flops,
        write_json,
    )
    from hrm_mlir.bench.peers import onnx_session

_PUBLIC = {
    "BenchReport": "measure",
    "bench": "measure",
    "measure_phases": "measure",
    "onnx_session": "peers",
    "plot": "measure",
    "step_flops": "measure",
    "write_json": "measure",
}
__all__ = [
    "BenchReport",
    "bench",
    "measure_phases",
    "onnx_session",
    "plot",
    "step_flops",
    "write_json",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
