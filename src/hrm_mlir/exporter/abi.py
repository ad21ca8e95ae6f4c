"""What an exported module is, read back from its MLIR without torch: the `@step` ABI from its
function type, its dialect, public functions and external parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hrm_mlir.core.errors import CompileError, ExportError, HrmMlirError, first_line
from hrm_mlir.core.types import DType, OutputType

# The scope external parameters are named in and served under: `--parameters=model=FILE.irpa`.
PARAMETER_SCOPE = "model"
# The module attribute that holds the reference cases `export` records
# (`hrm_mlir.exporter.reference`).
REFERENCE_ATTR = "hrm_mlir.reference"
# The outputs of `@step`, in order (the README's ABI).
STEP_OUTPUTS = ("z_H", "z_L", "logits", "q_halt_logits", "q_continue_logits")


def parse_step_signature(function_type: str) -> tuple[int | None, DType]:
    """(batch size or None if symbolic, forward dtype) from the MLIR type of `@step`."""
    m = re.match(r"\(!torch\.vtensor<\[(-?\d+|\?),\d+,\d+\],(\w+)>", function_type) or re.match(
        r"\(tensor<(\d+|\?)x\d+x\d+x(\w+)>", function_type
    )
    dtypes = {d.mlir: d for d in DType}
    if m is None or m.group(2) not in dtypes:
        raise ExportError(f"@step does not have the documented ABI: {function_type[:200]}")
    batch = m.group(1)
    return (int(batch) if batch.isdigit() else None), dtypes[m.group(2)]


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


def module_facts(path: str | Path) -> tuple[DType | None, bool]:
    """The forward dtype of an exported module (the carry type of its `@step`, None if it has
    none) and whether it declares external parameters (`util.global`s)."""
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
