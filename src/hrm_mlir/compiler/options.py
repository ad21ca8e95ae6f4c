"""How to compile: the HAL target, the llvm-cpu target CPU, and the flags chosen for them."""

from __future__ import annotations

from dataclasses import dataclass, field

from hrm_mlir.core.types import ChoiceEnum, DType
from hrm_mlir.runtime.target import VULKAN_BASELINE, CpuTarget, resolve_cpu

# The fastest llvm-cpu flags found for the float32 HRM step on AVX2 machines (`hrm-mlir bench`
# measures them beside IREE's defaults). Data tiling is the largest gain; it also makes dispatches
# allocate more stack, so the limit decides where an artifact can run:
# - by default (tuned=None) float32 modules get them with a 64 KiB stack allocation limit, so
#   the artifact runs within the 128 KiB stacks IREE's worker threads have by default (plain
#   `iree-run-module` included). The 27M step fits at batch 1, 16, symbolic and (901 tokens)
#   8. Where IREE needs more or rejects the flags otherwise, the module is compiled again with
#   IREE's defaults, with a note.
# - `tuned=True` (`--tuned`) allows 256 KiB, but the artifact then needs
#   `--task_worker_stack_size` above that (`hrm_mlir.runtime` sets 1 MiB; a batch-16 step
#   segfaulted in iree-worker without it).
# bfloat16 modules get them too. They were once left out because they moved the 27M model's
# bf16 q_halt by 0.22 at batch 1: the error of one scalar, judged by a fixed tolerance. bf16
# artifacts are now judged against the float32 truth relative to PyTorch's own bf16 error, over
# at least 32 rows (`hrm_mlir.core.numerics.judge_reduced`).
# Data tiling takes IREE's GlobalOptimization path, not `--iree-opt-data-tiling`'s default in
# IREE 3.13 (the DispatchCreation path): that one miscompiles a batched matmul whose row count
# is not a multiple of the target's tile rows (16 on AVX-512, 8 on AVX2) under a symbolic
# batch when its left-hand side comes from a reduction, as attention's P @ V does
# (docs/known-issues.md).
DATA_TILING = "--iree-global-opt-data-tiling"
FAST_CPU_FLAGS = [
    "--iree-opt-level=O3",
    DATA_TILING,
    "--iree-llvmcpu-enable-ukernels=all",
    "--iree-llvmcpu-matmul-tile-bytes=1048576",
]
SAFE_STACK_BYTES = 65536
TUNED_STACK_BYTES = 262144
STACK_LIMIT = "--iree-llvmcpu-stack-allocation-limit={}"
TUNED_CPU_FLAGS = [*FAST_CPU_FLAGS, STACK_LIMIT.format(TUNED_STACK_BYTES)]


BF16_COMPUTE = ("float32", "bfloat16")  # `CompileOptions.bf16_compute`
# bf16 products, float32 accumulation: the contractions of a promoted module take bf16 inputs.
# (IREE's own bf16 arithmetic put a tiny model's z_L 1.8x further from the float32 truth than
# PyTorch's bf16, and the self-check refused it: docs/known-issues.md.)
DEMOTE_MATMUL_INPUTS = [
    "--iree-global-opt-demote-contraction-inputs-type=bf16",
    "--iree-global-opt-demote-contraction-inputs-operations=matmul",
]


class Target(ChoiceEnum):
    """IREE HAL targets."""

    LLVM_CPU = "llvm-cpu"
    CUDA = "cuda"
    ROCM = "rocm"
    VULKAN = "vulkan"


