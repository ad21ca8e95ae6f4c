"""Compile exported MLIR to an IREE module (.vmfb).

The torch, linalg-on-tensors and StableHLO outputs go to iree-compile directly. The TOSA that
torch-mlir 20261001 prints does not parse in IREE 3.13 (the projects pin different LLVM
revisions: `custom op 'tosa.const_shape' expected 'values'`), so TOSA is first lowered to linalg
with torch-mlir's own MLIR passes (its LLVM parses its own TOSA) and that linalg is compiled.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iree.compiler import tools as iree_tools

from hrm_mlir.compiler.kernels.attention import AttentionShape
from hrm_mlir.compiler.kernels.fusion import fuse_attention
from hrm_mlir.compiler.kernels.gemm import GemmShape, rewrite_gemms
from hrm_mlir.compiler.kernels.qkv import QkvShape
from hrm_mlir.compiler.options import DEMOTE_MATMUL_INPUTS, CompileOptions, Target
from hrm_mlir.compiler.promote import promote_bf16
from hrm_mlir.compiler.selfcheck import checked, checker
from hrm_mlir.core.errors import CompileError, first_line
from hrm_mlir.core.fileio import write_atomic
from hrm_mlir.core.types import DType, OutputType
from hrm_mlir.exporter.abi import BYTECODE_MAGIC, detect_output_type, module_facts
from hrm_mlir.exporter.reference import Case, detach
from hrm_mlir.runtime.target import TARGET_KEY

if TYPE_CHECKING:  # both import torch, which compiling a file does not need
    from hrm_mlir.exporter.module import ExportedModule
    from hrm_mlir.runtime.module import CompiledModule

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
    promoted: bool = False  # a bf16 module computed in float32 (`hrm_mlir.compiler.promote`)


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
    (`hrm_mlir.exporter.reference`) and compared with PyTorch's outputs by the per-dtype table
    before it is handed out. The configurations are tried fastest first: the fast flags with the
    project's kernels, the fast flags alone, IREE's defaults; one that IREE rejects or that
    fails the check gives a note and the next is tried (only the first, when `options.tuned`
    is set). The artifact records its target in the `iree.reflection` of its public
    functions (`hrm_mlir.runtime.target`).

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
        promote = dtype == DType.BFLOAT16 and options.promotes_bf16()
        prepared = _prepare(path, dialect, options, Path(tmp), promote, notes)
        if promote and not prepared.promoted:
            notes.append(
                "bfloat16 arithmetic: not computed in float32 (a StableHLO module, one that does "
                "not parse, or one with bf16 globals, which the promotion would retype)"
            )
        demote: list[str] = []
        if prepared.promoted and options.bf16_products:
            demote = DEMOTE_MATMUL_INPUTS
            notes.append(
                f"bfloat16 products with float32 accumulation on {options.cpu_target().name}, "
                "float32 elsewhere, bf16 at the module's inputs and outputs"
            )
        elif prepared.promoted:
            notes.append(
                f"bfloat16 computed in float32 on {options.cpu_target().name}, bf16 at the "
                "module's inputs and outputs: closer to the float32 truth than bf16 arithmetic "
                "(--bf16-compute bfloat16: bf16 products)"
            )
        if prepared.promoted:
            dtype = DType.FLOAT32
        configs = _configurations(options, prepared, dtype, external, demote)
        run_check = checker(options, prepared.cases, external, parameters, notes, check)
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
            problem = run_check.run(vmfb) if run_check else None
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
        stats["checked"] = checked(prepared.cases) if run_check else None
        stats["checked_on"] = run_check.where if run_check else None
    if output is not None:
        write_atomic(output, vmfb)
    return vmfb


def _configurations(
    options: CompileOptions,
    prepared: _Prepared,
    dtype: DType | None,
    external: bool,
    extra: list[str] | None = None,
) -> list[_Config]:
    """The ways to compile, fastest first; one only where `options.tuned` is set. `extra`
    flags go into every one."""
    fast = options.flags(dtype, external_parameters=external) + (extra or [])
    plain = options.flags(dtype, external_parameters=external, fast=False) + (extra or [])
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


def _prepare(
    path: Path,
    dialect: OutputType,
    options: CompileOptions,
    tmp: Path,
    promote: bool = False,
    notes: list[str] | None = None,
) -> _Prepared:
    """Parse the module once: take its reference cases out, compute a bf16 module in float32
    behind its bf16 signatures where `promote` says so (`hrm_mlir.compiler.promote`), stamp its
    public functions with the target, and, where the kernels apply, rewrite a copy's attention
    onto `hrm_mlir.cpu_attention`'s kernel and its other float32 GEMMs onto `hrm_mlir.cpu_gemm`'s.

    The rewrite works on linalg on tensors; torch and StableHLO input is then first taken there
    by IREE's own input conversion (`iree-compile --compile-to=input`), and that linalg serves
    the other configurations too; where that conversion fails, a note in `notes` says what
    failed, and the module is prepared as it is, without them. A module that does not parse is
    passed on as it is, for iree-compile to report what is wrong with it.
    """
    from iree.compiler import ir

    # bf16 products leave the matmuls to IREE, which demotes their inputs (`bf16_products`)
    kernels_wanted = options.use_gemm_kernels() and not (promote and options.bf16_products)
    source, source_dialect = path, dialect
    with ir.Context() as ctx:
        rewritten = kernels_wanted or promote
        if promote and dialect == OutputType.TORCH:
            # torch-mlir's own lowering keeps the functions' tensor signatures, which the
            # promotion keeps; IREE's input conversion would wrap them in its buffer ABI first
            try:
                source = _torch_to_linalg(path.read_bytes(), tmp)
                source_dialect = OutputType.LINALG_ON_TENSORS
            except CompileError as e:
                promote = False
                if notes is not None:
                    notes.append(f"{e}: computed in bfloat16")
        if (
            rewritten
            and dialect in (OutputType.TORCH, OutputType.STABLEHLO)
            and source_dialect != OutputType.LINALG_ON_TENSORS
        ):
            converted = tmp / "input_conversion.mlirbc"
            try:
                iree_tools.compile_file(
                    str(path),
                    input_type=_IREE_INPUT_TYPE[dialect],
                    output_file=str(converted),
                    extra_args=["--compile-to=input", "--emit-mlir-bytecode"],
                )
            except iree_tools.CompilerToolError as e:
                off = "the project's kernels" + (" and float32 compute" if promote else "")
                kernels_wanted = promote = False
                if notes is not None:
                    first = _first_error(str(e))[:160]
                    notes.append(f"IREE's input conversion failed ({first}): {off} are off for "
                                 "this artifact")  # fmt: skip
            else:
                source, source_dialect = converted, OutputType.LINALG_ON_TENSORS
        try:
            data = source.read_bytes()
            asm = data if data.startswith(BYTECODE_MAGIC) else data.decode()
            module = ir.Module.parse(asm, ctx)
        except (ir.MLIRError, UnicodeDecodeError):
            return _Prepared(path, dialect)
        cases = detach(module)
        promoted = False
        if promote:
            try:
                promoted = bool(promote_bf16(module))
            except ir.MLIRError as e:  # the pass left the module half rewritten: parse it again
                if notes is not None:
                    notes.append(
                        f"IREE's bf16-to-f32 promotion failed ({first_line(e)[:160]}): "
                        "computed in bfloat16"
                    )
                module = ir.Module.parse(asm, ctx)
                detach(module)
        _stamp(module, options)
        plain = tmp / "stamped.mlirbc"
        with plain.open("wb") as f:
            module.operation.write_bytecode(f)
        prepared = _Prepared(plain, source_dialect, cases=cases, promoted=promoted)
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
    from hrm_mlir.runtime.module import CompiledModule

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


def _torch_to_linalg(asm: str | bytes, tmp: Path) -> Path:
    """A torch-dialect export (torch-mlir's backend contract) lowered to linalg on tensors by
    torch-mlir, as `export --output_type linalg-on-tensors` lowers it."""
    # `exporter.trace.TO_DIALECT`'s linalg pipeline (that module imports torch; this one not)
    pipeline = "builtin.module(torch-backend-to-linalg-on-tensors-backend-pipeline)"
    return _lower_to_linalg(asm, pipeline, "torch", tmp / "torch_as_linalg.mlirbc")


def _tosa_to_linalg(asm: str | bytes, tmp: Path) -> Path:
    return _lower_to_linalg(asm, TOSA_TO_LINALG, "TOSA", tmp / "tosa_as_linalg.mlirbc")


def _lower_to_linalg(asm: str | bytes, pipeline: str, what: str, out: Path) -> Path:
    """`asm` lowered to linalg on tensors by a torch-mlir pipeline, written to `out`."""
    from torch_mlir import ir, passmanager
    from torch_mlir.dialects import torch as torch_d

    with ir.Context() as ctx:
        torch_d.register_dialect(ctx)
        try:
            module = ir.Module.parse(asm)
            passmanager.PassManager.parse(pipeline).run(module.operation)
        except Exception as e:  # MLIRError and friends
            raise CompileError(f"lowering {what} to linalg failed: {first_line(e)}") from e
        with out.open("wb") as f:
            module.operation.write_bytecode(f)
    return out


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
    if match:  # one shell command, pasted as it is: every word quoted where it needs it
        marker = "\x00input\x00"  # IREE prints the words unquoted: a path may hold spaces
        words = match.group(1).strip().replace(str(path), marker).split(" ")
        command = shlex.join(str(kept) if w == marker else w for w in words if w)
    else:
        command = "iree-compile ..."
    return f"{first[:300]} (input kept at {kept}; reproduce: {command})"
