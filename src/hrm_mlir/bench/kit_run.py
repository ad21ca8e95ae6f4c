"""Running a kit, there: on a machine with only IREE's runtime and PyTorch, such as a GPU
machine, each `@step` artifact that `hrm_mlir.bench.kit_build` compiled is checked against
PyTorch and only then timed beside it.

`run_kit` rebuilds the model, serves its weights to each artifact as its parameters, checks
every output against PyTorch eager on the same device by the per-dtype table, and only then
times the two, interleaved (`hrm_mlir.bench.timing`).

PyTorch's side is what a user would run instead: eager in the kit's dtype, attention through
SDPA (`hrm_mlir.models.hrm.sdpa_attention`: FlashAttention on CUDA, as upstream runs with
flash_attn), and optionally torch.compile of the same. For a bfloat16 kit both are also compared
with PyTorch in float32 (TF32 off), to show how far each is from the float32 result.

This module imports neither torch-mlir nor the IREE compiler, directly or through another
(tests/test_layout.py holds this; tests/bench/test_kit.py runs a kit with both unimportable).
"""

from __future__ import annotations

import json
import platform
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hrm_mlir.bench.kit_format import DRIVERS, TORCH_DEVICES, WEIGHTS_FILE, Weights, read_kit
from hrm_mlir.bench.timing import interleaved
from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.core.numerics import step_tolerance
from hrm_mlir.core.types import DType
from hrm_mlir.exporter.abi import STEP_OUTPUTS
from hrm_mlir.exporter.archive import parameter_tensors
from hrm_mlir.exporter.inputs import random_step_inputs
from hrm_mlir.exporter.reference import step_depth, upcast
from hrm_mlir.models.config import ReasoningConfig
from hrm_mlir.models.hrm import sdpa_attention
from hrm_mlir.models.registry import config_from_json
from hrm_mlir.verification import VerifyReport, draws_for, reduced_report

PEERS = ("eager", "compile")


@dataclass
class Timing:
    runtime: str
    samples_ms: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "median_ms": self.median_ms,
            "min_ms": min(self.samples_ms),
            "max_ms": max(self.samples_ms),
            "samples_ms": self.samples_ms,
        }


