"""Compile exported MLIR to an IREE module (.vmfb).

The torch, linalg-on-tensors and StableHLO outputs go to iree-compile directly. The TOSA that
torch-mlir 20261001 prints does not parse in IREE 3.13 (the projects pin different LLVM
revisions: `custom op 'tosa.const_shape' expected 'values'`), so TOSA is first lowered to linalg
with torch-mlir's own MLIR passes (its LLVM parses its own TOSA) and that linalg is compiled.
"""

from __future__ import annotations

import platform
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from iree.compiler import tools as iree_tools

from hrm_mlir.config import DType, OutputType, _ChoiceEnum
from hrm_mlir.cpu_attention import AttentionShape, fuse_attention
from hrm_mlir.cpu_gemm import GemmShape, rewrite_gemms
from hrm_mlir.cpu_qkv import QkvShape
from hrm_mlir.errors import CompileError, HrmMlirError, first_line
from hrm_mlir.fileio import write_atomic

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
DATA_TILING = "--iree-opt-data-tiling"
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
        cpu: `--iree-llvmcpu-target-cpu` for llvm-cpu ("host" = this machine's CPU).
        cuda_arch: `--iree-cuda-target` for the cuda target. IREE 3.13 knows no sm_90+ target
            ("missing GPU target in #hal.executable.target", iree-org/iree#22147), so the
            default is sm_80, whose PTX the driver JIT-compiles for Hopper too.
        vulkan_target: `--iree-vulkan-target` (e.g. ampere, rdna3, valhall4).
        tuned: llvm-cpu flags: None = `FAST_CPU_FLAGS` within a 64 KiB stack limit for float32
            modules (IREE's defaults where IREE rejects them, and for bfloat16); True =
            `TUNED_CPU_FLAGS` (256 KiB stack limit); False = IREE's defaults.
        gemm_kernels: float32 GEMMs on the project's AVX2 kernels (`hrm_mlir.cpu_gemm`) instead
            of IREE's: None = where they pay off (llvm-cpu for this machine's CPU when it has
            AVX2 and FMA but no AVX-512, unless `tuned` is False); True / False = always /
            never (llvm-cpu only).
        extra_flags: passed to iree-compile last, so they override the defaults.
    """

    target: Target = Target.LLVM_CPU
    cpu: str = "host"
    cuda_arch: str = "sm_80"
    vulkan_target: str = "ampere"
    tuned: bool | None = None
    gemm_kernels: bool | None = None
    extra_flags: tuple[str, ...] = field(default_factory=tuple)

    def use_gemm_kernels(self) -> bool:
        """Whether float32 GEMMs go to `hrm_mlir.cpu_gemm`'s kernels."""
        if self.target != Target.LLVM_CPU or self.gemm_kernels is False:
            return False
        if self.gemm_kernels:
            return True
        return self.tuned is not False and self.cpu == "host" and host_has_avx2()

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


def host_has_avx2() -> bool:
    """This machine is x86-64 with AVX2 and FMA and without AVX-512: the CPUs the kernels of
    `hrm_mlir.cpu_gemm` are for (with AVX-512 IREE's own 16x16 tiles are the better choice)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])  # fmt: skip
    return "avx2" in flags and "fma" in flags and "avx512f" not in flags


def compile_module(
    source: ExportedModule | str | Path,
    output: str | Path | None = None,
    options: CompileOptions | None = None,
    *,
    output_type: OutputType | None = None,
    notes: list[str] | None = None,
    stats: dict | None = None,
) -> bytes:
    """Compile an exported module, or an MLIR file (text or `.mlirbc`), with iree-compile.

    Args:
        source: the module, or the path of an MLIR file.
        output: where to write the .vmfb (atomically); None to only return it.
        options: target and flags.
        output_type: the dialect of a file source; detected from its content when None.
        notes: receives a line when the default fast flags were rejected and IREE's defaults
            used instead.
        stats: receives `gemm_kernels`, the number of GEMMs given to `hrm_mlir.cpu_gemm`,
            `fused_epilogues`, how many of them also compute the elementwise code after them,
            `attention_kernels`, the attentions given to `hrm_mlir.cpu_attention`, and
            `qkv_kernels`, how many of them take q, k and v from `hrm_mlir.cpu_qkv`.
    Returns:
        The .vmfb bytes.
    Raises:
        CompileError: with the first diagnostic, where the input was kept and the command that
            reproduces the failure.
    """
    options = options or CompileOptions()
    with tempfile.TemporaryDirectory(prefix="hrm-mlir-") as tmp:
        path, dialect = _materialize(source, output_type, Path(tmp))
        dtype: DType | None
        if not isinstance(source, str | Path):  # an ExportedModule
            dtype, external = source.config.forward_dtype, bool(source.parameters)
        else:
            dtype, external = module_facts(path)
        flags = options.flags(dtype, external_parameters=external)
        fast_path, fast_dialect = path, dialect
        kernels: list[GemmShape] = []
        attention: list[tuple[AttentionShape, QkvShape | None]] = []
        if options.use_gemm_kernels():
            fast_path, fast_dialect, kernels, attention = _with_gemm_kernels(
                path, dialect, Path(tmp)
            )
        try:
            vmfb = _iree_compile(fast_path, fast_dialect, flags, options.backend)
        except iree_tools.CompilerToolError as e:
            plain = options.flags(dtype, external_parameters=external, fast=False)
            kernels, attention = [], []
            if options.tuned is not None or (plain == flags and fast_path == path):
                raise CompileError(_describe_failure(str(e), path, output)) from None
            try:
                vmfb = _iree_compile(path, dialect, plain, options.backend)
            except iree_tools.CompilerToolError as e2:
                raise CompileError(_describe_failure(str(e2), path, output)) from None
            if notes is not None:
                reason = _first_error(str(e))
                hint = " (--tuned allows more stack)" if "stack allocation limit" in reason else ""
                what = "flags and GEMM kernels" if fast_path != path else "flags"
                notes.append(
                    f"IREE rejected the fast llvm-cpu {what} ({reason[:160]}); "
                    f"compiled with IREE's defaults instead{hint}"
                )
    if stats is not None:
        stats["gemm_kernels"] = len(kernels)
        stats["fused_epilogues"] = sum(k.epilogue is not None for k in kernels)
        stats["attention_kernels"] = len(attention)
        stats["qkv_kernels"] = sum(qkv is not None for _, qkv in attention)
    if output is not None:
        write_atomic(output, vmfb)
    return vmfb


def _with_gemm_kernels(
    path: Path, dialect: OutputType, tmp: Path
) -> tuple[Path, OutputType, list[GemmShape], list[tuple[AttentionShape, QkvShape | None]]]:
    """`path` with its attention on `hrm_mlir.cpu_attention`'s kernel and its other float32
    GEMMs on `hrm_mlir.cpu_gemm`'s: (the new file, its dialect, the GEMM kernels' shapes, the
    attention kernels' shapes each with its qkv kernel's or None), or `path` itself and [], []
    where there are none.

    The rewrite works on linalg on tensors; torch and StableHLO input is first taken there by
    IREE's own input conversion (`iree-compile --compile-to=input`).
    """
    from iree.compiler import ir

    source = path
    with ir.Context() as ctx:
        try:
            if dialect in (OutputType.TORCH, OutputType.STABLEHLO):
                source = tmp / "input_conversion.mlirbc"
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
            return path, dialect, [], []  # iree-compile itself reports what is wrong with it
        attention = fuse_attention(module)
        kernels = rewrite_gemms(module)
        if not kernels and not attention:
            return path, dialect, [], []
        out = tmp / "gemm_kernels.mlirbc"
        with out.open("wb") as f:
            module.operation.write_bytecode(f)
    return out, OutputType.LINALG_ON_TENSORS, kernels, attention


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
    match = re.search(r"Invoked with:\s*\n\s*\S+\s+(.*)", message)
    command = match.group(1).strip() if match else "iree-compile ..."
    command = command.replace(str(path), str(kept))
    return f"{first[:300]} (input kept at {kept}; reproduce: iree-compile {command})"
