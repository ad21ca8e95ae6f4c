"""Attention as one hand-written IREE dispatch (llvm-cpu, AVX2 + FMA, and AVX-512).

The exporter writes attention normalized after P @ V (`hrm_mlir.models.hrm._normalized_after_pv`):

    T = mask(scale * Q @ K^T)            keys from `keys` on set to -inf
    O = exp(T - rowmax(T)) @ [V | 1]     the ones columns give the row sums

IREE runs that as three dispatches that pass the [P, P] score matrix of each head through
memory: Q K^T writes it, the max/exp dispatch reads it twice and writes P, and P @ V reads it
again. At 901 tokens that is 3.3 MB per head, past a core's L2, and attention took 456 ms of
the 27M step where ONNX Runtime's took ~356 (`benchmarks/README.md`). The kernel here keeps
the scores of 6 query rows (6 x P floats, 21.7 KB at P = 904) in a stack buffer in L1: it
computes them on the same 6x16 register tiles as `hrm_mlir.compiler.kernels.gemm`, exponentiates
them in place, and multiplies them by [V | 1], so the scores never leave the core. Each workgroup
takes 6 rows of one head; K^T and V of a head (2 x 231 KB at P = 904) stay in L2 across the
workgroups of that head.

For AVX-512 targets (`isa="avx512"`) the same code is written with 16-lane vectors: the
scores and P @ V on tiles of 6 rows x 2 panels of one zmm (12 accumulators, as the AVX2
tiles have), and the exp, masks and row sums 16 lanes at a time. At 901 tokens that took the
27M step's attention from 252 to 155 ms on an AVX-512 Xeon (`benchmarks/README.md`).

`match_attention` finds the pattern in linalg on tensors (torch-mlir's lowering, or IREE's input
conversion of the torch dialect), and `hrm_mlir.compiler.kernels.fusion.fuse_attention` replaces it
with a dispatch of `attention_executable`; the division by the row sums stays IREE's. Anything
else is left to `hrm_mlir.compiler.kernels.gemm`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from hrm_mlir.compiler.kernels.reader import (
    BATCH_MATMUL_MAPS,
    dims_of,
    float_constant_any,
    indexing_maps,
    producer_of,
    zero_filled,
)
from hrm_mlir.compiler.kernels.writer import (
    LANES,
    PANEL,
    ROWS,
    Lines,
    Panels,
    VectorIsa,
    ceil_to,
    close_executable,
    index_constants,
    memref,
    open_executable,
    pack,
    panel_count,
    read_workload,
    register_tile,
    shape_symbol,
    subspan,
    tensor,
)

# The score buffer lives on the stack of the dispatch: 6 rows of P floats must stay well inside
# IREE's stack limit (`SAFE_STACK_BYTES`) and L1 (32 KB).
MAX_SCORE_BYTES = 24 * 1024


@dataclass(frozen=True)
class AttentionShape(VectorIsa):
    """O[b] = exp(T - rowmax(T)) @ [R[b] | 1] with T = mask(scale * Q[b] @ KT[b]), float32.

    Q [batch, length, depth], KT [batch, depth, length], R [batch, length, n], O [batch,
    length, n + sums]: its last `sums` columns are the row sums of exp(T - rowmax(T)), the
    product with `sums` columns of ones. Keys `keys`.. of each row are masked (-inf). `batch`
    None is a runtime size.
    """

    batch: int | None
    length: int
    depth: int
    n: int
    keys: int
    scale: float
    sums: int = 0
    isa: str = "avx2"  # the vector width of the code (`hrm_mlir.compiler.kernels.writer.ISAS`)

    @property
    def pv_panels(self) -> int:
        """Output panels per P @ V register tile: 2 with zmm (12 accumulators), else 1."""
        return 2 if self.vectors == 1 else 1

    @staticmethod
    def supported(length: int, n: int, keys: int) -> bool:
        return (
            length % LANES == 0
            and n % LANES == 0
            and 0 < keys <= length
            and ROWS * ceil_to(length, PANEL) * 4 <= MAX_SCORE_BYTES
        )

    @property
    def symbol(self) -> str:
        return shape_symbol("hrm_attention", self, self.length, self.depth, self.n)

    @property
    def key_panels(self) -> int:
        return panel_count(self.length)

    @property
    def out_panels(self) -> int:
        return panel_count(self.n)

    @property
    def kt_panels(self) -> Panels:
        """KT [batch, depth, length] packed as a GEMM right-hand side: K = depth."""
        return Panels(self.batch, self.depth, self.length)

    @property
    def r_panels(self) -> Panels:
        """R [batch, length, n] packed as a GEMM right-hand side: K = length."""
        return Panels(self.batch, self.length, self.n)

    def dims(self, *rest: int | None) -> list[int | None]:
        return [self.batch, *rest]


# exp(x) for x <= 0 as 2^n * q(r), n = round(x log2 e), r = x - n ln 2 (|r| <= ln 2 / 2), q the
# Cephes expf polynomial: within 2 ulp of the exact value. Below `_EXP_FLOOR` (exp < 1.2e-38,
# and -inf for the masked keys) it gives 0. `math.exp` itself is not expanded in a dispatch
# written by hand: LLVM calls libm's scalar exp for each lane.
_EXP_FLOOR = -87.0
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4
_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
             1.6666665459e-1, 5.0000001201e-1)  # fmt: skip


def _exp(out: Lines, i: int, x: str, result: str, lanes: int = LANES) -> None:
    """`result` = exp(`x`), a vector of `lanes` floats, written with the constants from
    `_exp_constants`."""
    vec, ivec = f"vector<{lanes}xf32>", f"vector<{lanes}xi32>"
    out.block(
        i,
        f"""
        %ex_low = arith.cmpf olt, {x}, %ex_floor : {vec}
        %ex_x = arith.maximumf {x}, %ex_floor : {vec}
        %ex_t = vector.fma %ex_x, %ex_log2e, %ex_half : {vec}
        %ex_n = math.floor %ex_t : {vec}
        %ex_r1 = vector.fma %ex_n, %ex_nln2hi, %ex_x : {vec}
        %ex_r = vector.fma %ex_n, %ex_nln2lo, %ex_r1 : {vec}
        %ex_p1 = vector.fma %ex_c0, %ex_r, %ex_c1 : {vec}
        %ex_p2 = vector.fma %ex_p1, %ex_r, %ex_c2 : {vec}
        %ex_p3 = vector.fma %ex_p2, %ex_r, %ex_c3 : {vec}
        %ex_p4 = vector.fma %ex_p3, %ex_r, %ex_c4 : {vec}
        %ex_p5 = vector.fma %ex_p4, %ex_r, %ex_c5 : {vec}
        %ex_rr = arith.mulf %ex_r, %ex_r : {vec}
        %ex_r1p = arith.addf %ex_r, %ex_one : {vec}
        %ex_q = vector.fma %ex_p5, %ex_rr, %ex_r1p : {vec}
        %ex_ni = arith.fptosi %ex_n : {vec} to {ivec}
        %ex_nb = arith.addi %ex_ni, %ex_bias : {ivec}
        %ex_bits = arith.shli %ex_nb, %ex_shift : {ivec}
        %ex_pow = arith.bitcast %ex_bits : {ivec} to {vec}
        %ex_v = arith.mulf %ex_q, %ex_pow : {vec}
        {result} = arith.select %ex_low, %zero, %ex_v : vector<{lanes}xi1>, {vec}
        """,
    )


def _exp_constants(out: Lines, i: int, lanes: int = LANES) -> None:
    vec, ivec = f"vector<{lanes}xf32>", f"vector<{lanes}xi32>"
    values = {
        "floor": _EXP_FLOOR,
        "log2e": 1.44269504088896341,
        "half": 0.5,
        "nln2hi": -_LN2_HI,
        "nln2lo": -_LN2_LO,
        "one": 1.0,
        **{f"c{j}": c for j, c in enumerate(_EXP_POLY)},
    }
    for name, value in values.items():
        out.add(i, f"%ex_{name} = arith.constant dense<{value!r}> : {vec}")
    out.add(i, f"%ex_bias = arith.constant dense<127> : {ivec}")
    out.add(i, f"%ex_shift = arith.constant dense<23> : {ivec}")


def attention_executable(shape: AttentionShape) -> str:
    """The `stream.executable` computing `shape`: one export named `shape.symbol` with bindings
    (Q, KT packed, R packed, O) and then, for a runtime batch, its size as an i32 operand.

    KT and R come packed like `hrm_mlir.compiler.kernels.gemm`'s right-hand sides: [batch,
    panel, K, 16], zero-padded to whole panels (`shape.kt_panels`, K = depth, its P columns in
    `shape.key_panels` panels; `shape.r_panels`, K = length, its n columns in
    `shape.out_panels`).
    """
    if not AttentionShape.supported(shape.length, shape.n, shape.keys):
        raise ValueError(f"unsupported attention shape {shape}")
    p, d, width = shape.length, shape.depth, shape.key_panels * PANEL
    q_t = memref(shape.dims(p, d))
    kt_t = memref(shape.dims(shape.key_panels, d, PANEL))
    r_t = memref(shape.dims(shape.out_panels, p, PANEL))
    o_t = memref(shape.dims(p, shape.n + shape.sums))
    s_t = f"memref<{ROWS}x{width}xf32>"
    lanes = shape.lanes
    vec, ivec = f"vector<{lanes}xf32>", f"vector<{lanes}xi32>"
    vectors = shape.vectors
    out = Lines()
    workload = ["B"] if shape.batch is None else []
    gz = "%wB" if shape.batch is None else shape.batch
    open_executable(out, shape.symbol, workload, (-(-p // ROWS), 1, gz), ("q", "k", "r", "o"))
    i = 6
    constants = {
        "c0": 0,
        "c1": 1,
        "c8": LANES,
        "c16": PANEL,
        "cL": lanes,
        "cR": ROWS,
        "cD": d,
        "cKeys": shape.keys,
        "cKP": shape.key_panels,
        "cW": width,
        "cLastRow": p - 1,
    }
    index_constants(out, i, constants)
    out.block(
        i,
        f"""
        %zero = arith.constant dense<0.0> : {vec}
        %ninf = arith.constant dense<0xFF800000> : {vec}
        %scale = arith.constant dense<{shape.scale!r}> : {vec}
        %iota = arith.constant dense<{list(range(lanes))}> : {ivec}
        %keys = arith.constant dense<{shape.keys}> : {ivec}
        """,
    )
    _exp_constants(out, i, lanes)
    read_workload(out, i, workload)
    dyn = "{%B}" if shape.batch is None else ""
    for name, binding, t in (("Q", "q", q_t), ("KT", "k", kt_t), ("R", "r", r_t), ("O", "o", o_t)):
        subspan(out, i, name, binding, t + dyn)
    out.block(
        i,
        f"""
        %g = stream.dispatch.workgroup.id[0] : index
        %b = stream.dispatch.workgroup.id[2] : index
        %m0 = arith.muli %g, %cR : index
        %S = memref.alloca() : {s_t}
        """,
    )
    # rows past the end repeat the last row: the same values, stored to the same place
    for r in range(ROWS):
        out.add(i, f"%sr{r} = arith.constant {r} : index")
        out.add(i, f"%ru{r} = arith.addi %m0, %sr{r} : index")
        out.add(i, f"%row{r} = arith.minui %ru{r}, %cLastRow : index")
    # 1. S[r, c] = scale * Q[row r] . KT[:, c], keys from `keys` on -inf; the row maxima. With
    # zmm, two key panels per register tile (12 accumulators), then an odd last one.
    types = ", ".join([vec] * ROWS)
    step = shape.pv_panels
    pairs, odd = divmod(shape.key_panels, step)
    maxima = [f"%mx{r}" for r in range(ROWS)]
    if pairs:
        carried = ", ".join(f"%mx{r} = %ninf" for r in range(ROWS))
        out.add(i, f"%cPairs = arith.constant {pairs} : index")
        out.add(i, f"%cStep = arith.constant {step} : index")
        out.add(
            i,
            f"%max:{ROWS} = scf.for %jp = %c0 to %cPairs step %c1 iter_args({carried}) "
            f"-> ({types}) {{",
        )
        out.add(i + 2, "%js0 = arith.muli %jp, %cStep : index")
        panels = ["%js0"]
        if step == 2:
            out.add(i + 2, "%js1 = arith.addi %js0, %c1 : index")
            panels.append("%js1")
        new = _scores(out, i + 2, shape, panels, maxima, (q_t, kt_t, s_t), "")
        out.add(i + 2, f"scf.yield {', '.join(new)} : {types}")
        out.add(i, "}")
        maxima = [f"%max#{r}" for r in range(ROWS)]
    else:
        for r in range(ROWS):
            out.add(i, f"%mx{r} = arith.addf %ninf, %zero : {vec}")
    if odd:
        out.add(i, f"%jlast = arith.constant {shape.key_panels - 1} : index")
        maxima = _scores(out, i, shape, ["%jlast"], maxima, (q_t, kt_t, s_t), "_last")
    # 2. S[r, :] = exp(S[r, :] - max S[r, :]), and its sum
    half = f"vector<{LANES}xf32>"
    for r in range(ROWS):
        out.add(i, f"%mr{r} = vector.reduction <maximumf>, {maxima[r]} : {vec} into f32")
        out.add(i, f"%mv{r} = vector.broadcast %mr{r} : f32 to {vec}")
        out.add(
            i, f"%l{r} = scf.for %c = %c0 to %cW step %cL iter_args(%acc = %zero) -> ({vec}) {{"
        )
        out.add(i + 2, f"%x = vector.load %S[%sr{r}, %c] : {s_t}, {vec}")
        out.add(i + 2, f"%y = arith.subf %x, %mv{r} : {vec}")
        _exp(out, i + 2, "%y", "%e", lanes)
        out.add(i + 2, f"vector.store %e, %S[%sr{r}, %c] : {s_t}, {vec}")
        out.add(i + 2, f"%sum = arith.addf %acc, %e : {vec}")
        out.add(i + 2, f"scf.yield %sum : {vec}")
        out.add(i, "}")
        if shape.sums:
            out.add(i, f"%ls{r} = vector.reduction <add>, %l{r} : {vec} into f32")
            out.add(i, f"%lv{r} = vector.broadcast %ls{r} : f32 to {half}")
            for col in range(shape.n, shape.n + shape.sums, LANES):
                out.add(i, f"%sc{r}_{col} = arith.constant {col} : index")
                out.add(i, f"vector.store %lv{r}, %O[%b, %row{r}, %sc{r}_{col}] : {o_t}, {half}")
    # 3. O[row r, :] = S[r, :keys] @ R[:keys, :] (the masked keys would add exactly 0), on
    # `pv_panels` output panels per register tile
    for first in range(0, shape.out_panels, shape.pv_panels):
        out_panels = range(first, min(first + shape.pv_panels, shape.out_panels))
        res = f"%o{first}"
        loads = []
        for panel in out_panels:
            out.add(i, f"%pn{panel} = arith.constant {panel} : index")
            loads += [
                f"vector.load %R[%b, %pn{panel}, %k, %c{lanes * h}] : {r_t}, {vec}"
                for h in range(vectors)
            ]
        rows = [f"memref.load %S[%sr{r}, %k] : {s_t}" for r in range(ROWS)]
        register_tile(out, i, res, "%cKeys", loads, rows, lanes=lanes)
        per_row = len(loads)
        for slot, panel in enumerate(out_panels):
            for h in range(vectors):
                col = panel * PANEL + h * lanes
                if col >= shape.n:
                    continue  # padding
                oc = f"%oc{panel}_{h}"
                out.add(i, f"{oc} = arith.constant {col} : index")
                for r in range(ROWS):
                    value = f"{res}#{per_row * r + vectors * slot + h}"
                    if col + lanes <= shape.n:
                        out.add(i, f"vector.store {value}, %O[%b, %row{r}, {oc}] : {o_t}, {vec}")
                        continue
                    # a zmm whose upper 8 columns are padding: its lower 8 are stored
                    low = out.fresh("low")
                    out.add(
                        i,
                        f"{low} = vector.extract_strided_slice {value} offsets = [0], "
                        f"sizes = [{LANES}], strides = [1] : {vec} to {half}",
                    )
                    out.add(i, f"vector.store {low}, %O[%b, %row{r}, {oc}] : {o_t}, {half}")
    out.add(i, "return")
    close_executable(out)
    return out.text()


def _scores(
    out: Lines,
    i: int,
    shape: AttentionShape,
    panels: list[str],
    maxima: list[str],
    types: tuple[str, str, str],
    tag: str,
) -> list[str]:
    """One register tile of phase 1 over the key `panels` (index values): the scaled, masked
    scores of the 6 rows stored in S, and the row maxima updated from `maxima`; returns the
    names of the new maxima."""
    q_t, kt_t, s_t = types
    lanes, vectors = shape.lanes, shape.vectors
    vec, ivec, bvec = (f"vector<{lanes}x{t}>" for t in ("f32", "i32", "i1"))
    loads = [
        f"vector.load %KT[%b, {pv}, %k, %c{lanes * h}] : {kt_t}, {vec}"
        for pv in panels
        for h in range(vectors)
    ]
    rows = [f"memref.load %Q[%b, %row{r}, %k] : {q_t}" for r in range(ROWS)]
    res = f"%s{tag}"
    register_tile(out, i, res, "%cD", loads, rows, lanes=lanes)
    slots = [(t, h) for t in range(len(panels)) for h in range(vectors)]
    for t, pv in enumerate(panels):
        out.add(i, f"%cp{tag}{t} = arith.muli {pv}, %c16 : index")
    for t, h in slots:
        col, offset = f"%col{tag}{t}_{h}", "%c8" if h else "%c0"  # a ymm's 8 columns from 8
        out.block(
            i,
            f"""
            {col} = arith.addi %cp{tag}{t}, {offset} : index
            %ci{tag}{t}_{h} = arith.index_cast {col} : index to i32
            %cv{tag}{t}_{h} = vector.broadcast %ci{tag}{t}_{h} : i32 to {ivec}
            %ki{tag}{t}_{h} = arith.addi %cv{tag}{t}_{h}, %iota : {ivec}
            %masked{tag}{t}_{h} = arith.cmpi sge, %ki{tag}{t}_{h}, %keys : {ivec}
            """,
        )
    new = []
    for r in range(ROWS):
        m = maxima[r]
        for n, (t, h) in enumerate(slots):
            x = f"{tag}{r}_{t}_{h}"
            out.block(
                i,
                f"""
                %sc{x} = arith.mulf {res}#{len(slots) * r + n}, %scale : {vec}
                %sm{x} = arith.select %masked{tag}{t}_{h}, %ninf, %sc{x} : {bvec}, {vec}
                vector.store %sm{x}, %S[%sr{r}, %col{tag}{t}_{h}] : {s_t}, {vec}
                %m{x} = arith.maximumf {m}, %sm{x} : {vec}
                """,
            )
            m = f"%m{x}"
        new.append(m)
    return new


# ---------------------------------------------------------------------------------------------
# The rewrite


@dataclass(frozen=True)
class AttentionMatch:
    """P @ R (`op`, a batch_matmul) with P from a Q K^T batch_matmul through the scale, mask,
    row max and exp generics."""

    op: Any
    q: Any
    kt: Any
    r: Any
    v: Any  # with `shape.sums`: V of R = [V | 1] (rank 4, not collapsed), which the kernel reads
    shape: AttentionShape


def _single(op, name: str) -> Any:
    """The one operation of `op`'s body other than its yield, when it is called `name`."""
    body = [o.operation for o in op.regions[0].blocks[0].operations]
    if len(body) != 2 or body[0].name != name or body[1].name != "linalg.yield":
        return None
    return body[0]


