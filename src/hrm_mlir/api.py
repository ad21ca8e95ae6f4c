"""The library behind the command line: one function per verb, for Python users.

    import hrm_mlir

    exported = hrm_mlir.exporter("ckpt/", "step.mlir", dtype="float32")
    compiled = hrm_mlir.compile("step.mlir", "step.vmfb")
    checked = hrm_mlir.verification("ckpt/", mlir="step.mlir")
    solved = hrm_mlir.run("ckpt/", "puzzles.txt", q_halt=True)

Each takes paths and plain values (or the enums of `hrm_mlir.core.types`), raises an
`HrmMlirError` whose message is one line naming the file and the problem, and returns what it
made with the notes a user should see. `hrm-mlir export|compile|verify|run` are these functions
and a printout. Torch is imported only by the stages that need it: `compile` of a file needs none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.core.types import DType, Entry, OutputType

if TYPE_CHECKING:
    from hrm_mlir.compiler.options import CompileOptions
    from hrm_mlir.exporter.module import ExportedModule
    from hrm_mlir.exporter.params import Params
    from hrm_mlir.models.config import HRMConfig
    from hrm_mlir.puzzles import Puzzle
    from hrm_mlir.runner import CompiledACT, Solution
    from hrm_mlir.verification import VerifyReport

# A symbolic-batch artifact is verified at each of these batch sizes.
DYNAMIC_VERIFY_BATCHES = (1, 3, 16)


@dataclass
class Exported:
    """What `export` wrote: the MLIR file and, with external parameters, their archive."""

    path: Path
    module: ExportedModule
    archive: Path | None
    notes: list[str]
    seconds: float


def export(
    checkpoint: str | Path,
    output: str | Path,
    *,
    entry: Entry | str = Entry.STEP,
    output_type: OutputType | str = OutputType.TORCH,
    dtype: DType | str | None = None,
    batch_size: int | None = 1,
    params: Params | str | None = None,
    params_file: str | Path | None = None,
    seq_len: int | None = None,
) -> Exported:
    """Export a checkpoint's `@step` (or, with `entry="act"`, its whole ACT loop) to MLIR.

    `output` ending in `.mlirbc` gets bytecode. `batch_size` None exports a symbolic batch.
    `params`: "inline" or "external" weights (default: external above 512 MiB); `params_file`
    implies external and says where the archive goes (default: `output` with `.irpa`). Nothing
    is left behind when it fails.
    """
    from hrm_mlir.checkpoint.load import load_checkpoint
    from hrm_mlir.exporter.module import ExportOptions
    from hrm_mlir.exporter.params import Params, default_archive_path

    start = time.perf_counter()
    entry = Entry.parse(entry)
    mode = None if params is None else Params.parse(params)
    if params_file is not None:
        if mode == Params.INLINE:
            raise HrmMlirError("--params_file needs external parameters, not --params inline")
        mode = Params.EXTERNAL
    checkpoint_ = load_checkpoint(checkpoint, seq_len=seq_len)
    options = ExportOptions(
        output_type=OutputType.parse(output_type),
        dtype=None if dtype is None else DType.parse(dtype),
        batch_size=batch_size,
        params=mode,
    )
    if entry == Entry.ACT:
        from hrm_mlir.exporter.act import export_act

        exported = export_act(checkpoint_, options)
    else:
        from hrm_mlir.exporter.step import export_step

        exported = export_step(checkpoint_, options)
    archive = None
    if exported.parameters:
        archive = exported.save_parameters(params_file or default_archive_path(output))
    try:
        path = exported.save(output)
    except BaseException:
        if archive is not None:  # no half of an export left behind
            archive.unlink(missing_ok=True)
        raise
    notes = [*checkpoint_.notes, *exported.notes]
    return Exported(path, exported, archive, notes, time.perf_counter() - start)


@dataclass
class Compiled:
    """What `compile` wrote. `stats` says what the kernels took and what was checked
    (`hrm_mlir.compiler.driver.compile_module`)."""

    path: Path
    size: int  # bytes
    options: CompileOptions
    notes: list[str]
    stats: dict[str, Any]
    parameters_checked: int | None  # parameters found in `params`, when it was given
    seconds: float


def compile(
    mlir: str | Path,
    output: str | Path,
    *,
    options: CompileOptions | None = None,
    output_type: OutputType | str | None = None,
    check: bool = True,
    params: str | Path | None = None,
) -> Compiled:
    """Compile an exported MLIR file to an IREE module (.vmfb), written atomically.

    The artifact is run on the reference outputs that export recorded (`check`), where this
    machine can run it; a configuration that fails gives way to the next, and none passing is
    an error (`hrm_mlir.compiler.driver.compile_module`). `params`: the module's parameter
    archive, checked against the names and sizes the module needs and used by the check.
    """
    from hrm_mlir.compiler.driver import compile_module
    from hrm_mlir.compiler.options import CompileOptions

    start = time.perf_counter()
    options = options or CompileOptions()
    counted = None
    if params is not None:
        from hrm_mlir.exporter.params import check_archive, required_parameters

        required = required_parameters(mlir)
        check_archive(required, params)
        counted = len(required)
    notes: list[str] = []
    stats: dict[str, Any] = {}
    vmfb = compile_module(
        mlir,
        output,
        options,
        output_type=None if output_type is None else OutputType.parse(output_type),
        notes=notes,
        stats=stats,
        check=check,
        parameters=params,
    )
    seconds = time.perf_counter() - start
    return Compiled(Path(output), len(vmfb), options, notes, stats, counted, seconds)


@dataclass
class Verification:
    """`verify`'s result: one report per batch size checked."""

    what: str  # the MLIR file, or how the step was exported here
    dtype: DType
    reports: list[tuple[int, VerifyReport]]
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [f"batch {b}: {f}" for b, r in self.reports for f in r.failures()]

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        reports = [{"batch_size": b, **r.as_dict()} for b, r in self.reports]
        return {"passed": self.passed, "mlir": self.what, "reports": reports}


