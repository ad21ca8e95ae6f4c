"""hrm-mlir: take a trained HRM checkpoint off PyTorch+CUDA and onto any hardware via MLIR.

The stages as functions (`hrm_mlir.api`): `export`, `compile`, `verify`, `run`, `evaluate`.
"""

from hrm_mlir.api import compile, evaluate, export, run, verify

__version__ = "0.1.0"
__all__ = ["__version__", "compile", "evaluate", "export", "run", "verify"]
