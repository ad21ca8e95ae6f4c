"""The library behind the command line: one function per verb, for Python users.

    import hrm_mlir

    exported = hrm_mlir.export("ckpt/", "step.mlir", dtype="float32")
    compiled = hrm_mlir.compile("step.mlir", "step.vmfb")
    checked = hrm_mlir.verify("ckpt/", mlir="step.mlir")
    solved = hrm_mlir.run("ckpt/", "puzzles.txt", q_halt=True)
    scored = hrm_mlir.evaluate("ckpt/", "data/sudoku-extreme-full")

Each takes paths and plain values (or the enums of `hrm_mlir.core.types`), raises an
`HrmMlirError` whose message is one line naming the file and the problem, and returns what it
made with the notes a user should see. `hrm-mlir export|compile|verify|run|evaluate` are these
functions and a printout. Torch is imported only by the stages that need it: `compile` of a file
needs none.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.core.fileio import check_writable
from hrm_mlir.core.types import DType, Entry, OutputType

if TYPE_CHECKING:
    from hrm_mlir.checkpoint.load import Checkpoint
    from hrm_mlir.compiler.options import CompileOptions
    from hrm_mlir.evaluation.arc import ArcScore
    from hrm_mlir.evaluation.distributed import Artifact, ShardedRun
    from hrm_mlir.evaluation.engine import Evaluation
    from hrm_mlir.exporter.module import ExportedModule
    from hrm_mlir.exporter.params import Params
    from hrm_mlir.models.config import ReasoningConfig
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
    implies external and says where the archive goes (default: `output` with `.irpa`). Where
    they cannot be written, that is an error before the export; nothing is left behind when it
    fails.
    """
    check_writable(output, params_file)  # before the slow export, and torch's import
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

    def as_dict(self) -> dict:
        """`compile --json`: the artifact, its target and flags, and what was checked."""
        from hrm_mlir.runtime.host import cpu_line

        o = self.options
        return {
            "path": str(self.path),
            "bytes": self.size,
            "sha256": hashlib.sha256(self.path.read_bytes()).hexdigest(),
            "target": o.target_name(),
            "requested_flags": o.flags(),
            "compiled_on": cpu_line(),
            "notes": self.notes,
            "stats": self.stats,
            "parameters_checked": self.parameters_checked,
            "seconds": self.seconds,
        }


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
    check_writable(output)  # before the slow compile
    options = options or CompileOptions()
    counted = None
    if params is not None:
        from hrm_mlir.exporter.archive import check_archive
        from hrm_mlir.exporter.params import required_parameters

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
    """`verify`'s result: one report of `@step` per batch size checked, and of `@act` where the
    module has one."""

    what: str  # the MLIR file, or how the step was exported here
    dtype: DType
    reports: list[tuple[int, VerifyReport]]
    notes: list[str] = field(default_factory=list)
    act_reports: list[tuple[int, VerifyReport]] = field(default_factory=list)
    ran_on: str = "this CPU"  # or "qemu-aarch64", "iree-run-module --device=vulkan"

    @property
    def failures(self) -> list[str]:
        step = [f"batch {b}: {f}" for b, r in self.reports for f in r.failures()]
        return step + [f"@act batch {b}: {f}" for b, r in self.act_reports for f in r.failures()]

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        reports = [{"batch_size": b, **r.as_dict()} for b, r in self.reports]
        act = [{"batch_size": b, **r.as_dict()} for b, r in self.act_reports]
        return {
            "passed": self.passed,
            "mlir": self.what,
            "ran_on": self.ran_on,
            "reports": reports,
            "act_reports": act,
        }


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
    A module with `@act` (an `--entry act` file) has its loop checked too (`verify_act`). The
    artifact runs where `options` builds it for: this CPU; an aarch64 one under qemu; a Vulkan
    one on this machine's Vulkan device (`hrm_mlir.runtime.tool.open_artifact`).
    """
    from hrm_mlir.checkpoint.load import load_checkpoint
    from hrm_mlir.compiler.driver import compile_module
    from hrm_mlir.compiler.options import CompileOptions
    from hrm_mlir.exporter.abi import parse_step_signature, read_functions
    from hrm_mlir.exporter.archive import check_archive
    from hrm_mlir.exporter.module import ExportOptions
    from hrm_mlir.exporter.params import required_parameters
    from hrm_mlir.exporter.step import export_step
    from hrm_mlir.runtime.tool import ToolModule, open_artifact
    from hrm_mlir.verification import verify_act, verify_step

    options = options or CompileOptions()
    ck = load_checkpoint(checkpoint, seq_len=seq_len)
    mode, archive = _params_source(params, mlir, goes_with="--mlir", built_here="an export here")
    notes = [] if notes is None else notes
    if mlir is not None:
        functions = read_functions(mlir)
        if "step" not in functions:
            raise HrmMlirError(f"{mlir}: no public @step function")
        batch, dtype_ = parse_step_signature(functions["step"])
        if archive is not None:
            check_archive(required_parameters(mlir), archive)
        vmfb = compile_module(mlir, options=options, notes=notes)
        compiled = open_artifact(vmfb, parameters=archive)
        what = str(mlir)
    else:
        export_options = ExportOptions(
            output_type=OutputType.parse(output_type),
            dtype=None if dtype is None else DType.parse(dtype),
            batch_size=batch_size,
            params=mode,
        )
        exported = export_step(ck, export_options)
        vmfb = compile_module(exported, options=options, notes=notes)
        compiled = open_artifact(vmfb, parameters=exported.parameters or None)
        batch, dtype_ = export_options.batch_size, exported.config.forward_dtype
        what = f"@step exported as {export_options.output_type} ({exported.options.params} weights)"
    model = ck.build_model(dtype_)
    ran_on = compiled.runner.how if isinstance(compiled, ToolModule) else "this CPU"
    result = Verification(what, dtype_, [], notes, ran_on=ran_on)
    where = "" if ran_on == "this CPU" else f", run by {ran_on}"
    for b in [batch] if batch is not None else list(DYNAMIC_VERIFY_BATCHES):
        report = verify_step(model, compiled, b, seed=seed)
        if on_report is not None:
            on_report(f"{what} vs PyTorch ({dtype_}, batch {b}{where})", report)
        result.reports.append((b, report))
        if "act" in compiled.function_names:
            report = verify_act(model, compiled, b, seed=seed)
            if on_report is not None:
                on_report(f"@act of {what} vs PyTorch ({dtype_}, batch {b}{where})", report)
            result.act_reports.append((b, report))
    return result


@dataclass
class Run:
    """`run`'s result: the puzzles, their solutions and how they were reached."""

    what: str  # the model that ran
    config: ReasoningConfig
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
    dtype: DType | str | None = None,
    params: Params | str | Path | None = None,
    identifiers: str | Path | None = None,
    checkpoint: str | Path | None = None,
    compare_pytorch: bool = False,
    options: CompileOptions | None = None,
    progress: Callable[[str], None] | None = None,
    cache: bool = True,
) -> Run:
    """Solve the puzzles of a file (Sudoku, maze, ARC) with the compiled ACT loop.

    `model`: a checkpoint directory (its `@act` is compiled here for this CPU, at `batch_size`
    and `dtype`, by default the checkpoint's `forward_dtype`), or the .vmfb of an `@act` export
    (`params` its archive, `checkpoint` the checkpoint for `compare_pytorch`). A checkpoint's
    compiled `@act` is kept in the cache (`hrm_mlir.compiler.cache`) and read back by the next
    run of the same; `cache` False neither reads nor writes it. `max_steps` defaults to the
    checkpoint's `halt_max_steps`; `q_halt` stops each puzzle once its family's rule holds (HRM:
    q_halt > q_continue; TRM: q_halt > 0). `identifiers`: the dataset's identifiers.json,
    mapping ARC task names to puzzle-embedding rows.
    """
    from hrm_mlir.checkpoint.load import load_checkpoint
    from hrm_mlir.runner import pytorch_agreement, solve

    start = time.perf_counter()
    act = _Act.resolve(model, params, lambda: load_checkpoint(model, seq_len=seq_len))
    ck = act.checkpoint
    if ck is not None:  # the puzzles are read and checked against it before the slow compile
        loaded = _puzzles(puzzles, family, ck.config, identifiers)
    compiled = act.compiled(
        dtype,
        batch_size=batch_size,
        options=options,
        cache=cache,
        status=progress,  # "compiling ..." or "using ... from the cache"
    )
    cfg = compiled.config
    steps = max_steps or cfg.halt_max_steps
    if ck is None:  # a .vmfb: the checkpoint to compare with, then the puzzles
        if checkpoint is not None:
            ck = load_checkpoint(checkpoint, seq_len=cfg.seq_len)
        loaded = _puzzles(puzzles, family, cfg, identifiers)
    solutions = solve(compiled, loaded, max_steps=steps, q_halt=q_halt)
    what = act.what(dtype)
    result = Run(what, cfg, loaded, solutions, steps, q_halt, time.perf_counter() - start)
    if compare_pytorch:
        if ck is None:
            raise HrmMlirError("--compare-pytorch with a .vmfb needs --checkpoint DIR")
        result.agreement = pytorch_agreement(ck, compiled, loaded, solutions, steps, q_halt)
    return result