def verify(
    checkpoint: str | Path,
    *,
    mlir: str | Path | None = None,
    seq_len: int | None = None,
    output_type: OutputType | str = OutputType.TORCH,
    dtype: DType | str | None = None,
    batch_size: int | None = 1,
    params: Params | str | Path | None = None,
    seed: int = 0,
    options: CompileOptions | None = None,
    on_report: Callable[[str, VerifyReport], None] | None = None,
    notes: list[str] | None = None,
) -> Verification:
    """Compile `@step` with IREE, run it and compare every output with PyTorch's.

    With `mlir`, that file is compiled (`params` its archive, if it has external parameters);
    without, the checkpoint is exported here first (`params` "inline" or "external"). A symbolic
    batch is checked at each of `DYNAMIC_VERIFY_BATCHES`. `on_report(title, report)` sees each
    report as soon as it is made; compile's notes go to `notes` (the result's, too) as they come.
    """
    from hrm_mlir.checkpoint.load import load_checkpoint
    from hrm_mlir.compiler.driver import compile_and_load, compile_module
    from hrm_mlir.compiler.options import CompileOptions
    from hrm_mlir.exporter.abi import parse_step_signature, read_functions
    from hrm_mlir.exporter.module import ExportOptions
    from hrm_mlir.exporter.params import Params, check_archive, required_parameters
    from hrm_mlir.exporter.step import export_step
    from hrm_mlir.runtime.module import CompiledModule
    from hrm_mlir.verification import verify_step

    options = options or CompileOptions()
    ck = load_checkpoint(checkpoint, seq_len=seq_len)
    archive = params if isinstance(params, Path) else None
    notes = [] if notes is None else notes
    if mlir is not None:
        functions = read_functions(mlir)
        if "step" not in functions:
            raise HrmMlirError(f"{mlir}: no public @step function")
        batch, dtype_ = parse_step_signature(functions["step"])
        if archive is not None:
            check_archive(required_parameters(mlir), archive)
        vmfb = compile_module(mlir, options=options, notes=notes)
        compiled = CompiledModule(vmfb, parameters=archive)
        what = str(mlir)
    else:
        if archive is not None:
            raise HrmMlirError("--params FILE goes with --mlir; for an export here use "
                               "--params inline|external")  # fmt: skip
        export_options = ExportOptions(
            output_type=OutputType.parse(output_type),
            dtype=None if dtype is None else DType.parse(dtype),
            batch_size=batch_size,
            params=None if params is None else Params.parse(str(params)),
        )
        exported = export_step(ck, export_options)
        compiled = compile_and_load(exported, options, notes=notes)
        batch, dtype_ = export_options.batch_size, exported.config.forward_dtype
        what = f"@step exported as {export_options.output_type} ({exported.options.params} weights)"
    model = ck.build_model(dtype_)
    result = Verification(what, dtype_, [], notes)
    for b in [batch] if batch is not None else list(DYNAMIC_VERIFY_BATCHES):
        report = verify_step(model, compiled, b, seed=seed)
        if on_report is not None:
            on_report(f"{what} vs PyTorch ({dtype_}, batch {b})", report)
        result.reports.append((b, report))
    return result


