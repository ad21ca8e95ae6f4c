"""`hrm-mlir compile`: MLIR to an IREE module (`hrm_mlir.api.compile`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hrm_mlir.cli.common import (
    add_compile_options,
    choice,
    compile_options,
    out,
    print_notes,
    stage,
    target_summary,
)
from hrm_mlir.core.fileio import check_writable
from hrm_mlir.core.types import OutputType


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compile", help="compile MLIR to an IREE module (.vmfb)")
    p.add_argument("mlir", type=Path, help="MLIR file from `export` (.mlir or .mlirbc)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .vmfb")
    add_compile_options(p)
    p.add_argument(
        "--output_type",
        "--output-type",
        type=choice(OutputType),
        default=None,
        help="dialect of the input (default: detected from its content)",
    )
    p.add_argument(
        "--params",
        type=Path,
        default=None,
        help="check that this parameter archive (.irpa) holds every parameter the module "
        "names, with the right sizes, and run the self-check with it (default: none; "
        "parameters are bound at run time)",
    )
    p.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the new artifact on the reference outputs that export recorded in the module "
        "and compare them with PyTorch's, when this machine can run it; a configuration that "
        "fails gives way to the next (fast flags and kernels, fast flags, IREE's defaults) "
        "(default: --check)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write what was compiled, for which target, and what was checked, as JSON",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrm_mlir.api import compile

    check_writable(args.json)  # the output is checked by `compile`, before it compiles
    with stage(f"compiling {args.mlir} with IREE"):
        result = compile(
            args.mlir,
            args.output,
            options=compile_options(args),
            output_type=args.output_type,
            check=args.check,
            params=args.params,
        )
    if result.parameters_checked is not None:
        out.print(
            f"{args.params} holds all {result.parameters_checked} parameters {args.mlir} names"
        )
    print_notes(result.notes)
    out.print(
        f"wrote {result.path} ({result.size / 2**20:.1f} MiB) for "
        f"{target_summary(result.options)}{kernel_summary(result.stats)}, "
        f"in {result.seconds:.1f} s{checked_summary(result.stats)}"
    )
    if args.json is not None:
        import json

        from hrm_mlir.core.fileio import write_atomic

        write_atomic(args.json, json.dumps(result.as_dict(), indent=2).encode())
    return 0


def kernel_summary(stats: dict) -> str:
    """E.g. " (96 GEMMs, 32 with the elementwise code after them and 16 attentions on
    hrm-mlir's AVX2 kernels)", or "" where the kernels took nothing."""
    kernels, fused = stats.get("gemm_kernels", 0), stats.get("fused_epilogues", 0)
    attention, qkv = stats.get("attention_kernels", 0), stats.get("qkv_kernels", 0)
    if not (kernels or attention):
        return ""
    parts = [f"{kernels} GEMMs"]
    if fused:
        parts.append(f"{fused} with the elementwise code after them")
    if attention:
        parts.append(f"{attention} attentions")
    if qkv:
        parts.append(f"{qkv} q/k/v preparations")
    listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
    tiles = {"avx512": "AVX-512"}.get(stats.get("kernel_isa") or "", "AVX2")
    return f" ({listed} on hrm-mlir's {tiles} kernels)"


def checked_summary(stats: dict) -> str:
    if not stats.get("checked"):
        return ""
    on = f" on {stats['checked_on']}" if stats.get("checked_on") else ""
    return f"; checked against PyTorch{on}: {stats['checked']}"
