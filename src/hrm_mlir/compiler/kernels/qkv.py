"""The attention kernel's operands straight from the qkv projection, in one hand-written dispatch.

Between the qkv projection and `hrm_mlir.compiler.kernels.attention`'s kernel the exported step
has RoPE on q and k (`rotate_half` is a concat of a negated half and the other half), the split
into q, k and v, their transposes to [B, heads, S, hd], the padding of S to the attention length
P, the transpose of K, and then the packing of K^T and V as GEMM panels. IREE runs that as nine
dispatches per block, each passing the activations through memory: 141 ms of a 1,780 ms 27M
step at 82 tokens, batch 16 (`benchmarks/README.md`). `qkv_executable` reads each head's q, k
and v once and writes the kernel's three operands, zero-padded:

    Q   [B * heads, P, hd]                RoPE applied
    KTp [B * heads, P / 16, hd, 16]       K^T as GEMM panels of 16 keys, RoPE applied
    Vp  [B * heads, hd / 16, P, 16]       V as GEMM panels of 16 columns

RoPE is computed as the exporter writes it, x * cos + rotate_half(x) * sin: two products and
a sum per element, which LLVM contracts as it does IREE's code for the same linalg. The 27M step
computed with this dispatch and without it gave identical outputs (at 82 tokens, batch 16, and
901 tokens, batch 1).

`match_qkv` recognizes that code in torch-mlir's linalg (what `export` writes, and what IREE's
input conversion makes of the torch dialect): from the attention kernel's Q, K^T and V back
through the pads, transposes and slices to one `tensor.expand_shape` of the projection, [B, S,
3 * heads, hd], and the RoPE generics with their cos and sin tables. Anything else keeps IREE's
dispatches and the packs of `hrm_mlir.compiler.kernels.attention.attention_call`. The two are put
together by `hrm_mlir.compiler.kernels.fusion`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hrm_mlir.compiler.kernels.reader import (
    dims_of,
    float_constant_any,
    indexing_maps,
    producer_of,
)
from hrm_mlir.compiler.kernels.writer import (
    LANES,
    PANEL,
    Lines,
    close_executable,
    index_constants,
    memref,
    open_executable,
    panel_count,
    read_workload,
    shape_symbol,
    subspan,
    tensor,
)


@dataclass(frozen=True)
class QkvShape:
    """Q, KTp and Vp (see the module's docstring) from E [batch, seq, 3 * heads, depth], the
    projection with q, k and v as consecutive groups of `heads` heads, and with `rope` the
    tables cos and sin [seq, depth]. `batch` None is a runtime size."""

    batch: int | None
    seq: int
    heads: int
    depth: int
    length: int
    rope: bool

    @staticmethod
    def supported(seq: int, depth: int, length: int) -> bool:
        return 0 < seq <= length and length % LANES == 0 and depth % PANEL == 0

    @property
    def symbol(self) -> str:
        return shape_symbol("hrm_qkv", self, self.seq, self.heads, self.depth)

    @property
    def key_panels(self) -> int:
        return panel_count(self.length)

    @property
    def heads_batch(self) -> int | None:
        """B * heads: the attention kernel's batch."""
        return None if self.batch is None else self.batch * self.heads

    def types(self, kind: str) -> dict[str, str]:
        """`kind` ("tensor" or "memref") types of E, the tables and the three results."""
        make = tensor if kind == "tensor" else memref
        bh, p, d = self.heads_batch, self.length, self.depth
        return {
            "e": make([self.batch, self.seq, 3 * self.heads, d]),
            "table": make([self.seq, d]),
            "q": make([bh, p, d]),
            "kt": make([bh, self.key_panels, d, PANEL]),
            "v": make([bh, d // PANEL, p, PANEL]),
        }


def qkv_executable(shape: QkvShape) -> str:
    """The `stream.executable` computing `shape`: one export named `shape.symbol` with bindings
    (E, cos and sin when `shape.rope`, Q, KTp, Vp) and then, for a runtime batch, its size as
    an i32 operand. Workgroup (t, h, b) writes keys 16t.. 16t + 15 of head h of batch b."""
    if not QkvShape.supported(shape.seq, shape.depth, shape.length):
        raise ValueError(f"unsupported qkv shape {shape}")
    d, half = shape.depth, shape.depth // 2
    m = shape.types("memref")
    vec = f"vector<{LANES}xf32>"
    out = Lines()
    inputs = ["e", "cos", "sin"] if shape.rope else ["e"]
    bindings = [*inputs, "q", "kt", "v"]
    workload = ["B"] if shape.batch is None else []
    gz = "%wB" if shape.batch is None else shape.batch
    open_executable(out, shape.symbol, workload, (shape.key_panels, shape.heads, gz), bindings)
    i = 6
    constants = {
        "c0": 0,
        "c1": 1,
        "c16": PANEL,
        "cS": shape.seq,
        "cP": shape.length,
        "cD": d,
        "cH": shape.heads,
    }
    index_constants(out, i, constants)
    out.add(i, f"%zero = arith.constant dense<0.0> : {vec}")
    out.add(i, "%zs = arith.constant 0.0 : f32")
    index_constants(out, i, {f"d{j}": j for j in range(0, d, LANES)})
    index_constants(out, i, {f"vp{panel}": panel for panel in range(d // PANEL)})
    read_workload(out, i, workload)
    dyn: dict[str, str] = {}  # binding -> its runtime size
    if shape.batch is None:
        out.add(i, "%BH = arith.muli %B, %cH : index")
        dyn = {"e": "{%B}", "q": "{%BH}", "kt": "{%BH}", "v": "{%BH}"}
    for b in bindings:
        t = m["table" if b in ("cos", "sin") else b]
        subspan(out, i, b.upper(), b, t + dyn.get(b, ""))
    out.block(
        i,
        f"""
        %t = stream.dispatch.workgroup.id[0] : index
        %h = stream.dispatch.workgroup.id[1] : index
        %b = stream.dispatch.workgroup.id[2] : index
        %bh0 = arith.muli %b, %cH : index
        %bh = arith.addi %bh0, %h : index
        %hk = arith.addi %h, %cH : index
        %hv = arith.addi %hk, %cH : index
        %s0 = arith.muli %t, %c16 : index
        %kbuf = memref.alloca() : memref<{d}xf32>
        scf.for %j = %c0 to %c16 step %c1 {{
          %s = arith.addi %s0, %j : index
          %real = arith.cmpi ult, %s, %cS : index
          scf.if %real {{
        """,
    )
    i += 4
    # q -> Q[bh, s, :]; k -> kbuf, then KTp[bh, t, :, j]; RoPE on both
    for head, store in (("%h", "q"), ("%hk", "k")):
        for j in range(0, half if shape.rope else d, LANES):
            x1 = out.fresh("x")
            out.add(i, f"{x1} = vector.load %E[%b, %s, {head}, %d{j}] : {m['e']}, {vec}")
            results = [(j, x1)]
            if shape.rope:
                x2 = out.fresh("x")
                out.add(i, f"{x2} = vector.load %E[%b, %s, {head}, %d{j + half}] : {m['e']}, {vec}")
                results = [
                    (j, _rotate(out, i, x1, x2, j, negate=True, m=m)),
                    (j + half, _rotate(out, i, x2, x1, j + half, negate=False, m=m)),
                ]
            for col, value in results:
                if store == "q":
                    out.add(i, f"vector.store {value}, %Q[%bh, %s, %d{col}] : {m['q']}, {vec}")
                else:
                    out.add(i, f"vector.store {value}, %kbuf[%d{col}] : memref<{d}xf32>, {vec}")
    out.block(
        i,
        f"""
        scf.for %dd = %c0 to %cD step %c1 {{
          %kx = memref.load %kbuf[%dd] : memref<{d}xf32>
          memref.store %kx, %KT[%bh, %t, %dd, %j] : {m["kt"]}
        }}
        """,
    )
    # v -> Vp[bh, panel, s, :]
    for j in range(0, d, LANES):
        panel, col = divmod(j, PANEL)
        x = out.fresh("x")
        out.add(i, f"{x} = vector.load %E[%b, %s, %hv, %d{j}] : {m['e']}, {vec}")
        out.add(i, f"vector.store {x}, %V[%bh, %vp{panel}, %s, %d{col}] : {m['v']}, {vec}")
    i -= 2
    out.add(i, "} else {")
    i += 2
    # padding: zero rows of Q and Vp below P, zero keys of KTp (its last panel may pass P)
    out.add(i, "%inP = arith.cmpi ult, %s, %cP : index")
    out.add(i, "scf.if %inP {")
    for j in range(0, d, LANES):
        panel, col = divmod(j, PANEL)
        out.add(i + 2, f"vector.store %zero, %Q[%bh, %s, %d{j}] : {m['q']}, {vec}")
        out.add(i + 2, f"vector.store %zero, %V[%bh, %vp{panel}, %s, %d{col}] : {m['v']}, {vec}")
    out.add(i, "}")
    out.block(
        i,
        f"""
        scf.for %dd = %c0 to %cD step %c1 {{
          memref.store %zs, %KT[%bh, %t, %dd, %j] : {m["kt"]}
        }}
        """,
    )
    i -= 2
    out.add(i, "}")
    i -= 2
    out.add(i, "}")
    out.add(i, "return")
    close_executable(out)
    return out.text()


def _rotate(out: Lines, i: int, x: str, other: str, col: int, *, negate: bool, m) -> str:
    """x * cos + r * sin at columns `col`.. of row %s, r = -other (`negate`) or other: the
    exporter's `qk * cos + rotate_half(qk) * sin`, rounded as it is."""
    vec = f"vector<{LANES}xf32>"
    c, s, a, r, b, y = (out.fresh(n) for n in ("cos", "sin", "xc", "r", "rs", "y"))
    out.add(i, f"{c} = vector.load %COS[%s, %d{col}] : {m['table']}, {vec}")
    out.add(i, f"{s} = vector.load %SIN[%s, %d{col}] : {m['table']}, {vec}")
    out.add(i, f"{a} = arith.mulf {x}, {c} : {vec}")
    if negate:
        out.add(i, f"{r} = arith.negf {other} : {vec}")
    else:
        r = other
    out.add(i, f"{b} = arith.mulf {r}, {s} : {vec}")
    out.add(i, f"{y} = arith.addf {a}, {b} : {vec}")
    return y


def qkv_dispatch(out: Lines, i: int, shape: QkvShape, e: str, tables: tuple[str, str]) -> None:
    """%q, %ktp, %vp = `shape`'s dispatch on E `e` (and the [seq, depth] `tables`), written in a
    function body at indent `i`; a runtime batch is taken from `e` (%qB) and B * heads is %qBH."""
    t = shape.types("tensor")
    operands = [e, *tables] if shape.rope else [e]
    types = [t["e"], t["table"], t["table"]] if shape.rope else [t["e"]]
    results = f"({t['q']}, {t['kt']}, {t['v']})"
    target = f"@{shape.symbol}::@{shape.symbol}"
    if shape.batch is None:
        out.block(
            i,
            f"""
            %qc0 = arith.constant 0 : index
            %qH = arith.constant {shape.heads} : index
            %qB = tensor.dim {e}, %qc0 : {t["e"]}
            %qBH = arith.muli %qB, %qH : index
            %qiB = arith.index_cast %qB : index to i32
            """,
        )
        types[0] += "{%qB}"
        results = f"({t['q']}{{%qBH}}, {t['kt']}{{%qBH}}, {t['v']}{{%qBH}})"
        out.add(i, f"%q, %ktp, %vp = flow.dispatch {target}[%qB]({', '.join(operands)}, %qiB) "
                   f": ({', '.join(types)}, i32) -> {results}")  # fmt: skip
    else:
        out.add(i, f"%q, %ktp, %vp = flow.dispatch {target}({', '.join(operands)}) "
                   f": ({', '.join(types)}) -> {results}")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Recognizing the code it replaces (torch-mlir's linalg)


@dataclass(frozen=True)
class QkvMatch:
    e: Any  # [B, S, 3 * heads, hd]
    cos: Any  # [S, 1, hd] (or None without RoPE)
    sin: Any
    shape: QkvShape


def _op(value, name: str) -> Any:
    op = producer_of(value)
    return op if op is not None and op.name == name else None


def _ints(attr) -> list[int]:
    return [int(x) for x in attr]


def _zero_pad(value, length: int) -> Any:
    """X when `value` = X [.., S, hd] zero-padded at the end of dim 2 to `length`."""
    op = _op(value, "tensor.pad")
    if op is None or len(op.operands) != 1:
        return None
    low, high = _ints(op.attributes["static_low"]), _ints(op.attributes["static_high"])
    seq = dims_of(op.operands[0])[2]
    if any(low) or high[:2] != [0, 0] or high[3:] != [0] or seq is None or seq + high[2] != length:
        return None
    body = list(op.regions[0].blocks[0].operations)
    if len(body) != 1 or float_constant_any(body[0].operation.operands[0]) != 0.0:
        return None
    return op.operands[0]


def _transposed(value, perm: list[int]) -> Any:
    op = _op(value, "linalg.transpose")
    if op is None or _ints(op.attributes["permutation"]) != perm:
        return None
    return op.operands[0]


def _collapsed_heads(value) -> Any:
    """X when `value` = X [B, heads, .., ..] with B and heads collapsed."""
    op = _op(value, "tensor.collapse_shape")
    if op is None or str(op.attributes["reassociation"]) != "[[0, 1], [2], [3]]":
        return None
    return op.operands[0]


def _head_slice(value, heads: int) -> tuple[Any, int] | None:
    """(X, g) when `value` = X[:, :, g:g + heads, :], a slice of whole dims but the third."""
    op = _op(value, "tensor.extract_slice")
    if op is None or any(s != 1 for s in _ints(op.attributes["static_strides"])):
        return None
    offsets = _ints(op.attributes["static_offsets"])
    src, dims = dims_of(op.operands[0]), dims_of(op.results[0])
    if offsets[:2] != [0, 0] or offsets[3] != 0 or dims[2] != heads:
        return None
    if dims[1] != src[1] or dims[3] != src[3]:
        return None
    return op.operands[0], offsets[2]


def _from_heads(value, heads: int) -> tuple[Any, int] | None:
    """(X, g) when `value` = X[:, :, g:g + heads, :] transposed to [B, heads, S, hd]."""
    v = _transposed(value, [0, 2, 1, 3])
    return None if v is None else _head_slice(v, heads)


def _elementwise(value, name: str) -> Any:
    """The generic making `value` when its body is one `name` of its block arguments."""
    op = _op(value, "linalg.generic")
    if op is None:
        return None
    body = [o.operation for o in op.regions[0].blocks[0].operations]
    args = list(op.regions[0].blocks[0].arguments)
    if len(body) != 2 or body[0].name != name or body[1].name != "linalg.yield":
        return None
    if body[1].operands[0] != body[0].results[0]:
        return None
    if not all(any(x == a for a in args[:-1]) for x in body[0].operands):
        return None
    if any(str(t) != "#linalg.iterator_type<parallel>" for t in op.attributes["iterator_types"]):
        return None
    return op


_ID4 = "affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>"
_TABLE4 = "affine_map<(d0, d1, d2, d3) -> (d1, 0, d3)>"


def _times_table(value) -> tuple[Any, Any] | None:
    """(X, T) when `value` = X * T with T [S, 1, hd] broadcast over batch and heads."""
    op = _elementwise(value, "arith.mulf")
    if op is None or len(op.operands) != 3:
        return None
    maps = indexing_maps(op)
    if maps == (_ID4, _TABLE4, _ID4):
        return op.operands[0], op.operands[1]
    if maps == (_TABLE4, _ID4, _ID4):
        return op.operands[1], op.operands[0]
    return None


def _rotated_half(value) -> Any:
    """X when `value` = cat(-X[..., h:], X[..., :h]) along the last dim (`rotate_half`)."""
    cat = _op(value, "tensor.concat")
    if cat is None or len(cat.operands) != 2 or int(cat.attributes["dim"].value) != 3:
        return None
    neg = _elementwise(cat.operands[0], "arith.negf")
    if neg is None or indexing_maps(neg) != (_ID4, _ID4):
        return None
    halves = []
    for part in (neg.operands[0], cat.operands[1]):
        op = _op(part, "tensor.extract_slice")
        if op is None or any(s != 1 for s in _ints(op.attributes["static_strides"])):
            return None
        halves.append((op.operands[0], _ints(op.attributes["static_offsets"]), dims_of(part)))
    (x_hi, off_hi, d_hi), (x_lo, off_lo, d_lo) = halves
    full = dims_of(x_hi)
    if full[3] is None or full[3] % 2:
        return None
    half = full[3] // 2
    if x_hi != x_lo or d_hi[1:] != [*full[1:3], half]:
        return None
    if off_hi != [0, 0, 0, half] or off_lo != [0, 0, 0, 0] or d_lo[1:] != d_hi[1:]:
        return None
    return x_hi


def _rope(value) -> tuple[Any, Any, Any] | None:
    """(X, cos, sin) when `value` = X * cos + rotate_half(X) * sin."""
    add = _elementwise(value, "arith.addf")
    if add is None or len(add.operands) != 3 or indexing_maps(add) != (_ID4, _ID4, _ID4):
        return None
    for a, b in ((add.operands[0], add.operands[1]), (add.operands[1], add.operands[0])):
        plain, rotated = _times_table(a), _times_table(b)
        if plain is None or rotated is None:
            continue
        x = _rotated_half(rotated[0])
        if x is not None and x == plain[0]:
            return x, plain[1], rotated[1]
    return None


def match_qkv(q, kt, v, length: int, keys: int) -> QkvMatch | None:
    """The projection and RoPE tables that the attention kernel's Q [B * heads, P, hd], K^T
    [B * heads, hd, P] and V [B, heads, P, hd] come from, when they come from them by the code
    `qkv_executable` replaces and the padded keys (from `keys` on) are exactly the masked ones."""
    heads = dims_of(v)[1]
    if heads is None:
        return None
    q4 = _collapsed_heads(q)
    kt4 = _collapsed_heads(kt)
    k4 = None if kt4 is None else _transposed(kt4, [0, 1, 3, 2])
    found = []
    for x in (q4, k4, v):
        x = None if x is None else _zero_pad(x, length)
        found.append(None if x is None else _from_heads(x, heads))
    if any(f is None for f in found):
        return None
    (qs, qg), (ks, kg), (vs, vg) = found  # type: ignore[misc]
    if (qg, kg, vg) != (0, heads, 2 * heads) or qs != ks:
        return None
    e = vs
    rope = _rope(qs)
    cos = sin = None
    if rope is not None:
        qk, cos, sin = rope
        sliced = _head_slice(qk, 2 * heads)
        if sliced is None or sliced != (e, 0):
            return None
    elif qs != e:
        return None
    expand = _op(e, "tensor.expand_shape")
    b, s, groups, depth = dims_of(e)
    if expand is None or groups != 3 * heads or s != keys or depth is None:
        return None
    if not QkvShape.supported(s, depth, length):  # type: ignore[arg-type]
        return None
    if rope is not None and any(dims_of(t) != [s, 1, depth] for t in (cos, sin)):
        return None
    shape = QkvShape(b, s, heads, depth, length, rope is not None)  # type: ignore[arg-type]
    return QkvMatch(e, cos, sin, shape)
