"""`hrm-mlir evaluate`: upstream's metrics on a built dataset (`hrm_mlir.api.evaluate`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hrm_mlir.cli import common
from hrm_mlir.cli.common import (
    add_cache_option,
    add_compile_options,
    add_params_source_option,
    choice,
    compile_options,
    out,
    positive,
)
from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.core.fileio import check_writable
from hrm_mlir.core.types import DType


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="upstream's metrics on a built dataset, through the compiled ACT loop"
    )
    p.add_argument(
        "model",
        type=Path,
        nargs="?",
        help="checkpoint directory, or a .vmfb of an @act export (none with --predictions)",
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a dataset built by upstream's dataset/build_*_dataset.py "
        "(<split>/dataset.json, <split>/all__*.npy, identifiers.json)",
    )
    p.add_argument("--split", default="test", help="the split to evaluate (default: test)")
    p.add_argument(
        "--max_steps",
        "--max-steps",
        type=positive,
        default=None,
        help="ACT steps (default: the checkpoint's halt_max_steps, what upstream evaluates with)",
    )
    p.add_argument(
        "--q_halt",
        "--q-halt",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="stop each row once it halts: q_halt > q_continue (HRM), q_halt > 0 (TRM) "
        "(default: off, upstream's evaluation)",
    )
    p.add_argument(
        "--continuous",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --q_halt, a row that halts frees its slot for the next puzzle at once "
        "(default: on with --q_halt for the compiled model)",
    )
    p.add_argument(
        "--batch_size",
        "--batch-size",
        type=positive,
        default=64,
        help="rows per call; a checkpoint's @act is compiled for it (default: 64)",
    )
    p.add_argument(
        "--limit", type=positive, default=None, help="only the first N examples (default: all)"
    )
    p.add_argument(
        "--dtype",
        type=choice(DType),
        default=None,
        help="forward dtype of a checkpoint compiled here (default: the checkpoint's "
        "forward_dtype, what verify checks; bfloat16 is computed in float32 on CPUs without "
        "bf16 units, as fast as float32)",
    )
    p.add_argument(
        "--runtime",
        choices=("iree", "pytorch"),
        default="iree",
        help="iree: the compiled @act; pytorch: the PyTorch model, for comparison (default: iree)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the metrics as JSON")
    p.add_argument(
        "--save-predictions",
        type=Path,
        default=None,
        help="write the predictions as upstream's evaluate.py saves them (torch.save'd dict)",
    )
    p.add_argument(
        "--predictions-argmax",
        action="store_true",
        help="in --save-predictions keep argmax tokens ('preds') instead of the logits "
        "(default: logits)",
    )
    p.add_argument(
        "--predictions",
        type=Path,
        nargs="+",
        default=None,
        metavar="FILE",
        help="score these prediction files (upstream's evaluate.py's, or --save-predictions') "
        "against an ARC build instead of running a model",
    )
    p.add_argument(
        "--submission", type=Path, default=None, help="ARC: write a Kaggle submission.json"
    )
    p.add_argument(
        "--plot", type=Path, default=None, help="ARC: write a PNG of a few tasks, voted answers"
    )
    ray = p.add_argument_group(
        "scale-out on Ray (pip install 'hrm-mlir[ray]')",
        "the split cut into shards of whole batches, each evaluated by a Ray worker that loaded "
        "the compiled @act once; the same metrics as --engine local",
    )
    ray.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: shards over Ray workers (default: local)",
    )
    ray.add_argument(
        "--address",
        metavar="ADDR",
        default=None,
        help="the Ray cluster to join, e.g. ray://HEAD:10001 or auto (default: RAY_ADDRESS, "
        "else a local Ray on this machine's CPUs)",
    )
    ray.add_argument(
        "--workers",
        metavar="N",
        type=positive,
        default=None,
        help="Ray workers, one CPU and one IREE thread each (default: one per CPU of the cluster)",
    )
    ray.add_argument(
        "--shards",
        metavar="N",
        type=positive,
        default=None,
        help="contiguous ranges of the split, whole batches each (default: 4 per worker; with "
        "--resume, the earlier run's)",
    )
    ray.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=None,
        help="the directory of the shards' results and their manifest.json (required with "
        "--engine ray)",
    )
    ray.add_argument(
        "--resume",
        action="store_true",
        help="keep the shards of this same run already in --out and run the rest; another "
        "run's are refused (default: off, and an --out with results is refused)",
    )
    add_params_source_option(p, modes=True)
    add_compile_options(p, gpu=False)
    add_cache_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrm_mlir.api import evaluate

    check_writable(args.json)  # before the slow work; `evaluate` checks its other outputs
    if args.predictions is not None:
        return score(args)
    if args.model is None:
        raise HrmMlirError("evaluate needs a model (a checkpoint or .vmfb) or --predictions FILE")

    err = Console(stderr=True, highlight=False)
    with Progress(
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        disable=common.QUIET or not sys.stderr.isatty(),  # a terminal only, not --quiet
        transient=True,
    ) as bar:
        task = bar.add_task("evaluate", total=None, rate="")

        def progress(done: int, total: int) -> None:
            elapsed = bar.tasks[task].elapsed or 0.0
            rate = f"{done / elapsed:.1f} puzzles/s" if elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        result = evaluate(
            args.model,
            args.data,
            split=args.split,
            max_steps=args.max_steps,
            q_halt=args.q_halt,
            batch_size=args.batch_size,
            limit=args.limit,
            dtype=args.dtype,
            params=args.params,
            runtime=args.runtime,
            predictions=args.save_predictions,
            keep="preds" if args.predictions_argmax else "logits",
            submission=args.submission,
            plot=args.plot,
            continuous=args.continuous,
            options=compile_options(args),
            progress=progress,
            status=out.print,
            engine=args.engine,
            address=args.address,
            workers=args.workers,
            shards=args.shards,
            out=args.out,
            resume=args.resume,
            cache=args.cache,
        )
    r = result.result
    t = Table(title=f"{result.what} on {args.data}/{args.split}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for name, value in r.metrics.items():
        t.add_row(name, f"{value:.4f}" if name != "steps" else f"{value:.2f}")
    t.add_section()
    t.add_row("examples (with labels)", f"{r.examples:,} ({r.count:,})")
    t.add_row("exact", f"{int(r.exact.sum()):,} / {r.count:,}")
    mode = "Q-halting" if r.q_halt else "fixed steps"
    if r.continuous:
        mode += ", continuous batching"
    t.add_row("steps", f"max {r.max_steps}, {mode}")
    t.add_row("batch", str(r.batch_size))
    ran = result.sharded
    seconds, examples, now = r.seconds, r.examples, ""
    if ran is not None:
        extra = [f"{len(ran.resumed)} read back from {ran.out}"] if ran.resumed else []
        extra += [f"{len(ran.retried)} rerun after their worker died"] if ran.retried else []
        more = f" ({', '.join(extra)})" if extra else ""
        workers = f"{ran.workers} worker{'s' if ran.workers != 1 else ''}"
        t.add_row("engine", f"Ray, {workers}, {len(ran.shards)} shards{more}")
        seconds, examples = ran.seconds, ran.examples_run
        now = f" ({examples:,} run now)" if ran.resumed else ""
    rate = examples / seconds if seconds > 0 else 0.0
    t.add_row("wall (evaluation only)", f"{seconds:.1f} s, {rate:.1f} puzzles/s{now}")
    out.print(t)
    if result.arc is not None:
        print_arc(result.arc, args)
    if result.predictions is not None:
        out.print(f"wrote {result.predictions}")
    if args.json is not None:
        from hrm_mlir.core.fileio import write_atomic

        write_atomic(args.json, json.dumps(result.as_dict(), indent=2).encode())
    return 0


def score(args: argparse.Namespace) -> int:
    """`--predictions FILE...`: ARC pass@k of prediction files, no model."""
    from hrm_mlir.api import score_predictions

    if args.model is not None:
        raise HrmMlirError("--predictions scores files: give no model with it")
    scored = score_predictions(
        args.predictions, args.data, split=args.split, submission=args.submission, plot=args.plot
    )
    print_arc(scored, args)
    if args.json is not None:
        from hrm_mlir.core.fileio import write_atomic

        doc = {"predictions": [str(p) for p in args.predictions], "data": str(args.data),
               "split": args.split, "arc": scored.summary()}  # fmt: skip
        write_atomic(args.json, json.dumps(doc, indent=2).encode())
    return 0


def print_arc(scored, args: argparse.Namespace) -> None:
    from hrm_mlir.evaluation.arc import pass_at_text

    out.print(f"ARC by augmentation voting: {pass_at_text(scored)}")
    for path in (args.submission, args.plot):
        if path is not None:
            out.print(f"wrote {path}")
