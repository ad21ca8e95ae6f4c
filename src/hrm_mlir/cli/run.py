"""`hrm-mlir run`: solve puzzles with the compiled ACT loop (`hrm_mlir.api.run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hrm_mlir.cli.common import (
    add_cache_option,
    add_compile_options,
    add_params_source_option,
    add_seq_len_option,
    batch,
    checkpoint_arg,
    choice,
    compile_options,
    out,
    positive,
    stage,
)
from hrm_mlir.core.fileio import check_writable
from hrm_mlir.core.types import DType


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("run", help="solve puzzles with the compiled ACT loop")
    p.add_argument(
        "model",
        type=checkpoint_arg,
        help="checkpoint directory or hf://OWNER/NAME, or a .vmfb of an @act export",
    )
    p.add_argument("--puzzle", type=Path, required=True, help="puzzle file (sudoku, maze, ARC)")
    p.add_argument(
        "--family", default=None, help="sudoku|maze|arc (default: detected from the file)"
    )
    add_seq_len_option(p)
    p.add_argument(
        "--max_steps",
        "--max-steps",
        type=positive,
        default=None,
        help="ACT step budget (default: the checkpoint's halt_max_steps)",
    )
    p.add_argument(
        "--q_halt",
        "--q-halt",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="stop each puzzle once it halts: q_halt > q_continue (HRM), q_halt > 0 (TRM) "
        "(default: off, upstream's eval loop)",
    )
    p.add_argument(
        "--batch_size",
        "--batch-size",
        type=batch,
        default=1,
        help="batch of a checkpoint compiled here, or 'dynamic' (default: 1)",
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
        "--compare-pytorch",
        action="store_true",
        help="also run the PyTorch model and report agreement (default: off)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="with a .vmfb: the checkpoint for --compare-pytorch (default: none)",
    )
    p.add_argument(
        "--identifiers",
        type=Path,
        default=None,
        help="the dataset's identifiers.json: ARC task name -> puzzle-embedding row "
        "(default: none, every puzzle uses row 0, the blank identifier)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    add_params_source_option(p, modes=True)
    add_compile_options(p, gpu=False)
    add_cache_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrm_mlir.api import run as run_puzzles
    from hrm_mlir.puzzles import get_codec
    from hrm_mlir.runner import solutions_json

    check_writable(args.json)  # before the slow work
    with stage("solving" if str(args.model).endswith(".vmfb") else "compiling and solving"):
        result = run_puzzles(
            args.model,
            args.puzzle,
            family=args.family,
            seq_len=args.seq_len,
            max_steps=args.max_steps,
            q_halt=args.q_halt,
            batch_size=args.batch_size,
            dtype=args.dtype,
            params=args.params,
            identifiers=args.identifiers,
            checkpoint=args.checkpoint,
            compare_pytorch=args.compare_pytorch,
            options=compile_options(args),
            progress=out.print,
            cache=args.cache,
        )
    solutions = result.solutions
    mode = "Q-halting" if result.q_halt else "fixed steps"
    out.print(
        f"model: {result.what}; {len(result.puzzles)} puzzles; max_steps {result.max_steps}, {mode}"
    )
    for s in solutions:
        codec = get_codec(s.puzzle.family)
        valid = {True: "valid", False: "INVALID", None: "unchecked"}[s.valid]
        out.print(f"\n{s.puzzle.name}")
        out.print(side_by_side(codec.render(s.puzzle.grid), codec.render(s.answer)))
        out.print(f"steps {s.steps}; {valid}: {s.reason}")
    out.print(
        f"\nsolved {result.solved}/{len(solutions)}; mean steps "
        f"{sum(s.steps for s in solutions) / max(len(solutions), 1):.2f}; "
        f"{result.seconds:.1f} s"
    )
    agreement = result.agreement
    if agreement is not None:
        out.print(
            f"PyTorch agreement: answers {agreement['answers']}/{len(solutions)}, "
            f"steps {agreement['steps']}/{len(solutions)}, "
            f"max |q_halt diff| {agreement['max_q_halt_diff']:.2e}"
        )
    if args.json is not None:
        from hrm_mlir.core.fileio import write_atomic

        doc = solutions_json(
            solutions,
            max_steps=result.max_steps,
            q_halt=result.q_halt,
            solved=result.solved,
            pytorch_agreement=agreement,
        )
        write_atomic(args.json, doc.encode())
    return 0


def side_by_side(left: str, right: str, gap: str = "   ->   ") -> str:
    a, b = left.splitlines(), right.splitlines()
    width = max(map(len, a), default=0)
    rows = max(len(a), len(b))
    a += [""] * (rows - len(a))
    b += [""] * (rows - len(b))
    mid = rows // 2
    return "\n".join(
        f"{x.ljust(width)}{gap if i == mid else ' ' * len(gap)}{y}"
        for i, (x, y) in enumerate(zip(a, b, strict=True))
    )
