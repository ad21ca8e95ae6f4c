"""What the verbs of the command line share: the console, exit codes, option types and groups."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console

from hrm_mlir.core.types import ChoiceEnum, DType, OutputType

EXIT_USER_ERROR = 2
EXIT_VERIFY_FAILED = 1
# Piped output (logs, CI, tests) gets wide lines instead of rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def choice(enum: type[ChoiceEnum]) -> Callable[[str], ChoiceEnum]:
    def parse(value: str) -> ChoiceEnum:
        try:
            return enum.parse(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = enum.__name__
    return parse


def positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def batch(value: str) -> int | None:
    """A positive batch size, or `dynamic` (None): a symbolic batch dimension."""
    return None if value == "dynamic" else positive(value)


QUIET = False  # `--quiet`: no progress display


@contextlib.contextmanager
def stage(text: str) -> Iterator[None]:
    """A spinner with `text` and the elapsed time on stderr while a slow step runs: only on a
    terminal and without `--quiet`, so piped output (logs, CI, tests) stays clean."""
    if QUIET or not sys.stderr.isatty():
        yield
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        progress.add_task(text, total=None)
        yield


def checkpoint_arg(value: str) -> str | Path:
    """A checkpoint directory or weights file, or a Hub id (`hf://OWNER/NAME[@REVISION]`, kept
    as text: a Path would fold its `//`)."""
    return value if value.startswith("hf://") else Path(value)


CHECKPOINT_HELP = "checkpoint directory or weights file, or hf://OWNER/NAME[@REVISION]"


def add_seq_len_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--seq_len",
        "--seq-len",
        type=positive,
        default=None,
        help="puzzle length when the checkpoint cannot tell (default: from the weights or "
        "<data_path>/train/dataset.json; published: 81 Sudoku, 900 maze/ARC)",
    )


def params_mode(value: str):
    """`inline` or `external` (a `Params`)."""
    from hrm_mlir.exporter.params import Params

    return choice(Params)(value)


def params_source(value: str):
    """`inline`, `external` (a `Params`), or the path of a parameter archive."""
    from hrm_mlir.exporter.params import params_or_archive

    return params_or_archive(value)


PARAMS_DEFAULT = "inline, or external when the weights exceed 512 MiB"


def add_params_options(p: argparse.ArgumentParser) -> None:
    """`--params` / `--params_file` of the commands that write MLIR (export, generate_mlir.py)."""
    p.add_argument(
        "--params",
        type=params_mode,
        default=None,
        help="weights inline in the MLIR, or external in an IREE parameter archive "
        f"(.irpa) that the MLIR refers to by name: inline|external (default: {PARAMS_DEFAULT})",
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
            type=params_source,
            default=None,
            help="a parameter archive (.irpa) for an MLIR/.vmfb built with external parameters,"
            f" or inline|external for a model exported here (default: {PARAMS_DEFAULT})",
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
        type=choice(OutputType),
        default=OutputType.TORCH,
        help="MLIR dialect: " + "|".join(o.value for o in OutputType) + " (default: torch)",
    )
    p.add_argument(
        "--dtype",
        type=choice(DType),
        default=None,
        help=f"forward dtype: float32|bfloat16 (default: {dtype_default})",
    )
    p.add_argument(
        "--batch_size",
        "--batch-size",
        type=batch,
        default=1,
        help="batch size, or 'dynamic' for one artifact serving every batch (default: 1)",
    )


def add_compile_options(p: argparse.ArgumentParser, *, gpu: bool = True) -> None:
    """iree-compile options; commands that run on this machine's CPU (run, bench, evaluate)
    take the CPU ones only (gpu=False)."""
    from hrm_mlir.compiler.options import Target
    from hrm_mlir.runtime.target import VULKAN_BASELINE

    if gpu:
        p.add_argument(
            "--target",
            type=choice(Target),
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
            "--rocm-arch",
            "--rocm_arch",
            default="gfx942",
            help="ROCm target (default: gfx942, MI300)",
        )
        p.add_argument(
            "--vulkan-target",
            "--vulkan_target",
            default=VULKAN_BASELINE,
            help=f"Vulkan target (default: {VULKAN_BASELINE}, a baseline profile that any "
            "Vulkan device runs; device-specific ones such as ampere, rdna3, valhall are "
            "faster on their GPUs and wrong elsewhere)",
        )
        p.add_argument(
            "--cpu-triple",
            "--cpu_triple",
            default=None,
            help="llvm-cpu target triple, e.g. aarch64-linux-gnu for ARM64 Linux (default: "
            "this machine's); with --cpu generic, neoverse-n1, apple-m1, cortex-a76, ...",
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
        "allow, falling back to IREE's defaults where IREE rejects them or the self-check "
        "fails. --tuned: the same flags with 256 KiB (runtimes need "
        "--task_worker_stack_size=1048576). --no-tuned: IREE's defaults",
    )
    p.add_argument(
        "--gemm-kernels",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="float32 GEMMs and attention on hrm-mlir's own kernels (register-tiled, "
        "hrm_mlir.compiler.kernels) instead of IREE's data-tiled ones. Default: on for llvm-cpu "
        "when the target CPU (--cpu) has AVX2 and FMA, AVX-512 ones included, unless "
        "--no-tuned",
    )
    p.add_argument(
        "--bf16-compute",
        choices=("float32", "bfloat16"),
        default="float32",
        help="llvm-cpu: what a bfloat16 module computes in, behind its bf16 inputs and "
        "outputs. float32: everything, with the float32 flags and kernels; bfloat16: bf16 "
        "products with float32 accumulation in the matmuls (IREE's bf16 ukernels on a CPU "
        "with AVX512_BF16; emulated, slowly, elsewhere) (default: float32)",
    )
    p.add_argument(
        "--iree-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra iree-compile flag, repeatable (default: none)",
    )


def add_cache_option(p: argparse.ArgumentParser) -> None:
    """`--no-cache` of the commands that compile a checkpoint's `@act` (run, evaluate)."""
    p.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="neither read nor write the cache of compiled artifacts (default: a checkpoint's "
        "compiled @act is kept in $HRM_MLIR_CACHE, else $XDG_CACHE_HOME/hrm-mlir, else "
        "~/.cache/hrm-mlir, and reused; see `hrm-mlir cache info`)",
    )


def print_notes(notes: list[str]) -> None:
    for note in notes:
        out.print(f"note: {note}")


def compile_options(args: argparse.Namespace):
    from hrm_mlir.compiler.options import CompileOptions

    defaults = CompileOptions()
    return CompileOptions(
        target=getattr(args, "target", defaults.target),
        cpu=args.cpu,
        cuda_arch=getattr(args, "cuda_arch", defaults.cuda_arch),
        rocm_arch=getattr(args, "rocm_arch", defaults.rocm_arch),
        vulkan_target=getattr(args, "vulkan_target", defaults.vulkan_target),
        cpu_triple=getattr(args, "cpu_triple", defaults.cpu_triple),
        tuned=args.tuned,
        gemm_kernels=args.gemm_kernels,
        extra_flags=tuple(args.iree_flag),
        bf16_compute=getattr(args, "bf16_compute", defaults.bf16_compute),
    )


def batch_label(batch_size: int | None) -> str:
    return "dynamic" if batch_size is None else str(batch_size)


def target_summary(options) -> str:
    """E.g. "llvm-cpu znver3 (this machine), avx2" or "cuda:sm_80"."""
    from hrm_mlir.compiler.options import Target

    if options.target == Target.LLVM_CPU:
        return f"llvm-cpu {options.cpu_target().describe()}"
    return options.target_name()
