"""The attention kernel (`hrm_mlir.compiler.kernels.attention`) and the dispatch making its q, k
and v from the qkv projection (`hrm_mlir.compiler.kernels.qkv`), put in place of the code they
replace in a module of linalg on tensors: `fuse_attention`.

Each attention that `match_attention` recognizes becomes a call of a private function: with
`match_qkv`'s projection, `attention_qkv_call` (the qkv dispatch, then the kernel on its
packed operands); else `hrm_mlir.compiler.kernels.attention.attention_call` (IREE's code makes q,
k and v, the function packs K^T and V). The code that only the attention read is then erased.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hrm_mlir.compiler.kernels.attention import (
    AttentionShape,
    attention_call,
    attention_dispatch,
    attention_executable,
    match_attention,
)
from hrm_mlir.compiler.kernels.qkv import QkvShape, match_qkv, qkv_dispatch, qkv_executable
from hrm_mlir.compiler.kernels.reader import dims_of, producer_of, walk
from hrm_mlir.compiler.kernels.writer import Lines, tensor


def attention_qkv_call(name: str, shape: AttentionShape, qkv: QkvShape) -> str:
    """A private function `@name(E, cos, sin) -> O` (`@name(E) -> O` without RoPE): `qkv`'s
    dispatch makes the kernel's operands from the projection E and the [S, 1, hd] tables, then
    `shape`'s kernel runs on them."""
    t = qkv.types("tensor")
    table = tensor([qkv.seq, 1, qkv.depth])
    o_t = tensor(shape.dims(shape.length, shape.n + shape.sums))
    out = Lines()
    if qkv.rope:
        out.add(0, f"func.func private @{name}(%e: {t['e']}, %cos: {table}, %sin: {table}) "
                   f"-> {o_t} {{")  # fmt: skip
        for x in ("cos", "sin"):
            out.add(2, f"%{x}2 = tensor.collapse_shape %{x} [[0], [1, 2]] : {table} "
                       f"into {t['table']}")  # fmt: skip
    else:
        out.add(0, f"func.func private @{name}(%e: {t['e']}) -> {o_t} {{")
    qkv_dispatch(out, 2, qkv, "%e", ("%cos2", "%sin2"))
    attention_dispatch(out, shape, kt="%ktp", r="%vp")
    out.add(0, "}")
    return out.text()


def fuse_attention(module, isa: str = "avx2") -> list[tuple[AttentionShape, QkvShape | None]]:
    """Replace each attention of `module` (an `iree.compiler.ir.Module` of linalg on tensors)
    that the kernel serves by a dispatch of it, written for `isa`'s vectors
    (`hrm_mlir.compiler.kernels.writer.ISAS`), and the code making its q, k and v from the qkv
    projection by `hrm_mlir.compiler.kernels.qkv`'s dispatch where that recognizes it; returns
    the shape of each attention replaced, and of the qkv dispatch (or None)."""
    from iree.compiler import ir

    f32 = ir.F32Type.get(module.context)
    matches = [m for op in walk(module.operation) if (m := match_attention(op)) is not None]
    matches = [
        replace(m, shape=replace(m.shape, isa=isa)) for m in matches
        if all(ir.ShapedType(v.type).element_type == f32 for v in (m.q, m.kt, m.r))
    ]  # fmt: skip
    if not matches:
        return []
    # q, k and v straight from the projection where the code between is the exporter's
    prepared = [
        None if m.v is None else match_qkv(m.q, m.kt, m.v, m.shape.length, m.shape.keys)
        for m in matches
    ]
    sources: list[str] = []
    helpers: dict[tuple, str] = {}  # (kernel, qkv kernel or None) -> the function calling it
    executables: set[str] = set()
    for m, qkv in zip(matches, prepared, strict=True):
        key = (m.shape, None if qkv is None else qkv.shape)
        if key in helpers:
            continue
        helpers[key] = name = f"hrm_attention_call_{len(helpers)}"
        if m.shape.symbol not in executables:
            executables.add(m.shape.symbol)
            sources.append(attention_executable(m.shape))
        if qkv is None:
            sources.append(attention_call(name, m.shape))
            continue
        if qkv.shape.symbol not in executables:
            executables.add(qkv.shape.symbol)
            sources.append(qkv_executable(qkv.shape))
        sources.append(attention_qkv_call(name, m.shape, qkv.shape))
    extra = ir.Module.parse("\n".join(sources), module.context)
    anchor = list(module.body.operations)[-1].operation
    for op in list(extra.body.operations):
        op.operation.move_after(anchor)
        anchor = op.operation
    for m, qkv in zip(matches, prepared, strict=True):
        with ir.InsertionPoint(m.op), m.op.location:
            if qkv is not None:
                operands = [qkv.e, qkv.cos, qkv.sin] if qkv.shape.rope else [qkv.e]
            else:
                r = m.r
                if m.v is not None:  # V [B, heads, P, hd] -> [B * heads, P, hd]
                    v_dims = dims_of(m.v)
                    r = ir.Operation.create(
                        "tensor.collapse_shape",
                        results=[ir.Type.parse(tensor([m.shape.batch, *v_dims[2:]]))],
                        operands=[m.v],
                        attributes={"reassociation": ir.Attribute.parse("[[0, 1], [2], [3]]")},
                    ).result
                operands = [m.q, m.kt, r]
            key = (m.shape, None if qkv is None else qkv.shape)
            call = ir.Operation.create(
                "func.call",
                results=[m.op.results[0].type],
                operands=operands,
                attributes={"callee": ir.FlatSymbolRefAttr.get(helpers[key])},
            )
        m.op.results[0].replace_all_uses_with(call.result)
        operands = list(m.op.operands)
        m.op.erase()
        _erase_dead(operands)
    return [
        (m.shape, None if q is None else q.shape) for m, q in zip(matches, prepared, strict=True)
    ]


# ops without side effects that `_erase_dead` may remove once nothing reads them
_PURE = ("linalg.generic", "linalg.fill", "linalg.batch_matmul", "linalg.transpose", "tensor.empty",
         "tensor.concat", "tensor.pad", "tensor.extract_slice", "tensor.expand_shape",
         "tensor.collapse_shape", "arith.constant")  # fmt: skip


def _erase_dead(values: list[Any]) -> None:
    """Erase the producers of `values` that nothing reads any more, and theirs in turn."""
    work = [op for v in values if (op := producer_of(v)) is not None]
    while work:
        op = work.pop()
        if op.name not in _PURE or any(list(r.uses) for r in op.results):
            continue
        operands = list(op.operands)
        work = [w for w in work if w != op]  # it may be there twice: never touch it erased
        op.erase()
        work += [p for v in operands if (p := producer_of(v)) is not None]
