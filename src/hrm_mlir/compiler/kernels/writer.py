"""What the kernel generators share to write MLIR text: the text itself (`Lines`), the vector
ISA facts of the register tiles (`ISAS`, `VectorIsa`), the `stream.executable` frame of a
hand-written dispatch (`open_executable` ... `close_executable`), the register tile that the
GEMM and attention kernels are made of (`register_tile`), and the packing of a GEMM right-hand
side as [(batch,) N/16, K, 16] panels (`Panels`, `pack`), which the GEMM kernels
(`hrm_mlir.compiler.kernels.gemm`) and the attention kernel (`hrm_mlir.compiler.kernels.attention`)
both read.

What one generator alone writes stays in that generator.
"""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LANES = 8  # floats per ymm register
PANEL = 2 * LANES  # columns per register tile
ROWS = 6  # rows per register tile: 12 accumulators + 2 right-hand side vectors + 1 broadcast
# The register tiles, by the target's vector ISA: (floats per vector, rows, panels). AVX2 (16
# ymm registers): 6 rows x 1 panel of 2 ymm. AVX-512 (32 zmm registers): 12 rows x 2 panels
# of 1 zmm, 24 accumulators; per k two loads of the panels, 12 broadcasts (folded into the
# FMAs) and 24 FMAs of 16 floats, on the same [N/16, K, 16] panels as AVX2. On the 27M step
# (82 tokens, an AVX-512 Xeon) 12 x 2 panels ran 1.1-1.2x faster than 12 x 1 panel, whose
# one panel load per 12 FMAs left the FMA ports waiting; 10 and 14 rows were no faster.
ISAS = {"avx2": (LANES, ROWS, 1), "avx512": (2 * LANES, 12, 2)}


class VectorIsa:
    """The vector width of a kernel shape whose `isa` names an entry of `ISAS`."""

    isa: str

    @property
    def lanes(self) -> int:
        """Floats per vector register: 8 (ymm) or 16 (zmm)."""
        return ISAS[self.isa][0]

    @property
    def vectors(self) -> int:
        """Vector registers per row of a 16-column panel."""
        return PANEL // self.lanes