def _params_source(
    params: Params | str | Path | None,
    given: str | Path | None,
    *,
    goes_with: str,
    built_here: str,
) -> tuple[Params | None, Path | None]:
    """`params` of the verbs that load or build a compiled module, as (inline|external for
    a model built here, the parameter archive of the compiled file `given`): a str other than
    inline or external is an archive's path, refused when no file is given.

    Raises:
        HrmMlirError: an archive for a model built here, saying what it `goes_with`.
    """
    from hrm_mlir.exporter.params import Params, params_or_archive

    source = None if params is None else params_or_archive(params)
    archive = source if isinstance(source, Path) else None
    if given is None and archive is not None:
        raise HrmMlirError(f"--params FILE goes with {goes_with}; for {built_here} use "
                           "--params inline|external")  # fmt: skip
    return (source if isinstance(source, Params) else None), archive


@dataclass(frozen=True)
class _Act:
    """The model of `run` and `evaluate`, resolved once: an `@act` .vmfb (`model`, with its
    parameter `archive`), or a checkpoint (`checkpoint`, loaded) whose `@act` is compiled here
    with its weights `mode` (inline or external; None: by size)."""

    model: str | Path
    archive: Path | None
    mode: Params | None
    checkpoint: Checkpoint | None  # None: `model` is a .vmfb

    @classmethod
    def resolve(
        cls, model: str | Path, params: Params | str | Path | None, load: Callable[[], Checkpoint]
    ) -> _Act:
        """`params` read (an archive only with a .vmfb), and a checkpoint `load`ed."""
        vmfb = model if Path(model).suffix == ".vmfb" else None
        mode, archive = _params_source(params, vmfb, goes_with="a .vmfb", built_here="a checkpoint")
        return cls(model, archive, mode, None if vmfb is not None else load())

    def compiled(
        self,
        dtype: DType | str | None,
        *,
        batch_size: int | None,
        options: CompileOptions | None,
        cache: bool,
        status: Callable[[str], None] | None,
    ) -> CompiledACT:
        """The `@act` to run here: the .vmfb loaded, or the checkpoint's compiled in `dtype`
        (default: its forward_dtype) at `batch_size`, or read from the cache."""
        from hrm_mlir.runner import CompiledACT

        ck = self.checkpoint
        if ck is None:
            return CompiledACT.from_vmfb(self.model, parameters=self.archive)
        return CompiledACT.from_checkpoint(
            ck, dtype=_dtype(ck, dtype), batch_size=batch_size, compile_options=options,
            params=self.mode, cache=cache, status=status,
        )  # fmt: skip

    def artifact(
        self,
        dtype: DType | str | None,
        *,
        batch_size: int,
        options: CompileOptions | None,
        cache: bool,
        status: Callable[[str], None] | None,
    ) -> Artifact | Callable[[], Artifact]:
        """The `@act` for the Ray engine, as `compiled`: the .vmfb read now, or a function that
        compiles the checkpoint's (`evaluate_on_ray` calls it after its checks of --out and
        --resume)."""
        from hrm_mlir.evaluation.distributed import Artifact

        ck = self.checkpoint
        if ck is None:
            return Artifact.from_vmfb(self.model, parameters=self.archive)
        return partial(
            Artifact.from_checkpoint, ck, dtype=_dtype(ck, dtype), batch_size=batch_size,
            options=options, params=self.mode, cache=cache, status=status,
        )  # fmt: skip

    def what(self, dtype: DType | str | None, runs: str = "compiled here") -> str:
        """The model as results name it: the .vmfb, or the checkpoint's weights, how they
        `runs` and in what dtype."""
        ck = self.checkpoint
        return str(self.model) if ck is None else f"{ck.weights_path} ({runs}, {_dtype(ck, dtype)})"


