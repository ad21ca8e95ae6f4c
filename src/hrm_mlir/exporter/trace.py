"""The torch-mlir plumbing every export shares: FX import with zero-copy weights, lowering to
a dialect, pass pipelines, errors. The `@step` arguments it traces with are in
`hrm_mlir.exporter.inputs`, which needs no torch-mlir.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d
from torch_mlir.extras.fx_importer import FxImporter, FxImporterHooks
from torch_mlir.passmanager import PassManager

from hrm_mlir.core.errors import ExportError, first_line
from hrm_mlir.core.types import OutputType

_RESOURCE_KEY = re.compile(r"dense_resource<([^>]+)>")


def trace_batch(batch_size: int | None) -> int:
    """The example batch to trace with; 2 for a symbolic batch (torch.export specializes 1)."""
    return 2 if batch_size is None else batch_size


def batch_dims(args: tuple[torch.Tensor, ...]) -> tuple[dict[int, Any] | None, ...]:
    """torch.export dynamic_shapes making dim 0 of every non-scalar argument one symbol."""
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    return tuple({0: batch} if a.dim() > 0 else None for a in args)


class ZeroCopyLiterals(FxImporterHooks):
    """Import weight tensors as MLIR resources that point at the tensors' memory.

    torch-mlir's default converts every literal through `tensor.tolist()` (~40 bytes of Python
    objects per element: 13.5 s and 1.2 GB for the 27M model). Here the resource blob is the
    tensor's own buffer, so export time and memory no longer scale with that conversion. Blob
    names follow torch-mlir's scheme, so output is unchanged.

    With `external=True` the resources get no blob at all: a key the lowering carries along
    untouched (no pass can fold or copy data it does not have) until `hrm_mlir.exporter.params`
    replaces each such constant by a named parameter. A 2 GB puzzle table is never read during
    export.
    """

    def __init__(self, *, external: bool = False) -> None:
        self.external = external
        # id -> (tensor, attr): holding the tensor keeps its id from being reused mid-import
        self._attrs: dict[int, tuple[torch.Tensor, Any]] = {}
        self.literals: dict[str, torch.Tensor] = {}  # resource key -> tensor

    def resolve_literal(self, gni, literal, info):
        if (
            not isinstance(literal, torch.Tensor)
            or literal.numel() <= 1  # torch-mlir makes these splats
            or literal.device.type != "cpu"
            or isinstance(literal, FakeTensor)
            or literal.dtype not in _MLIR_ELEMENT
        ):
            return None
        attr = self.attribute(literal)
        vtensor_type = gni._cc.tensor_to_vtensor_type(literal)
        return ir.Operation.create(
            name="torch.vtensor.literal", results=[vtensor_type], attributes={"value": attr}
        ).result

    def attribute(self, literal: torch.Tensor) -> ir.Attribute:
        """The `dense_resource` attribute of a weight tensor, made once per tensor (in the
        current context)."""
        cached = self._attrs.get(id(literal))
        if cached is None:
            tensor_type = ir.RankedTensorType.get(
                list(literal.shape), mlir_element_type(literal.dtype)
            )
            key: str | None
            if self.external:
                key = f"hrm_external_{len(self.literals)}"
                attr = ir.Attribute.parse(f"dense_resource<{key}> : {tensor_type}")
            else:
                t = literal.detach().contiguous()
                # numpy has no bf16: hand over the same bytes as 16-bit integers
                data = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy()
                name = f"torch_tensor_{'_'.join(map(str, t.shape))}_{t.dtype}"
                attr = ir.DenseResourceElementsAttr.get_from_buffer(data, name, tensor_type)
                key = resource_key(attr)  # MLIR uniquifies repeated names with a suffix
            cached = (literal, attr)
            self._attrs[id(literal)] = cached
            if key is not None:
                self.literals[key] = literal
        return cached[1]


def resource_key(attr: ir.Attribute) -> str | None:
    """The blob key of a `dense_resource<key>` attribute (None for any other attribute)."""
    m = _RESOURCE_KEY.match(str(attr))
    return m.group(1) if m else None


_MLIR_ELEMENT = {
    torch.float32: ir.F32Type.get,
    torch.bfloat16: ir.BF16Type.get,
    torch.float16: ir.F16Type.get,
    torch.int64: lambda: ir.IntegerType.get_signed(64),
    torch.int32: lambda: ir.IntegerType.get_signed(32),
}


def mlir_element_type(dtype: torch.dtype) -> ir.Type:
    """The MLIR element type of a weight dtype (in the current context)."""
    return _MLIR_ELEMENT[dtype]()


def new_importer(hooks: FxImporterHooks) -> FxImporter:
    """A torch-mlir FX importer with its own context."""
    context = ir.Context()
    torch_d.register_dialect(context)
    return FxImporter(context=context, hooks=hooks)


@contextlib.contextmanager
def export_errors(what: str) -> Iterator[None]:
    """Raise any exception of the block as an ExportError: '<what> failed: <first line>'."""
    try:
        yield
    except Exception as e:  # torch.export and torch-mlir raise many exception types
        raise ExportError(f"{what} failed: {type(e).__name__}: {first_line(e)}") from e


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """torch.export without its pytree deprecation warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


# torch-mlir's pipelines (as `torch_mlir.fx.export_and_import` runs them), from the imported
# torch dialect to the torch backend contract, then to each output dialect.
TORCH_BACKEND = (
    "builtin.module(func.func(torch-match-quantized-custom-ops), "
    "torchdynamo-export-to-torch-backend-pipeline{ extra-library=})"
)
TO_DIALECT = {
    OutputType.TORCH: None,
    OutputType.LINALG_ON_TENSORS: "torch-backend-to-linalg-on-tensors-backend-pipeline",
    OutputType.TOSA: "torch-backend-to-tosa-backend-pipeline",
    OutputType.STABLEHLO: "torch-backend-to-stablehlo-backend-pipeline",
}


def lower(module: ir.Module, output_type: OutputType) -> ir.Module:
    """Lower an imported module (raw torch dialect) to `output_type`, in place.

    The pipelines run here, not through torch-mlir's `run_pipeline_with_repro_report`: that
    prints the whole module first for a repro file, weights included as hex (219 MB and 1-2 s
    for the 27M model, twice per export).
    """
    run_passes(module, TORCH_BACKEND)
    pipeline = TO_DIALECT[output_type]
    if pipeline is not None:
        run_passes(module, f"builtin.module({pipeline})")
    return module


def run_passes(module: ir.Module, pipeline: str) -> None:
    """Run a pass pipeline on `module`; a failure raises ExportError with its first error."""
    with module.context as context:
        # torch-mlir passes can emit an error without failing the pass (torch-mlir #3506)
        context.emit_error_diagnostics = True
        try:
            PassManager.parse(pipeline).run(module.operation)
        except ir.MLIRError as e:
            errors = [d.message for d in e.error_diagnostics]
            message = errors[0].partition("\n")[0] if errors else first_line(e)
            raise ExportError(f"{pipeline}: {message}") from e
