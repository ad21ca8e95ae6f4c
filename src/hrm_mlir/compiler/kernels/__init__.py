"""The project's own CPU kernels (llvm-cpu, AVX2 + FMA, and AVX-512) as hand-written IREE
dispatches, and the rewrites that put them in a module of linalg on tensors:

- `gemm`: register-tiled float32 GEMMs (`rewrite_gemms`);
- `attention`: attention on one dispatch, its scores kept in L1;
- `qkv`: the attention kernel's q, k and v straight from the qkv projection;
- `fusion`: the two in place of the code they replace (`fuse_attention`);
- `writer` and `reader`: the MLIR text they write and what they read of a module.
"""

from hrm_mlir.compiler.kernels.attention import AttentionShape
from hrm_mlir.compiler.kernels.fusion import fuse_attention
from hrm_mlir.compiler.kernels.gemm import Epilogue, GemmShape, rewrite_gemms
from hrm_mlir.compiler.kernels.qkv import QkvShape
from hrm_mlir.compiler.kernels.writer import ISAS, VectorIsa

__all__ = [
    "ISAS",
    "AttentionShape",
    "Epilogue",
    "GemmShape",
    "QkvShape",
    "VectorIsa",
    "fuse_attention",
    "rewrite_gemms",
]