def _dtype(ck: Checkpoint, dtype: DType | str | None) -> DType:
    """The dtype a checkpoint's model runs in: `dtype`, by default its forward_dtype."""
    return ck.config.forward_dtype if dtype is None else DType.parse(dtype)


def _puzzles(path, family, config: ReasoningConfig, identifiers) -> list[Puzzle]:
    """The puzzles of a file, checked against the model's seq_len (and given their ARC
    embedding rows from `identifiers`)."""
    from hrm_mlir.puzzles import load_puzzles
    from hrm_mlir.runner import assign_identifiers

    loaded = load_puzzles(path, family, config.seq_len)
    if identifiers is not None:
        loaded = assign_identifiers(loaded, identifiers, config.num_puzzle_identifiers)
    return loaded


@dataclass
class Evaluated:
    """`evaluate`'s result: upstream's metrics on a split, and where the predictions went."""

    what: str  # the model that ran
    data: Path
    split: str
    result: Evaluation
    predictions: Path | None = None
    arc: ArcScore | None = None  # an ARC build's pass@k by augmentation voting
    engine: str = "local"  # "ray": sharded over Ray actors
    sharded: ShardedRun | None = None  # with engine "ray": the shards, workers, retries

    def as_dict(self) -> dict:
        saved = None if self.predictions is None else str(self.predictions)
        head = {"model": self.what, "data": str(self.data), "split": self.split}
        arc = None if self.arc is None else self.arc.summary()
        ray = None if self.sharded is None else self.sharded.as_dict()
        return {**head, **self.result.as_dict(), "predictions": saved, "arc": arc,
                "engine": self.engine, "ray": ray}  # fmt: skip