@dataclass(frozen=True)
class CompileOptions:
    """Options of one iree-compile run.

    Attributes:
        target: the HAL target.
        cpu: `--iree-llvmcpu-target-cpu` for llvm-cpu: "host" (this machine's CPU) or a CPU
            LLVM knows ("x86-64-v3", "znver3", "icelake-server", "sapphirerapids", ...). The
            kernels are chosen by its features (`hrm_mlir.runtime.target`), never by the host's.
        cuda_arch: `--iree-cuda-target` for the cuda target. IREE 3.13 knows no sm_90+ target
            ("missing GPU target in #hal.executable.target", iree-org/iree#22147), so the
            default is sm_80, whose PTX the driver JIT-compiles for Hopper too.
        rocm_arch: `--iree-rocm-target` for the rocm target (gfx942 = MI300).
        vulkan_target: `--iree-vulkan-target`: a baseline profile by default, which any
            Vulkan device runs; a device-specific target (ampere, rdna3, valhall4) is faster
            on its GPUs and wrong on others (`hrm_mlir.runtime.target.VULKAN_BASELINE`).
        cpu_triple: `--iree-llvmcpu-target-triple` (aarch64-linux-gnu: ARM64 Linux); None =
            this machine's. `cpu` "host" on another architecture means "generic" there.
        tuned: llvm-cpu flags: None = `FAST_CPU_FLAGS` within a 64 KiB stack limit for float32
            modules (IREE's defaults where IREE rejects them, and for bfloat16); True =
            `TUNED_CPU_FLAGS` (256 KiB stack limit); False = IREE's defaults.
        gemm_kernels: float32 GEMMs on the project's kernels (`hrm_mlir.cpu_gemm`) instead
            of IREE's: None = where they pay off (llvm-cpu for a target CPU with AVX2 and FMA,
            AVX-512 ones included, unless `tuned` is False); True / False = always / never
            (llvm-cpu on x86-64 only).
        extra_flags: passed to iree-compile last, so they override the defaults.
        kernel_isa: the GEMM kernels' register tiles, "avx2" (6 x 2 ymm) or "avx512"
            (12 x 1 zmm); None = the target's (for A/B measurements).
        bf16_compute: what a bfloat16 module computes in on llvm-cpu. Both promote it to
            float32 behind its bf16 signatures (`hrm_mlir.compiler.promote`). "float32"
            (default): then the float32 flags and the project's kernels. "bfloat16": bf16
            products with float32 accumulation, as PyTorch's bf16 on a CPU and IREE's bf16
            mmt4d ukernels compute them: the matmuls' inputs are demoted back to bf16
            (`DEMOTE_MATMUL_INPUTS`), data tiling takes them to the ukernels (VDPBF16PS with
            AVX512_BF16), and the project's float32 kernels stay off. The default holds on CPUs
            with bf16 units too: there the bf16 path has not been measured against it yet.
    """

    target: Target = Target.LLVM_CPU
    cpu: str = "host"
    cuda_arch: str = "sm_80"
    rocm_arch: str = "gfx942"
    vulkan_target: str = VULKAN_BASELINE
    cpu_triple: str | None = None
    tuned: bool | None = None
    gemm_kernels: bool | None = None
    extra_flags: tuple[str, ...] = field(default_factory=tuple)
    kernel_isa: str | None = None
    bf16_compute: str = "float32"

    def __post_init__(self) -> None:
        if self.bf16_compute not in BF16_COMPUTE:
            raise ValueError(
                f"bf16_compute: expected one of {', '.join(BF16_COMPUTE)}, got "
                f"{self.bf16_compute!r}"
            )

    def promotes_bf16(self) -> bool:
        """Whether a bfloat16 module is promoted to float32 behind its bf16 ABI (llvm-cpu)."""
        return self.target == Target.LLVM_CPU

    @property
    def bf16_products(self) -> bool:
        """A promoted bf16 module's matmuls take bf16 inputs (`bf16_compute` "bfloat16")."""
        return self.promotes_bf16() and self.bf16_compute == "bfloat16"

    def gemm_isa(self) -> str:
        """The register tiles of the GEMM kernels (`hrm_mlir.cpu_gemm.ISAS`): `kernel_isa`, or
        the target's vector ISA (avx512 or avx2)."""
        return self.kernel_isa or self.cpu_target().isa

    def cpu_target(self) -> CpuTarget:
        """The llvm-cpu target `cpu` names, as IREE's LLVM resolves it."""
        return resolve_cpu(self.cpu, self.cpu_triple)

    def target_name(self) -> str:
        """The target in one word: llvm-cpu:<cpu>, cuda:<arch> or vulkan:<target>."""
        cpu = self.cpu if self.cpu_triple is None else f"{self.cpu_triple}:{self.cpu}"
        detail = {
            Target.LLVM_CPU: cpu,
            Target.CUDA: self.cuda_arch,
            Target.ROCM: self.rocm_arch,
            Target.VULKAN: self.vulkan_target,
        }[self.target]
        return f"{self.target.value}:{detail}"

    def use_gemm_kernels(self) -> bool:
        """Whether float32 GEMMs go to `hrm_mlir.cpu_gemm`'s kernels: on an x86-64 target CPU
        with AVX2 and FMA (resolved by IREE's LLVM, whatever this machine is)."""
        if self.target != Target.LLVM_CPU or self.gemm_kernels is False:
            return False
        if not self.cpu_target().avx2_fma:
            return False
        return bool(self.gemm_kernels) or self.tuned is not False

    def cpu_flags(self, dtype: DType | None) -> list[str]:
        """The llvm-cpu flags `tuned` chooses for a module computing in `dtype` (None: unknown)."""
        if self.target != Target.LLVM_CPU or self.tuned is False:
            return []
        if self.tuned:
            return list(TUNED_CPU_FLAGS)
        if dtype is None:
            return []
        return [*FAST_CPU_FLAGS, STACK_LIMIT.format(SAFE_STACK_BYTES)]

    def flags(
        self,
        dtype: DType | None = DType.FLOAT32,
        *,
        external_parameters: bool = False,
        fast: bool = True,
    ) -> list[str]:
        """iree-compile flags; `fast=False` leaves out the `tuned` flags (the fallback).

        With external parameters data tiling is left out: IREE 3.13 fails to compile the
        static-batch `@act` with it ("failed to legalize unresolved target materialization" of
        a data-tiling encoding, in the hoisted initializers that pack parameter-backed weights).
        """
        if self.target == Target.LLVM_CPU:
            flags = [f"--iree-llvmcpu-target-cpu={self.cpu_target().requested}"]
            if self.cpu_triple is not None:
                flags.append(f"--iree-llvmcpu-target-triple={self.cpu_triple}")
            if fast:
                flags += [
                    f
                    for f in self.cpu_flags(dtype)
                    if not (external_parameters and f == DATA_TILING)
                ]
        elif self.target == Target.CUDA:
            flags = [f"--iree-cuda-target={self.cuda_arch}"]
        elif self.target == Target.ROCM:
            flags = [f"--iree-rocm-target={self.rocm_arch}"]
        else:
            flags = [f"--iree-vulkan-target={self.vulkan_target}"]
        return [*flags, *self.extra_flags]

    @property
    def backend(self) -> str:
        return {Target.VULKAN: "vulkan-spirv"}.get(self.target, self.target.value)

    @property
    def emulated(self) -> bool:
        """An llvm-cpu target of another architecture than this machine's (ARM64 on x86)."""
        return (
            self.target == Target.LLVM_CPU
            and self.cpu_triple is not None
            and (self.cpu_target().arch != resolve_cpu().arch)
        )
