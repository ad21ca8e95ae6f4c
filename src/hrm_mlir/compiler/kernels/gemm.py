"""Register-tiled float32 GEMMs as hand-written IREE dispatches (llvm-cpu, AVX2 + FMA, and
AVX-512).

IREE 3.13 lowers every float32 matmul on AVX2 to an 8x8x1 data-tiled `mmt4d`: per k, one
8-float load of the packed right-hand side, 8 broadcasts and 8 FMAs into 8 accumulators. That
is 9 loads per 8 FMAs, more than the two 256-bit loads per cycle of a Zen 3 or Skylake core, and
8 accumulators only just cover the FMA latency; in the HRM step it reached ~83 GFLOP/s where
ONNX Runtime's MLAS reached ~129 on the same 2 cores (`benchmarks/README.md`). The kernel here
is the other classic AVX2 shape: 6 rows x 16 columns, 12 ymm accumulators, and per k two loads
of the packed right-hand side, six broadcasts and 12 FMAs.

`rewrite_gemms` replaces, in a module of linalg on tensors (what torch-mlir writes, or what
`iree-compile --compile-to=input` makes of torch and StableHLO input):

- every float32 `linalg.matmul` / `linalg.batch_matmul` that multiplies by a constant weight
  (torch-mlir's `F.linear`: the weight transposed, and broadcast over the batch), and
- every other float32 `linalg.batch_matmul` (attention's Q K^T and P V),

when the output starts from zeros and N is a multiple of 8. Each becomes a call of a private
helper function that dispatches `gemm_executable` on the right-hand side packed as
[N/16, K, 16] panels (zero-padded to whole panels): a `stream.executable` written in the `scf`,
`vector` and `memref` dialects that IREE compiles like any other dispatch (no object file, no C
compiler). A constant weight is packed once, by an initializer of its own global that IREE
evaluates at compile time; a parameter is packed where it is used (IREE 3.13 cannot compile a
global initialized from a parameter global), and so are activations, by an ordinary IREE
dispatch. Elementwise code that combines the two halves of a weight GEMM's output and reads
nothing else (SwiGLU's silu(gate) * up) runs in the kernel's epilogue (`Epilogue`).

The grid is (panels of 16 columns, blocks of rows, batch): a workgroup multiplies its rows by
one panel, 6 rows at a time over the whole K, the last 1-5 rows of its block through a tile of
that height. One panel per workgroup keeps the workgroup count a multiple of the panel count,
so IREE's task system (which hands a worker 8 workgroups at a time once a dispatch has 8 per
worker) balances them across workers. While the first row tile of a panel runs, it prefetches
the next panel, which the same worker usually runs next: the weights come from memory once
per row block, and this hides that.

On AVX-512 targets (`hrm_mlir.compiler.kernels.writer.ISAS`, chosen by `hrm_mlir.compiler` from
the target CPU's features) the same generator writes zmm tiles: 12 rows x 2 panels (32
columns, one zmm per panel and row), 24 accumulators, per k two panel loads, 12 broadcasts
folded into 24 FMAs. A workgroup then takes two panels (the last one of an odd count one), and
prefetches the next workgroup's two. The panels, the packing and the summation order are those
of AVX2, so both give the same bits.

The text of the kernel and of the packing comes from `hrm_mlir.compiler.kernels.writer`, and
what it reads of the module from `hrm_mlir.compiler.kernels.reader`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Any

from hrm_mlir.compiler.kernels.reader import (
    BATCH_MATMUL_MAPS,
    dims_of,
    indexing_maps,
    producer_of,
    walk,
    zero_filled,
)
from hrm_mlir.compiler.kernels.writer import (
    ISAS,
    LANES,
    PANEL,
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
    subspan,
    tensor,
)

# Left-hand rows per workgroup: half a core's L2 (Zen 3: 512 KB), so they stay there beside the
# panel and everything else while the workgroup runs. The whole L2 (512 KB) was 2-4% slower at
# 82 and 901 tokens, batch 1, and even at batch 16; a quarter (128 KB) 1.5% slower at 901.
A_BLOCK_BYTES = 256 * 1024


@dataclass(frozen=True)
class GemmShape(VectorIsa):
    """C[b, m, n] = A[b, m, k] @ R[b, k, n] in float32, R given packed as [b, n/16, k, 16].

    `batch` 0 means no batch dimension (one R for every row: a weight); None means a runtime
    size, and so does `m` None.
    """

    batch: int | None
    m: int | None
    k: int
    n: int
    epilogue: Epilogue | None = None  # C [.., n/2] = f(first half, second half) of A @ R
    isa: str = "avx2"  # the register tile: `ISAS`

    @property
    def rows(self) -> int:
        """Rows per register tile."""
        return ISAS[self.isa][1]

    @property
    def tile_panels(self) -> int:
        """Panels per register tile (and per workgroup)."""
        return ISAS[self.isa][2]

    @property
    def groups(self) -> int:
        """Workgroups across the columns: `tile_panels` panels each, the last maybe fewer."""
        return -(-self.panels // self.tile_panels)

    @property
    def n_out(self) -> int:
        """Columns of C: n, or n / 2 with an epilogue."""
        return self.n // 2 if self.epilogue else self.n

    @property
    def panels(self) -> int:
        return panel_count(self.n)

    @property
    def packing(self) -> Panels:
        """R packed: with an epilogue, each panel 8 columns of each half."""
        return Panels(self.batch, self.k, self.n, halves=self.epilogue is not None)

    @property
    def row_block(self) -> int:
        """Rows per workgroup: a multiple of `rows` whose A rows fit `A_BLOCK_BYTES`."""
        tile = self.rows
        rows = max(tile, A_BLOCK_BYTES // (4 * self.k) // tile * tile)
        return rows if self.m is None else min(rows, ceil_to(self.m, tile))

    @property
    def symbol(self) -> str:
        dims = ["D" if d is None else str(d) for d in (self.batch, self.m, self.k, self.n)]
        tail = f"_{self.epilogue.tag}" if self.epilogue else ""
        isa = "" if self.isa == "avx2" else f"_{self.isa}"
        return "hrm_gemm_" + "x".join(dims) + tail + isa

    @property
    def batched(self) -> bool:
        return self.batch != 0

    def dims(self, *inner: int | None) -> list[int | None]:
        """[batch, *inner] when batched, else `inner`."""
        return [self.batch, *inner] if self.batched else list(inner)

    @classmethod
    def supported(cls, k: int, n: int) -> bool:
        return k > 0 and n > 0 and n % LANES == 0


@dataclass(frozen=True)
class Epilogue:
    """Elementwise float32 code applied to a GEMM's output halves before it is stored: a GLU
    such as SwiGLU's silu(gate) * up. `ops` are (result, op name, operands) in order, the
    operands being "%g" and "%u" (the halves), earlier results, or float literals; `output` is
    the result that is stored."""

    ops: tuple[tuple[str, str, tuple[str, ...]], ...]
    output: str

    @property
    def tag(self) -> str:
        return hashlib.sha1(repr((self.ops, self.output)).encode()).hexdigest()[:8]

    def write(self, out: Lines, i: int, gate: str, up: str, suffix: str) -> str:
        """The code on vectors `gate` and `up`; returns the output's name."""
        vec = f"vector<{LANES}xf32>"
        names = {"%g": gate, "%u": up}
        for result, name, operands in self.ops:
            args = []
            for x in operands:
                if x in names:
                    args.append(names[x])
                else:  # a literal
                    c = f"%k{len(names)}{suffix}"
                    out.add(i, f"{c} = arith.constant dense<{x}> : {vec}")
                    names[c] = c
                    args.append(c)
            names[result] = f"{result}{suffix}"
            out.add(i, f"{names[result]} = {name} {', '.join(args)} : {vec}")
        return names[self.output]