def evaluate(
    model: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    max_steps: int | None = None,
    q_halt: bool = False,
    batch_size: int = 64,
    limit: int | None = None,
    dtype: DType | str | None = None,
    params: Params | str | Path | None = None,
    runtime: str = "iree",
    predictions: str | Path | None = None,
    keep: str = "logits",
    submission: str | Path | None = None,
    plot: str | Path | None = None,
    continuous: bool | None = None,
    options: CompileOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    status: Callable[[str], None] | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    shards: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    cache: bool = True,
) -> Evaluated:
    """Evaluate a checkpoint (its `@act` compiled here, at `batch_size`) or an `@act` .vmfb on
    a split of upstream's built dataset, with upstream's metrics (`hrm_mlir.evaluation`).

    The dataset is read and checked against the model before anything is compiled.
    `max_steps` defaults to the checkpoint's `halt_max_steps`, what upstream evaluates with.
    `runtime="pytorch"` runs the PyTorch model instead (a checkpoint only), for comparison.
    `predictions`: write them as upstream's `evaluate.py` does, `keep="preds"` with argmax
    tokens instead of logits. `progress(done, total)` after each batch; `status(text)` before
    slow steps. An ARC build (identifiers.json naming its augmentations, 900 tokens) is also
    scored by pass@k (`hrm_mlir.evaluation.arc`); `submission` and `plot` write its Kaggle
    submission.json and a PNG of a few tasks. `continuous` (default: with `q_halt` on the
    compiled model): a row that halts frees its slot for the next example at once
    (`hrm_mlir.evaluation.continuous`); False keeps whole batches until their last row halts.

    `engine="ray"` shards the split over Ray actors (`hrm_mlir.evaluation.distributed`), the
    compiled model only: `out` (required) the directory of the shards' results, `resume` keeps
    those of this same run found there and runs the rest, `address` the Ray cluster (default:
    `RAY_ADDRESS`, else a local Ray), `workers` the actors, one CPU each (default: the
    cluster's CPUs), `shards` (default: 4 per worker); the result is the local engine's, its
    metrics to the bit. `progress` then comes after each shard.

    A checkpoint's compiled `@act` is kept in the cache (`hrm_mlir.compiler.cache`) and read
    back by the next evaluation of the same; `cache` False neither reads nor writes it.
    """
    from hrm_mlir.checkpoint.load import load_checkpoint
    from hrm_mlir.evaluation.dataset import load_split
    from hrm_mlir.evaluation.distributed import Artifact, evaluate_on_ray
    from hrm_mlir.evaluation.engine import (
        CompiledRunner,
        PyTorchRunner,
        Runner,
        evaluate_split,
        save_predictions,
    )

    on_ray = engine == "ray"
    _check_evaluate_choices(
        runtime, keep, batch_size, engine, address=address, workers=workers, shards=shards,
        out=out, resume=resume,
    )  # fmt: skip
    check_writable(predictions, submission, plot)  # before the slow work
    check_writable(out, directory=True)
    data_split = load_split(data, split)
    arc_split = _arc_split(data, split, data_split)
    if arc_split is None and (submission is not None or plot is not None):
        raise HrmMlirError(f"{data}: not an ARC build; --submission and --plot need one")
    seq_len = data_split.metadata.seq_len
    act = _Act.resolve(model, params, lambda: load_checkpoint(model, seq_len_fallback=seq_len))
    ck = act.checkpoint
    if ck is None and runtime == "pytorch":
        raise HrmMlirError("--runtime pytorch needs a checkpoint, not a .vmfb")
    if ck is not None:  # checked against the split before the slow compile
        _check(data_split, ck.config, str(ck.weights_path))
    runner: Runner | None = None
    artifact: Artifact | Callable[[], Artifact] | None = None
    if ck is not None and runtime == "pytorch":
        runner = PyTorchRunner(ck.build_model(_dtype(ck, dtype)))
    else:
        # a checkpoint's is compiled for no more rows than the run has
        rows = min(batch_size, max(data_split.examples if limit is None else limit, 1))
        if on_ray:
            artifact = act.artifact(
                dtype, batch_size=rows, options=options, cache=cache, status=status
            )
            if ck is not None:
                batch_size = rows  # the batch it will have, for the checks before the compile
        else:
            compiled = act.compiled(
                dtype, batch_size=rows, options=options, cache=cache, status=status
            )
            runner = CompiledRunner(compiled)
    what = act.what(dtype, runs="PyTorch" if runtime == "pytorch" else "compiled here")
    if ck is not None:
        config = ck.config
    else:  # the .vmfb's model, read as it loaded
        config = artifact.config if isinstance(artifact, Artifact) else compiled.config
        _check(data_split, config, what)
    keep_as = keep if predictions is not None else None
    if keep_as is None and arc_split is not None:
        keep_as = "preds"  # the votes need the argmax only
    sharded = None
    common: dict[str, Any] = {
        "max_steps": max_steps or config.halt_max_steps,
        "q_halt": q_halt,
        "batch_size": batch_size,
        "limit": limit,
        "keep": keep_as,
        "continuous": (q_halt and runtime == "iree") if continuous is None else continuous,
        "progress": progress,
    }
    if artifact is not None:
        assert out is not None
        result, sharded = evaluate_on_ray(
            artifact, data_split, out=out, resume=resume, address=address, workers=workers,
            shards=shards, status=status, **common,
        )  # fmt: skip
    else:
        assert runner is not None
        result = evaluate_split(runner, data_split, **common)
    saved = None if predictions is None else save_predictions(result.predictions, predictions)
    scored = None
    if arc_split is not None:
        scored = _score_arc(result.predictions, arc_split, str(model), submission, plot)
    return Evaluated(what, Path(data), split, result, saved, scored, engine, sharded)


