"""Side-by-side latency of one HRM or TRM step: PyTorch eager, torch.compile, ONNX Runtime, OpenVINO
and IREE.

ONNX Runtime and OpenVINO (its CPU plugin, computing in float32) load one ONNX export of the
step per batch size (`hrm_mlir.bench.peers`).

IREE is measured with the compile options given (`iree`: the project's default flags and GEMM
kernels unless told otherwise), with the same flags but IREE's own GEMMs (`iree-no-kernels`),
with IREE's own defaults (`iree-plain`), with `TUNED_CPU_FLAGS` (`iree-tuned`), and as one
symbolic-batch artifact serving every batch size (`iree-dynamic`, with the options of `iree`).

Every runtime is verified against eager before it is timed. Samples are interleaved (each
runtime once per round, in a rotating order, after warm-up), so machine noise hits all of them
alike; each timed call follows an untimed call of the same runtime, so none is timed in another's
wake (`hrm_mlir.bench.timing`). Ratios are taken within one run. FLOPs are the exact matmul
FLOPs of a step (`step_flops`); the peak is the best 1024^3 float32 GEMM (torch.mm) of the run,
measured before and once per timed round, in the same process with the same thread count.

`dtype=bfloat16` times the bf16 step instead: PyTorch eager and torch.compile of the model in
bf16; ONNX Runtime (its CPU provider has few bf16 kernels) and OpenVINO at its default inference
precision on the float32 ONNX export; the project's bf16 artifact (`iree-bf16`, computed in
float32 behind its bf16 ABI unless the compile options say `bf16_compute="bfloat16"`) and its
float32 one (`iree-f32`). The float32 runtimes get the bf16 inputs upcast (exactly). Every
runtime is judged against the float32 truth (the model in float32 on the same weights and
inputs) over `verification.draws_for` draws, by `numerics.judge_reduced` (distance at most
1.5 x PyTorch bf16's), and those computing in float32 also by the float32 step tolerance; one
that fails is timed and reported as failing, with a note.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from hrm_mlir.bench.peers import OnnxExport, onnx_session, openvino_model
from hrm_mlir.bench.timing import interleaved
from hrm_mlir.checkpoint.load import Checkpoint
from hrm_mlir.compiler.driver import compile_and_load
from hrm_mlir.compiler.options import CompileOptions
from hrm_mlir.core.errors import HrmMlirError, first_line
from hrm_mlir.core.fileio import write_atomic
from hrm_mlir.core.numerics import judge_reduced, step_tolerance
from hrm_mlir.core.types import DType, OutputType
from hrm_mlir.exporter.abi import STEP_OUTPUTS
from hrm_mlir.exporter.inputs import random_step_inputs
from hrm_mlir.exporter.module import ExportOptions, prepare_model
from hrm_mlir.exporter.params import Params
from hrm_mlir.exporter.reference import float32_twin, step_depth, upcast
from hrm_mlir.exporter.step import export_step
from hrm_mlir.models.config import ReasoningConfig
from hrm_mlir.models.hrm import HRM
from hrm_mlir.models.registry import family_by_key
from hrm_mlir.runtime.module import CompiledModule
from hrm_mlir.verification import compare, draws_for


def step_flops(config: ReasoningConfig, batch_size: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of one ACT step; elementwise work is not counted."""
    d, s, i = config.hidden_size, config.total_seq_len, config.intermediate_size
    rows = batch_size * s
    block = 2 * rows * d * (2 * i + i)  # the channel SwiGLU: gate_up, down
    if config.mlp_t:  # TRM's token SwiGLU: (B*D, S) rows, S -> 2*inner -> S
        block += 2 * batch_size * d * s * 3 * config.token_mixer_size
    else:  # qkv, o projections; QK^T, PV
        block += 2 * rows * d * (3 * d + d)
        block += 2 * 2 * batch_size * config.num_heads * s * s * config.head_dim
    h_layers = config.L_layers if config.shared_levels else config.H_layers
    blocks = config.H_cycles * (config.L_cycles * config.L_layers + h_layers)
    # lm_head on the puzzle's tokens (the puzzle-embedding ones are sliced off before it);
    # q_head on every token (the model keeps token 0; see `HRMInner.forward`)
    heads = 2 * batch_size * config.seq_len * d * config.vocab_size + 2 * rows * d * 2
    return blocks * block + heads


