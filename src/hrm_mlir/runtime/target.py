"""What an llvm-cpu target is: its LLVM CPU name and features, as IREE's LLVM resolves them.

`resolve_cpu("host")` asks iree-compile what it makes of this machine's CPU, and
`resolve_cpu("znver4")` what it makes of a named one, by compiling an empty function to the
flow phase and reading the `#hal.executable.target` it chose (about 0.15 s, once per process
and name). The compile decisions that depend on the CPU (which kernels, whether the artifact
can be checked here) use these features, never the host's, so that a module compiled for a
named CPU is the same on every machine. The features are recorded in the artifact
(`iree.reflection` of its public functions), and `hrm_mlir.runtime` refuses an artifact whose
features this CPU lacks with one line instead of a SIGILL.
"""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hrm_mlir.core.errors import CompileError

HOST = "host"
# Keys of the artifact's `iree.reflection` (on every public function).
TARGET_KEY = "hrm_mlir.target"
CPU_KEY = "hrm_mlir.cpu"
FEATURES_KEY = "hrm_mlir.cpu_features"
TRIPLE_KEY = "hrm_mlir.cpu_triple"
# The Vulkan target of every artifact unless asked otherwise: a baseline profile, whose SPIR-V
# any conformant Vulkan device runs (lavapipe included). IREE's device-specific targets
# (ampere, rdna3, valhall, ...) assume that device's subgroup size and features: on another
# device they compute wrong numbers without an error (lavapipe, a tiny HRM step: q_halt
# -0.972 for ampere and rdna3, -0.593 for valhall, against -5.122 right).
VULKAN_BASELINE = "vp_android_baseline_2022"
# The vendor a device-specific Vulkan target is for, by how its name starts, and what the
# device name of that vendor's GPUs contains.
_VULKAN_VENDORS = (
    (("vp_",), None),  # profiles: any device
    (("ampere", "turing", "volta", "pascal", "ada", "hopper", "blackwell", "sm_"), "NVIDIA"),
    (("rdna", "cdna", "gfx", "rx", "mi"), "AMD"),
    (("valhall", "mali"), "Mali"),
    (("adreno",), "Adreno"),
)

_EMPTY_MODULE = (
    "func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> {\n  return %a : tensor<4xf32>\n}\n"
)


