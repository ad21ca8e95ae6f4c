"""Compile exported MLIR to an IREE module (.vmfb).

The torch, linalg-on-tensors and StableHLO outputs go to iree-compile directly. The TOSA that
torch-mlir 20261001 prints does not parse in IREE 3.13 (the projects pin different LLVM
revisions: `custom op 'tosa.const_shape' expected 'values'`), so TOSA is first lowered to linalg
with torch-mlir's own MLIR passes (its LLVM parses its own TOSA) and that linalg is compiled.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iree.compiler import tools as iree_tools

from hrm_mlir import reference
from hrm_mlir.config import DType, OutputType, _ChoiceEnum
from hrm_mlir.cpu_attention import AttentionShape, fuse_attention
from hrm_mlir.cpu_gemm import GemmShape, rewrite_gemms
from hrm_mlir.cpu_qkv import QkvShape
from hrm_mlir.cpu_target import HOST, TARGET_KEY, CpuTarget, resolve_cpu
from hrm_mlir.errors import CompileError, HrmMlirError, first_line
from hrm_mlir.fileio import write_atomic
from hrm_mlir.reference import Case

if TYPE_CHECKING:  # both import torch, which compiling a file does not need
    from hrm_mlir.export import ExportedModule
    from hrm_mlir.runtime import CompiledModule

TOSA_TO_LINALG = (
    "builtin.module(func.func(tosa-to-linalg-named, tosa-to-linalg, tosa-to-arith, "
    "tosa-to-tensor, tosa-to-scf), canonicalize)"
)
_IREE_INPUT_TYPE = {
    OutputType.TORCH: "torch",
    OutputType.LINALG_ON_TENSORS: "auto",
    OutputType.STABLEHLO: "stablehlo",
    OutputType.TOSA: "auto",  # after TOSA_TO_LINALG
}


# The fastest llvm-cpu flags found for the float32 HRM step on AVX2 machines (`hrm-mlir bench`
# measures them beside IREE's defaults). Data tiling is the largest gain; it also makes dispatches
# allocate more stack, so the limit decides where an artifact can run:
# - by default (tuned=None) float32 modules get them with a 64 KiB stack allocation limit, so
#   the artifact runs within the 128 KiB stacks IREE's worker threads have by default (plain
#   `iree-run-module` included). The 27M step fits at batch 1, 16, symbolic and (901 tokens)
#   8. Where IREE needs more or rejects the flags otherwise, the module is compiled again with
#   IREE's defaults, with a note.
# - `tuned=True` (`--tuned`) allows 256 KiB, but the artifact then needs
#   `--task_worker_stack_size` above that (`hrm_mlir.runtime` sets 1 MiB; a batch-16 step
#   segfaulted in iree-worker without it).
# bfloat16 modules keep IREE's defaults: these flags push the 27M model's bf16 q_halt error to
# 0.22 (> the 0.1 tolerance).
# Data tiling takes IREE's GlobalOptimization path, not `--iree-opt-data-tiling`'s default in
# IREE 3.13 (the DispatchCreation path): that one miscompiles a batched matmul whose row count
# is not a multiple of the target's tile rows (16 on AVX-512, 8 on AVX2) under a symbolic
# batch when its left-hand side comes from a reduction, as attention's P @ V does
# (docs/known-issues.md).
DATA_TILING = "--iree-global-opt-data-tiling"
FAST_CPU_FLAGS = [
    "--iree-opt-level=O3",
    DATA_TILING,
    "--iree-llvmcpu-enable-ukernels=all",
    "--iree-llvmcpu-matmul-tile-bytes=1048576",
]
SAFE_STACK_BYTES = 65536
TUNED_STACK_BYTES = 262144
STACK_LIMIT = "--iree-llvmcpu-stack-allocation-limit={}"
TUNED_CPU_FLAGS = [*FAST_CPU_FLAGS, STACK_LIMIT.format(TUNED_STACK_BYTES)]


class Target(_ChoiceEnum):
    """IREE HAL targets."""

    LLVM_CPU = "llvm-cpu"
    CUDA = "cuda"
    VULKAN = "vulkan"


@dataclass(frozen=True)
class CompileOptions:
    """Options of one iree-compile run.

    Attributes:
        target: the HAL target.
        cpu: `--iree-llvmcpu-target-cpu` for llvm-cpu: "host" (this machine's CPU) or a CPU
            LLVM knows ("x86-64-v3", "znver3", "icelake-server", "sapphirerapids", ...). The
            kernels are chosen by its features (`hrm_mlir.cpu_target`), never by the host's.
        cuda_arch: `--iree-cuda-target` for the cuda target. IREE 3.13 knows no sm_90+ target
            ("missing GPU target in #hal.executable.target", iree-org/iree#22147), so the
            default is sm_80, whose PTX the driver JIT-compiles for Hopper too.
        vulkan_target: `--iree-vulkan-target` (e.g. ampere, rdna3, valhall4).
        tuned: llvm-cpu flags: None = `FAST_CPU_FLAGS` within a 64 KiB stack limit for float32
            modules (IREE's defaults where IREE rejects them, and for bfloat16); True =
            `TUNED_CPU_FLAGS` (256 KiB stack limit); False = IREE's defaults.
        gemm_kernels: float32 GEMMs on the project's kernels (`hrm_mlir.cpu_gemm`) instead
            of IREE's: None = where they pay off (llvm-cpu for a target CPU with AVX2 and FMA,
            AVX-512 ones included, unless `tuned` is False); True / False = always / never
            (llvm-cpu on x86-64 only).
        extra_flags: passed to iree-compile last, so they override the defaults.
        kernel_isa: the GEMM kernels' register tiles, "avx2" (6 x 2 ymm) or "avx512"
            (12 x 1 zmm); None = the target's (for A/B measurements).
    """

    target: Target = Target.LLVM_CPU
    cpu: str = "host"
    cuda_arch: str = "sm_80"
    vulkan_target: str = "ampere"
    tuned: bool | None = None
    gemm_kernels: bool | None = None
    extra_flags: tuple[str, ...] = field(default_factory=tuple)
    kernel_isa: str | None = None

    def gemm_isa(self) -> str:
        """The register tiles of the GEMM kernels (`hrm_mlir.cpu_gemm.ISAS`): `kernel_isa`, or
        the target's vector ISA (avx512 or avx2)."""
        return self.kernel_isa or self.cpu_target().isa

    def cpu_target(self) -> CpuTarget:
        """The llvm-cpu target `cpu` names, as IREE's LLVM resolves it."""
        return resolve_cpu(self.cpu)

    def target_name(self) -> str:
        """The target in one word: llvm-cpu:<cpu>, cuda:<arch> or vulkan:<target>."""
        detail = {
            Target.LLVM_CPU: self.cpu,
            Target.CUDA: self.cuda_arch,
            Target.VULKAN: self.vulkan_target,
        }[self.target]
        return f"{self.target.value}:{detail}"

    def use_gemm_kernels(self) -> bool:
        """Whether float32 GEMMs go to `hrm_mlir.cpu_gemm`'s kernels: on an x86-64 target CPU
        with AVX2 and FMA (resolved by IREE's LLVM, whatever this machine is)."""
        if self.target != Target.LLVM_CPU or self.gemm_kernels is False:
            return False
        if not self.cpu_target().avx2_fma:
            return False
        return bool(self.gemm_kernels) or self.tuned is not False

    def cpu_flags(self, dtype: DType | None) -> list[str]:
        """The llvm-cpu flags `tuned` chooses for a module computing in `dtype` (None: unknown)."""
        if self.target != Target.LLVM_CPU or self.tuned is False:
            return []
        if self.tuned:
            return list(TUNED_CPU_FLAGS)
        if dtype != DType.FLOAT32:
            return []
        return [*FAST_CPU_FLAGS, STACK_LIMIT.format(SAFE_STACK_BYTES)]

    def flags(
        self,
        dtype: DType | None = DType.FLOAT32,
        *,
        external_parameters: bool = False,
        fast: bool = True,
    ) -> list[str]:
        """iree-compile flags; `fast=False` leaves out the `tuned` flags (the fallback).

        With external parameters data tiling is left out: IREE 3.13 fails to compile the
        static-batch `@act` with it ("failed to legalize unresolved target materialization" of
        a data-tiling encoding, in the hoisted initializers that pack parameter-backed weights).
        """
        if self.target == Target.LLVM_CPU:
            flags = [f"--iree-llvmcpu-target-cpu={self.cpu}"]
            if fast:
                flags += [
                    f
                    for f in self.cpu_flags(dtype)
                    if not (external_parameters and f == DATA_TILING)
                ]
        elif self.target == Target.CUDA:
            flags = [f"--iree-cuda-target={self.cuda_arch}"]
        else:
            flags = [f"--iree-vulkan-target={self.vulkan_target}"]
        return [*flags, *self.extra_flags]

    @property
    def backend(self) -> str:
        return {Target.VULKAN: "vulkan-spirv"}.get(self.target, self.target.value)


BYTECODE_MAGIC = b"ML\xefR"
_DIALECT_PREFIXES = (
    ("tosa.", OutputType.TOSA),
    ("stablehlo.", OutputType.STABLEHLO),
    ("torch.", OutputType.TORCH),
)


def detect_output_type(path: str | Path) -> OutputType:
    """The dialect of an exported MLIR file, text or bytecode."""
    with Path(path).open("rb") as f:
        head = f.read(8 << 20)
    if not head.startswith(BYTECODE_MAGIC):  # text: op names are near the top
        for prefix, dialect in _DIALECT_PREFIXES:
            if f" {prefix}".encode() in head or f"!{prefix}".encode() in head:
                return dialect
        return OutputType.LINALG_ON_TENSORS
    return inspect_mlir(path).dialect


@dataclass(frozen=True)
class MlirInfo:
    dialect: OutputType
    functions: dict[str, str]  # public function name -> its type, as text
    external_parameters: bool = False  # it declares util.global parameters


def inspect_mlir(path: str | Path) -> MlirInfo:
    """Parse an MLIR file (text or bytecode): its dialect and public functions."""
    path = Path(path)
    if not path.is_file():
        raise CompileError(f"{path}: no such MLIR file")
    data = path.read_bytes()
    asm = data if data.startswith(BYTECODE_MAGIC) else data.decode()
    # IREE parses torch, linalg and StableHLO; only torch-mlir's own MLIR parses its TOSA.
    for ir, ctx in _parsing_contexts():
        with ctx:
            try:
                module = ir.Module.parse(asm)
            except Exception as e:  # MLIRError
                error = first_line(e)
                continue
            funcs = [op for op in module.body.operations if "function_type" in op.attributes]
            names = {op.name for f in funcs for op in f.regions[0].blocks[0].operations}
            dialect = next(
                (d for prefix, d in _DIALECT_PREFIXES if any(n.startswith(prefix) for n in names)),
                OutputType.LINALG_ON_TENSORS,
            )
            public = {
                f.attributes["sym_name"].value: str(f.attributes["function_type"].value)
                for f in funcs
                if "sym_visibility" not in f.attributes
            }
            external = any(op.operation.name == "util.global" for op in module.body.operations)
            return MlirInfo(dialect, public, external)
    raise CompileError(f"{path}: not parseable MLIR: {error}")


def _parsing_contexts():
    """(ir module, context) of IREE, then of torch-mlir (imported only when it is needed)."""
    from iree.compiler import ir as iree_ir

    yield iree_ir, iree_ir.Context()
    from torch_mlir import ir as tm_ir
    from torch_mlir.dialects import torch as torch_d

    ctx = tm_ir.Context()
    torch_d.register_dialect(ctx)
    yield tm_ir, ctx


def read_functions(path: str | Path) -> dict[str, str]:
    """Public functions of an MLIR file (text or bytecode) and their types, as text."""
    return inspect_mlir(path).functions


@dataclass
class _Config:
    """One way to compile a module: its input, flags and what the kernels took."""

    label: str  # for notes: "the fast llvm-cpu flags and GEMM kernels", ...
    path: Path
    dialect: OutputType
    flags: list[str]
    kernels: list[GemmShape] = field(default_factory=list)
    attention: list[tuple[AttentionShape, QkvShape | None]] = field(default_factory=list)


@dataclass
class _Prepared:
    """A module ready for iree-compile: stamped with its target, its reference cases taken out
    (`plain`), and the same with the project's kernels where they apply (`fast`)."""

    plain: Path
    dialect: OutputType
    fast: Path | None = None
    kernels: list[GemmShape] = field(default_factory=list)
    attention: list[tuple[AttentionShape, QkvShape | None]] = field(default_factory=list)
    cases: list[Case] = field(default_factory=list)


def compile_module(
    source: ExportedModule | str | Path,
    output: str | Path | None = None,
    options: CompileOptions | None = None,
    *,
    output_type: OutputType | None = None,
    notes: list[str] | None = None,
    stats: dict | None = None,
    check: bool = True,
    parameters: str | Path | Mapping[str, Any] | None = None,
) -> bytes:
    """Compile an exported module, or an MLIR file (text or `.mlirbc`), with iree-compile.

    For llvm-cpu on a CPU this machine can run (`--cpu host`, or a named CPU whose features
    it has), the new artifact is run on the reference cases `export` recorded in the module
    (`hrm_mlir.reference`) and compared with PyTorch's outputs by the per-dtype table before
    it is handed out. The configurations are tried fastest first: the fast flags with the
    project's kernels, the fast flags alone, IREE's defaults; one that IREE rejects or that
    fails the check gives a note and the next is tried (only the first, when `options.tuned`
    is set). The artifact records its target in the `iree.reflection` of its public
    functions (`hrm_mlir.cpu_target`).

    Args:
        source: the module, or the path of an MLIR file.
        output: where to write the .vmfb (atomically); None to only return it.
        options: target and flags.
        output_type: the dialect of a file source; detected from its content when None.
        notes: receives a line for each configuration that failed and what was used
            instead, and one where the artifact could not be checked.
        stats: receives `gemm_kernels`, the number of GEMMs given to `hrm_mlir.cpu_gemm`,
            `fused_epilogues`, how many of them also compute the elementwise code after them,
            `attention_kernels`, the attentions given to `hrm_mlir.cpu_attention`,
            `qkv_kernels`, how many of them take q, k and v from `hrm_mlir.cpu_qkv`, and
            `checked`, the cases the artifact passed (e.g. "@step at batch 1, 3"), or None
            where it was not checked.
        check: run the self-check (`--no-check` turns it off).
        parameters: the external parameters of a file source (an archive or tensors), for
            the check; an `ExportedModule` brings its own.
    Returns:
        The .vmfb bytes.
    Raises:
        CompileError: with the first diagnostic, where the input was kept and the command that
            reproduces the failure; or when every configuration failed the check (no output
            is written then).
    """
    options = options or CompileOptions()
    notes = [] if notes is None else notes
    with tempfile.TemporaryDirectory(prefix="hrm-mlir-") as tmp:
        path, dialect = _materialize(source, output_type, Path(tmp))
        dtype: DType | None
        if not isinstance(source, str | Path):  # an ExportedModule
            dtype, external = source.config.forward_dtype, bool(source.parameters)
            parameters = source.parameters or None
        else:
            dtype, external = module_facts(path)
        prepared = _prepare(path, dialect, options, Path(tmp))
        configs = _configurations(options, prepared, dtype, external)
        checker = _checker(options, prepared.cases, external, parameters, notes, check)
        failed: list[tuple[_Config, str]] = []
        chosen: _Config | None = None
        for config in configs:
            try:
                vmfb = _iree_compile(config.path, config.dialect, config.flags, options.backend)
            except iree_tools.CompilerToolError as e:
                if config is configs[-1]:
                    raise CompileError(_describe_failure(str(e), config.path, output)) from None
                failed.append((config, f"IREE rejected them ({_first_error(str(e))[:160]})"))
                continue
            problem = checker(vmfb) if checker else None
            if problem is None:
                chosen = config
                break
            failed.append((config, f"they failed the self-check ({problem[:200]})"))
        if chosen is None:
            tried = "; ".join(f"{c.label}: {why}" for c, why in failed)
            raise CompileError(f"no configuration passed, no artifact written: {tried}")
        for config, why in failed:
            hint = " (--tuned allows more stack)" if "stack allocation limit" in why else ""
            notes.append(f"{config.label}: {why}; compiled with {chosen.label} instead{hint}")
    if stats is not None:
        stats["gemm_kernels"] = len(chosen.kernels)
        stats["fused_epilogues"] = sum(k.epilogue is not None for k in chosen.kernels)
        stats["attention_kernels"] = len(chosen.attention)
        stats["qkv_kernels"] = sum(qkv is not None for _, qkv in chosen.attention)
        stats["kernel_isa"] = options.gemm_isa() if chosen.kernels or chosen.attention else None
        stats["checked"] = _checked(prepared.cases) if checker else None
    if output is not None:
        write_atomic(output, vmfb)
    return vmfb


def _checked(cases: list[Case]) -> str:
    """The checked cases in a few words: "@step at batch 1, 3; @act at batch 1, 3"."""
    by_function: dict[str, list[str]] = {}
    for c in cases:
        by_function.setdefault(c.function, []).append(str(c.batch))
    return "; ".join(f"@{f} at batch {', '.join(bs)}" for f, bs in by_function.items())


def _configurations(
    options: CompileOptions, prepared: _Prepared, dtype: DType | None, external: bool
) -> list[_Config]:
    """The ways to compile, fastest first; one only where `options.tuned` is set."""
    fast = options.flags(dtype, external_parameters=external)
    plain = options.flags(dtype, external_parameters=external, fast=False)
    what = "the fast llvm-cpu flags" if fast != plain else "IREE's defaults"
    configs = []
    if prepared.fast is not None:
        configs.append(
            _Config(
                f"{what} and GEMM kernels",
                prepared.fast,
                OutputType.LINALG_ON_TENSORS,
                fast,
                prepared.kernels,
                prepared.attention,
            )
        )
    configs.append(_Config(what, prepared.plain, prepared.dialect, fast))
    if fast != plain:
        configs.append(_Config("IREE's defaults", prepared.plain, prepared.dialect, plain))
    return configs[:1] if options.tuned is not None else configs


def _checker(
    options: CompileOptions,
    cases: list[Case],
    external: bool,
    parameters: str | Path | Mapping[str, Any] | None,
    notes: list[str],
    check: bool,
) -> Callable[[bytes], str | None] | None:
    """The self-check of an artifact (its bytes -> the first failure, or None), or None where
    it cannot run here, with a note saying why."""
    if not check:
        return None
    if options.target != Target.LLVM_CPU:
        notes.append(f"not checked: {options.target} artifacts are not run on this machine")
        return None
    target = options.cpu_target()
    missing = target.missing_on(resolve_cpu(HOST))
    if missing:
        lacks = ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else "")
        notes.append(f"not checked: built for {target.name}, whose {lacks} this CPU lacks")
        return None
    if not cases:
        notes.append("not checked: the module has no reference outputs (export it again)")
        return None
    if external and parameters is None:
        notes.append("not checked: its external parameters were not given (--params)")
        return None

    def run(vmfb: bytes) -> str | None:
        from hrm_mlir.runtime import CompiledModule

        return reference.check(CompiledModule(vmfb, parameters=parameters), cases)

    return run


def _prepare(path: Path, dialect: OutputType, options: CompileOptions, tmp: Path) -> _Prepared:
    """Parse the module once: take its reference cases out, stamp its public functions with the
    target, and, where the kernels apply, rewrite a copy's attention onto
    `hrm_mlir.cpu_attention`'s kernel and its other float32 GEMMs onto `hrm_mlir.cpu_gemm`'s.

    The rewrite works on linalg on tensors; torch and StableHLO input is then first taken there
    by IREE's own input conversion (`iree-compile --compile-to=input`), and that linalg serves
    the other configurations too. A module that does not parse is passed on as it is, for
    iree-compile to report what is wrong with it.
    """
    from iree.compiler import ir

    kernels_wanted = options.use_gemm_kernels()
    source, source_dialect = path, dialect
    with ir.Context() as ctx:
        try:
            if kernels_wanted and dialect in (OutputType.TORCH, OutputType.STABLEHLO):
                source = tmp / "input_conversion.mlirbc"
                source_dialect = OutputType.LINALG_ON_TENSORS
                iree_tools.compile_file(
                    str(path),
                    input_type=_IREE_INPUT_TYPE[dialect],
                    output_file=str(source),
                    extra_args=["--compile-to=input", "--emit-mlir-bytecode"],
                )
            data = source.read_bytes()
            asm = data if data.startswith(BYTECODE_MAGIC) else data.decode()
            module = ir.Module.parse(asm, ctx)
        except (iree_tools.CompilerToolError, ir.MLIRError, UnicodeDecodeError):
            return _Prepared(path, dialect)
        cases = reference.detach(module)
        _stamp(module, options)
        plain = tmp / "stamped.mlirbc"
        with plain.open("wb") as f:
            module.operation.write_bytecode(f)
        prepared = _Prepared(plain, source_dialect, cases=cases)
        if not kernels_wanted:
            return prepared
        prepared.attention = fuse_attention(module, options.gemm_isa())
        prepared.kernels = rewrite_gemms(module, options.gemm_isa())
        if not prepared.kernels and not prepared.attention:
            return prepared
        prepared.fast = tmp / "gemm_kernels.mlirbc"
        with prepared.fast.open("wb") as f:
            module.operation.write_bytecode(f)
    return prepared


def _stamp(module, options: CompileOptions) -> None:
    """Record the target in the `iree.reflection` of every public function (IREE keeps it in
    the .vmfb: `hrm_mlir.runtime` refuses an artifact built for features this CPU lacks)."""
    from iree.compiler import ir

    meta = {TARGET_KEY: options.target_name()}
    if options.target == Target.LLVM_CPU:
        meta.update(options.cpu_target().reflection())
    with module.context, ir.Location.unknown():
        for op in module.body.operations:
            attributes = op.operation.attributes
            if "function_type" not in attributes or "sym_visibility" in attributes:
                continue
            entries = {}
            if "iree.reflection" in attributes:
                old = ir.DictAttr(attributes["iree.reflection"])
                entries = {old[i].name: old[i].attr for i in range(len(old))}
            entries.update({k: ir.StringAttr.get(v) for k, v in meta.items()})
            attributes["iree.reflection"] = ir.DictAttr.get(entries)


def compile_and_load(
    exported: ExportedModule,
    options: CompileOptions | None = None,
    *,
    driver: str = "local-task",
    notes: list[str] | None = None,
) -> CompiledModule:
    """Compile an exported module and load it, with its external parameters if it has any."""
    vmfb = compile_module(exported, options=options, notes=notes)
    from hrm_mlir.runtime import CompiledModule

    return CompiledModule(vmfb, driver=driver, parameters=exported.parameters or None)


def _materialize(
    source: ExportedModule | str | Path, output_type: OutputType | None, tmp: Path
) -> tuple[Path, OutputType]:
    """A file iree-compile can read (TOSA lowered to linalg first) and its dialect."""
    if not isinstance(source, str | Path):  # an ExportedModule
        dialect = source.options.output_type
        if dialect == OutputType.TOSA:
            return _tosa_to_linalg(source.text(), tmp), dialect
        return source.save(tmp / "input.mlirbc"), dialect
    path = Path(source)
    if not path.is_file():
        raise CompileError(f"{path}: no such MLIR file")
    dialect = output_type or detect_output_type(path)
    if dialect == OutputType.TOSA:
        data = path.read_bytes()
        return _tosa_to_linalg(
            data if data.startswith(BYTECODE_MAGIC) else data.decode(), tmp
        ), dialect
    return path, dialect


def _tosa_to_linalg(asm: str | bytes, tmp: Path) -> Path:
    from torch_mlir import ir, passmanager
    from torch_mlir.dialects import torch as torch_d

    with ir.Context() as ctx:
        torch_d.register_dialect(ctx)
        try:
            module = ir.Module.parse(asm)
            passmanager.PassManager.parse(TOSA_TO_LINALG).run(module.operation)
        except Exception as e:  # MLIRError and friends
            first = first_line(e)
            raise CompileError(f"lowering TOSA to linalg failed: {first}") from e
        out = tmp / "tosa_as_linalg.mlirbc"
        with out.open("wb") as f:
            module.operation.write_bytecode(f)
    return out


def module_facts(path: str | Path) -> tuple[DType | None, bool]:
    """The forward dtype of an exported module (the carry type of its `@step`, None if it has
    none) and whether it declares external parameters (`util.global`s)."""
    from hrm_mlir.abi import parse_step_signature

    try:
        info = inspect_mlir(path)
        signature = info.functions.get("step")
        dtype = None if signature is None else parse_step_signature(signature)[1]
        return dtype, info.external_parameters
    except HrmMlirError:  # not an export of ours: iree-compile says what is wrong with it
        return None, False


def uses_external_parameters(path: str | Path) -> bool:
    """Whether an MLIR file declares external parameters (`util.global`s)."""
    return module_facts(path)[1]


def _iree_compile(path: Path, dialect: OutputType, flags: list[str], backend: str) -> bytes:
    return iree_tools.compile_file(
        str(path),
        target_backends=[backend],
        input_type=_IREE_INPUT_TYPE[dialect],
        extra_args=flags,
    )


def _first_error(message: str) -> str:
    errors = [ln.strip() for ln in message.splitlines() if "error:" in ln]
    return errors[0] if errors else "iree-compile failed"


def _describe_failure(message: str, path: Path, output: str | Path | None) -> str:
    first = _first_error(message)
    kept = Path(f"{output}.failed-input{path.suffix}") if output else Path.cwd() / path.name
    shutil.copyfile(path, kept)
    # "Invoked with:" then the tool's name and the command line, which starts with its path
    match = re.search(r"Invoked with:\s*\n\s*\S+\s+(.*)", message)
    command = match.group(1).strip() if match else "iree-compile ..."
    command = command.replace(str(path), str(kept))
    return f"{first[:300]} (input kept at {kept}; reproduce: {command})"
