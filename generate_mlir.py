#!/usr/bin/env python
"""The original entry point, kept as documented:

    python generate_mlir.py --torch_checkpoint_dir DIR --output_mlir_path hrm_model.mlir

writes the torch-dialect MLIR of one ACT step (`@step`) with the checkpoint's weights. It is the
same as `hrm-mlir export DIR -o hrm_model.mlir`; the optional flags are the same too
(`--params external` writes the weights to an IREE parameter archive beside the MLIR).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # also works without install

from hrm_mlir.cli import add_model_options, add_params_options, batch_label, entry


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Export a trained HRM checkpoint to MLIR.")
    p.add_argument("--torch_checkpoint_dir", required=True, help="checkpoint directory")
    p.add_argument(
        "--output_mlir_path",
        default="hrm_model.mlir",
        help="output file; bytecode when it ends in .mlirbc (default: hrm_model.mlir)",
    )
    add_model_options(p, dtype_default="the checkpoint's forward_dtype")
    add_params_options(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks (default: off)")
    return p.parse_args(argv)


def to_export_argv(args: argparse.Namespace) -> list[str]:
    argv = ["--debug"] if args.debug else []
    argv += ["export", args.torch_checkpoint_dir, "-o", args.output_mlir_path]
    argv += ["--output_type", str(args.output_type), "--batch_size", batch_label(args.batch_size)]
    if args.seq_len is not None:
        argv += ["--seq_len", str(args.seq_len)]
    if args.dtype is not None:
        argv += ["--dtype", str(args.dtype)]
    if args.params is not None:
        argv += ["--params", str(args.params)]
    if args.params_file is not None:
        argv += ["--params_file", str(args.params_file)]
    return argv


if __name__ == "__main__":
    entry(to_export_argv(parse_arguments()))