def score_predictions(
    files: Sequence[str | Path],
    data: str | Path,
    *,
    split: str = "test",
    submission: str | Path | None = None,
    plot: str | Path | None = None,
) -> ArcScore:
    """ARC pass@k of prediction files that upstream's `evaluate.py` (or `evaluate`) wrote,
    against an ARC build; `submission` and `plot` as in `evaluate`."""
    from hrm_mlir.evaluation.arc_io import load_arc_split, load_predictions

    check_writable(submission, plot)
    arc_split = load_arc_split(data, split)
    names = ", ".join(str(f) for f in files)
    return _score_arc(load_predictions(files), arc_split, names, submission, plot)


def _arc_split(data, split: str, data_split):
    """The ARC view of a split when it is an ARC build (900 tokens, named augmentations)."""
    from hrm_mlir.evaluation.arc_io import load_arc_split

    names = data_split.identifiers or []
    if data_split.metadata.seq_len != 900 or len(names) < 2:
        return None
    return load_arc_split(data, split, loaded=data_split)


def _score_arc(predictions, arc_split, source: str, submission, plot) -> ArcScore:
    from hrm_mlir.evaluation.arc import score
    from hrm_mlir.evaluation.arc_io import write_submission
    from hrm_mlir.evaluation.plots import plot_tasks

    scored = score(predictions, arc_split.identifiers, arc_split.tasks, source=source)
    if submission is not None:
        write_submission(scored, submission)
    if plot is not None:
        plot_tasks(scored, plot)
    return scored