def measure_peak_gflops(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """float32 GEMM throughput of this machine (torch.mm, best of `repeats`)."""
    torch.set_num_threads(threads)
    gemm = PeakProbe(n)
    return max(gemm() for _ in range(repeats))


class PeakProbe:
    """One n x n float32 GEMM (torch.mm) per call; returns its GFLOP/s."""

    def __init__(self, n: int = 1024) -> None:
        self.n, self.a, self.b = n, torch.randn(n, n), torch.randn(n, n)
        torch.mm(self.a, self.b)

    def __call__(self) -> float:
        return 2 * self.n**3 / _time(lambda: torch.mm(self.a, self.b)) / 1e9


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Result:
    runtime: str
    batch_size: int
    samples_ms: list[float]
    gflops: float = 0.0
    pct_peak: float = 0.0
    vs_eager: float | None = None  # eager median / this median (>1 = faster than eager)
    vs_onnx: float | None = None
    verified: str = ""
    # What the runtime computes in: OpenVINO's INFERENCE_PRECISION_HINT; with dtype bfloat16
    # every runtime's ("bf16", "f32", "f32 (bf16 I/O)" for a promoted bf16 artifact)
    precision: str | None = None
    vs_iree_f32: float | None = None  # iree-f32 median / this median (dtype bfloat16)
    # dtype bfloat16: the outputs against the float32 truth (`_judged`)
    truth: dict | None = None

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)


@dataclass
class BenchReport:
    machine: dict
    threads: int
    dtype: str
    peak_gflops: float
    config: dict
    flags: dict
    gemm_kernels: dict = field(default_factory=dict)  # runtime -> GEMMs on hrm_mlir.cpu_gemm
    notes: list[str] = field(default_factory=list)  # flags IREE rejected, and what ran instead
    results: list[Result] = field(default_factory=list)
    act: list[dict] = field(default_factory=list)
    phases: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        doc = asdict(self)
        for r, d in zip(self.results, doc["results"], strict=True):
            d["median_ms"], d["min_ms"], d["max_ms"] = (
                r.median_ms,
                min(r.samples_ms),
                max(r.samples_ms),
            )
        return doc


def _runners(
    model: HRM,
    batch: int,
    runtimes: list[str],
    threads: int,
    compile_options: CompileOptions,
    params: Params | None,
    dynamic: CompiledModule | None,
    notes: list[str],
    precisions: dict[str, str] | None = None,
) -> dict[str, tuple[Callable[[], object], str]]:
    """name -> (a call of the step on fixed inputs, how its outputs compare with eager).

    `precisions` gets name -> compute precision for the runtimes that report one (OpenVINO)."""
    args = random_step_inputs(model.config, batch, seed=batch)
    with torch.no_grad():
        ref = model.inner(*args)
    dtype = model.config.forward_dtype
    out: dict[str, tuple[Callable[[], object], str]] = {}

    tolerance = step_tolerance(dtype, step_depth(model.config))

    def checked(name: str, got) -> str:
        report = compare(STEP_OUTPUTS, [torch.as_tensor(g) for g in got], ref, dtype, tolerance)
        if not report.passed:
            raise HrmMlirError(f"{name} at batch {batch} is wrong: {report.failures()}")
        return f"max rel-L2 {max(o.rel_l2 for o in report.outputs):.1e}"

    if "eager" in runtimes:
        out["eager"] = (lambda: _no_grad(model.inner, args), "reference")
    if "compile" in runtimes:
        compiled = torch.compile(model.inner)
        try:
            got = _no_grad(compiled, args)
        except Exception as e:  # inductor raises many types; a peer failing is not ours to stop
            first = first_line(e, "")
            notes.append(f"torch.compile failed at batch {batch}, not timed: {first}")
        else:
            out["torch.compile"] = (lambda: _no_grad(compiled, args), checked("torch.compile", got))
    # One ONNX export, made on first use, for both runtimes that load ONNX.
    with OnnxExport(model, args) as onnx:
        if "onnx" in runtimes:
            session = onnx_session(model, args, threads, export=onnx)
            if session is not None:
                feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args, strict=True)}
                got = session.run(None, feeds)
                out["onnxruntime"] = (lambda: session.run(None, feeds), checked("onnxruntime", got))
        if "openvino" in runtimes:
            compiled_ov = openvino_model(model, args, threads, export=onnx)
            if compiled_ov is not None:
                precision = compiled_ov.get_property("INFERENCE_PRECISION_HINT").to_string()
                if precision != "f32":  # bench compares float32 runtimes
                    raise RuntimeError(f"OpenVINO computes in {precision} at batch {batch}")
                if precisions is not None:
                    precisions["openvino"] = precision
                request = compiled_ov.create_infer_request()
                run_ov = partial(request.infer, [a.numpy() for a in args], share_inputs=True)
                got = list(run_ov().values())
                out["openvino"] = (run_ov, checked("openvino", got))
    variants = iree_variants(compile_options)
    wanted = [name for name in variants if name in runtimes]
    if wanted:
        options = ExportOptions(
            output_type=OutputType.LINALG_ON_TENSORS, batch_size=batch, params=params
        )
        exported = export_step(model, options)
    modules = {
        name: _load(exported, variants[name], notes, f"{name}, batch {batch}") for name in wanted
    }
    if dynamic is not None:
        modules["iree-dynamic"] = dynamic
    for name, module in modules.items():
        out[name] = (partial(module.call, "step", *args), checked(name, module.call("step", *args)))
    return out


