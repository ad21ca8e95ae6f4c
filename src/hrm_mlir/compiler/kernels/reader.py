"""What the kernel rewrites share to read a module of linalg on tensors (an
`iree.compiler.ir.Module`): the operations in it, what defines a value, its static dims, an
op's indexing maps, and the few patterns that more than one rewrite recognizes (a zero-filled
output, a batch_matmul, a float literal).

What one rewrite alone recognizes stays in that rewrite.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BATCH_MATMUL_MAPS = (
    "affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>",
    "affine_map<(d0, d1, d2, d3) -> (d0, d3, d2)>",
    "affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>",
)


def walk(op) -> Iterator[Any]:
    """Every operation nested in `op`, in order."""
    for region in op.regions:
        for block in region.blocks:
            for child in block.operations:
                yield child.operation
                yield from walk(child.operation)


def producer_of(value) -> Any:
    """The operation defining `value`, or None for a block argument."""
    owner = value.owner
    return getattr(owner, "operation", None) if hasattr(owner, "operation") else None


def dims_of(value) -> list[int | None]:
    """The dims of shaped `value`, None for a runtime size."""
    from iree.compiler import ir

    shaped = ir.ShapedType(value.type)
    return [
        None if shaped.is_dynamic_dim(i) else shaped.get_dim_size(i) for i in range(shaped.rank)
    ]


def indexing_maps(op) -> tuple[str, ...]:
    """`op`'s indexing maps as text, () when it has none."""
    if "indexing_maps" not in op.attributes:
        return ()
    return tuple(str(m) for m in op.attributes["indexing_maps"])


def zero_filled(value) -> bool:
    """`value` is a `linalg.fill` of the float32 constant 0."""
    fill = producer_of(value)
    if fill is None or fill.name != "linalg.fill":
        return False
    scalar = producer_of(fill.operands[0])
    return (
        scalar is not None
        and scalar.name == "arith.constant"
        and str(scalar.attributes["value"]) == "0.000000e+00 : f32"
    )


def float_constant_any(value) -> float | None:
    """The value of a float constant of any width, None when `value` is not one."""
    from iree.compiler import ir

    op = producer_of(value)
    attr = None if op is None or op.name != "arith.constant" else op.attributes["value"]
    return attr.value if isinstance(attr, ir.FloatAttr) else None
