"""Time the step on every runtime a user could pick (eager, torch.compile, ONNX Runtime, OpenVINO,
IREE), each verified against eager first, interleaved in one process."""

from hrm_mlir.bench.measure import (
    BenchReport,
    bench,
    measure_phases,
    onnx_session,
    plot,
    step_flops,
    write_json,
)

__all__ = [
    "BenchReport",
    "bench",
    "measure_phases",
    "onnx_session",
    "plot",
    "step_flops",
    "write_json",
]