def _through_reshape(value, name: str) -> Any:
    """The source of `value` when a `name` (expand_shape / collapse_shape) makes it."""
    op = producer_of(value)
    return op.operands[0] if op is not None and op.name == name else None


def _float_constant(value) -> float | None:
    """The value of a float32 constant, or of the f32 truncation of a float64 constant."""
    from iree.compiler import ir

    op = producer_of(value)
    if op is not None and op.name == "arith.truncf":
        wide = float_constant_any(op.operands[0])
        return None if wide is None else float(struct.unpack("f", struct.pack("f", wide))[0])
    attr = None if op is None or op.name != "arith.constant" else op.attributes["value"]
    if isinstance(attr, ir.FloatAttr) and isinstance(attr.type, ir.F32Type):
        return attr.value
    return None


def _generic(value) -> Any:
    op = producer_of(value)
    return op if op is not None and op.name == "linalg.generic" else None


def _scale(value) -> tuple[float, Any] | None:
    """(c, X) when `value` = X * c elementwise (a generic with a literal c)."""
    op = _generic(value)
    mul = None if op is None or not _maps_are(op, "id", "id") else _single_mul(op)
    if mul is None:
        return None
    return mul, op.operands[0]


def _single_mul(op) -> float | None:
    """c when the body of `op` is `in * c` for a float32 literal c (maybe a truncated f64)."""
    body = [o.operation for o in op.regions[0].blocks[0].operations]
    arg = op.regions[0].blocks[0].arguments[0]
    mul = next((o for o in body if o.name == "arith.mulf"), None)
    if mul is None or body[-1].name != "linalg.yield" or body[-1].operands[0] != mul.results[0]:
        return None
    if any(o.name not in ("arith.mulf", "arith.truncf", "linalg.yield") for o in body):
        return None
    a, b = mul.operands
    if a != arg:
        a, b = b, a
    return _float_constant(b) if a == arg else None


