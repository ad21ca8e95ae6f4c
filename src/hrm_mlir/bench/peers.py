"""The peers `hrm-mlir bench` times IREE against that load an ONNX export of the step: ONNX
Runtime (its CPU execution provider) and OpenVINO (its CPU plugin). One export (`OnnxExport`)
serves both; each adapter answers None, with a line saying so, when its package is not installed
(`pip install '.[bench]'`).
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path

import torch

from hrm_mlir.models.hrm import HRM


class OnnxExport:
    """A `torch.onnx` (dynamo) export of the step on `args`, made on the first `path()` and
    removed on leaving the `with` block (weights as external data beside it)."""

    def __init__(self, model: HRM, args) -> None:
        self.model, self.args = model, args
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> OnnxExport:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def path(self) -> Path:
        if self._tmp is not None:
            return Path(self._tmp.name) / "step.onnx"
        self._tmp = tempfile.TemporaryDirectory(prefix="hrm-onnx-")
        path = Path(self._tmp.name) / "step.onnx"
        with torch.no_grad():
            torch.onnx.export(self.model.inner, self.args, path, dynamo=True, external_data=True)
        return path


def onnx_session(
    model: HRM,
    args,
    threads: int,
    *,
    profile_prefix: Path | None = None,
    export: OnnxExport | None = None,
):
    """An ONNX Runtime CPU session of a `torch.onnx` (dynamo) export of the step, or None when
    onnxruntime is not installed. With `profile_prefix`, ORT's profiler is on. `export`: an
    export of this step to load (default: one made here and removed once loaded)."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime is not installed: skipping it (pip install '.[bench]')")
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    # The session holds the weights once built, so the model files may go after it.
    with ExitStack() as stack:
        export = export or stack.enter_context(OnnxExport(model, args))
        return ort.InferenceSession(str(export.path()), options, providers=["CPUExecutionProvider"])


def openvino_model(
    model: HRM,
    args,
    threads: int,
    *,
    export: OnnxExport | None = None,
    precision: str | None = "f32",
):
    """The ONNX export of the step compiled by OpenVINO's CPU plugin with `threads` threads, for
    latency, or None when openvino is not installed. `export`: as for `onnx_session`.
    `precision`: its INFERENCE_PRECISION_HINT; None leaves the plugin's default (bf16 on CPUs
    with AMX or AVX512_BF16, f32 elsewhere)."""
    try:
        import openvino as ov
    except ImportError:
        print("openvino is not installed: skipping it (pip install '.[bench]')")
        return None
    config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        # Without it, on CPUs with AMX or AVX512_BF16 the plugin silently computes in bfloat16.
        config["INFERENCE_PRECISION_HINT"] = precision
    # The compiled model holds the weights (a mapped file stays readable once unlinked).
    with ExitStack() as stack:
        export = export or stack.enter_context(OnnxExport(model, args))
        core = ov.Core()
        return core.compile_model(core.read_model(export.path()), "CPU", config)