@dataclass
class Run:
    """`run`'s result: the puzzles, their solutions and how they were reached."""

    what: str  # the model that ran
    config: HRMConfig
    puzzles: list[Puzzle]
    solutions: list[Solution]
    max_steps: int
    q_halt: bool
    seconds: float
    agreement: dict | None = None  # with compare_pytorch: `runner.pytorch_agreement`

    @property
    def solved(self) -> int:
        return sum(s.valid is True for s in self.solutions)


def run(
    model: str | Path,
    puzzles: str | Path,
    *,
    family: str | None = None,
    seq_len: int | None = None,
    max_steps: int | None = None,
    q_halt: bool = False,
    batch_size: int | None = 1,
    dtype: DType | str = DType.FLOAT32,
    params: Params | str | Path | None = None,
    identifiers: str | Path | None = None,
    checkpoint: str | Path | None = None,
    compare_pytorch: bool = False,
    options: CompileOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> Run:
    """Solve the puzzles of a file (Sudoku, maze, ARC) with the compiled ACT loop.

    `model`: a checkpoint directory (its `@act` is compiled here for this CPU, at `batch_size`
    and `dtype`), or the .vmfb of an `@act` export (`params` its archive, `checkpoint` the
    checkpoint for `compare_pytorch`). `max_steps` defaults to the checkpoint's
    `halt_max_steps`; `q_halt` stops each puzzle once q_halt > q_continue. `identifiers`: the
    dataset's identifiers.json, mapping ARC task names to puzzle-embedding rows.
    """
    from hrm_mlir.checkpoint.load import load_checkpoint
    from hrm_mlir.exporter.params import Params
    from hrm_mlir.puzzles import load_puzzles
    from hrm_mlir.runner import CompiledACT, assign_identifiers, pytorch_agreement, solve

    start = time.perf_counter()
    ck = None
    archive = params if isinstance(params, Path) else None
    compiled: CompiledACT
    if Path(model).suffix == ".vmfb":
        compiled = CompiledACT.from_vmfb(model, parameters=archive)
        what = str(model)
        if checkpoint is not None:
            ck = load_checkpoint(checkpoint, seq_len=compiled.config.seq_len)
    else:
        if archive is not None:
            raise HrmMlirError("--params FILE goes with a .vmfb; for a checkpoint use "
                               "--params inline|external")  # fmt: skip
        ck = load_checkpoint(model, seq_len=seq_len)
        dtype = DType.parse(dtype)
        if progress is not None:
            shown = "dynamic" if batch_size is None else batch_size
            progress(f"compiling @act for this CPU ({dtype}, batch {shown}) ...")
        compiled = CompiledACT.from_checkpoint(
            ck,
            dtype=dtype,
            batch_size=batch_size,
            compile_options=options,
            params=None if params is None else Params.parse(str(params)),
        )
        what = f"{ck.weights_path} (compiled here, {dtype})"
    cfg = compiled.config
    steps = max_steps or cfg.halt_max_steps
    loaded = load_puzzles(puzzles, family, cfg.seq_len)
    if identifiers is not None:
        loaded = assign_identifiers(loaded, identifiers, cfg.num_puzzle_identifiers)
    solutions = solve(compiled, loaded, max_steps=steps, q_halt=q_halt)
    result = Run(what, cfg, loaded, solutions, steps, q_halt, time.perf_counter() - start)
    if compare_pytorch:
        if ck is None:
            raise HrmMlirError("--compare-pytorch with a .vmfb needs --checkpoint DIR")
        result.agreement = pytorch_agreement(ck, compiled, loaded, solutions, steps, q_halt)
    return result


__all__: Sequence[str] = ["compile", "export", "run", "verify"]