def _bf16_runners(
    model: HRM,
    twin: HRM,
    batch: int,
    runtimes: list[str],
    threads: int,
    compile_options: CompileOptions,
    params: Params | None,
    notes: list[str],
    precisions: dict[str, str],
    truths: dict[str, dict],
) -> dict[str, tuple[Callable[[], object], str]]:
    """`_runners` of a bfloat16 bench: name -> (a call of the step on the first draw's inputs,
    how its outputs compare with the float32 truth).

    `model` computes in bf16 and `twin` is it in float32, the truth; the float32 runtimes (ONNX
    Runtime, OpenVINO, iree-f32) run `twin` on the inputs upcast. Each runtime is called on
    `draws_for(batch)` draws and judged on all of them (`_judged`) before it is timed;
    `precisions` and `truths` get what each computes in and that judgement."""
    draws = [random_step_inputs(model.config, batch, seed=d) for d in range(draws_for(batch))]
    wide = [upcast(args) for args in draws]
    with torch.no_grad():
        ref = [model.inner(*args) for args in draws]
        truth = [twin.inner(*args) for args in wide]
    out: dict[str, tuple[Callable[[], object], str]] = {}

    def add(name: str, calls: Sequence[Callable[[], object]], precision: str) -> None:
        """Judge `calls` (one per draw), then keep the first for timing."""
        verdict = _judged(
            [_tensors(call()) for call in calls],
            ref,
            truth,
            model.config,
            strict=precision == "f32",
        )
        precisions[name], truths[name] = precision, verdict
        if not verdict["passed"]:
            notes.append(
                f"{name} at batch {batch} fails against the float32 truth, timed all the same: "
                + "; ".join(verdict["problems"][:3])
            )
        out[name] = (calls[0], _truth_text(verdict))

    if "eager" in runtimes:
        add("eager", [partial(_no_grad, model.inner, args) for args in draws], "bf16")
    if "compile" in runtimes:
        compiled = torch.compile(model.inner)
        try:
            _no_grad(compiled, draws[0])
        except Exception as e:  # inductor raises many types; a peer failing is not ours to stop
            notes.append(f"torch.compile failed at batch {batch}, not timed: {first_line(e, '')}")
        else:
            add("torch.compile", [partial(_no_grad, compiled, args) for args in draws], "bf16")
    with OnnxExport(twin, wide[0]) as onnx:
        if "onnx" in runtimes:
            session = onnx_session(twin, wide[0], threads, export=onnx)
            if session is not None:
                names = [i.name for i in session.get_inputs()]
                feeds = [{n: a.numpy() for n, a in zip(names, args, strict=True)} for args in wide]
                add("onnxruntime", [partial(session.run, None, f) for f in feeds], "f32")
        if "openvino" in runtimes:
            compiled_ov = openvino_model(twin, wide[0], threads, export=onnx, precision=None)
            if compiled_ov is not None:
                request = compiled_ov.create_infer_request()
                calls = [
                    partial(request.infer, [a.numpy() for a in args], share_inputs=True)
                    for args in wide
                ]
                hint = compiled_ov.get_property("INFERENCE_PRECISION_HINT").to_string()
                add("openvino", calls, hint)
    options = ExportOptions(
        output_type=OutputType.LINALG_ON_TENSORS, batch_size=batch, params=params
    )
    if "iree-bf16" in runtimes:
        said: list[str] = []
        module = _load(
            export_step(model, options), compile_options, said, f"iree-bf16, batch {batch}"
        )
        notes += said
        promoted = any(_PROMOTED in note for note in said)
        calls = [partial(module.call, "step", *args) for args in draws]
        add("iree-bf16", calls, "f32 (bf16 I/O)" if promoted else "bf16")
    if "iree-f32" in runtimes:
        module = _load(
            export_step(twin, options), compile_options, notes, f"iree-f32, batch {batch}"
        )
        add("iree-f32", [partial(module.call, "step", *args) for args in wide], "f32")
    return out