def ceil_to(x: int, multiple: int) -> int:
    """`x` rounded up to a multiple of `multiple`."""
    return -(-x // multiple) * multiple


def panel_count(n: int) -> int:
    """The 16-column panels that hold `n` columns, the last one maybe zero-padded."""
    return -(-n // PANEL)


def _type(kind: str, dims: Sequence[int | None]) -> str:
    return f"{kind}<" + "".join(("?" if d is None else str(d)) + "x" for d in dims) + "f32>"


def tensor(dims: Sequence[int | None]) -> str:
    """The float32 tensor type of `dims` (None: a runtime size)."""
    return _type("tensor", dims)


def memref(dims: Sequence[int | None]) -> str:
    """The float32 memref type of `dims` (None: a runtime size)."""
    return _type("memref", dims)


class Lines:
    """MLIR text with fresh SSA names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._n = 0

    def fresh(self, stem: str) -> str:
        self._n += 1
        return f"%{stem}{self._n}"

    def add(self, indent: int, text: str) -> None:
        self.lines.append(" " * indent + text)

    def block(self, indent: int, text: str) -> None:
        """Several lines at once (`text` is dedented)."""
        for line in textwrap.dedent(text).strip().splitlines():
            self.add(indent, line)

    def text(self) -> str:
        return "\n".join(self.lines)


def shape_symbol(stem: str, shape: Any, *dims: int) -> str:
    """A kernel's name: `stem`_<batch, or dyn>x<dims>_<digest of `shape`>, one per shape."""
    digest = hashlib.sha1(repr(shape).encode()).hexdigest()[:8]
    sizes = ["dyn" if shape.batch is None else str(shape.batch), *map(str, dims)]
    return f"{stem}_{'x'.join(sizes)}_{digest}"


# ---------------------------------------------------------------------------------------------
# The frame of a dispatch


def open_executable(
    out: Lines,
    symbol: str,
    workload: Sequence[str],
    grid: Sequence[int | str],
    bindings: Sequence[str],
) -> None:
    """Open `stream.executable @symbol` with one export of that name and its function, whose
    body the caller writes at indent 6 and ends with `close_executable`. `workload`: the names
    of the runtime sizes (%wX in the workgroup count, i32 operands %iX after the bindings %Xb);
    `grid`: the workgroup count x, y, z, each an integer, an SSA value (%wX) or an op computing
    it from the %wX."""
    out.add(0, f"stream.executable private @{symbol} {{")
    params = ", ".join(f"%w{name}: index" for name in workload)
    out.add(
        2,
        f"stream.executable.export public @{symbol} workgroups({params}) "
        "-> (index, index, index) {",
    )
    counts = []
    for axis, count in zip("xyz", grid, strict=True):
        if isinstance(count, str) and count.startswith("%"):
            counts.append(count)
            continue
        value = f"arith.constant {count} : index" if isinstance(count, int) else count
        out.add(4, f"%g{axis} = {value}")
        counts.append(f"%g{axis}")
    out.add(4, f"stream.return {', '.join(counts)} : index, index, index")
    out.add(2, "}")
    out.add(2, "builtin.module {")
    args = [f"%{b}b: !stream.binding" for b in bindings] + [f"%i{n}: i32" for n in workload]
    out.add(4, f"func.func @{symbol}({', '.join(args)}) {{")


def close_executable(out: Lines) -> None:
    """Close what `open_executable` opened (the body's return written)."""
    out.add(4, "}")
    out.add(2, "}")
    out.add(0, "}")


def index_constants(out: Lines, i: int, values: Mapping[str, int]) -> None:
    """`%name = arith.constant value : index` for each of `values`, in order."""
    for name, value in values.items():
        out.add(i, f"%{name} = arith.constant {value} : index")


def read_workload(out: Lines, i: int, workload: Sequence[str]) -> None:
    """The runtime sizes as index values %X, from the i32 operands %iX (`open_executable`)."""
    for name in workload:
        out.add(i, f"%{name} = arith.index_castui %i{name} : i32 to index")


def subspan(out: Lines, i: int, name: str, binding: str, memref_type: str) -> None:
    """%`name` = binding %`binding`b (`open_executable`) as `memref_type` (with its runtime
    sizes, if any)."""
    out.add(
        i, f"%{name} = stream.binding.subspan %{binding}b[%c0] : !stream.binding -> {memref_type}"
    )


# ---------------------------------------------------------------------------------------------
# The register tile


def register_tile(
    out: Lines,
    i: int,
    result: str,
    upper: str,
    rhs: Sequence[str],
    lhs: Sequence[str],
    extra: Sequence[str] = (),
    lanes: int = LANES,
) -> None:
    """`result`:len(rhs)*len(lhs) = a register tile of len(lhs) rows x 16 columns: for each
    row r, the sum over %k < `upper` of the scalar that op `lhs[r]` loads times the 16 floats
    that the ops `rhs` load, `lanes` floats each (two of 8, or one of 16; ops written in terms
    of %k; %c0 and %c1 must be defined). `extra` ops (a prefetch) go in the loop after the
    `rhs` loads."""
    vec = f"vector<{lanes}xf32>"
    halves = range(len(rhs))
    accs = [f"%acc{r}_{h}" for r in range(len(lhs)) for h in halves]
    types = ", ".join([vec] * len(accs))
    carried = ", ".join(f"{a} = %zero" for a in accs)
    out.add(
        i,
        f"{result}:{len(accs)} = scf.for %k = %c0 to {upper} step %c1 "
        f"iter_args({carried}) -> ({types}) {{",
    )
    for h, load in enumerate(rhs):
        out.add(i + 2, f"%r{h}v = {load}")
    for op in extra:
        out.add(i + 2, op)
    new = []
    for r, load in enumerate(lhs):
        out.add(i + 2, f"%a{r} = {load}")
        out.add(i + 2, f"%v{r} = vector.broadcast %a{r} : f32 to {vec}")
        for h in halves:
            out.add(i + 2, f"%s{r}_{h} = vector.fma %v{r}, %r{h}v, %acc{r}_{h} : {vec}")
            new.append(f"%s{r}_{h}")
    out.add(i + 2, f"scf.yield {', '.join(new)} : {types}")
    out.add(i, "}")


# ---------------------------------------------------------------------------------------------
# The right-hand side packed as panels


@dataclass(frozen=True)
class Panels:
    """A right-hand side R [(batch,) K, N] packed as [(batch,) N/16, K, 16]: panels of 16
    columns, N zero-padded to whole panels. With `halves` (a GEMM with an epilogue, whose
    output combines the two halves of N) each panel holds 8 columns of each half instead.
    `batch` 0 means no batch dimension (one R for every row: a weight); None a runtime size.
    """

    batch: int | None
    k: int
    n: int
    halves: bool = False

    @property
    def count(self) -> int:
        """Panels per batch."""
        return panel_count(self.n)

    @property
    def type(self) -> str:
        """The tensor type of R packed."""
        inner = [self.count, self.k, PANEL]
        return tensor(inner if self.batch == 0 else [self.batch, *inner])


# How R is packed from each layout: the padded shape (N padded to whole panels), the split of N
# into (panel, column), and the transpose that puts the panel outermost: [(batch,) panel, K, 16].
_PACKING = {
    "nk": ("[[0, 1], [2]]", "[0, 2, 1]"),  # W [N, K] -> [NP, 16, K] -> [NP, K, 16]
    "kn": ("[[0], [1, 2]]", "[1, 0, 2]"),  # R [K, N] -> [K, NP, 16] -> [NP, K, 16]
    "bkn": ("[[0], [1], [2, 3]]", "[0, 2, 1, 3]"),  # [B, K, N] -> [B, K, NP, 16] -> [B, NP, K, 16]
}

# With an epilogue a panel holds 8 columns of each half: [2, NP, 8] -> [NP, 2, 8] along N.
_GLU_PACKING = {
    "nk": ("[[0, 1, 2], [3]]", "[1, 3, 0, 2]"),  # W [N, K] -> [2, NP, 8, K] -> [NP, K, 2, 8]
    "kn": ("[[0], [1, 2, 3]]", "[2, 0, 1, 3]"),  # R [K, N] -> [K, 2, NP, 8] -> [NP, K, 2, 8]
}


def pack(out: Lines, layout: str, r_dims: list[int | None], panels: Panels) -> None:
    """%rp = %r packed as `panels`, written at indent 2. `layout` is %r's, of dims `r_dims`:
    "nk" (a weight W [N, K], R = W^T), "kn" (R [K, N]) or "bkn" (R [B, K, N])."""
    if panels.halves:
        split, perm = _GLU_PACKING[layout]
        np_, k = panels.count, panels.k
        halves = [2, np_, LANES, k] if layout == "nk" else [k, 2, np_, LANES]
        staged = [np_, k, 2, LANES]
        out.add(
            2,
            f"%re = tensor.expand_shape %r {split} output_shape "
            f"[{', '.join(map(str, halves))}] : {tensor(r_dims)} into {tensor(halves)}",
        )
        out.add(2, f"%rse = tensor.empty() : {tensor(staged)}")
        out.add(
            2,
            f"%rs = linalg.transpose ins(%re : {tensor(halves)}) "
            f"outs(%rse : {tensor(staged)}) permutation = {perm}",
        )
        out.add(2, f"%rp = tensor.collapse_shape %rs [[0], [1], [2, 3]] : {tensor(staged)} "
                   f"into {panels.type}")  # fmt: skip
        return
    split, perm = _PACKING[layout]
    np_, pad = panels.count, panels.count * PANEL - panels.n
    n_axis = 0 if layout == "nk" else len(r_dims) - 1
    padded = [np_ * PANEL if j == n_axis else d for j, d in enumerate(r_dims)]
    source = "%r"
    if pad:
        high = ", ".join(str(pad if j == n_axis else 0) for j in range(len(r_dims)))
        low = ", ".join("0" for _ in r_dims)
        out.add(2, "%zf = arith.constant 0.0 : f32")
        out.add(2, f"%rpad = tensor.pad %r low[{low}] high[{high}] {{")
        out.add(2, "^bb0(" + ", ".join(f"%x{j}: index" for j in range(len(r_dims))) + "):")
        out.add(4, "tensor.yield %zf : f32")
        out.add(2, f"}} : {tensor(r_dims)} to {tensor(padded)}")
        source = "%rpad"
    expanded = [*padded[:n_axis], np_, PANEL, *padded[n_axis + 1 :]]
    sizes = [str(d) for d in expanded]
    empty = "()"
    if layout == "bkn" and panels.batch is None:
        out.add(2, "%ci0 = arith.constant 0 : index")
        out.add(2, f"%rb = tensor.dim %r, %ci0 : {tensor(r_dims)}")
        sizes[0], empty = "%rb", "(%rb)"
    out.add(2, f"%re = tensor.expand_shape {source} {split} output_shape [{', '.join(sizes)}] "
               f": {tensor(padded)} into {tensor(expanded)}")  # fmt: skip
    out.add(2, f"%rpe = tensor.empty{empty} : {panels.type}")
    out.add(2, f"%rp = linalg.transpose ins(%re : {tensor(expanded)}) "
               f"outs(%rpe : {panels.type}) permutation = {perm}")  # fmt: skip