def _mask(value) -> tuple[int, Any] | None:
    """(keys, X) when `value` = select(key index >= keys, -inf, X)."""
    op = _generic(value)
    if op is None or _single(op, "arith.select") is None:
        return None
    if not _maps_are(op, "key", "scalar", "id", "id"):
        return None
    mask, fill, x = op.operands[:3]
    if _float_constant_tensor(fill) != float("-inf"):
        return None
    compare = _generic(mask)
    cmp = None if compare is None else _single_cmp(compare)
    if cmp is None:
        return None
    return cmp, x


def _float_constant_tensor(value) -> float | None:
    from iree.compiler import ir

    op = producer_of(value)
    if op is None or op.name != "arith.constant":
        return None
    attr = op.attributes["value"]
    if isinstance(attr, ir.DenseFPElementsAttr) and attr.is_splat:
        return ir.FloatAttr(attr.get_splat_value()).value
    return None


def _splat(value) -> float | None:
    """c when `value` is a float tensor of c everywhere: a splat constant, or (with a runtime
    size) a fill or a broadcast of a constant."""
    op = producer_of(value)
    if op is None:
        return None
    if op.name == "linalg.fill":
        return float_constant_any(op.operands[0])
    if op.name == "linalg.generic" and len(op.operands) == 2:
        body = [o.operation for o in op.regions[0].blocks[0].operations]
        arg = op.regions[0].blocks[0].arguments[0]
        if len(body) == 1 and body[0].operands[0] == arg:  # yield of the input: a broadcast
            return _float_constant_tensor(op.operands[0])
        return None
    return _float_constant_tensor(value)