_PROMOTED = "bfloat16 computed in float32"  # how `compile_module` notes a promoted bf16 module


def _judged(got, ref, truth, config: ReasoningConfig, *, strict: bool) -> dict:
    """Outputs of draws (each the step's outputs) against the float32 truth's, rows stacked:
    rel-L2 distances and answer agreement, judged by `numerics.judge_reduced` with PyTorch
    bf16's (`ref`) as the yardstick; `strict` (a runtime computing in float32) also by the
    float32 step tolerance."""
    count = len(STEP_OUTPUTS)
    if any(len(outputs) != count for outputs in got):
        return {"passed": False, "problems": [f"got {len(got[0])} outputs, expected {count}"]}
    g, r, t = _stacked(got), _stacked(ref), _stacked(truth)
    problems = [
        f"{name}: shape {tuple(a.shape)}, expected {tuple(b.shape)}"
        for name, a, b in zip(STEP_OUTPUTS, g, t, strict=True)
        if a.shape != b.shape
    ]
    if problems:
        return {"passed": False, "problems": problems}
    judgement = judge_reduced(
        STEP_OUTPUTS,
        [x.float().numpy() for x in g],
        [x.float().numpy() for x in r],
        [x.float().numpy() for x in t],
        halts=config.halt_rule.halts,
    )
    problems = judgement.problems()
    if strict:
        tolerance = step_tolerance(DType.FLOAT32, step_depth(config))
        wide = [x.float() for x in g]
        problems += compare(
            STEP_OUTPUTS, wide, t, DType.FLOAT32, tolerance, rule=config.halt_rule
        ).failures()
    return {
        "passed": not problems,
        "problems": problems,
        "rows": int(t[0].shape[0]),
        "rel_l2": {o.name: o.distance for o in judgement.outputs},
        "pytorch_bf16_rel_l2": {o.name: o.pytorch for o in judgement.outputs},
        "agreement": {a.what: a.agreement for a in judgement.answers},
    }


def _truth_text(verdict: dict) -> str:
    if not verdict["passed"]:
        more = len(verdict["problems"]) - 1
        return f"FAILS: {verdict['problems'][0]}" + (f" (+{more} more)" if more else "")
    worst, pytorch = max(verdict["rel_l2"].values()), max(verdict["pytorch_bf16_rel_l2"].values())
    return f"max rel-L2 {worst:.1e} (eager bf16 {pytorch:.1e}, {verdict['rows']} rows)"


def _tensors(raw) -> list[torch.Tensor]:
    """A runtime's outputs as tensors (OpenVINO answers a dict of arrays)."""
    return [torch.as_tensor(v) for v in (raw if isinstance(raw, list | tuple) else raw.values())]


