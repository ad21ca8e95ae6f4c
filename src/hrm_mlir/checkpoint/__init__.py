"""Checkpoints: find, load and validate one; infer the dimensions its config leaves out."""

from hrm_mlir.checkpoint.load import Checkpoint, build_model, load_checkpoint

__all__ = ["Checkpoint", "build_model", "load_checkpoint"]