def gemm_executable(shape: GemmShape) -> str:
    """The `stream.executable` computing `shape`: one export named `shape.symbol` with bindings
    (A, packed R, C) and then, as i32 operands, the runtime sizes (batch, then m)."""
    if not GemmShape.supported(shape.k, shape.n):
        raise ValueError(f"unsupported GEMM shape {shape}")
    k, np_, mb = shape.k, shape.panels, shape.row_block
    a_t = memref(shape.dims(shape.m, k))
    r_t = memref(shape.dims(np_, k, PANEL))
    c_t = memref(shape.dims(shape.m, shape.n_out))
    sizes = [(name, v) for name, v in (("B", shape.batch), ("M", shape.m)) if v is None]
    out = Lines()
    if shape.m is None:
        gy: int | str = f"affine.apply affine_map<()[s0] -> (s0 ceildiv {mb})>()[%wM]"
    else:
        gy = -(-shape.m // mb)
    gz = "%wB" if shape.batch is None else max(shape.batch, 1)
    workload = [name for name, _ in sizes]
    open_executable(out, shape.symbol, workload, (shape.groups, gy, gz), ("a", "r", "c"))
    i = 6
    constants = {
        "c0": 0,
        "c1": 1,
        "c8": PANEL // 2,
        "c16": PANEL,
        "cK": k,
        "cR": shape.rows,
        "cMB": mb,
        "cNP": np_,
        "cTP": shape.tile_panels,
        "cLast": np_ - 1,
    }
    index_constants(out, i, constants)
    index_constants(out, i, {f"r{r}": r for r in range(shape.rows)})
    out.add(i, f"%zero = arith.constant dense<0.0> : vector<{shape.lanes}xf32>")
    read_workload(out, i, workload)
    if shape.m is not None:
        out.add(i, f"%M = arith.constant {shape.m} : index")
    dyn = "{" + ", ".join(f"%{name}" for name in workload) + "}" if workload else ""
    batch_dyn = "{%B}" if shape.batch is None else ""
    subspan(out, i, "A", "a", a_t + dyn)
    subspan(out, i, "R", "r", r_t + batch_dyn)
    subspan(out, i, "C", "c", c_t + dyn)
    # This workgroup: batch %b, rows %m0 .. %m1 - 1 (%full tiles of %cR rows, then %rem rows
    # from %tail), panels %pg .. (`tile_panels` of them, the last workgroup maybe fewer).
    out.block(
        i,
        """
        %g = stream.dispatch.workgroup.id[0] : index
        %gy = stream.dispatch.workgroup.id[1] : index
        %b = stream.dispatch.workgroup.id[2] : index
        %pg = arith.muli %g, %cTP : index
        %m0 = arith.muli %gy, %cMB : index
        %m1u = arith.addi %m0, %cMB : index
        %m1 = arith.minui %m1u, %M : index
        %rows = arith.subi %m1, %m0 : index
        %full = arith.divui %rows, %cR : index
        %fullrows = arith.muli %full, %cR : index
        %rem = arith.subi %rows, %fullrows : index
        %tail = arith.addi %m0, %fullrows : index
        %hasfull = arith.cmpi ugt, %full, %c0 : index
        %t1 = arith.minui %full, %c1 : index
        """,
    )
    assert shape.tile_panels <= 2, "panel offsets are %c0 and %c1"
    # Panel j of the workgroup: %pj, its columns %n0_j .. + 15 (with an epilogue its 8 output
    # columns from %h0_j), whether it is whole (%whole_j), and the panel it prefetches (%pn_j,
    # the same one of the next workgroup).
    for j in range(shape.tile_panels):
        out.block(
            i,
            f"""
            %pj{j} = arith.addi %pg, %c{j} : index
            %p{j} = arith.minui %pj{j}, %cLast : index
            %n0_{j} = arith.muli %p{j}, %c16 : index
            %n8_{j} = arith.addi %n0_{j}, %c8 : index
            %h0_{j} = arith.muli %p{j}, %c8 : index
            %whole_{j} = arith.cmpi ult, %p{j}, %cLast : index
            %pn1_{j} = arith.addi %p{j}, %cTP : index
            %pn_{j} = arith.minui %pn1_{j}, %cLast : index
            """,
        )
    tile = _TileWriter(out, shape, a_t, r_t, c_t)
    if np_ % shape.tile_panels:  # the last workgroup has one panel
        out.add(i, "%pair = arith.cmpi ult, %pj1, %cNP : index")
        out.add(i, "scf.if %pair {")
        _tiles(out, i + 2, tile, shape.tile_panels)
        out.add(i, "} else {")
        _tiles(out, i + 2, tile, 1)
        out.add(i, "}")
    else:
        _tiles(out, i, tile, shape.tile_panels)
    out.add(i, "return")
    close_executable(out)
    return out.text()


def _tiles(out: Lines, i: int, tile: _TileWriter, panels: int) -> None:
    """The workgroup's register tiles over `panels` panels: the first full one (which also
    prefetches the next workgroup's panels, one 64-byte line per k each), the other full ones,
    then the remainder rows."""
    rows = tile.shape.rows
    out.add(i, "scf.if %hasfull {")
    tile.write(i + 2, rows, "%m0", panels, prefetch=True)
    out.add(i, "}")
    out.add(i, "scf.for %t = %t1 to %full step %c1 {")
    out.add(i + 2, "%t6 = arith.muli %t, %cR : index")
    out.add(i + 2, "%row = arith.addi %m0, %t6 : index")
    tile.write(i + 2, rows, "%row", panels)
    out.add(i, "}")
    out.add(i, "scf.index_switch %rem")
    for r in range(1, rows):
        out.add(i, f"case {r} {{")
        tile.write(i + 2, r, "%tail", panels)
        out.add(i + 2, "scf.yield")
        out.add(i, "}")
    out.add(i, "default {")
    out.add(i, "}")


class _TileWriter:
    """Writes one register tile: `rows` x 16 outputs at rows `row0`.. and columns %n0.., the
    sum over all k of A[row, k] * R[panel, k, :]."""

    def __init__(self, out: Lines, shape: GemmShape, a_t: str, r_t: str, c_t: str) -> None:
        self.out, self.shape, self.a_t, self.r_t, self.c_t = out, shape, a_t, r_t, c_t
        self.b = "%b, " if shape.batched else ""  # the batch index, where there is one

    def write(self, i: int, rows: int, row0: str, panels: int, *, prefetch: bool = False) -> None:
        out, b, shape = self.out, self.b, self.shape
        lanes, vectors = shape.lanes, shape.vectors
        vec = f"vector<{lanes}xf32>"
        row = [out.fresh("row") for _ in range(rows)]
        for r in range(rows):
            out.add(i, f"{row[r]} = arith.addi {row0}, %r{r} : index")
        res = out.fresh("res")
        loads = [
            f"vector.load %R[{b}%p{j}, %k, %c{lanes * h}] : {self.r_t}, {vec}"
            for j in range(panels)
            for h in range(vectors)
        ]
        extra = [
            f"memref.prefetch %R[{b}%pn_{j}, %k, %c0], read, locality<3>, data : {self.r_t}"
            for j in range(panels)
            if prefetch
        ]
        lhs = [f"memref.load %A[{b}{row[r]}, %k] : {self.a_t}" for r in range(rows)]
        register_tile(out, i, res, "%cK", loads, lhs, extra, lanes)
        per_row = panels * vectors
        half_t = f"vector<{LANES}xf32>"
        for r in range(rows):
            c_row = f"%C[{b}{row[r]}"
            for j in range(panels):
                values = [f"{res}#{per_row * r + vectors * j + h}" for h in range(vectors)]
                if shape.epilogue is not None:
                    halves = self._halves(i, values)
                    e = shape.epilogue.write(out, i, halves[0], halves[1], f"_{r}_{j}")
                    out.add(i, f"vector.store {e}, {c_row}, %h0_{j}] : {self.c_t}, {half_t}")
                elif not shape.n % PANEL:  # every panel whole: columns %n0_j (and %n8_j)
                    for value, col in zip(values, (f"%n0_{j}", f"%n8_{j}"), strict=False):
                        out.add(i, f"vector.store {value}, {c_row}, {col}] : {self.c_t}, {vec}")
                else:  # the last panel is half padding: its first 8 columns are stored
                    halves = self._halves(i, values)
                    out.add(
                        i, f"vector.store {halves[0]}, {c_row}, %n0_{j}] : {self.c_t}, {half_t}"
                    )
                    out.add(i, f"scf.if %whole_{j} {{")
                    out.add(
                        i + 2, f"vector.store {halves[1]}, {c_row}, %n8_{j}] : {self.c_t}, {half_t}"
                    )
                    out.add(i, "}")

    def _halves(self, i: int, values: list[str]) -> list[str]:
        """The two 8-column halves of a row's 16 outputs (a zmm row is split in two)."""
        if len(values) == 2:
            return values
        halves = []
        for h in range(2):
            name = self.out.fresh("half")
            self.out.add(
                i,
                f"{name} = vector.extract_strided_slice {values[0]} offsets = [{LANES * h}], "
                f"sizes = [{LANES}], strides = [1] : vector<{2 * LANES}xf32> to "
                f"vector<{LANES}xf32>",
            )
            halves.append(name)
        return halves


# ---------------------------------------------------------------------------------------------
# The rewrite


@dataclass(frozen=True)
class _Match:
    """A GEMM to replace: C = A @ R, with R from `rhs` (a value) laid out as `rhs_layout`:
    "nk" (a weight W [N, K], R = W^T), "kn" (a constant R [K, N]) or "bkn" (R [B, K, N])."""

    op: Any
    lhs: Any
    rhs: Any
    rhs_layout: str
    epilogue: Epilogue | None = None
    result: Any = None  # the value the call replaces: op's result, or the epilogue's
    fused: tuple = ()  # the slices and generics the epilogue replaces

    @property
    def replaced(self) -> Any:
        return self.op.results[0] if self.result is None else self.result


_MATMUL_MAPS = (
    "affine_map<(d0, d1, d2) -> (d0, d2)>",
    "affine_map<(d0, d1, d2) -> (d2, d1)>",
    "affine_map<(d0, d1, d2) -> (d0, d1)>",
)
_BROADCAST_MAPS = (
    "affine_map<(d0, d1, d2) -> (d1, d2)>",
    "affine_map<(d0, d1, d2) -> (d0, d1, d2)>",
)
_TRANSPOSE_MAPS = (
    "affine_map<(d0, d1) -> (d1, d0)>",
    "affine_map<(d0, d1) -> (d0, d1)>",
)
_CONSTANT_OPS = ("arith.constant", "util.global.load")


def _constant(value) -> bool:
    op = producer_of(value)
    return op is not None and op.name in _CONSTANT_OPS


def _weight(rhs) -> tuple[Any, str] | None:
    """(W, "nk") for R = transpose(W) of a constant W, (R, "kn") for a constant R."""
    op = producer_of(rhs)
    if op is not None and op.name == "linalg.transpose":
        if [int(p) for p in op.attributes["permutation"]] == [1, 0] and _constant(op.operands[0]):
            return op.operands[0], "nk"
        return None
    w = _copy_source(rhs, _TRANSPOSE_MAPS)  # the same transpose as a linalg.generic
    if w is not None:
        return (w, "nk") if _constant(w) else None
    return (rhs, "kn") if _constant(rhs) else None


def _copy_source(value, maps: tuple[str, ...]) -> Any:
    """X when `value` is a linalg.generic that copies X with indexing maps `maps`, else None."""
    op = producer_of(value)
    if op is None or op.name != "linalg.generic" or indexing_maps(op) != maps:
        return None
    body = op.regions[0].blocks[0]
    ops = list(body.operations)
    if len(ops) != 1 or len(ops[0].operands) != 1 or ops[0].operands[0] != body.arguments[0]:
        return None
    return op.operands[0]


def _match(op) -> _Match | None:
    name = op.name
    if name == "linalg.matmul":
        if indexing_maps(op) != _MATMUL_MAPS:
            return None
    elif name == "linalg.batch_matmul":
        if indexing_maps(op) != BATCH_MATMUL_MAPS:
            return None
    else:
        return None
    if len(op.operands) != 3 or len(op.results) != 1 or not zero_filled(op.operands[2]):
        return None
    lhs, rhs = op.operands[0], op.operands[1]
    if name == "linalg.batch_matmul":
        source = _copy_source(rhs, _BROADCAST_MAPS)  # X [K, N] broadcast over the batch
        weight = None if source is None else _weight(source)
        if weight is None:
            return _Match(op, lhs, rhs, "bkn")
    else:
        weight = _weight(rhs)
        if weight is None:
            return None
    return _Match(op, lhs, weight[0], weight[1])


_ELEMENTWISE_OPS = (
    "arith.addf",
    "arith.subf",
    "arith.mulf",
    "arith.divf",
    "arith.negf",
    "arith.maximumf",
    "arith.minimumf",
    "math.exp",
    "math.tanh",
)


def _uses(value) -> list[Any]:
    return [u.owner for u in value.uses]


def _halves(value) -> tuple[Any, Any] | None:
    """The two `tensor.extract_slice`s taking the first and the second half of `value`'s last
    dimension, when they are its only uses."""
    users = _uses(value)
    if len(users) != 2 or any(u.name != "tensor.extract_slice" for u in users):
        return None
    dims = dims_of(value)
    half = dims[-1] // 2  # type: ignore[operator]
    found: dict[int, Any] = {}
    for u in users:
        offsets = list(u.attributes["static_offsets"])
        sizes = list(u.attributes["static_sizes"])
        strides = list(u.attributes["static_strides"])
        if len(u.operands) != 1 or any(x != 1 for x in strides) or any(offsets[:-1]):
            return None
        if sizes != [*dims[:-1], half] or offsets[-1] not in (0, half):
            return None
        found[offsets[-1]] = u
    if set(found) != {0, half}:
        return None
    return found[0], found[half]


def _elementwise(op, shape: list[int | None]) -> bool:
    """A linalg.generic with one result of `shape`, all parallel, every map the identity."""
    if op.name != "linalg.generic" or len(op.results) != 1 or dims_of(op.results[0]) != shape:
        return False
    dims = ", ".join(f"d{j}" for j in range(len(shape)))
    identity = f"affine_map<({dims}) -> ({dims})>"
    parallel = "#linalg.iterator_type<parallel>"
    return all(str(t) == parallel for t in op.attributes["iterator_types"]) and all(
        m == identity for m in indexing_maps(op)
    )


def _glu(match: _Match) -> _Match | None:
    """`match` with the elementwise code that combines the two halves of its result fused into
    the kernel (SwiGLU: silu(gate) * up), when that code reads nothing else and one of its
    values leaves it."""
    halves = _halves(match.op.results[0])
    if halves is None:
        return None
    shape = dims_of(halves[0].results[0])
    # the elementwise generics reachable from the halves through elementwise generics
    members: list[Any] = []
    frontier = [u for h in halves for u in _uses(h.results[0])]
    while frontier:
        op = frontier.pop()
        if any(op == m for m in members) or not _elementwise(op, shape):
            continue
        members.append(op)
        frontier += _uses(op.results[0])
    if any(not any(u == m for m in members) for h in halves for u in _uses(h.results[0])):
        return None  # a half is also read elsewhere
    names: list[tuple[Any, str]] = [(halves[0].results[0], "%g"), (halves[1].results[0], "%u")]
    ops: list[tuple[str, str, tuple[str, ...]]] = []
    todo = list(members)
    while todo:  # in dependency order
        ready = [op for op in todo if all(_name(v, names) for v in list(op.operands)[:-1])]
        if not ready:
            return None  # an input from outside
        for op in ready:
            result = _translate(op, names, ops)
            if result is None:
                return None
            names.append((op.results[0], result))
            todo.remove(op)
    leaving = [
        m for m in members if any(not any(u == x for x in members) for u in _uses(m.results[0]))
    ]
    if len(leaving) != 1:
        return None
    epilogue = Epilogue(tuple(ops), _name(leaving[0].results[0], names))  # type: ignore[arg-type]
    return replace(
        match, epilogue=epilogue, result=leaving[0].results[0], fused=(*members, *halves)
    )


def _name(value, names: list[tuple[Any, str]]) -> str | None:
    return next((n for v, n in names if v == value), None)


def _translate(op, names: list[tuple[Any, str]], ops: list) -> str | None:
    """Append the body of elementwise generic `op` to `ops` as vector code; returns the name of
    its result, None when the body does more than `_ELEMENTWISE_OPS` on inputs and literals."""
    from iree.compiler import ir

    n_in = len(op.operands) - 1
    body = op.regions[0].blocks[0]
    local: list[tuple[Any, str]] = [
        (arg, _name(v, names))  # type: ignore[misc]
        for arg, v in zip(list(body.arguments)[:n_in], list(op.operands)[:n_in], strict=True)
    ]
    for inner in body.operations:
        inner = inner.operation
        if inner.name == "linalg.yield":
            return _name(inner.operands[0], local)
        if inner.name not in _ELEMENTWISE_OPS:
            return None
        args = []
        for v in inner.operands:
            known = _name(v, local)
            if known is None:  # a float32 literal from outside, or nothing we can take
                producer = producer_of(v)
                attr = None if producer is None else producer.attributes["value"]
                if (
                    producer is None
                    or producer.name != "arith.constant"
                    or not isinstance(attr, ir.FloatAttr)
                    or not isinstance(attr.type, ir.F32Type)
                ):
                    return None
                known = repr(attr.value)
            args.append(known)
        result = f"%e{len(ops)}"
        ops.append((result, inner.name, tuple(args)))
        local.append((inner.results[0], result))
    return None


def _kernel_shape(match: _Match) -> GemmShape | None:
    """The kernel `match` needs, None when its shapes are not supported."""
    a_dims, r_dims = dims_of(match.lhs), dims_of(match.rhs)
    if match.rhs_layout == "nk":
        n, k = r_dims
    else:
        k, n = r_dims[-2:]
    if k is None or n is None or not GemmShape.supported(k, n):
        return None
    if match.epilogue is not None and n % PANEL:
        return None
    if match.rhs_layout == "bkn":
        return GemmShape(a_dims[0], a_dims[1], k, n)
    lead = a_dims[:-1]  # the rows: [M] or [B, S], one weight for all
    rows = None if None in lead else math.prod(lead)  # type: ignore[arg-type]
    return GemmShape(0, rows, k, n, match.epilogue)


def _helper(name: str, match: _Match, shape: GemmShape, packed: bool) -> str:
    """A private function `@name(A, R) -> C` that dispatches the kernel, R packed already
    (`_packed_weight`) or packed here."""
    a_dims, c_dims = dims_of(match.lhs), dims_of(match.replaced)
    weight = match.rhs_layout != "bkn"
    out = Lines()
    a_in, c_out = tensor(a_dims), tensor(c_dims)
    r_in = shape.packing.type if packed else tensor(dims_of(match.rhs))
    out.add(0, f"func.func private @{name}(%a: {a_in}, %r: {r_in}) -> {c_out} {{")
    lead = a_dims[:-1]
    a2 = "%a"
    if weight and len(lead) > 1:
        a2 = "%a2"
        out.add(2, f"%a2 = tensor.collapse_shape %a [{_group(len(lead))}, [{len(lead)}]] "
                   f": {a_in} into {tensor([shape.m, shape.k])}")  # fmt: skip
    a2_t = tensor(shape.dims(shape.m, shape.k))
    c2_t = tensor(shape.dims(shape.m, shape.n_out))
    r = "%r"
    if not packed:
        pack(out, match.rhs_layout, dims_of(match.rhs), shape.packing)
        r = "%rp"
    # the runtime sizes (batch, then m) are the workload and i32 operands of the dispatch
    sizes, operands = [], ""
    for label, value, axis in (("B", shape.batch, 0), ("M", shape.m, int(shape.batched))):
        if value is None:
            out.add(2, f"%ax{label} = arith.constant {axis} : index")
            out.add(2, f"%s{label} = tensor.dim {a2}, %ax{label} : {a2_t}")
            out.add(2, f"%i{label} = arith.index_cast %s{label} : index to i32")
            sizes.append(f"%s{label}")
            operands += f", %i{label}"
    workload = f"[{', '.join(sizes)}]" if sizes else ""
    dyn = f"{{{', '.join(sizes)}}}" if sizes else ""
    r_dyn = "{%sB}" if shape.batch is None else ""
    types = ", ".join([f"{a2_t}{dyn}", f"{shape.packing.type}{r_dyn}"] + ["i32"] * len(sizes))
    out.add(2, f"%c = flow.dispatch @{shape.symbol}::@{shape.symbol}{workload}"
               f"({a2}, {r}{operands}) : ({types}) -> {c2_t}{dyn}")  # fmt: skip
    result = "%c"
    if weight and len(lead) > 1:
        result = "%out"
        dims = []
        for j, d in enumerate(lead):
            if d is None:
                out.add(2, f"%cl{j} = arith.constant {j} : index")
                out.add(2, f"%l{j} = tensor.dim %a, %cl{j} : {a_in}")
            dims.append(f"%l{j}" if d is None else str(d))
        sizes_out = ", ".join([*dims, str(shape.n_out)])
        out.add(2, f"%out = tensor.expand_shape %c [{_group(len(lead))}, [{len(lead)}]] "
                   f"output_shape [{sizes_out}] : {c2_t} into {c_out}")  # fmt: skip
    out.add(2, f"return {result} : {c_out}")
    out.add(0, "}")
    return out.text()


def _packed_weight(name: str, match: _Match, shape: GemmShape) -> str:
    """A global `@name` holding `match`'s weight packed for `shape`, and the initializer that
    packs it: IREE evaluates it when it compiles (inline weights) or loads (parameters) the
    module, not per call, even where the GEMM runs inside a loop. The initializer reads a
    zero placeholder of the weight's type; `rewrite_gemms` puts a copy of the weight there."""
    w_t, packed_t = tensor(dims_of(match.rhs)), shape.packing.type
    out = Lines()
    out.add(0, f"util.global private @{name} : {packed_t}")
    out.add(0, "util.initializer {")
    out.add(2, f"%r = arith.constant dense<0.0> : {w_t}")  # the placeholder
    pack(out, match.rhs_layout, dims_of(match.rhs), shape.packing)
    out.add(2, f"util.global.store %rp, @{name} : {packed_t}")
    out.add(2, "util.return")
    out.add(0, "}")
    return out.text()


def _group(count: int) -> str:
    """The reassociation group of the first `count` dimensions."""
    return "[" + ", ".join(str(d) for d in range(count)) + "]"


def rewrite_gemms(module, isa: str = "avx2") -> list[GemmShape]:
    """Replace the GEMMs of `module` (an `iree.compiler.ir.Module` of linalg on tensors) that the
    kernel serves, with register tiles for `isa` (`ISAS`); returns the kernel shape of each one
    replaced."""
    from iree.compiler import ir

    f32 = ir.F32Type.get(module.context)
    calls = []  # (match, its kernel shape)
    for op in walk(module.operation):
        m = _match(op)
        if m is None or any(
            ir.ShapedType(v.type).element_type != f32 for v in (m.lhs, m.rhs, m.op.results[0])
        ):
            continue
        m = (m.rhs_layout != "bkn" and _glu(m)) or m
        shape = _kernel_shape(m)
        if shape is not None:
            calls.append((m, replace(shape, isa=isa)))
    if not calls:
        return []
    sources: list[str] = []
    helpers: dict[tuple, str] = {}  # (types, layout, epilogue) -> helper name
    weights: list[tuple[Any, GemmShape, str]] = []  # (weight, kernel, global of it packed)
    executables: set[str] = set()
    plan = []  # (match, kernel, helper, packed weight global or None)
    for m, shape in calls:
        if shape.symbol not in executables:
            executables.add(shape.symbol)
            sources.append(gemm_executable(shape))
        # A constant weight is packed once, by an initializer. A parameter is packed where it
        # is used: IREE 3.13 cannot compile a global initialized from a parameter global
        # ("failed to legalize unresolved target materialization ... !stream.resource<*>").
        pre = m.rhs_layout != "bkn" and producer_of(m.rhs).name == "arith.constant"
        key = (
            str(m.lhs.type),
            str(m.rhs.type),
            str(m.replaced.type),
            m.rhs_layout,
            m.epilogue,
            pre,
        )
        if key not in helpers:
            helpers[key] = f"hrm_gemm_call_{len(helpers)}"
            sources.append(_helper(helpers[key], m, shape, pre))
        packed = None
        if pre:
            packed = next((g for w, s, g in weights if w == m.rhs and s == shape), None)
            if packed is None:
                packed = f"hrm_packed_weight_{len(weights)}"
                weights.append((m.rhs, shape, packed))
                sources.append(_packed_weight(packed, m, shape))
        plan.append((m, shape, helpers[key], packed))
    extra = ir.Module.parse("\n".join(sources), module.context)
    # at the end: an initializer may only read globals defined before it (parameters)
    anchor = list(module.body.operations)[-1].operation
    for op in list(extra.body.operations):
        op.operation.move_after(anchor)
        anchor = op.operation
    _fill_placeholders(module, {g: w for w, _, g in weights})
    for m, shape, helper, packed in plan:
        with ir.InsertionPoint(m.op), m.op.location:
            rhs = m.rhs
            if packed is not None:
                rhs = ir.Operation.create(
                    "util.global.load",
                    results=[ir.Type.parse(shape.packing.type)],
                    attributes={"global": ir.FlatSymbolRefAttr.get(packed)},
                ).result
            call = ir.Operation.create(
                "func.call",
                results=[m.replaced.type],
                # the GEMM's operand as it is now: an earlier replacement may have changed it
                operands=[m.op.operands[0], rhs],
                attributes={"callee": ir.FlatSymbolRefAttr.get(helper)},
            )
        m.replaced.replace_all_uses_with(call.result)
        # the fused code, users before what they use, then the GEMM
        dead = list(m.fused)
        while dead:
            unused = [op for op in dead if not _uses(op.results[0])]
            assert unused, "fused code still in use"
            dead = [op for op in dead if _uses(op.results[0])]
            for op in unused:
                op.erase()
        m.op.erase()
    return [shape for _, shape in calls]


def _fill_placeholders(module, weights: dict[str, Any]) -> None:
    """In each packing initializer, replace the zero placeholder by a copy of its weight (the
    constant, or the load of its parameter)."""
    from iree.compiler import ir

    for op in module.body.operations:
        op = op.operation
        if op.name != "util.initializer":
            continue
        body = list(op.regions[0].blocks[0].operations)
        store = next((o.operation for o in body if o.operation.name == "util.global.store"), None)
        if store is None:
            continue
        name = ir.FlatSymbolRefAttr(store.attributes["global"]).value
        if name not in weights:
            continue
        placeholder = body[0].operation
        copy = producer_of(weights[name]).clone(ir.InsertionPoint(placeholder))
        placeholder.results[0].replace_all_uses_with(copy.results[0])
        placeholder.erase()