def _check_evaluate_choices(
    runtime: str,
    keep: str,
    batch_size: int,
    engine: str,
    *,
    address: str | None,
    workers: int | None,
    shards: int | None,
    out: str | Path | None,
    resume: bool,
) -> None:
    """`evaluate`'s choices, refused in one line before anything is read."""
    from hrm_mlir.evaluation.distributed import require_ray

    if runtime not in ("iree", "pytorch"):
        raise HrmMlirError(f"--runtime: expected iree or pytorch, got {runtime!r}")
    if keep not in ("logits", "preds"):
        raise HrmMlirError(f"predictions keep logits or preds, got {keep!r}")
    if batch_size < 1:
        raise HrmMlirError(f"--batch_size must be >= 1, got {batch_size}")
    if engine not in ("local", "ray"):
        raise HrmMlirError(f"--engine: expected local or ray, got {engine!r}")
    if engine != "ray":
        ray_only = {"--address": address, "--workers": workers, "--shards": shards,
                    "--out": out, "--resume": resume or None}  # fmt: skip
        given = [name for name, value in ray_only.items() if value is not None]
        if given:
            raise HrmMlirError(f"{', '.join(given)}: only with --engine ray")
    else:
        if runtime == "pytorch":
            raise HrmMlirError("--engine ray runs the compiled @act: not with --runtime pytorch")
        if out is None:
            raise HrmMlirError("--engine ray writes each shard's results to a directory: give "
                               "--out DIR")  # fmt: skip
        require_ray()


def _check(split, config: ReasoningConfig, where: str) -> None:
    split.check_model(
        vocab_size=config.vocab_size,
        seq_len=config.seq_len,
        num_puzzle_identifiers=config.num_puzzle_identifiers,
        puzzle_embedding=config.puzzle_emb_ndim > 0,
        where=where,
    )


__all__: Sequence[str] = ["compile", "evaluate", "export", "run", "score_predictions", "verify"]