@dataclass
class ArtifactResult:
    """One artifact of a kit: its check against PyTorch, and its timings beside PyTorch's.

    `report` compares it with PyTorch eager in its dtype (plain attention, as `hrm-mlir verify`
    does). A bfloat16 artifact is judged as `verify` judges one: against PyTorch float32 on the
    same weights and inputs, relative to PyTorch bf16's own distance from it, over at least 32
    rows (`numerics.judge_reduced`), so that neither PyTorch's bf16 rounding nor one q value at
    batch 1 decides. A wrong artifact (O(1) errors) fails.
    """

    file: str
    tokens: int
    batch: int
    report: VerifyReport
    vs_float32: dict[str, float] = field(default_factory=dict)  # runtime -> max rel-L2
    timings: list[Timing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.report.passed

    def failures(self) -> list[str]:
        return self.report.failures()

    def median(self, runtime: str) -> float | None:
        return next((t.median_ms for t in self.timings if t.runtime == runtime), None)

    def as_dict(self) -> dict[str, Any]:
        eager, iree = self.median("torch-eager"), self.median("iree")
        return {
            "file": self.file,
            "tokens": self.tokens,
            "batch": self.batch,
            "passed": self.passed,
            "verified": self.report.as_dict(),
            "vs_float32_max_rel_l2": self.vs_float32,
            "timings": [t.as_dict() for t in self.timings],
            "iree_x_eager": eager / iree if eager and iree else None,
            "notes": self.notes,
        }


@dataclass
class KitReport:
    kit: dict[str, Any]
    machine: dict[str, Any]
    results: list[ArtifactResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kit": {k: v for k, v in self.kit.items() if k != "configs"},
            "machine": self.machine,
            "passed": self.passed,
            "results": [r.as_dict() for r in self.results],
        }


def run_kit(
    kit: str | Path,
    *,
    iterations: int = 20,
    warmup: int = 3,
    peers: tuple[str, ...] = ("eager",),
    seed: int = 0,
    driver: str | None = None,
    device: str | None = None,
    time_limit_s: float | None = None,
    on_result: Callable[[ArtifactResult], None] | None = None,
) -> KitReport:
    """Check every artifact of a kit against PyTorch on this machine's device, then time it.

    Args:
        peers: the PyTorch runtimes timed beside IREE: `eager` (SDPA attention; always, it is
            the reference) and `compile` (torch.compile of the same).
        seed: of the random inputs.
        driver / device: the IREE driver and torch device (default: by the kit's target).
        time_limit_s: per artifact, timed rounds stop once this has passed (at least
            `timing.MIN_ROUNDS` are kept): a slow runtime cannot eat a lent machine's time.
    """
    from hrm_mlir.runtime.module import CompiledModule

    kit, doc = read_kit(kit)
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise HrmMlirError(f"--peers: unknown {', '.join(unknown)}; known: {', '.join(PEERS)}")
    backend = doc["target"].split(":")[0]
    driver = driver or DRIVERS[backend]
    device = device or TORCH_DEVICES[backend]
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HrmMlirError(f"{kit}: built for {doc['target']}, but torch sees no CUDA device here")
    torch.backends.cuda.matmul.allow_tf32 = False  # the float32 reference is float32
    torch.backends.cudnn.allow_tf32 = False
    dtype = DType.parse(doc["dtype"])
    report = KitReport(doc, _machine(driver, device))
    for seq, artifacts in _by_seq_len(doc["artifacts"]).items():
        config = config_from_json(json.dumps(doc["configs"][str(seq)]))
        state = _weights(kit, doc, config)
        params = parameter_tensors(_model(config, state, "cpu"))  # served to IREE from here
        torch_runtimes = _torch_runtimes(_model(config, state, device), peers)
        f32 = config.model_copy(update={"forward_dtype": DType.FLOAT32})
        float32 = _Torch(_model(f32, state, device)) if dtype != DType.FLOAT32 else None
        for a in artifacts:
            args = [t.to(device) for t in random_step_inputs(config, a["batch"], seed=seed)]
            # closed before the next artifact's: its device memory, and the device itself
            with CompiledModule(kit / a["file"], driver=driver, parameters=params) as module:
                result = _check_and_time(
                    a,
                    config,
                    module,
                    args,
                    torch_runtimes,
                    float32,
                    iterations,
                    warmup,
                    time_limit_s,
                    seed,
                )
            report.results.append(result)
            if on_result is not None:
                on_result(result)
    return report


def _check_and_time(
    artifact: dict[str, Any],
    config: ReasoningConfig,
    module,
    args: list[torch.Tensor],
    torch_runtimes: dict[str, _Torch],
    float32: _Torch | None,
    iterations: int,
    warmup: int,
    time_limit_s: float | None,
    seed: int = 0,
) -> ArtifactResult:
    """Compare the artifact's outputs with PyTorch's (`ArtifactResult`), judged against float32
    PyTorch over enough draws where the kit is not float32 (`verification.reduced_report`), and
    every runtime's distance from float32 on the first; then time them all if it passes."""
    from hrm_mlir.runtime.module import read_back, to_numpy, to_torch

    dtype = config.forward_dtype
    tolerance = step_tolerance(dtype, step_depth(config))
    iree = _Iree(module, [module.on_device(to_numpy(t)) for t in args])
    outputs = {"iree": [to_torch(read_back(r)) for r in iree.results()]}
    outputs |= {name: [t.cpu() for t in fn(args)] for name, fn in torch_runtimes.items()}
    got, ref, truth = [outputs["iree"]], [_plain(torch_runtimes, args)], []
    if float32 is not None:
        truth.append(_plain({"torch-eager": float32}, upcast(args)))
        batch = int(args[0].shape[0])
        for draw in range(1, draws_for(batch)):
            more = [t.to(args[0].device) for t in random_step_inputs(config, batch, seed + draw)]
            got.append(list(module.call("step", *[t.cpu() for t in more])))
            ref.append(_plain(torch_runtimes, more))
            truth.append(_plain({"torch-eager": float32}, upcast(more)))
    report = reduced_report(STEP_OUTPUTS, got, ref, truth, dtype, tolerance, config)
    result = ArtifactResult(artifact["file"], artifact["tokens"], artifact["batch"], report)
    if truth:
        result.vs_float32 = {name: _max_rel_l2(out, truth[0]) for name, out in outputs.items()}
    if not result.passed:
        result.notes.append("not timed: it does not match PyTorch")
        return result
    timed: dict[str, Callable[[], object]] = {n: fn.timed(args) for n, fn in torch_runtimes.items()}
    timed["iree"] = iree
    sync = torch.cuda.synchronize if args[0].is_cuda else None
    samples = interleaved(
        timed, iterations=iterations, warmup=warmup, time_limit_s=time_limit_s, sync=sync
    )
    result.timings = [Timing(name, s) for name, s in samples.items()]
    return result


class _Torch:
    """A PyTorch model's step with SDPA attention: called for the check, `timed` for timing."""

    def __init__(self, model, fn: Callable | None = None) -> None:
        self.model, self.fn = model, fn or model.inner

    def __call__(self, args: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad(), sdpa_attention(self.model):
            return list(self.fn(*args))

    def plain(self, args: list[torch.Tensor]) -> list[torch.Tensor]:
        """The step with the model's plain attention (matmul, softmax, matmul), eager: what
        `hrm-mlir verify` compares an artifact with."""
        with torch.no_grad():
            return list(self.model.inner(*args))

    def timed(self, args: list[torch.Tensor]) -> Callable[[], object]:
        # The last output is ready only when the whole step is: one tiny read-back waits
        # for it, as `_Iree.__call__` does.
        return lambda: self(args)[-1].cpu()


class _Iree:
    """An artifact's `@step` on arguments already on its device."""

    def __init__(self, module, args: list) -> None:
        from hrm_mlir.runtime.module import read_back

        self.module, self.args, self.read_back = module, args, read_back

    def results(self) -> tuple:
        return self.module.invoke("step", *self.args)

    def __call__(self) -> None:
        self.read_back(self.results()[-1])  # as for PyTorch: one tiny read-back


def _plain(runtimes: Mapping[str, _Torch], args) -> list[torch.Tensor]:
    return [t.cpu() for t in runtimes["torch-eager"].plain(list(args))]


def _torch_runtimes(model, peers: tuple[str, ...]) -> dict[str, _Torch]:
    runtimes = {"torch-eager": _Torch(model)}
    if "compile" in peers:
        runtimes["torch.compile"] = _Torch(model, torch.compile(model.inner))
    return runtimes


def _by_seq_len(artifacts: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    groups: dict[int, list[dict[str, Any]]] = {}
    for a in artifacts:
        groups.setdefault(int(a["seq_len"]), []).append(a)
    return groups


def _weights(kit: Path, doc: dict[str, Any], config: ReasoningConfig) -> dict[str, torch.Tensor]:
    if doc["weights"]["source"] == Weights.CHECKPOINT.value:
        from safetensors.torch import load_file

        return load_file(kit / WEIGHTS_FILE)
    from hrm_mlir.checkpoint.synthetic import random_state

    return random_state(config, int(doc["weights"]["seed"]))


def _model(config: ReasoningConfig, state: Mapping[str, torch.Tensor], device: str):
    from hrm_mlir.checkpoint.load import build_model

    return build_model(config, dict(state)).to(device)


def _max_rel_l2(got: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    worst = 0.0
    for g, r in zip(got, ref, strict=True):
        g64, r64 = g.double(), r.double()
        worst = max(worst, float((g64 - r64).norm() / r64.norm().clamp_min(1e-30)))
    return worst


def _machine(driver: str, device: str) -> dict[str, Any]:
    from hrm_mlir.runtime.host import cpu_line, version

    machine: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_line(),
        "torch": torch.__version__,
        "iree-base-runtime": version("iree-base-runtime"),
        "driver": driver,
        "torch_device": device,
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        machine |= {
            "device": props.name,
            "device_memory_gib": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
        }
    else:
        machine["device"] = cpu_line()
    return machine


def write_report(report: KitReport, path: str | Path) -> Path:
    from hrm_mlir.core.fileio import write_atomic

    return write_atomic(path, json.dumps(report.as_dict(), indent=2).encode())
