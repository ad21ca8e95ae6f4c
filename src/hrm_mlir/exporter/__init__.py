"""Export to MLIR: `@step` from traced parts, `@act` around it, external parameters, the ABI.

The names below are imported on first use: `hrm_mlir.exporter.abi` and `.reference` need no
torch, and `hrm-mlir compile` reads a module's facts through them without importing it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hrm_mlir.exporter.abi import STEP_OUTPUTS, parse_step_signature, read_functions
    from hrm_mlir.exporter.act import export_act
    from hrm_mlir.exporter.archive import save_archive
    from hrm_mlir.exporter.inputs import INDEX_DTYPE, random_step_inputs
    from hrm_mlir.exporter.module import ExportedModule, ExportOptions
    from hrm_mlir.exporter.params import Params
    from hrm_mlir.exporter.step import export_step

_PUBLIC = {
    "STEP_OUTPUTS": "abi",
    "parse_step_signature": "abi",
    "read_functions": "abi",
    "export_act": "act",
    "ExportedModule": "module",
    "ExportOptions": "module",
    "Params": "params",
    "save_archive": "archive",
    "export_step": "step",
    "INDEX_DTYPE": "inputs",
    "random_step_inputs": "inputs",
}
__all__ = [
    "INDEX_DTYPE",
    "STEP_OUTPUTS",
    "ExportOptions",
    "ExportedModule",
    "Params",
    "export_act",
    "export_step",
    "parse_step_signature",
    "random_step_inputs",
    "read_functions",
    "save_archive",
]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
