"""Where one compiled HRM step spends its time: IREE per dispatch, ONNX Runtime per operator.

IREE: the step is exported (linalg-on-tensors, float32), compiled with the project's options
(`--tuned` and `--iree-flag` as for `hrm-mlir compile`), and run by `iree-benchmark-module` with
HAL host-execution profiling (`--device_profiling_mode=host-execution`); `iree-profile dispatch`
gives each dispatch function's count and total time. ONNX Runtime: the same step exported with
`torch.onnx` (dynamo) and run with ORT's profiler; its trace gives each node's time.

Rows are grouped by kind (GEMM, data-tiling pack/encode, softmax, other), and GEMM throughput is
the step's exact matmul FLOPs (`hrm_mlir.bench.step_flops`; attention's QK^T/PV included) over
the time of the GEMM rows. Times are per step (totals divided by the number of timed calls).

    .venv/bin/python scripts/make_arc_checkpoint.py --out /tmp/hrm-27m --rows 1
    .venv/bin/python benchmarks/profile_step.py /tmp/hrm-27m --seq_len 81 --batch 1 --tuned
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from hrm_mlir.bench.measure import step_flops
from hrm_mlir.bench.peers import onnx_session
from hrm_mlir.checkpoint.load import load_checkpoint
from hrm_mlir.compiler.driver import compile_module
from hrm_mlir.compiler.options import CompileOptions
from hrm_mlir.core.types import DType, OutputType
from hrm_mlir.exporter.inputs import random_step_inputs
from hrm_mlir.exporter.module import ExportOptions
from hrm_mlir.exporter.step import export_step
from hrm_mlir.runtime.module import WORKER_STACK_BYTES, to_numpy

BIN = Path(sys.executable).parent
KINDS = (  # first match wins; IREE dispatch names / ORT op types
    ("gemm", re.compile(r"matmul|mmt4d|MatMul|Gemm|FusedMatMul", re.I)),
    ("pack/encode", re.compile(r"(^|_)(un)?pack(_|$)|_encod", re.I)),
    ("softmax", re.compile(r"softmax", re.I)),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--seq_len", type=int, default=None)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--calls", type=int, default=20, help="timed calls (default: 20)")
    p.add_argument(
        "--tuned",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="as for `hrm-mlir compile` (default: the project's default flags)",
    )
    p.add_argument("--iree-flag", action="append", default=[], dest="iree_flags")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime profile")
    p.add_argument("--top", type=int, default=15, help="rows of the per-dispatch table")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def kind_of(name: str) -> str:
    return next((kind for kind, pattern in KINDS if pattern.search(name)), "other")


def iree_profile(model, args, workdir: Path) -> dict[str, dict]:
    """function name -> {count, ms} per step, from IREE's host-execution profile."""
    exported = export_step(
        model, ExportOptions(output_type=OutputType.LINALG_ON_TENSORS, batch_size=args.batch)
    )
    vmfb = workdir / "step.vmfb"
    options = CompileOptions(tuned=args.tuned, extra_flags=tuple(args.iree_flags))
    notes: list[str] = []
    compile_module(exported, vmfb, options, notes=notes)
    for note in notes:
        print(f"note: {note}")
    inputs = []
    for i, t in enumerate(random_step_inputs(model.config, args.batch)):
        np.save(workdir / f"in{i}.npy", to_numpy(t))
        inputs.append(f"--input=@{workdir / f'in{i}.npy'}")
    prof = workdir / "step.ireeprof"
    run = subprocess.run(
        [
            BIN / "iree-benchmark-module",
            f"--module={vmfb}",
            "--function=step",
            "--device=local-task",
            f"--task_topology_max_group_count={args.threads}",
            f"--task_worker_stack_size={WORKER_STACK_BYTES}",
            f"--benchmark_min_time={args.calls}x",
            "--device_profiling_mode=host-execution,executable-metadata",
            f"--device_profiling_output={prof}",
            *inputs,
        ],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise SystemExit(f"iree-benchmark-module failed:\n{run.stderr[-4000:]}")
    rows = subprocess.run(
        [BIN / "iree-profile", "dispatch", "--format=jsonl", str(prof)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    groups = [json.loads(r) for r in rows]
    groups = [g for g in groups if g.get("type") == "host_dispatch_group"]
    # `--benchmark_min_time=Nx` makes exactly N calls, all of them profiled
    return {
        g["key"]: {"count": g["count"] / args.calls, "ms": g["total_ns"] / args.calls / 1e6}
        for g in groups
    }


def onnx_profile(model, args, workdir: Path) -> dict[str, dict]:
    """ORT op type -> {count, ms} per step, from ORT's profiler (node events); {} without ORT."""
    step_args = random_step_inputs(model.config, args.batch)
    session = onnx_session(model, step_args, args.threads, profile_prefix=workdir / "ort")
    if session is None:
        return {}
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), step_args, strict=True)}
    for _ in range(3):  # warm-up, dropped below by keeping the last `calls` runs
        session.run(None, feeds)
    for _ in range(args.calls):
        session.run(None, feeds)
    trace = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in trace if e.get("cat") == "Session" and e["name"] == "model_run"]
    first_timed = runs[-args.calls]["ts"]
    out: dict[str, dict] = defaultdict(lambda: {"count": 0.0, "ms": 0.0})
    for e in trace:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first_timed:
            op = e["args"]["op_name"]
            out[op]["count"] += 1 / args.calls
            out[op]["ms"] += e["dur"] / 1e3 / args.calls
    return dict(out)


