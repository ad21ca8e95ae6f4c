"""Export an HRM checkpoint to MLIR with torch-mlir.

The exported module has exactly one public function, `@step`, with the ABI documented in the
README:

    step(z_H [B,S,D] dt, z_L [B,S,D] dt, inputs [B,seq_len] i32, puzzle_identifiers [B] i32)
      -> (z_H [B,S,D] dt, z_L [B,S,D] dt, logits [B,seq_len,V] dt,
          q_halt_logits [B] f32, q_continue_logits [B] f32)

where S = seq_len + puzzle_emb_len and dt is the forward dtype. `hrm_mlir.compose` builds it
from parts that torch.export traces once each.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d
from torch_mlir.extras.fx_importer import FxImporter, FxImporterHooks
from torch_mlir.passmanager import PassManager

from hrm_mlir.checkpoint import Checkpoint, build_model
from hrm_mlir.config import DType, Entry, HRMConfig, OutputType
from hrm_mlir.errors import ExportError, first_line
from hrm_mlir.fileio import write_atomic
from hrm_mlir.model import HRM, export_attention
from hrm_mlir.params import (
    Params,
    choose_params,
    externalize,
    parameter_names,
    require_external_dialect,
    resource_key,
    save_archive,
)
from hrm_mlir.reference import attach, step_cases

STEP_FUNC = "step"
INDEX_DTYPE = torch.int32  # dtype of `inputs` and `puzzle_identifiers` at the ABI


@dataclass(frozen=True)
class ExportOptions:
    """Options of one export.

    Attributes:
        output_type: the MLIR dialect written.
        dtype: forward dtype; None means the checkpoint's `forward_dtype`.
        batch_size: static batch size of every argument; None exports a symbolic batch
            dimension (`?`), so one compiled artifact serves every batch size.
        entry: `step` (one ACT step); `act` (the whole loop) is built by `hrm_mlir.act`.
        params: inline weights in the MLIR, or refer to an external parameter archive; None
            chooses external when the weights exceed `hrm_mlir.params.INLINE_LIMIT_BYTES`.
        attention_pad: attention pads its length to a multiple of this, masking the padded
            keys (same results; IREE's CPU softmax is ~60x slower on other row counts). In
            float32 the export also normalizes attention after P @ V
            (`hrm_mlir.model.export_attention`).
        reference: record PyTorch's outputs on random inputs in the module
            (`hrm_mlir.reference`), which `compile` checks its artifact against.
    """

    output_type: OutputType = OutputType.TORCH
    dtype: DType | None = None
    batch_size: int | None = 1
    entry: Entry = Entry.STEP
    params: Params | None = None
    attention_pad: int = 8
    reference: bool = True

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ExportError(f"--batch_size must be >= 1, got {self.batch_size}")


@dataclass
class ExportedModule:
    """An exported MLIR module and what produced it.

    With external parameters, `parameters` maps each parameter key the module names to its
    tensor (views of the checkpoint's weights); `save_parameters` writes them as an archive.
    """

    module: ir.Module
    config: HRMConfig  # forward_dtype is the exported dtype
    options: ExportOptions  # with dtype and params resolved
    parameters: dict[str, torch.Tensor] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        return str(self.module)

    def bytecode(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.module.operation.write_bytecode(buf)
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write MLIR text, or bytecode when the name ends in `.mlirbc`, atomically."""
        path = Path(path)
        if path.suffix == ".mlirbc":
            return write_atomic(path, self.module.operation.write_bytecode)
        return write_atomic(path, self.module.operation.get_asm(binary=True))

    def save_parameters(self, path: str | Path) -> Path:
        """Write the external parameters as an IREE parameter archive (.irpa), atomically."""
        if not self.parameters:
            raise ExportError("this module has its weights inlined: there are no parameters")
        return save_archive(self.parameters, path)


def prepare_model(source: Checkpoint | HRM, dtype: DType | None) -> HRM:
    """An eval-mode model computing in `dtype` (weights stay float32 and are cast at use).

    Weights are not pre-cast to bf16: IREE 3.13 mis-folds small bf16 `dense_resource`
    constants ("'arith.constant' op failed to verify that all of {value, result} have same
    type"), and casting at use is what upstream computes anyway.
    """
    if isinstance(source, Checkpoint):
        return source.build_model(dtype)
    if dtype is None or dtype == source.config.forward_dtype:
        return source.eval()
    config = source.config.model_copy(update={"forward_dtype": dtype})
    return build_model(config, source.state_dict())


def example_step_args(config: HRMConfig, batch_size: int) -> tuple[torch.Tensor, ...]:
    """Arguments of `@step` with the ABI's shapes and dtypes (zeros)."""
    dt = config.forward_dtype.torch
    shape = (batch_size, config.total_seq_len, config.hidden_size)
    return (
        torch.zeros(shape, dtype=dt),
        torch.zeros(shape, dtype=dt),
        torch.zeros(batch_size, config.seq_len, dtype=INDEX_DTYPE),
        torch.zeros(batch_size, dtype=INDEX_DTYPE),
    )


def export_step(source: Checkpoint | HRM, options: ExportOptions | None = None) -> ExportedModule:
    """Export one ACT step (`@step`) of a checkpoint or model to MLIR.

    Args:
        source: a loaded checkpoint, or a model (tests use random weights).
        options: dialect, dtype and batch size.
    Returns:
        The exported module.
    Raises:
        ExportError: torch.export or the torch-mlir lowering failed.
    """
    from hrm_mlir.compose import import_step, inline_parts  # compose imports this module

    options = options or ExportOptions()
    model = prepare_model(source, options.dtype)
    options, notes = resolve_options(options, model, Entry.STEP)
    hooks = ZeroCopyLiterals(external=options.params == Params.EXTERNAL)
    importer = new_importer(hooks)
    with export_errors(f"export to {options.output_type}"):
        with torch.no_grad(), export_attention(model, options.attention_pad), quiet_export():
            import_step(importer, hooks, model.inner, options.batch_size, STEP_FUNC)
        module = lower(importer.module, options.output_type)
        inline_parts(module)
    if options.reference:
        attach(module, step_cases(model, options.batch_size))
    parameters = externalize_if(options, module, hooks, model)
    return ExportedModule(module, model.config, options, parameters, notes)


def resolve_options(
    options: ExportOptions, model: HRM, entry: Entry
) -> tuple[ExportOptions, list[str]]:
    """`options` with the dtype, entry and params mode settled, and notes on the choices."""
    mode, note = choose_params(options.params, weight_bytes(model))
    if mode == Params.EXTERNAL:
        require_external_dialect(options.output_type)
    resolved = replace(options, dtype=model.config.forward_dtype, entry=entry, params=mode)
    return resolved, [note] if note else []


def externalize_if(
    options: ExportOptions, module: ir.Module, hooks: ZeroCopyLiterals, model: HRM
) -> dict[str, torch.Tensor]:
    """With external params, move the module's weights out to named parameters."""
    if options.params != Params.EXTERNAL:
        return {}
    try:
        return externalize(module, hooks.literals, parameter_names(model), options.output_type)
    finally:
        hooks.literals.clear()


def weight_bytes(model: HRM) -> int:
    """Bytes of weight data an inlined export would carry (state dict + RoPE tables)."""
    tensors = [*model.state_dict().values(), *(model.inner._rope or ())]
    return sum(t.numel() * t.element_size() for t in tensors)


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
    untouched (no pass can fold or copy data it does not have) until `hrm_mlir.params` replaces
    each such constant by a named parameter. A 2 GB puzzle table is never read during export.
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
