"""hrm-mlir: take a trained HRM checkpoint off PyTorch+CUDA and onto any hardware via MLIR."""

__version__ = "0.1.0"
