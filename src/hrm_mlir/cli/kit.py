"""`hrm-mlir kit build|run`: artifacts compiled here (`hrm_mlir.bench.kit_build`), checked and
timed against PyTorch on a machine with only IREE's runtime and PyTorch, such as a GPU machine
(`hrm_mlir.bench.kit_run`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hrm_mlir.cli.common import (
    CHECKPOINT_HELP,
    EXIT_VERIFY_FAILED,
    add_compile_options,
    checkpoint_arg,
    choice,
    compile_options,
    out,
    positive,
    print_notes,
    stage,
)
from hrm_mlir.core.fileio import check_writable
from hrm_mlir.core.types import DType


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "kit",
        help="build artifacts here; check and time them against PyTorch on another machine",
        description="A kit is a directory of @step artifacts for one target with kit.json. "
        "`kit build` exports and compiles them here; `kit run`, on the machine they are for, "
        "needs only IREE's runtime and PyTorch (no torch-mlir, no IREE compiler): it checks "
        "every artifact against PyTorch eager on that device, then times both.",
    )
    verbs = p.add_subparsers(dest="kit_command", required=True, metavar="build|run")

    b = verbs.add_parser("build", help="export and compile @step at every shape into a kit")
    b.add_argument("checkpoint", type=checkpoint_arg, help=CHECKPOINT_HELP)
    b.add_argument("-o", "--output", type=Path, required=True, help="kit directory to write")
    b.add_argument(
        "--shape",
        action="append",
        default=None,
        metavar="SEQ_LEN:B1,B2",
        help="puzzle length and static batch sizes, repeatable, e.g. --shape 81:1,64,256 "
        "--shape 900:1,16 (default: the checkpoint's puzzle length, batch 1)",
    )
    b.add_argument(
        "--dtype",
        type=choice(DType),
        default=DType.BFLOAT16,
        help="forward dtype: float32|bfloat16 (default: bfloat16, as upstream runs on GPUs)",
    )
    b.add_argument(
        "--weights",
        default="random",
        choices=("random", "checkpoint"),
        help="random: non-degenerate weights drawn from --seed where the kit runs (nothing "
        "large travels); checkpoint: the checkpoint's own, copied in as safetensors "
        "(default: random)",
    )
    b.add_argument("--seed", type=int, default=0, help="seed of random weights (default: 0)")
    add_compile_options(b)
    b.set_defaults(func=build)

    r = verbs.add_parser("run", help="check a kit's artifacts against PyTorch here, then time")
    r.add_argument("kit", type=Path, help="kit directory (from `kit build`)")
    r.add_argument("--iterations", type=positive, default=20, help="timed rounds (default: 20)")
    r.add_argument("--warmup", type=int, default=3, help="untimed rounds (default: 3)")
    r.add_argument(
        "--peers",
        default="eager",
        help="PyTorch runtimes timed beside IREE, comma list of eager (SDPA attention, the "
        "reference) and compile (torch.compile of it) (default: eager)",
    )
    r.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    r.add_argument(
        "--driver", default=None, help="IREE driver (default: by the kit's target: cuda, hip, ...)"
    )
    r.add_argument(
        "--device", default=None, help="torch device (default: cuda for GPU kits, else cpu)"
    )
    r.add_argument(
        "--time-limit",
        "--time_limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="per artifact, stop the timed rounds once this has passed, keeping at least 3 "
        "(default: no limit)",
    )
    r.add_argument("--json", type=Path, default=None, help="write the report and samples as JSON")
    r.set_defaults(func=run)


def build(args: argparse.Namespace) -> int:
    from hrm_mlir.bench.kit_build import build_kit, parse_shape
    from hrm_mlir.bench.kit_format import Weights

    shapes: dict[int | None, list[int]] = {}
    for text in args.shape or []:
        seq_len, batches = parse_shape(text)
        known = shapes.setdefault(seq_len, [])
        known += [b for b in batches if b not in known]
    options = compile_options(args)

    def progress(line: str) -> None:
        out.print(line)

    with stage(f"building a kit for {options.target_name()}"):
        doc = build_kit(
            args.checkpoint,
            args.output,
            shapes=shapes or {None: [1]},
            dtype=args.dtype,
            options=options,
            weights=Weights(args.weights),
            seed=args.seed,
            progress=progress,
        )
    print_notes(doc["notes"])
    total = sum(a["bytes"] for a in doc["artifacts"]) / 2**20
    shapes_text = ", ".join(f"{a['tokens']}x{a['batch']}" for a in doc["artifacts"])
    out.print(
        f"wrote {args.output}: {len(doc['artifacts'])} @step artifacts ({shapes_text} tokens x "
        f"batch; {total:.1f} MiB) for {doc['target']}, {doc['dtype']}, {doc['weights']['source']}"
        f" weights; run it with: hrm-mlir kit run {args.output}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from hrm_mlir.bench.kit_run import run_kit, write_report

    check_writable(args.json)  # before the slow work
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    with stage(f"checking and timing {args.kit}"):
        report = run_kit(
            args.kit,
            iterations=args.iterations,
            warmup=args.warmup,
            peers=peers,
            seed=args.seed,
            driver=args.driver,
            device=args.device,
            time_limit_s=args.time_limit,
        )
    m = report.machine
    t = Table(
        title=f"@step of {args.kit} ({report.kit['target']}, {report.kit['dtype']}) on "
        f"{m['device']}, IREE driver {m['driver']}; torch {m['torch']} on {m['torch_device']}"
    )
    names = list(dict.fromkeys(x.runtime for r in report.results for x in r.timings))
    for col in ("tokens", "batch", *(f"{n} ms" for n in names), "iree x eager", "verified"):
        t.add_column(col, justify="left" if col == "verified" else "right")
    for r in report.results:
        medians = [r.median(n) for n in names]
        eager, iree = r.median("torch-eager"), r.median("iree")
        worst = max((o.rel_l2 for o in r.report.outputs), default=float("nan"))
        verified = f"max rel-L2 {worst:.1e}"
        if r.report.reduced is not None:
            f32 = max((o.distance for o in r.report.reduced.outputs), default=float("nan"))
            torch_f32 = max((o.pytorch for o in r.report.reduced.outputs), default=float("nan"))
            verified += (
                f" ({r.report.dtype.value}); from float32 {f32:.1e}, PyTorch's {torch_f32:.1e} "
                f"({r.report.rows} rows)"
            )
        if not r.passed:
            verified = "NO: " + "; ".join(r.failures())
        t.add_row(
            str(r.tokens),
            str(r.batch),
            *(f"{x:.3f}" if x is not None else "-" for x in medians),
            f"{eager / iree:.2f}" if eager and iree else "-",
            verified,
        )
    out.print(t)
    for r in report.results:
        if r.vs_float32:
            shown = ", ".join(f"{n} {v:.1e}" for n, v in r.vs_float32.items())
            out.print(f"{r.file}: max rel-L2 from PyTorch float32: {shown}")
        print_notes([f"{r.file}: {n}" for n in r.notes])
    if args.json is not None:
        write_report(report, args.json)
    if not report.passed:
        failed = [r.file for r in report.results if not r.passed]
        sys.stdout.flush()
        print(f"hrm-mlir: kit check failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    out.print("every artifact matches PyTorch")
    return 0
