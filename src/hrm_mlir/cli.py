"""The `hrm-mlir` command line: a thin layer over the library.

Every subcommand parses its flags, calls one library function per stage and prints what it did.
User mistakes end in one line on stderr naming the file and the problem (exit 2); `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hrm_mlir.config import DType, Entry, OutputType, _ChoiceEnum
from hrm_mlir.errors import HrmMlirError

EXIT_USER_ERROR = 2
EXIT_VERIFY_FAILED = 1
DYNAMIC_VERIFY_BATCHES = (1, 3, 16)  # a symbolic-batch artifact is verified at each
# Piped output (logs, CI, tests) gets wide lines instead of rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def _choice(enum: type[_ChoiceEnum]) -> Callable[[str], _ChoiceEnum]:
    def parse(value: str) -> _ChoiceEnum:
        try:
            return enum.parse(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = enum.__name__
    return parse


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _batch(value: str) -> int | None:
    """A positive batch size, or `dynamic` (None): a symbolic batch dimension."""
    return None if value == "dynamic" else _positive(value)


def add_seq_len_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--seq_len",
        "--seq-len",
        type=_positive,
        default=None,
        help="puzzle length when the checkpoint cannot tell (default: from the weights or "
        "<data_path>/train/dataset.json; published: 81 Sudoku, 900 maze/ARC)",
    )


def _params_mode(value: str):
    """`inline` or `external` (a `Params`)."""
    from hrm_mlir.params import Params

    return _choice(Params)(value)


def _params_source(value: str):
    """`inline`, `external` (a `Params`), or the path of a parameter archive."""
    from hrm_mlir.params import Params

    try:
        return Params.parse(value)
    except ValueError:
        return Path(value)


_PARAMS_DEFAULT = "inline, or external when the weights exceed 512 MiB"


def add_params_options(p: argparse.ArgumentParser) -> None:
    """`--params` / `--params_file` of the commands that write MLIR (export, generate_mlir.py)."""
    p.add_argument(
        "--params",
        type=_params_mode,
        default=None,
        help="weights inline in the MLIR, or external in an IREE parameter archive "
        f"(.irpa) that the MLIR refers to by name: inline|external (default: {_PARAMS_DEFAULT})",
    )
    p.add_argument(
        "--params_file",
        "--params-file",
        type=Path,
        default=None,
        help="where external parameters go; implies --params external "
        "(default: the output path with the suffix .irpa)",
    )


def add_params_source_option(p: argparse.ArgumentParser, *, modes: bool) -> None:
    """`--params` of the commands that load or build a compiled module."""
    if modes:
        p.add_argument(
            "--params",
            type=_params_source,
            default=None,
            help="a parameter archive (.irpa) for an MLIR/.vmfb built with external parameters,"
            f" or inline|external for a model exported here (default: {_PARAMS_DEFAULT})",
        )
    else:
        p.add_argument(
            "--params",
            type=Path,
            default=None,
            help="the parameter archive (.irpa) of a module built with external parameters "
            "(default: none)",
        )


def add_model_options(p: argparse.ArgumentParser, *, dtype_default: str) -> None:
    """Options shared by the commands that export: dims, dialect, dtype, batch."""
    add_seq_len_option(p)
    p.add_argument(
        "--output_type",
        "--output-type",
        type=_choice(OutputType),
        default=OutputType.TORCH,
        help="MLIR dialect: " + "|".join(o.value for o in OutputType) + " (default: torch)",
    )
    p.add_argument(
        "--dtype",
        type=_choice(DType),
        default=None,
        help=f"forward dtype: float32|bfloat16 (default: {dtype_default})",
    )
    p.add_argument(
        "--batch_size",
        "--batch-size",
        type=_batch,
        default=1,
        help="batch size, or 'dynamic' for one artifact serving every batch (default: 1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrm-mlir",
        description="Export, compile, run and verify HRM checkpoints with torch-mlir and IREE.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks (default: off)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="show a checkpoint's config, dimensions and weights")
    p.add_argument("checkpoint", type=Path, help="checkpoint directory or weights file")
    add_seq_len_option(p)
    p.add_argument(
        "--json", action="store_true", help="print JSON incl. H_init/L_init (default: off)"
    )
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("export", help="export a checkpoint to MLIR")
    p.add_argument("checkpoint", type=Path, help="checkpoint directory or weights file")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="output .mlir (text) or .mlirbc (bytecode)"
    )
    add_model_options(p, dtype_default="the checkpoint's forward_dtype")
    p.add_argument(
        "--entry",
        type=_choice(Entry),
        default=Entry.STEP,
        help="step: one ACT step (@step); act: the whole ACT loop (@act, @step, "
        "@initial_carry; linalg-on-tensors) (default: step)",
    )
    add_params_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compile", help="compile MLIR to an IREE module (.vmfb)")
    p.add_argument("mlir", type=Path, help="MLIR file from `export` (.mlir or .mlirbc)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .vmfb")
    add_compile_options(p)
    p.add_argument(
        "--output_type",
        "--output-type",
        type=_choice(OutputType),
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
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("verify", help="compile with IREE, run, and compare with PyTorch")
    p.add_argument("checkpoint", type=Path, help="checkpoint directory or weights file")
    p.add_argument(
        "--mlir", type=Path, default=None, help="verify this MLIR file (default: export one now)"
    )
    add_model_options(p, dtype_default="the checkpoint's forward_dtype, or the --mlir file's")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    add_params_source_option(p, modes=True)
    add_compile_options(p, gpu=False)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("run", help="solve puzzles with the compiled ACT loop")
    p.add_argument("model", type=Path, help="checkpoint directory, or a .vmfb of an @act export")
    p.add_argument("--puzzle", type=Path, required=True, help="puzzle file (sudoku, maze, ARC)")
    p.add_argument(
        "--family", default=None, help="sudoku|maze|arc (default: detected from the file)"
    )
    add_seq_len_option(p)
    p.add_argument(
        "--max_steps",
        "--max-steps",
        type=_positive,
        default=None,
        help="ACT step budget (default: the checkpoint's halt_max_steps)",
    )
    p.add_argument(
        "--q_halt",
        "--q-halt",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="stop each puzzle once q_halt > q_continue (default: off, upstream's eval loop)",
    )
    p.add_argument(
        "--batch_size",
        "--batch-size",
        type=_batch,
        default=1,
        help="batch of a checkpoint compiled here, or 'dynamic' (default: 1)",
    )
    p.add_argument(
        "--dtype",
        type=_choice(DType),
        default=DType.FLOAT32,
        help="forward dtype of a checkpoint compiled here (default: float32, fastest and exact "
        "on CPUs without bf16 units)",
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
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bench", help="time eager, torch.compile, ONNX Runtime and IREE")
    p.add_argument("checkpoint", type=Path, help="checkpoint directory or weights file")
    add_seq_len_option(p)
    p.add_argument(
        "--batch_sizes", "--batch-sizes", default="1,16", help="comma list (default: 1,16)"
    )
    p.add_argument(
        "--runtimes",
        default="eager,compile,onnx,openvino,iree,iree-no-kernels,iree-plain,iree-tuned,"
        "iree-dynamic",
        help="comma list of eager,compile,onnx,openvino (OpenVINO's CPU plugin, float32),"
        "iree (the project's flags and GEMM kernels),"
        "iree-no-kernels (the same flags, IREE's own GEMMs),iree-plain (IREE's defaults),"
        "iree-tuned (--tuned),iree-dynamic (one symbolic-batch artifact for every batch); "
        "for A/B runs also iree-avx2-tiles (the kernels' AVX2 register tiles on any target), "
        "iree-dispatch-tiling (IREE's default data-tiling path, docs/known-issues.md) "
        "(default: all but the A/B ones)",
    )
    p.add_argument(
        "--threads",
        type=_positive,
        default=os.cpu_count() or 1,
        help="threads of every runtime (default: all cores)",
    )
    p.add_argument("--iterations", type=_positive, default=20, help="timed rounds (default: 20)")
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
        type=_params_mode,
        default=None,
        help=f"weights of the IREE artifacts: inline|external (default: {_PARAMS_DEFAULT})",
    )
    add_compile_options(p, gpu=False)
    p.set_defaults(func=cmd_bench)
    return parser


def add_compile_options(p: argparse.ArgumentParser, *, gpu: bool = True) -> None:
    """iree-compile options; commands that run on this CPU (verify, run) take the CPU ones."""
    from hrm_mlir.compile import Target

    if gpu:
        p.add_argument(
            "--target",
            type=_choice(Target),
            default=Target.LLVM_CPU,
            help="IREE target: " + "|".join(t.value for t in Target) + " (default: llvm-cpu)",
        )
        p.add_argument(
            "--cuda-arch",
            "--cuda_arch",
            default="sm_80",
            help="CUDA target (default: sm_80; IREE 3.13 cannot compile for sm_90, iree#22147)",
        )
        p.add_argument(
            "--vulkan-target",
            default="ampere",
            help="Vulkan target: an architecture (ampere, rdna3, ...) (default: ampere)",
        )
    p.add_argument(
        "--cpu",
        default="host",
        help="llvm-cpu target CPU: host (this machine's) or one LLVM knows, e.g. x86-64-v3, "
        "x86-64-v4, znver3, znver4, icelake-server, sapphirerapids; kernels follow its "
        "features (default: host)",
    )
    p.add_argument(
        "--tuned",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="llvm-cpu flags. Default: float32 modules get the fastest found (O3, data tiling, "
        "ukernels, 1 MiB matmul tiles) within a 64 KiB stack limit that plain IREE runtimes "
        "allow, falling back to IREE's defaults where IREE rejects them; bfloat16 gets IREE's "
        "defaults. --tuned: the same flags with 256 KiB (runtimes need "
        "--task_worker_stack_size=1048576). --no-tuned: IREE's defaults",
    )
    p.add_argument(
        "--gemm-kernels",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="float32 GEMMs and attention on hrm-mlir's own kernels (register-tiled, "
        "hrm_mlir.cpu_gemm) instead of IREE's data-tiled ones. Default: on for llvm-cpu "
        "when the target CPU (--cpu) has AVX2 and FMA, AVX-512 ones included, unless "
        "--no-tuned",
    )
    p.add_argument(
        "--iree-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra iree-compile flag, repeatable (default: none)",
    )


def print_notes(notes: list[str]) -> None:
    for note in notes:
        out.print(f"note: {note}")


def compile_options(args: argparse.Namespace):
    from hrm_mlir.compile import CompileOptions

    defaults = CompileOptions()
    return CompileOptions(
        target=getattr(args, "target", defaults.target),
        cpu=args.cpu,
        cuda_arch=getattr(args, "cuda_arch", defaults.cuda_arch),
        vulkan_target=getattr(args, "vulkan_target", defaults.vulkan_target),
        tuned=args.tuned,
        gemm_kernels=args.gemm_kernels,
        extra_flags=tuple(args.iree_flag),
    )


def cmd_info(args: argparse.Namespace) -> int:
    from hrm_mlir.checkpoint import load_checkpoint

    ck = load_checkpoint(args.checkpoint, seq_len=args.seq_len)
    cfg = ck.config
    if args.json:
        h_init, l_init = ck.initial_carry_vectors()
        doc = {
            "config_path": str(ck.config_path),
            "weights_path": str(ck.weights_path),
            "config": cfg.model_dump(mode="json"),
            "derived": {
                "puzzle_emb_len": cfg.puzzle_emb_len,
                "total_seq_len": cfg.total_seq_len,
                "head_dim": cfg.head_dim,
                "intermediate_size": cfg.intermediate_size,
            },
            "seq_len_source": ck.seq_len_source,
            "parameter_count": ck.parameter_count,
            "dtypes": ck.dtypes,
            "notes": ck.notes,
            "H_init": h_init.float().tolist(),
            "L_init": l_init.float().tolist(),
        }
        print(json.dumps(doc, indent=2))
        return 0
    print_notes(ck.notes)
    t = Table(title=f"{ck.weights_path}", show_header=False)
    t.add_column("field")
    t.add_column("value")
    for key, value in cfg.model_dump().items():
        t.add_row(key, str(value))
    t.add_section()
    t.add_row("seq_len from", ck.seq_len_source)
    t.add_row("puzzle_emb_len", str(cfg.puzzle_emb_len))
    t.add_row("activations", f"[B, {cfg.total_seq_len}, {cfg.hidden_size}]")
    t.add_row("SwiGLU width", str(cfg.intermediate_size))
    t.add_row("parameters", f"{ck.parameter_count:,}")
    t.add_row("stored dtypes", ", ".join(f"{k} x{v}" for k, v in ck.dtypes.items()))
    out.print(t)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from hrm_mlir.checkpoint import load_checkpoint
    from hrm_mlir.export import ExportOptions, export_step
    from hrm_mlir.params import SCOPE, Params, default_archive_path

    start = time.perf_counter()
    ck = load_checkpoint(args.checkpoint, seq_len=args.seq_len)
    print_notes(ck.notes)
    params = args.params
    if args.params_file is not None:
        if params == Params.INLINE:
            raise HrmMlirError("--params_file needs external parameters, not --params inline")
        params = Params.EXTERNAL
    options = ExportOptions(
        output_type=args.output_type, dtype=args.dtype, batch_size=args.batch_size, params=params
    )
    if args.entry == Entry.ACT:
        from hrm_mlir.act import export_act

        exported = export_act(ck, options)
    else:
        exported = export_step(ck, options)
    print_notes(exported.notes)
    archive = None
    if exported.parameters:
        archive = exported.save_parameters(args.params_file or default_archive_path(args.output))
    try:
        path = exported.save(args.output)
    except BaseException:
        if archive is not None:  # no half of an export left behind
            archive.unlink(missing_ok=True)
        raise
    size = path.stat().st_size / 2**20
    out.print(
        f"wrote {path} ({size:.1f} MiB): @{args.entry}, {exported.options.output_type}, "
        f"{exported.options.dtype}, batch {batch_label(exported.options.batch_size)}, "
        f"seq_len {exported.config.seq_len}, in {time.perf_counter() - start:.1f} s"
    )
    if archive is not None:
        out.print(
            f"wrote {archive} ({archive.stat().st_size / 2**20:.1f} MiB): "
            f"{len(exported.parameters)} parameters, scope '{SCOPE}' "
            f"(iree-run-module --parameters={SCOPE}={archive})"
        )
    return 0


def batch_label(batch_size: int | None) -> str:
    return "dynamic" if batch_size is None else str(batch_size)


def cmd_compile(args: argparse.Namespace) -> int:
    from hrm_mlir.compile import compile_module

    start = time.perf_counter()
    options = compile_options(args)
    if args.params is not None:
        from hrm_mlir.params import check_archive, required_parameters

        required = required_parameters(args.mlir)
        check_archive(required, args.params)
        out.print(f"{args.params} holds all {len(required)} parameters {args.mlir} names")
    notes: list[str] = []
    stats: dict = {}
    vmfb = compile_module(
        args.mlir,
        args.output,
        options,
        output_type=args.output_type,
        notes=notes,
        stats=stats,
        check=args.check,
        parameters=args.params,
    )
    print_notes(notes)
    kernels, fused = stats.get("gemm_kernels", 0), stats.get("fused_epilogues", 0)
    attention, qkv = stats.get("attention_kernels", 0), stats.get("qkv_kernels", 0)
    on_kernels = ""
    if kernels or attention:
        parts = [f"{kernels} GEMMs"]
        if fused:
            parts.append(f"{fused} with the elementwise code after them")
        if attention:
            parts.append(f"{attention} attentions")
        if qkv:
            parts.append(f"{qkv} q/k/v preparations")
        listed = parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"
        tiles = {"avx512": "AVX-512"}.get(stats.get("kernel_isa") or "", "AVX2")
        on_kernels = f" ({listed} on hrm-mlir's {tiles} kernels)"
    checked = f"; checked against PyTorch: {stats['checked']}" if stats.get("checked") else ""
    out.print(
        f"wrote {args.output} ({len(vmfb) / 2**20:.1f} MiB) for {_target_summary(options)}"
        f"{on_kernels}, in {time.perf_counter() - start:.1f} s{checked}"
    )
    return 0


def _target_summary(options) -> str:
    """E.g. "llvm-cpu znver3 (this machine), avx2" or "cuda:sm_80"."""
    from hrm_mlir.compile import Target

    if options.target == Target.LLVM_CPU:
        return f"llvm-cpu {options.cpu_target().describe()}"
    return options.target_name()


def cmd_verify(args: argparse.Namespace) -> int:
    from hrm_mlir.abi import parse_step_signature
    from hrm_mlir.checkpoint import load_checkpoint
    from hrm_mlir.compile import compile_and_load, compile_module, read_functions
    from hrm_mlir.export import ExportOptions, export_step
    from hrm_mlir.params import check_archive, required_parameters
    from hrm_mlir.runtime import CompiledModule
    from hrm_mlir.verify import verify_step

    ck = load_checkpoint(args.checkpoint, seq_len=args.seq_len)
    archive = args.params if isinstance(args.params, Path) else None
    notes: list[str] = []
    if args.mlir is not None:
        functions = read_functions(args.mlir)
        if "step" not in functions:
            raise HrmMlirError(f"{args.mlir}: no public @step function")
        batch, dtype = parse_step_signature(functions["step"])
        if archive is not None:
            check_archive(required_parameters(args.mlir), archive)
        vmfb = compile_module(args.mlir, options=compile_options(args), notes=notes)
        compiled = CompiledModule(vmfb, parameters=archive)
        what = str(args.mlir)
    else:
        if archive is not None:
            raise HrmMlirError("--params FILE goes with --mlir; for an export here use "
                               "--params inline|external")  # fmt: skip
        options = ExportOptions(
            output_type=args.output_type,
            dtype=args.dtype,
            batch_size=args.batch_size,
            params=args.params,
        )
        exported = export_step(ck, options)
        compiled = compile_and_load(exported, compile_options(args), notes=notes)
        batch, dtype = options.batch_size, exported.config.forward_dtype
        what = f"@step exported as {options.output_type} ({exported.options.params} weights)"
    print_notes(notes)
    model = ck.build_model(dtype)
    failures, reports = [], []
    for b in [batch] if batch is not None else list(DYNAMIC_VERIFY_BATCHES):
        report = verify_step(model, compiled, b, seed=args.seed)
        out.print(report.table(title=f"{what} vs PyTorch ({dtype}, batch {b})"))
        reports.append({"batch_size": b, **report.as_dict()})
        failures += [f"batch {b}: {f}" for f in report.failures()]
    if args.json is not None:
        from hrm_mlir.fileio import write_atomic

        doc = {"passed": not failures, "mlir": what, "reports": reports}
        write_atomic(args.json, json.dumps(doc, indent=2).encode())
    if failures:
        print(f"hrm-mlir: verification failed: {'; '.join(failures)}", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    out.print("verification passed")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from hrm_mlir.checkpoint import load_checkpoint
    from hrm_mlir.puzzles import get_codec, load_puzzles
    from hrm_mlir.runner import CompiledACT, assign_identifiers, solutions_json, solve

    start = time.perf_counter()
    checkpoint = None
    archive = args.params if isinstance(args.params, Path) else None
    if args.model.suffix == ".vmfb":
        model = CompiledACT.from_vmfb(args.model, parameters=archive)
        what = str(args.model)
        if args.checkpoint is not None:
            checkpoint = load_checkpoint(args.checkpoint, seq_len=model.config.seq_len)
    else:
        if archive is not None:
            raise HrmMlirError("--params FILE goes with a .vmfb; for a checkpoint use "
                               "--params inline|external")  # fmt: skip
        checkpoint = load_checkpoint(args.model, seq_len=args.seq_len)
        batch = batch_label(args.batch_size)
        out.print(f"compiling @act for this CPU ({args.dtype}, batch {batch}) ...")
        model = CompiledACT.from_checkpoint(
            checkpoint,
            dtype=args.dtype,
            batch_size=args.batch_size,
            compile_options=compile_options(args),
            params=args.params,
        )
        what = f"{checkpoint.weights_path} (compiled here, {args.dtype})"
    cfg = model.config
    max_steps = args.max_steps or cfg.halt_max_steps
    puzzles = load_puzzles(args.puzzle, args.family, cfg.seq_len)
    if args.identifiers is not None:
        puzzles = assign_identifiers(puzzles, args.identifiers, cfg.num_puzzle_identifiers)
    solutions = solve(model, puzzles, max_steps=max_steps, q_halt=args.q_halt)
    mode = "Q-halting" if args.q_halt else "fixed steps"
    out.print(f"model: {what}; {len(puzzles)} puzzles; max_steps {max_steps}, {mode}")
    for s in solutions:
        codec = get_codec(s.puzzle.family)
        valid = {True: "valid", False: "INVALID", None: "unchecked"}[s.valid]
        out.print(f"\n{s.puzzle.name}")
        out.print(_side_by_side(codec.render(s.puzzle.grid), codec.render(s.answer)))
        out.print(f"steps {s.steps}; {valid}: {s.reason}")
    solved = sum(s.valid is True for s in solutions)
    out.print(
        f"\nsolved {solved}/{len(solutions)}; mean steps "
        f"{sum(s.steps for s in solutions) / max(len(solutions), 1):.2f}; "
        f"{time.perf_counter() - start:.1f} s"
    )
    agreement = None
    if args.compare_pytorch:
        if checkpoint is None:
            raise HrmMlirError("--compare-pytorch with a .vmfb needs --checkpoint DIR")
        agreement = _pytorch_agreement(checkpoint, model, puzzles, solutions, max_steps, args)
        out.print(
            f"PyTorch agreement: answers {agreement['answers']}/{len(solutions)}, "
            f"steps {agreement['steps']}/{len(solutions)}, "
            f"max |q_halt diff| {agreement['max_q_halt_diff']:.2e}"
        )
    if args.json is not None:
        from hrm_mlir.fileio import write_atomic

        doc = solutions_json(
            solutions,
            max_steps=max_steps,
            q_halt=args.q_halt,
            solved=solved,
            pytorch_agreement=agreement,
        )
        write_atomic(args.json, doc.encode())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from hrm_mlir import bench
    from hrm_mlir.checkpoint import load_checkpoint

    ck = load_checkpoint(args.checkpoint, seq_len=args.seq_len)
    try:
        batches = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        raise HrmMlirError(
            f"--batch_sizes: expected a comma list of integers, got {args.batch_sizes!r}"
        ) from None
    runtimes = [r.strip() for r in args.runtimes.split(",")]
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
    )
    if args.phases:
        with tempfile.TemporaryDirectory() as tmp:
            report.phases = bench.measure_phases(ck.weights_path, args.seq_len, Path(tmp))
    t = Table(
        title=f"HRM step, float32, {report.threads} threads, "
        f"measured fp32 peak {report.peak_gflops:.0f} GFLOP/s"
    )
    for col in (
        "batch",
        "runtime",
        "median ms",
        "min",
        "max",
        "GFLOP/s",
        "% peak",
        "x eager",
        "x onnxruntime",
        "verified",
    ):
        t.add_column(col, justify="left" if col in ("runtime", "verified") else "right")
    for r in report.results:
        t.add_row(
            str(r.batch_size), r.runtime, f"{r.median_ms:.1f}", f"{min(r.samples_ms):.1f}",
            f"{max(r.samples_ms):.1f}", f"{r.gflops:.0f}", f"{r.pct_peak:.0f}%",
            f"{r.vs_eager:.2f}" if r.vs_eager else "-",
            f"{r.vs_onnx:.2f}" if r.vs_onnx else "-", r.verified,
        )  # fmt: skip
    out.print(t)
    for a in report.act:
        out.print(
            f"@act with {a['steps']} steps, batch {a['batch_size']}: {a['act_ms']:.1f} ms; "
            f"{a['steps']} calls of @step: {a['step_loop_ms']:.1f} ms; ratio {a['ratio']:.3f}"
        )
    print_notes(report.notes)
    for name, phase in report.phases.items():
        out.print(f"{name}: {phase['wall_s']:.1f} s, peak RSS {phase['peak_rss_mib']:.0f} MiB")
    if args.json is not None:
        bench.write_json(report, args.json)
    if args.plot is not None:
        bench.plot(report, args.plot)
    return 0


def _side_by_side(left: str, right: str, gap: str = "   ->   ") -> str:
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


def _pytorch_agreement(checkpoint, model, puzzles, solutions, max_steps, args) -> dict:
    """Run the PyTorch ACT loop on the same puzzles; count equal answers and step counts."""
    import numpy as np
    import torch

    from hrm_mlir.puzzles import encode_batch, get_codec

    inputs, ids = encode_batch(puzzles, model.config.seq_len)
    ref = checkpoint.build_model(model.config.forward_dtype).act(
        torch.from_numpy(inputs), torch.from_numpy(ids), max_steps=max_steps, q_halt=args.q_halt
    )
    answers = steps = 0
    diff = 0.0
    for i, s in enumerate(solutions):
        codec = get_codec(s.puzzle.family)
        answers += bool(
            np.array_equal(codec.decode(ref.logits[i].float().numpy(), s.puzzle), s.answer)
        )
        steps += int(ref.steps[i]) == s.steps
        diff = max(diff, abs(float(ref.q_halt_logits[i]) - s.q_halt_logit))
    return {"answers": answers, "steps": steps, "max_q_halt_diff": diff}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `hrm-mlir` command line on `argv`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except HrmMlirError as e:
        if args.debug:
            raise
        print(f"hrm-mlir: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("hrm-mlir: interrupted", file=sys.stderr)
        return 130


def entry(argv: Sequence[str] | None = None) -> None:
    """The `hrm-mlir` console script, `python -m hrm_mlir` and `generate_mlir.py`: `main`, then
    exit at once.

    Interpreter teardown after torch, torch.export and torch-mlir have been imported takes
    1.3-1.7 s on a 2-core machine (0.8 s for `import torch` alone), 10-15% of a 27M export. By
    then every command has finished its work: outputs are written atomically and fsynced,
    temporary directories are closed. So the streams are flushed and the process ends with
    `os._exit`, skipping that teardown.
    """
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