def _single_cmp(op) -> int | None:
    """keys when `op` computes `index >= keys` over `linalg.index` values (torch-mlir's
    `arange(P) >= keys`)."""
    from iree.compiler import ir

    cmp = _single(op, "arith.cmpi")
    if cmp is None or str(cmp.attributes["predicate"]) != "5 : i64":  # sge
        return None
    source = _generic(op.operands[0])
    if source is None or len(op.operands) != 2:
        return None
    body = [o.operation.name for o in source.regions[0].blocks[0].operations]
    if body != ["linalg.index", "arith.index_cast", "linalg.yield"]:
        return None
    bound = producer_of(cmp.operands[1])
    if bound is None or bound.name != "arith.constant":
        return None
    return ir.IntegerAttr(bound.attributes["value"]).value


def match_attention(op) -> AttentionMatch | None:
    """The attention whose P @ R is `op`, when the kernel serves it."""
    if op.name != "linalg.batch_matmul" or indexing_maps(op) != BATCH_MATMUL_MAPS:
        return None
    if not zero_filled(op.operands[2]):
        return None
    p4 = _through_reshape(op.operands[0], "tensor.collapse_shape")
    exp = None if p4 is None else _generic(p4)
    if exp is None or _single(exp, "math.exp") is None or not _maps_are(exp, "id", "id"):
        return None
    sub = _generic(exp.operands[0])
    if sub is None or _single(sub, "arith.subf") is None or not _maps_are(sub, "id", "row", "id"):
        return None
    t, row_max = sub.operands[:2]
    if not _row_max(_through_reshape(row_max, "tensor.expand_shape"), t):
        return None
    p_len = dims_of(op.operands[0])[-1]
    masked = _mask(t)
    keys, y = (p_len, t) if masked is None else masked
    scaled = _scale(y)
    if scaled is None:
        return None
    scale, s4 = scaled
    s3 = _through_reshape(s4, "tensor.expand_shape")
    qk = None if s3 is None else producer_of(s3)
    if qk is None or qk.name != "linalg.batch_matmul" or indexing_maps(qk) != BATCH_MATMUL_MAPS:
        return None
    if not zero_filled(qk.operands[2]):
        return None
    q, kt, r = qk.operands[0], qk.operands[1], op.operands[1]
    batch, length, depth = dims_of(q)
    n, sums, v = dims_of(r)[-1], 0, None
    ones = _ones_columns(r)
    if ones is not None:  # R = [V | 1]: the kernel sums the rows itself
        v, sums = ones
        n = dims_of(v)[-1]
    if None in (length, depth, n) or dims_of(kt)[1:] != [depth, length] or keys is None:
        return None
    if not AttentionShape.supported(length, n, keys):  # type: ignore[arg-type]
        return None
    shape = AttentionShape(batch, length, depth, n, keys, scale, sums)  # type: ignore[arg-type]
    return AttentionMatch(op, q, kt, r, v, shape)


