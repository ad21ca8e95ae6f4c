"""What an export is: its options, the module it wrote with its external parameters, and the
model it was taken from (`@step` in `hrm_mlir.exporter.step`, `@act` in `hrm_mlir.exporter.act`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch_mlir import ir

from hrm_mlir.checkpoint.load import Checkpoint, build_model
from hrm_mlir.core.errors import ExportError
from hrm_mlir.core.fileio import write_atomic
from hrm_mlir.core.types import DType, Entry, OutputType
from hrm_mlir.exporter.archive import save_archive
from hrm_mlir.exporter.params import (
    Params,
    choose_params,
    externalize,
    parameter_names,
    require_external_dialect,
)
from hrm_mlir.exporter.trace import ZeroCopyLiterals
from hrm_mlir.models.config import ReasoningConfig
from hrm_mlir.models.hrm import HRM


@dataclass(frozen=True)
class ExportOptions:
    """Options of one export.

    Attributes:
        output_type: the MLIR dialect written.
        dtype: forward dtype; None means the checkpoint's `forward_dtype`.
        batch_size: static batch size of every argument; None exports a symbolic batch
            dimension (`?`), so one compiled artifact serves every batch size.
        entry: `step` (one ACT step); `act` (the whole loop) is built by `hrm_mlir.exporter.act`.
        params: inline weights in the MLIR, or refer to an external parameter archive; None
            chooses external when the weights exceed `hrm_mlir.exporter.params.INLINE_LIMIT_BYTES`.
        attention_pad: attention pads its length to a multiple of this, masking the padded
            keys (same results; IREE's CPU softmax is ~60x slower on other row counts). In
            float32 the export also normalizes attention after P @ V
            (`hrm_mlir.models.hrm.export_attention`).
        reference: record PyTorch's outputs on random inputs in the module
            (`hrm_mlir.exporter.reference`), which `compile` checks its artifact against.
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
    config: ReasoningConfig  # forward_dtype is the exported dtype
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
