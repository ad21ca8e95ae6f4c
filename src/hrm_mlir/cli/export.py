"""`hrm-mlir export`: a checkpoint to MLIR (`hrm_mlir.api.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hrm_mlir.cli.common import (
    CHECKPOINT_HELP,
    add_model_options,
    add_params_options,
    batch_label,
    checkpoint_arg,
    choice,
    out,
    print_notes,
    stage,
)
from hrm_mlir.core.types import Entry


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to MLIR")
    p.add_argument("checkpoint", type=checkpoint_arg, help=CHECKPOINT_HELP)
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="output .mlir (text) or .mlirbc (bytecode)"
    )
    add_model_options(p, dtype_default="the checkpoint's forward_dtype")
    p.add_argument(
        "--entry",
        type=choice(Entry),
        default=Entry.STEP,
        help="step: one ACT step (@step); act: the whole ACT loop (@act, @step, "
        "@initial_carry; linalg-on-tensors) (default: step)",
    )
    add_params_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrm_mlir.api import export
    from hrm_mlir.exporter.params import SCOPE

    with stage(f"exporting {args.checkpoint} to MLIR"):
        result = export(
            args.checkpoint,
            args.output,
            entry=args.entry,
            output_type=args.output_type,
            dtype=args.dtype,
            batch_size=args.batch_size,
            params=args.params,
            params_file=args.params_file,
            seq_len=args.seq_len,
        )
    print_notes(result.notes)
    exported, path, archive = result.module, result.path, result.archive
    size = path.stat().st_size / 2**20
    out.print(
        f"wrote {path} ({size:.1f} MiB): @{args.entry}, {exported.options.output_type}, "
        f"{exported.options.dtype}, batch {batch_label(exported.options.batch_size)}, "
        f"seq_len {exported.config.seq_len}, in {result.seconds:.1f} s"
    )
    if archive is not None:
        out.print(
            f"wrote {archive} ({archive.stat().st_size / 2**20:.1f} MiB): "
            f"{len(exported.parameters)} parameters, scope '{SCOPE}' "
            f"(iree-run-module --parameters={SCOPE}={archive})"
        )
    return 0