def _affine(rank: int, kind: str) -> str:
    """The indexing map `kind` over `rank` loops: "id" (every dim), "key" (the last), "row"
    (all but the last, then 0), "rows" (all but the last) or "scalar" (none)."""
    dims = [f"d{j}" for j in range(rank)]
    results = {
        "id": dims,
        "key": dims[-1:],
        "row": [*dims[:-1], "0"],
        "rows": dims[:-1],
        "scalar": [],
    }[kind]
    return f"affine_map<({', '.join(dims)}) -> ({', '.join(results)})>"


def _maps_are(op, *kinds: str) -> bool:
    """`op`'s indexing maps are `kinds` (see `_affine`) over the rank of its first result."""
    rank = len(dims_of(op.results[0]))
    return indexing_maps(op) == tuple(_affine(rank, k) for k in kinds)


def _row_max(value, t) -> bool:
    """`value` is the row maximum of `t`: result 0 of a generic reducing `t`'s last dimension
    with `arith.maximumf` (torch-mlir's max also yields the argmax, as result 1)."""
    op = None if value is None else _generic(value)
    if op is None or op.operands[0] != t or op.results[0] != value:
        return False
    rank = len(dims_of(t))
    iterators = [str(x) for x in op.attributes["iterator_types"]]
    if iterators != ["#linalg.iterator_type<parallel>"] * (rank - 1) + [
        "#linalg.iterator_type<reduction>"
    ]:
        return False
    maps = indexing_maps(op)
    if maps[:2] != (_affine(rank, "id"), _affine(rank, "rows")):
        return False
    body = [o.operation for o in op.regions[0].blocks[0].operations]
    block = op.regions[0].blocks[0]
    maximum = producer_of(body[-1].operands[0])
    return (
        maximum is not None
        and maximum.name == "arith.maximumf"
        and all(any(x == a for a in list(block.arguments)[:2]) for x in maximum.operands)
    )