def _stacked(draws) -> list[torch.Tensor]:
    """Each output's rows over the draws, stacked (a 0-d output as one row)."""
    return [
        torch.cat([d[i].reshape(d[i].shape or (1,)) for d in draws]) for i in range(len(draws[0]))
    ]


def iree_variants(options: CompileOptions) -> dict[str, CompileOptions]:
    """The static-batch IREE runtimes `bench` can time, and their compile options."""
    return {
        "iree": options,
        "iree-no-kernels": replace(options, gemm_kernels=False),
        "iree-plain": replace(options, tuned=False),
        "iree-tuned": replace(options, tuned=True),
        # A/B only: the AVX2 register tiles on an AVX-512 target, and the data-tiling path
        # that miscompiles symbolic batches (docs/known-issues.md; right for a static one)
        "iree-avx2-tiles": replace(options, kernel_isa="avx2"),
        "iree-dispatch-tiling": replace(
            options, extra_flags=(*options.extra_flags, "--iree-opt-data-tiling")
        ),
    }


PEERS = ("eager", "compile", "onnx", "openvino")
# What `bench` times when not told (the A/B IREE variants only when asked for).
DEFAULT_RUNTIMES = {
    DType.FLOAT32: (*PEERS, "iree", "iree-no-kernels", "iree-plain", "iree-tuned", "iree-dynamic"),
    DType.BFLOAT16: (*PEERS, "iree-bf16", "iree-f32"),
}


def known_runtimes(dtype: DType = DType.FLOAT32) -> list[str]:
    """The runtimes `bench` can time in `dtype`."""
    if dtype == DType.BFLOAT16:
        return list(DEFAULT_RUNTIMES[dtype])
    return [*PEERS, *iree_variants(CompileOptions()), "iree-dynamic"]


def check_runtimes(runtimes: list[str], dtype: DType = DType.FLOAT32) -> None:
    """Refuse an unknown runtime name before anything slow starts (a typo would otherwise
    time nothing)."""
    known = known_runtimes(dtype)
    unknown = [r for r in runtimes if r not in known]
    if unknown or not runtimes:
        where = "" if dtype == DType.FLOAT32 else f" for --dtype {dtype.value}"
        raise HrmMlirError(
            f"--runtimes: unknown {', '.join(unknown) or '(none given)'}{where}; "
            f"known: {','.join(known)}"
        )


def _dynamic_module(
    model: HRM, options: CompileOptions, params: Params | None, notes: list[str]
) -> CompiledModule:
    """`@step` with a symbolic batch, compiled once for every batch size."""
    exported = export_step(
        model,
        ExportOptions(output_type=OutputType.LINALG_ON_TENSORS, batch_size=None, params=params),
    )
    return _load(exported, options, notes, "iree-dynamic")


def _load(exported, options: CompileOptions, notes: list[str], label: str) -> CompiledModule:
    """Compile and load; what the compile notes goes to `notes`, prefixed with `label`."""
    rejected: list[str] = []
    module = compile_and_load(exported, options, notes=rejected)
    notes += [f"{label}: {note}" for note in rejected]
    return module


def _no_grad(fn, args):
    with torch.no_grad():
        return fn(*args)


