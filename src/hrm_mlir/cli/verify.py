"""`hrm-mlir verify`: compile, run and compare with PyTorch (`hrm_mlir.api.verify`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hrm_mlir.cli.common import (
    CHECKPOINT_HELP,
    EXIT_VERIFY_FAILED,
    add_compile_options,
    add_model_options,
    add_params_source_option,
    checkpoint_arg,
    compile_options,
    out,
    print_notes,
    stage,
)
from hrm_mlir.core.fileio import check_writable


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("verify", help="compile with IREE, run, and compare with PyTorch")
    p.add_argument("checkpoint", type=checkpoint_arg, help=CHECKPOINT_HELP)
    p.add_argument(
        "--mlir", type=Path, default=None, help="verify this MLIR file (default: export one now)"
    )
    add_model_options(p, dtype_default="the checkpoint's forward_dtype, or the --mlir file's")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    add_params_source_option(p, modes=True)
    add_compile_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrm_mlir.api import verify

    check_writable(args.json)  # before the slow work
    notes: list[str] = []

    def show(title: str, report) -> None:
        print_notes(notes)  # compile's, before the first table
        notes.clear()
        out.print(report.table(title=title))

    with stage("exporting, compiling and checking against PyTorch"):
        result = verify(
            args.checkpoint,
            mlir=args.mlir,
            seq_len=args.seq_len,
            output_type=args.output_type,
            dtype=args.dtype,
            batch_size=args.batch_size,
            params=args.params,
            seed=args.seed,
            options=compile_options(args),
            on_report=show,
            notes=notes,
        )
    if args.json is not None:
        from hrm_mlir.core.fileio import write_atomic

        write_atomic(args.json, json.dumps(result.as_dict(), indent=2).encode())
    if not result.passed:
        print(f"hrm-mlir: verification failed: {'; '.join(result.failures)}", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    out.print("verification passed")
    return 0