def _ones_columns(r) -> tuple[Any, int] | None:
    """(V, w) when `r` = collapse_shape(concat([V, ones], last dim)) with w >= 8 columns of
    ones, a multiple of 8."""
    r4 = _through_reshape(r, "tensor.collapse_shape")
    concat = None if r4 is None else producer_of(r4)
    if concat is None or concat.name != "tensor.concat" or len(concat.operands) != 2:
        return None
    v, ones = concat.operands
    rank = len(dims_of(v))
    if rank != 4:  # [B, heads, P, hd], collapsed by the rewrite
        return None
    width = dims_of(ones)[-1]
    if int(concat.attributes["dim"].value) != rank - 1 or _splat(ones) != 1.0:
        return None
    if width is None or width % LANES or dims_of(r4)[:-1] != dims_of(v)[:-1]:
        return None
    return v, width


def attention_call(name: str, shape: AttentionShape) -> str:
    """A private function `@name(Q, KT, R) -> O` that packs KT and R (`@name_pack_kt`,
    `@name_pack_r`, written here too) and dispatches `shape`'s kernel; Q [B, P, depth],
    KT [B, depth, P], R [B, P, n] and O [B, P, n + sums] as in `AttentionShape`."""
    p, d, n = shape.length, shape.depth, shape.n
    dims = ((p, d), (d, p), (p, n), (p, n + shape.sums))
    q_t, kt_t, r_t, o_t = (tensor(shape.dims(*x)) for x in dims)
    # KT [B, depth, P] and R [B, P, n] packed as GEMM right-hand sides: [B, panel, K, 16]
    packs = {"kt": (kt_t, shape.kt_panels), "r": (r_t, shape.r_panels)}
    out = Lines()
    for part, (source_t, panels) in packs.items():
        out.add(0, f"func.func private @{name}_pack_{part}(%r: {source_t}) -> {panels.type} {{")
        pack(out, "bkn", [shape.batch, panels.k, panels.n], panels)
        out.add(2, f"return %rp : {panels.type}")
        out.add(0, "}")
    kp_t, rp_t = shape.kt_panels.type, shape.r_panels.type
    out.add(0, f"func.func private @{name}(%q: {q_t}, %kt: {kt_t}, %r: {r_t}) -> {o_t} {{")
    out.add(2, f"%ktp = func.call @{name}_pack_kt(%kt) : ({kt_t}) -> {kp_t}")
    out.add(2, f"%rp = func.call @{name}_pack_r(%r) : ({r_t}) -> {rp_t}")
    attention_dispatch(out, shape)
    out.add(0, "}")
    return out.text()


