"""External weights: an IREE parameter archive (.irpa) instead of weights inlined in the MLIR.

torch-mlir inlines every weight into the module as a `dense_resource` blob. That is fine for the
27M-parameter model (104 MiB of bytecode), but an ARC checkpoint carries a 1M x 512 puzzle table
(2.1 GB) that has no business in MLIR. With external parameters each weight becomes

    util.global private @"param.<name>" = #stream.parameter.named<"model"::"<name>"> : tensor<..>
    ... util.global.load @"param.<name>"   (+ torch_c.from_builtin_tensor in the torch dialect)

and its bytes go to a `.irpa` archive under the key `<name>`: the checkpoint's state-dict name
(`inner.puzzle_emb.weights`, ...) or `inner.rope.cos` / `inner.rope.sin` for the RoPE tables.
IREE loads the archive at run time (`iree-run-module --parameters=model=FILE.irpa`), memory-mapped
where it can, so the weights are never copied into the compiled module.

The import gives each weight a `dense_resource` key without a blob
(`ZeroCopyLiterals(external=True)`), which torch-mlir's lowering carries along without reading
any data. `externalize` then rewrites the lowered module, in torch-mlir's own context, before
anything is serialized: each keyed constant becomes a load of a global (the `util` ops are
unregistered there and written in generic form, which IREE parses). TOSA is not supported: its
lowering folds weight transposes into new constants that no checkpoint tensor names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch_mlir import ir

from hrm_mlir.core.errors import ExportError, HrmMlirError, first_line
from hrm_mlir.core.fileio import read_input
from hrm_mlir.core.types import ChoiceEnum, OutputType
from hrm_mlir.exporter.abi import PARAMETER_SCOPE
from hrm_mlir.exporter.archive import parameter_tensors
from hrm_mlir.exporter.trace import mlir_element_type, resource_key

SCOPE = PARAMETER_SCOPE
GLOBAL_PREFIX = "param."
INLINE_LIMIT_BYTES = 512 * 2**20  # above this much weight data, export externalizes by default
EXTERNAL_DIALECTS = (OutputType.TORCH, OutputType.LINALG_ON_TENSORS, OutputType.STABLEHLO)
_NAMED_PARAMETER = re.compile(r'#stream\.parameter\.named<"([^"]*)"::"([^"]*)">')


class Params(ChoiceEnum):
    """Where the weights go: inlined in the MLIR, or an external parameter archive."""

    INLINE = "inline"
    EXTERNAL = "external"


def params_or_archive(value: Params | str | Path) -> Params | Path:
    """`--params` of the commands that load or build a compiled module: inline|external (a
    `Params`), or any other text, and a Path, the path of a parameter archive."""
    if isinstance(value, Path):
        return value
    try:
        return Params.parse(value)
    except ValueError:
        return Path(value)


def choose_params(requested: Params | None, weight_bytes: int) -> tuple[Params, str | None]:
    """The params mode for an export, and a note when it was chosen by size.

    Args:
        requested: the user's choice; None picks external above `INLINE_LIMIT_BYTES`.
        weight_bytes: bytes of weight data the module would carry.
    """
    if requested is not None:
        return requested, None
    if weight_bytes > INLINE_LIMIT_BYTES:
        return Params.EXTERNAL, (
            f"weights are {weight_bytes / 2**20:.0f} MiB (> {INLINE_LIMIT_BYTES >> 20} MiB): "
            "writing them to an external parameter archive (--params inline to override)"
        )
    return Params.INLINE, None


def default_archive_path(mlir_path: str | Path) -> Path:
    """`model.mlirbc` -> `model.irpa`."""
    return Path(mlir_path).with_suffix(".irpa")


def parameter_names(model: torch.nn.Module) -> dict[tuple[int, tuple[int, ...], torch.dtype], str]:
    """(data pointer, shape, dtype) -> name, for every tensor the export can meet as a literal.

    torch-mlir's frozen import hands the hook the model's own tensors without their names; the
    memory they point at identifies them.
    """
    named = parameter_tensors(model)
    return {(t.data_ptr(), tuple(t.shape), t.dtype): name for name, t in named.items()}


def require_external_dialect(output_type: OutputType) -> None:
    """Raise unless `output_type` can refer to external parameters."""
    if output_type not in EXTERNAL_DIALECTS:
        raise ExportError(
            f"--params external supports {', '.join(map(str, EXTERNAL_DIALECTS))}, not "
            f"{output_type}: its lowering folds weight transposes into new constants "
            "(use --params inline, or another --output_type)"
        )


def externalize(
    module: ir.Module,
    literals: Mapping[str, torch.Tensor],
    names: Mapping[tuple[int, tuple[int, ...], torch.dtype], str],
    output_type: OutputType,
) -> dict[str, torch.Tensor]:
    """Replace every weight constant of `module` by a load of a named parameter, in place.

    Args:
        module: the lowered module (torch, linalg-on-tensors or StableHLO).
        literals: resource key -> tensor, as the import created them.
        names: from `parameter_names`; a tensor it does not know is named `const.<key>`.
        output_type: the module's dialect.
    Returns:
        name -> tensor: what the parameter archive must hold.
    Raises:
        ExportError: for TOSA, or when a weight constant is left inlined.
    """
    require_external_dialect(output_type)
    params: dict[str, torch.Tensor] = {}
    context = module.context
    context.allow_unregistered_dialects = True  # util.* ops are IREE's, unknown to torch-mlir
    with context, ir.Location.unknown():
        declared: set[str] = set()
        top = ir.InsertionPoint.at_block_begin(module.body)
        for op, key in list(_resource_constants(module.operation)):
            if key not in literals:
                raise ExportError(
                    f"weight constant {key} was created by the lowering, not by the import; "
                    "it cannot be externalized"
                )
            tensor = literals[key]
            name = names.get((tensor.data_ptr(), tuple(tensor.shape), tensor.dtype), f"const.{key}")
            params[name] = tensor
            result = op.results[0]
            builtin = _builtin_tensor_type(result.type, tensor)
            symbol = GLOBAL_PREFIX + name
            if symbol not in declared:
                declared.add(symbol)
                ir.Operation.create(
                    "util.global",
                    attributes={
                        "sym_name": ir.StringAttr.get(symbol),
                        "sym_visibility": ir.StringAttr.get("private"),
                        "type": ir.TypeAttr.get(builtin),
                        "initial_value": ir.Attribute.parse(
                            f'#stream.parameter.named<"{SCOPE}"::"{name}"> : {builtin}'
                        ),
                    },
                    ip=top,
                )
            at = ir.InsertionPoint(op)
            value = ir.Operation.create(
                "util.global.load",
                results=[builtin],
                attributes={"global": ir.FlatSymbolRefAttr.get(symbol)},
                ip=at,
            ).results[0]
            if output_type == OutputType.TORCH:
                value = ir.Operation.create(
                    "torch_c.from_builtin_tensor", results=[result.type], operands=[value], ip=at
                ).results[0]
            result.replace_all_uses_with(value)
            op.erase()
    return params


def _resource_constants(op: ir.Operation) -> Iterator[tuple[ir.Operation, str]]:
    """Every op (nested) whose `value` / `values` attribute is a `dense_resource` blob."""
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                for attr_name in ("value", "values"):
                    if attr_name in inner.attributes:
                        key = resource_key(inner.attributes[attr_name])
                        if key is not None:
                            yield inner.operation, key
                yield from _resource_constants(inner.operation)


def _builtin_tensor_type(result_type: ir.Type, tensor: torch.Tensor) -> ir.Type:
    """The builtin tensor type of a constant (a `!torch.vtensor` result maps to `tensor<>`)."""
    if isinstance(result_type, ir.RankedTensorType):
        return result_type
    return ir.RankedTensorType.get(list(tensor.shape), mlir_element_type(tensor.dtype))


# --------------------------------------------------------------------------------------------
# Archives (written and read in `hrm_mlir.exporter.archive`)


def required_parameters(path: str | Path) -> dict[str, int]:
    """Key -> byte length of every parameter of scope `model` an MLIR file refers to."""
    from iree.compiler import ir as iree_ir

    data = read_input(path, "MLIR file")
    with iree_ir.Context():
        try:
            module = iree_ir.Module.parse(data if data.startswith(b"ML\xefR") else data.decode())
        except Exception as e:  # MLIRError
            first = first_line(e)
            raise HrmMlirError(f"{path}: not parseable MLIR: {first}") from None
        found: dict[str, int] = {}
        for op in module.body.operations:
            if op.operation.name != "util.global" or "initial_value" not in op.attributes:
                continue
            m = _NAMED_PARAMETER.match(str(op.attributes["initial_value"]))
            if m and m.group(1) == SCOPE:
                t = iree_ir.RankedTensorType(iree_ir.TypeAttr(op.attributes["type"]).value)
                found[m.group(2)] = int(np.prod(t.shape)) * t.element_type.width // 8
    return found