def bench(
    source: Checkpoint | HRM,
    *,
    batch_sizes: list[int],
    runtimes: list[str],
    threads: int,
    iterations: int,
    warmup: int,
    act_steps: int,
    compile_options: CompileOptions | None = None,
    params: Params | None = None,
    dtype: DType = DType.FLOAT32,
) -> BenchReport:
    """Measure every runtime at every batch size.

    Args:
        params: inline or external weights for the IREE artifacts (None: by size).
        dtype: float32 (the model in float32, whatever the checkpoint's forward_dtype), or
            bfloat16: the bf16 runtimes against the float32 ones, each judged against the
            float32 truth (`_bf16_runners`).
    Raises:
        HrmMlirError: an unknown runtime for `dtype`; a float32 runtime that disagrees with
            eager.
    """
    check_runtimes(runtimes, dtype)
    torch.set_num_threads(threads)
    from iree.runtime import flags

    from hrm_mlir.runtime.host import cpu_line

    flags.parse_flags(f"--task_topology_max_group_count={threads}")
    compile_options = compile_options or CompileOptions()
    reduced = dtype != DType.FLOAT32
    if reduced:
        model = prepare_model(source, dtype)
    else:
        model = source.build_model(dtype) if isinstance(source, Checkpoint) else source.eval()
    twin = float32_twin(model) if reduced else None  # the truth of a reduced-precision bench
    # The peak is the best GEMM of the run: measured before, then once per timed round (so it
    # sees the same machine state as the runtimes).
    peaks = [measure_peak_gflops(threads)]
    probe = PeakProbe()
    if reduced:
        variants = {"iree-bf16": compile_options, "iree-f32": compile_options}
        promoted = compile_options.promotes_bf16()  # float32 flags and kernels behind bf16 I/O
        computes = {"iree-bf16": DType.FLOAT32 if promoted else dtype, "iree-f32": DType.FLOAT32}
    else:
        variants = {**iree_variants(compile_options), "iree-dynamic": compile_options}
        computes = dict.fromkeys(variants, DType.FLOAT32)
    report = BenchReport(
        machine={
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "cpu": cpu_line(),
        },
        threads=threads,
        dtype=dtype.value,
        peak_gflops=0.0,  # set at the end
        config=model.config.model_dump(mode="json"),
        flags={name: o.flags(computes[name]) for name, o in variants.items()},
        gemm_kernels={
            name: o.use_gemm_kernels() and computes[name] == DType.FLOAT32
            for name, o in variants.items()
        },
    )
    if reduced and "onnx" in runtimes:
        report.notes.append(
            "onnxruntime runs the float32 ONNX export on the bf16 inputs upcast: its CPU "
            "execution provider has few bfloat16 kernels"
        )
    if reduced and "openvino" in runtimes:
        report.notes.append(
            "openvino runs the float32 ONNX export at its default inference precision (its "
            "INFERENCE_PRECISION_HINT under 'computes in'): bf16 on CPUs with AMX or "
            "AVX512_BF16, f32 elsewhere"
        )
    if reduced and act_steps:
        # Promoting a bf16 @act fails on its bf16 constants (H_init, L_init) in
        # `compiler.promote`: "'arith.constant' op failed to verify that all of {value,
        # result} have same type".
        report.notes.append("--act-steps: @act is timed in float32 benches only")
    dynamic = (
        _dynamic_module(model, compile_options, params, report.notes)
        if "iree-dynamic" in runtimes
        else None
    )
    for batch in batch_sizes:
        precisions: dict[str, str] = {}
        truths: dict[str, dict] = {}
        if twin is not None:
            runners = _bf16_runners(
                model,
                twin,
                batch,
                runtimes,
                threads,
                compile_options,
                params,
                report.notes,
                precisions,
                truths,
            )
        else:
            runners = _runners(
                model,
                batch,
                runtimes,
                threads,
                compile_options,
                params,
                dynamic,
                report.notes,
                precisions,
            )
        samples = interleaved(
            {name: fn for name, (fn, _v) in runners.items()},
            iterations=iterations,
            warmup=warmup,
            after_round=lambda: peaks.append(probe()),
        )
        flops = step_flops(model.config, batch)
        results = [
            Result(
                name,
                batch,
                samples[name],
                verified=runners[name][1],
                precision=precisions.get(name),
                truth=truths.get(name),
            )
            for name in runners
        ]
        medians = {r.runtime: r.median_ms for r in results}
        eager, onnx, f32 = (medians.get(n) for n in ("eager", "onnxruntime", "iree-f32"))
        for r in results:
            r.gflops = flops / (r.median_ms / 1e3) / 1e9
            r.vs_eager = eager / r.median_ms if eager else None
            r.vs_onnx = onnx / r.median_ms if onnx else None
            r.vs_iree_f32 = f32 / r.median_ms if f32 else None
        report.results += results
        if act_steps and not reduced and "iree" in runtimes:
            act = _act_vs_steps(model, batch, act_steps, compile_options, iterations, params)
            report.act.append({"runtime": "iree", **act})
    peak = max(peaks)
    report.peak_gflops = peak
    for r in report.results:
        r.pct_peak = 100 * r.gflops / peak
    return report