def attention_dispatch(out: Lines, shape: AttentionShape, kt: str = "%ktp", r: str = "%rp") -> None:
    """The kernel's dispatch on %q and the packed `kt` and `r`, and the return of its result."""
    p, d = shape.length, shape.depth
    q_t = tensor(shape.dims(p, d))
    o_t = tensor(shape.dims(p, shape.n + shape.sums))
    kp_t, rp_t = shape.kt_panels.type, shape.r_panels.type
    target = f"@{shape.symbol}::@{shape.symbol}"
    if shape.batch is None:
        out.add(2, "%c0 = arith.constant 0 : index")
        out.add(2, f"%sB = tensor.dim %q, %c0 : {q_t}")
        out.add(2, "%iB = arith.index_cast %sB : index to i32")
        dyn = "{%sB}"
        out.add(2, f"%o = flow.dispatch {target}[%sB](%q, {kt}, {r}, %iB) : "
                   f"({q_t}{dyn}, {kp_t}{dyn}, {rp_t}{dyn}, i32) -> {o_t}{dyn}")  # fmt: skip
    else:
        out.add(2, f"%o = flow.dispatch {target}(%q, {kt}, {r}) : "
                   f"({q_t}, {kp_t}, {rp_t}) -> {o_t}")  # fmt: skip
    out.add(2, f"return %o : {o_t}")