@dataclass(frozen=True)
class CpuTarget:
    """An llvm-cpu target as LLVM sees it.

    Attributes:
        requested: what `--cpu` said (`host` or an LLVM CPU name).
        name: LLVM's CPU name (for `host`, this machine's, e.g. "znver3", "sapphirerapids").
        triple: the target triple.
        features: the enabled features, without their "+" ("avx2", "fma", "avx512f", ...).
    """

    requested: str
    name: str
    triple: str
    features: frozenset[str]

    @property
    def x86(self) -> bool:
        return self.triple.startswith(("x86_64", "amd64"))

    @property
    def arch(self) -> str:
        """The triple's architecture: x86_64, aarch64, ..."""
        return triple_arch(self.triple)

    @property
    def avx2_fma(self) -> bool:
        """x86-64 with AVX2 and FMA: what the kernels of `hrm_mlir.compiler.kernels` need."""
        return self.x86 and {"avx2", "fma"} <= self.features

    @property
    def avx512(self) -> bool:
        """AVX-512 F, with the BW/DQ/VL that every AVX-512 CPU since Skylake-SP has."""
        return self.x86 and {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= self.features

    @property
    def bf16_arithmetic(self) -> str | None:
        """The bf16 dot-product units this target has, by LLVM's feature name (x86:
        "avx512bf16" for VDPBF16PS, "amx-bf16" for AMX tiles; ARM64: "bf16" for BFDOT and
        BFMMLA), or None: every bf16 operation is then emulated in software."""
        for feature in ("amx-bf16", "avx512bf16", "bf16"):
            if feature in self.features:
                return feature
        return None

    @property
    def isa(self) -> str:
        """The vector ISA class the kernels are generated for: avx512, avx2 or none."""
        return "avx512" if self.avx512 else "avx2" if self.avx2_fma else "none"

    def missing_on(self, other: CpuTarget) -> list[str]:
        """The features of this target that `other` (e.g. the host) lacks, sorted; its
        architecture where the two differ."""
        if self.arch != other.arch:
            return [self.arch]
        return sorted(self.features - other.features)

    def describe(self) -> str:
        """E.g. "znver3 (this machine), avx2"."""
        here = " (this machine)" if self.requested == HOST else ""
        return f"{self.name}{here}, {self.isa}"

    def reflection(self) -> dict[str, str]:
        """What the artifact records of its target."""
        return {
            CPU_KEY: self.name,
            FEATURES_KEY: ",".join(sorted(self.features)),
            TRIPLE_KEY: self.triple,
        }


def parse_features(text: str) -> frozenset[str]:
    """The enabled features of an LLVM feature string ("+avx2,-avx512f,+fma")."""
    return frozenset(f[1:] for f in text.split(",") if f.startswith("+"))


@functools.cache
def resolve_cpu(cpu: str = HOST, triple: str | None = None) -> CpuTarget:
    """The target iree-compile builds for `--iree-llvmcpu-target-cpu=cpu` (and
    `--iree-llvmcpu-target-triple=triple`; None: this machine's).

    Raises:
        CompileError: `cpu` is not a CPU that LLVM knows, listing the names it accepts.
    """
    if triple is not None and cpu == HOST and triple_arch(triple) != host_arch():
        cpu = "generic"  # `host` means this machine's CPU, which another architecture lacks
    from iree.compiler.tools.binaries import find_tool

    with tempfile.TemporaryDirectory(prefix="hrm-mlir-cpu-") as tmp:
        src = Path(tmp) / "empty.mlir"
        src.write_text(_EMPTY_MODULE)
        command = [
            find_tool("iree-compile"),
            str(src),
            "--iree-hal-target-device=local",
            "--iree-hal-local-target-device-backends=llvm-cpu",
            f"--iree-llvmcpu-target-cpu={cpu}",
            *([f"--iree-llvmcpu-target-triple={triple}"] if triple else []),
            "--compile-to=flow",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if "is not a recognized processor" in done.stderr or "Unknown CPU" in done.stderr:
        accepted = re.search(r"List of accepted CPUs: (.*)", done.stderr)
        names = f": one of {accepted.group(1).strip()}" if accepted else ""
        raise CompileError(f"--cpu {cpu}: LLVM knows no such CPU{names}, or 'host'")
    found = re.search(r'cpu = "([^"]*)", cpu_features = "([^"]*)"', done.stdout)
    resolved = re.search(r'target_triple = "([^"]*)"', done.stdout)
    if done.returncode != 0 or found is None or resolved is None:
        first = next((ln for ln in done.stderr.splitlines() if "error" in ln), done.stderr[:200])
        raise CompileError(f"cannot resolve --cpu {cpu} with iree-compile: {first.strip()}")
    return CpuTarget(cpu, found.group(1), resolved.group(1), parse_features(found.group(2)))


# The x86 vector-ISA features of LLVM whose code faults on a CPU without them, by their
# /proc/cpuinfo flag: what a machine with IREE's runtime but no compiler checks an artifact's
# recorded features against (`cpuinfo_features`).
_CPUINFO_FLAGS = {
    "sse4.1": "sse4_1", "sse4.2": "sse4_2", "avx": "avx", "avx2": "avx2", "fma": "fma",
    "f16c": "f16c", "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512dq": "avx512dq",
    "avx512vl": "avx512vl", "avx512cd": "avx512cd", "avx512vnni": "avx512_vnni",
    "avx512bf16": "avx512_bf16", "avx512vbmi": "avx512vbmi", "avx512vbmi2": "avx512_vbmi2",
    "avx512ifma": "avx512ifma", "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq", "avx512fp16": "avx512_fp16",
    "amx-tile": "amx_tile", "amx-int8": "amx_int8", "amx-bf16": "amx_bf16",
}  # fmt: skip


def cpuinfo_features(cpuinfo: str | None = None) -> tuple[frozenset[str], frozenset[str]]:
    """(the features of `_CPUINFO_FLAGS` this CPU has, every feature that table can tell),
    in LLVM's names, read from /proc/cpuinfo without iree-compile. Nothing is told on a CPU
    other than x86-64, or where /proc/cpuinfo is unreadable."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return frozenset(), frozenset()
    m = re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.M)
    if m is None:
        return frozenset(), frozenset()
    flags = set(m.group(1).split())
    have = frozenset(llvm for llvm, flag in _CPUINFO_FLAGS.items() if flag in flags)
    return have, frozenset(_CPUINFO_FLAGS)


def triple_arch(triple: str) -> str:
    """A target triple's architecture ("aarch64-linux-gnu" -> "aarch64"; "" for "")."""
    return triple.split("-")[0]


def host_arch() -> str:
    import platform

    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def vulkan_vendor(target: str) -> str | None:
    """The GPU vendor a Vulkan target is specific to (None: a profile, for any device)."""
    name = target.lower()
    for prefixes, vendor in _VULKAN_VENDORS:
        if name.startswith(prefixes):
            return vendor
    return None


def vulkan_mismatch(target: str, device_name: str) -> str | None:
    """Why an artifact built for Vulkan `target` must not run on the device named so, or None
    where it may: a baseline profile runs anywhere, a device-specific target on its vendor's
    devices only."""
    vendor = vulkan_vendor(target)
    if vendor is None or vendor.lower() in device_name.lower():
        return None
    return (
        f"built for the Vulkan target {target} ({vendor} GPUs), but this device is "
        f"{device_name}: a device-specific target computes wrong numbers elsewhere; compile "
        f"again with --vulkan_target {VULKAN_BASELINE} (any Vulkan device) or this device's"
    )