def by_kind(rows: dict[str, dict]) -> dict[str, float]:
    kinds: dict[str, float] = defaultdict(float)
    for name, r in rows.items():
        kinds[kind_of(name)] += r["ms"]
    return dict(kinds)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    ck = load_checkpoint(args.checkpoint, seq_len=args.seq_len)
    model = ck.build_model(DType.FLOAT32)
    flops = step_flops(model.config, args.batch)
    console = Console(width=160)
    with tempfile.TemporaryDirectory(prefix="hrm-profile-") as tmp:
        iree = iree_profile(model, args, Path(tmp))
        ort = {} if args.no_onnx else onnx_profile(model, args, Path(tmp))

    title = f"batch {args.batch}, {model.config.total_seq_len} tokens, {args.threads} threads"
    flags = {None: "project defaults", True: "--tuned", False: "--no-tuned"}[args.tuned]
    table = Table(title=f"IREE dispatches per step ({flags}), {title}")
    for col in ("dispatch", "kind", "calls", "ms", "% of step"):
        table.add_column(
            col, justify="left" if col in ("dispatch", "kind") else "right", no_wrap=True
        )
    total = sum(r["ms"] for r in iree.values())
    for name, r in sorted(iree.items(), key=lambda kv: -kv[1]["ms"])[: args.top]:
        table.add_row(
            name,
            kind_of(name),
            f"{r['count']:.0f}",
            f"{r['ms']:.2f}",
            f"{100 * r['ms'] / total:.1f}",
        )
    console.print(table)

    summary = Table(title=f"Time per step by kind (ms), {title}")
    summary.add_column("kind")
    runtimes = {"iree": iree} | ({"onnxruntime": ort} if ort else {})
    for name in runtimes:
        summary.add_column(name, justify="right")
    kinds = {name: by_kind(rows) for name, rows in runtimes.items()}
    for kind in ("gemm", "pack/encode", "softmax", "other"):
        summary.add_row(kind, *(f"{kinds[n].get(kind, 0.0):.2f}" for n in runtimes))
    totals = {n: sum(k.values()) for n, k in kinds.items()}
    summary.add_row("total (sum of kernels)", *(f"{totals[n]:.2f}" for n in runtimes))
    summary.add_row(
        "GEMM GFLOP/s",
        *(f"{flops / (kinds[n].get('gemm', 0.0) / 1e3) / 1e9:.0f}" for n in runtimes),
    )
    console.print(summary)
    if ort:
        top = Table(title="ONNX Runtime operators per step")
        for col in ("op", "calls", "ms"):
            top.add_column(col, justify="left" if col == "op" else "right")
        for op, r in sorted(ort.items(), key=lambda kv: -kv[1]["ms"])[: args.top]:
            top.add_row(op, f"{r['count']:.0f}", f"{r['ms']:.2f}")
        console.print(top)
    if args.json:
        doc = {
            "batch": args.batch,
            "tokens": model.config.total_seq_len,
            "threads": args.threads,
            "tuned": args.tuned,
            "iree_flags": args.iree_flags,
            "step_gflop": flops / 1e9,
            "iree": iree,
            "onnxruntime": ort,
            "by_kind": kinds,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
