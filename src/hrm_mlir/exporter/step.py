"""Export an HRM checkpoint to MLIR with torch-mlir.

The exported module has exactly one public function, `@step`, with the ABI documented in the
README:

    step(z_H [B,S,D] dt, z_L [B,S,D] dt, inputs [B,seq_len] i32, puzzle_identifiers [B] i32)
      -> (z_H [B,S,D] dt, z_L [B,S,D] dt, logits [B,seq_len,V] dt,
          q_halt_logits [B] f32, q_continue_logits [B] f32)

where S = seq_len + puzzle_emb_len and dt is the forward dtype. `hrm_mlir.exporter.compose`
builds it from parts that torch.export traces once each.
"""

from __future__ import annotations

import torch

from hrm_mlir.checkpoint.load import Checkpoint
from hrm_mlir.core.types import Entry
from hrm_mlir.exporter.compose import import_step, inline_parts
from hrm_mlir.exporter.module import (
    ExportedModule,
    ExportOptions,
    externalize_if,
    prepare_model,
    resolve_options,
)
from hrm_mlir.exporter.params import Params
from hrm_mlir.exporter.reference import attach, step_cases
from hrm_mlir.exporter.trace import (
    ZeroCopyLiterals,
    export_errors,
    lower,
    new_importer,
    quiet_export,
)
from hrm_mlir.models.hrm import HRM, export_attention

STEP_FUNC = "step"


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