def _act_vs_steps(
    model: HRM,
    batch: int,
    steps: int,
    options: CompileOptions,
    iters: int,
    params: Params | None,
):
    """Median of one `@act` call with `steps` steps against `steps` calls of `@step`."""
    from hrm_mlir.exporter.act import export_act

    exported = export_act(
        model,
        ExportOptions(output_type=OutputType.LINALG_ON_TENSORS, batch_size=batch, params=params),
    )
    module = compile_and_load(exported, options)
    _, _, inputs, ids = random_step_inputs(model.config, batch)
    n, q = torch.tensor(steps, dtype=torch.int32), torch.tensor(0, dtype=torch.int32)

    def loop() -> None:
        z = module.call("initial_carry", ids)
        for _ in range(steps):
            z = module.call("step", z[0], z[1], inputs, ids)

    act_ms, loop_ms = [], []
    module.call("act", inputs, ids, n, q)
    loop()
    for _ in range(max(iters // 2, 3)):
        act_ms.append(1e3 * _time(lambda: module.call("act", inputs, ids, n, q)))
        loop_ms.append(1e3 * _time(loop))
    a, s = statistics.median(act_ms), statistics.median(loop_ms)
    return {"batch_size": batch, "steps": steps, "act_ms": a, "step_loop_ms": s, "ratio": a / s}


def measure_phases(
    checkpoint_path: Path, seq_len: int | None, workdir: Path, dtype: DType = DType.FLOAT32
) -> dict:
    """Wall time and peak RSS of `hrm-mlir export` (in `dtype`) and `hrm-mlir compile`, each in
    its own process (as a user runs them)."""
    mlir, vmfb = workdir / "phase.mlirbc", workdir / "phase.vmfb"
    common = ["--output_type", "linalg-on-tensors", "--dtype", dtype.value]
    if seq_len:
        common += ["--seq_len", str(seq_len)]
    phases = {}
    for name, argv in (
        ("export", ["export", str(checkpoint_path), "-o", str(mlir), *common]),
        ("compile", ["compile", str(mlir), "-o", str(vmfb)]),
    ):
        shim = subprocess.run(
            [sys.executable, "-c", _PHASE_SHIM, sys.executable, "-m", "hrm_mlir", *argv],
            capture_output=True,
            text=True,
        )
        if shim.returncode != 0:  # the command's own error, one line where it is the user's
            lines = shim.stderr.strip().splitlines() or ["no error output"]
            said = [ln for ln in lines if ln.startswith(_ERROR)]
            why = said[-1].removeprefix(_ERROR) if said else lines[-1]
            raise HrmMlirError(f"bench --phases: hrm-mlir {name} failed: {why}")
        phases[name] = json.loads(shim.stdout.strip().splitlines()[-1])
    return phases


_ERROR = "hrm-mlir: error: "  # how the command line starts a user error (`hrm_mlir.cli.app`)

# Runs argv[1:] and prints its wall time and peak RSS as JSON. A child inherits its parent's
# peak RSS across fork + exec on Linux (`ru_maxrss`), so the command is started from this small
# process, not from the benchmark process, which holds gigabytes by then.
_PHASE_SHIM = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - start
if status:
    sys.exit(1)  # the command's stderr says why
print(json.dumps({"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024}))
"""


def plot(report: BenchReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r.runtime for r in report.results):
        rows = [r for r in report.results if r.runtime == name]
        ax.plot([r.batch_size for r in rows], [r.median_ms for r in rows], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("median ms per ACT step")
    ax.set_title(
        f"{family_by_key(report.config.get('family', 'hrm_act_v1')).title} step, {report.dtype}, "
        f"{report.threads} threads (peak {report.peak_gflops:.0f} GFLOP/s)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def write_json(report: BenchReport, path: Path) -> None:
    write_atomic(path, json.dumps(report.as_dict(), indent=2).encode())
