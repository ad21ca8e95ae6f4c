"""The `hrm-mlir` command line: `entry` is the console script and `python -m hrm_mlir`."""

from hrm_mlir.cli.app import build_parser, entry, main
from hrm_mlir.cli.common import add_model_options, add_params_options, batch_label

__all__ = [
    "add_model_options",
    "add_params_options",
    "batch_label",
    "build_parser",
    "entry",
    "main",
]
