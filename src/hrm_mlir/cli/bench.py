"""`hrm-mlir bench`: time the step on every runtime (`hrm_mlir.bench`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from hrm_mlir.cli.common import (
    CHECKPOINT_HELP,
    PARAMS_DEFAULT,
    add_compile_options,
    add_seq_len_option,
    checkpoint_arg,
    choice,
    compile_options,
    out,
    params_mode,
    positive,
    print_notes,
    stage,
)
from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.core.fileio import check_writable
from hrm_mlir.core.types import DType

if TYPE_CHECKING:
    from hrm_mlir.bench.measure import BenchReport


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="time eager, torch.compile, ONNX Runtime and IREE")
    p.add_argument("checkpoint", type=checkpoint_arg, help=CHECKPOINT_HELP)
    add_seq_len_option(p)
    p.add_argument(
        "--batch_sizes", "--batch-sizes", default="1,16", help="comma list (default: 1,16)"
    )
    p.add_argument(
        "--dtype",
        type=choice(DType),
        default=DType.FLOAT32,
        help="float32: every runtime in float32, whatever the checkpoint's forward_dtype; "
        "bfloat16: the bf16 runtimes against the float32 ones, each judged against the float32 "
        "model on the same inputs (default: float32)",
    )
    p.add_argument(
        "--runtimes",
        default=None,
        help="comma list of eager,compile,onnx,openvino (OpenVINO's CPU plugin, float32),"
        "iree (the project's flags and GEMM kernels),"
        "iree-no-kernels (the same flags, IREE's own GEMMs),iree-plain (IREE's defaults),"
        "iree-tuned (--tuned),iree-dynamic (one symbolic-batch artifact for every batch); "
        "for A/B runs also iree-avx2-tiles (the kernels' AVX2 register tiles on any target), "
        "iree-dispatch-tiling (IREE's default data-tiling path, docs/known-issues.md). "
        "With --dtype bfloat16: eager,compile (the model in bf16),onnx (the float32 ONNX "
        "export),openvino (the same, at OpenVINO's default precision),iree-bf16 (the bf16 "
        "artifact, computed as --bf16-compute says),iree-f32 (the float32 artifact) "
        "(default: all but the A/B ones)",
    )
    p.add_argument(
        "--threads",
        type=positive,
        default=os.cpu_count() or 1,
        help="threads of every runtime (default: all cores)",
    )
    p.add_argument("--iterations", type=positive, default=20, help="timed rounds (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds (default: 3)")
    p.add_argument(
        "--act-steps",
        type=int,
        default=4,
        help="also time @act with N steps against N calls of @step; 0 = skip (default: 4)",
    )
    p.add_argument(
        "--phases",
        action="store_true",
        help="also measure export and compile wall time and peak RSS (default: off)",
    )
    p.add_argument("--json", type=Path, default=None, help="write every sample as JSON")
    p.add_argument("--plot", type=Path, default=None, help="write latency vs batch as PNG")
    p.add_argument(
        "--params",
        type=params_mode,
        default=None,
        help=f"weights of the IREE artifacts: inline|external (default: {PARAMS_DEFAULT})",
    )
    add_compile_options(p, gpu=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from hrm_mlir.bench import measure as bench
    from hrm_mlir.checkpoint.load import load_checkpoint

    if args.runtimes is None:
        runtimes = list(bench.DEFAULT_RUNTIMES[args.dtype])
    else:
        runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    bench.check_runtimes(runtimes, args.dtype)  # before the checkpoint loads, anything compiles
    check_writable(args.json, args.plot)
    try:
        batches = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        raise HrmMlirError(
            f"--batch_sizes: expected a comma list of integers, got {args.batch_sizes!r}"
        ) from None
    ck = load_checkpoint(args.checkpoint, seq_len=args.seq_len)
    with stage(f"timing {len(runtimes)} runtimes at batch {args.batch_sizes}"):
        report = bench.bench(
            ck,
            batch_sizes=batches,
            runtimes=runtimes,
            threads=args.threads,
            iterations=args.iterations,
            warmup=args.warmup,
            act_steps=args.act_steps,
            compile_options=compile_options(args),
            params=args.params,
            dtype=args.dtype,
        )
    if args.phases:
        with tempfile.TemporaryDirectory() as tmp:
            report.phases = bench.measure_phases(
                ck.weights_path, args.seq_len, Path(tmp), args.dtype
            )
    out.print(_table(report, ck.family.title))
    for a in report.act:
        out.print(
            f"@act of {a['runtime']} with {a['steps']} steps, batch {a['batch_size']}: "
            f"{a['act_ms']:.1f} ms; {a['steps']} calls of @step: {a['step_loop_ms']:.1f} ms; "
            f"ratio {a['ratio']:.3f}"
        )
    print_notes(report.notes)
    for name, phase in report.phases.items():
        out.print(f"{name}: {phase['wall_s']:.1f} s, peak RSS {phase['peak_rss_mib']:.0f} MiB")
    if args.json is not None:
        bench.write_json(report, args.json)
    if args.plot is not None:
        bench.plot(report, args.plot)
    return 0


def _table(report: BenchReport, family: str) -> Table:
    """The results: against eager and ONNX Runtime (float32), or what each runtime computes in,
    against eager bf16 and the float32 artifact, and its distance from the float32 truth."""
    bf16 = report.dtype == DType.BFLOAT16.value
    t = Table(
        title=f"{family} step, {report.dtype}, {report.threads} threads, measured fp32 peak "
        f"{report.peak_gflops:.0f} GFLOP/s\n{report.machine['cpu']}"
    )
    ratios = ("x eager bf16", "x iree-f32") if bf16 else ("x eager", "x onnxruntime")
    verified = "against the f32 truth" if bf16 else "verified"
    columns = ["batch", "runtime", *(["computes in"] if bf16 else []), "median ms", "min", "max",
               "GFLOP/s", "% peak", *ratios, verified]  # fmt: skip
    for col in columns:
        t.add_column(
            col, justify="left" if col in ("runtime", "computes in", verified) else "right"
        )
    for r in report.results:
        second = r.vs_iree_f32 if bf16 else r.vs_onnx
        t.add_row(
            str(r.batch_size), r.runtime, *([r.precision or "-"] if bf16 else []),
            f"{r.median_ms:.1f}", f"{min(r.samples_ms):.1f}", f"{max(r.samples_ms):.1f}",
            f"{r.gflops:.0f}", f"{r.pct_peak:.0f}%",
            f"{r.vs_eager:.2f}" if r.vs_eager else "-", f"{second:.2f}" if second else "-",
            r.verified,
        )  # fmt: skip
    return t
