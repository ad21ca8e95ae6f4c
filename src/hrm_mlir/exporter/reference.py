"""Reference cases: inputs for the exported module's public functions and PyTorch's outputs for
them, recorded by `export` inside the module, so that `compile` can check an artifact on the
machine it builds it for before handing it out.

The cases live in one module attribute, `hrm_mlir.reference` (`abi.REFERENCE_ATTR`): an array
of `{function, inputs, outputs, names, input_dtypes, output_dtypes}` dictionaries whose tensors
are dense elements attributes (bfloat16 stored as the float32 values it holds, exactly). A
static batch gets one case per function at that batch; a symbolic batch one at batch 1 and
one at batch 3, since a miscompile can leave batch 1 right (docs/known-issues.md). `@act` is
recorded with 2 steps and no Q-halting, so that rounding differences cannot flip a halt.

Recording (`step_cases`, `act_cases`, `attach`) runs PyTorch and writes torch-mlir's IR;
reading and checking (`detach`, `check`) use IREE's IR and runtime and numpy only, so
`compile` imports no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ml_dtypes
import numpy as np

from hrm_mlir.core.types import DType
from hrm_mlir.exporter.abi import REFERENCE_ATTR, STEP_OUTPUTS

if TYPE_CHECKING:
    import torch

    from hrm_mlir.models.hrm import HRM

DYNAMIC_BATCHES = (1, 3)  # the batch sizes recorded for a symbolic batch
ACT_STEPS = 2  # `@act`'s max_steps in its case (q_halt 0)
ACT_NAMES = ("logits", "q_halt_logits", "q_continue_logits", "steps")


@dataclass(frozen=True)
class Case:
    """One call of one public function and what PyTorch returned for it."""

    function: str
    inputs: tuple[np.ndarray, ...]
    outputs: tuple[np.ndarray, ...]
    names: tuple[str, ...]  # of the outputs
    input_dtypes: tuple[str, ...]  # numpy names: float32, bfloat16, int32
    output_dtypes: tuple[str, ...]
    depth: int = 0  # level updates per step (`numerics.step_tolerance`); 0: not recorded
    # A reduced-precision case: the float32 model's outputs on the same inputs, the truth that
    # `numerics.judge_reduced` measures the artifact and PyTorch (`outputs`) against.
    truth: tuple[np.ndarray, ...] | None = None

    @property
    def batch(self) -> int:
        return int(self.inputs[0].shape[0]) if self.inputs and self.inputs[0].ndim else 1

    def describe(self) -> str:
        return f"@{self.function} at batch {self.batch}"

    @property
    def dtype(self) -> DType:
        """The forward dtype the outputs are judged by."""
        return DType.BFLOAT16 if "bfloat16" in self.output_dtypes else DType.FLOAT32


def step_depth(config) -> int:
    """Level updates per step: H_cycles x (L_cycles + 1)."""
    return config.H_cycles * (config.L_cycles + 1)


def batch_sizes(batch_size: int | None) -> tuple[int, ...]:
    return DYNAMIC_BATCHES if batch_size is None else (batch_size,)


def float32_twin(model: HRM) -> HRM | None:
    """The same model computing in float32 (the truth for a bf16 one), or None if it is float32."""
    if model.config.forward_dtype == DType.FLOAT32:
        return None
    from hrm_mlir.checkpoint.load import build_model

    config = model.config.model_copy(update={"forward_dtype": DType.FLOAT32})
    return build_model(config, model.state_dict())


def upcast(args: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """bf16 arguments as the float32 values they hold (exactly), for the float32 twin."""
    import torch

    return tuple(a.float() if a.dtype == torch.bfloat16 else a for a in args)


def _case(
    function: str, inputs: Sequence[torch.Tensor], outputs, names, depth: int, truth=None
) -> Case:
    def arrays(ts) -> tuple[tuple[np.ndarray, ...], tuple[str, ...]]:
        import torch

        out, dtypes = [], []
        for t in ts:
            t = t.detach().cpu().contiguous()
            dtypes.append(str(t.dtype).removeprefix("torch."))
            out.append((t.float() if t.dtype == torch.bfloat16 else t).numpy())
        return tuple(out), tuple(dtypes)

    ins, in_dtypes = arrays(inputs)
    outs, out_dtypes = arrays(outputs)
    kept = None if truth is None else arrays(truth)[0]
    return Case(function, ins, outs, tuple(names), in_dtypes, out_dtypes, depth, kept)


def step_cases(model: HRM, batch_size: int | None) -> list[Case]:
    """`@step` on random valid inputs at each recorded batch: those `hrm-mlir verify` draws
    (`verify.random_step_inputs`, seed 0), so that the check and `verify` judge alike."""
    import torch

    from hrm_mlir.exporter.inputs import random_step_inputs

    twin = float32_twin(model)
    cases = []
    for b in batch_sizes(batch_size):
        args = random_step_inputs(model.config, b, seed=0)  # what `verify` checks
        with torch.no_grad():
            outs = model.inner(*args)
            truth = None if twin is None else twin.inner(*upcast(args))
            depth = step_depth(model.config)
            cases.append(_case("step", args, outs, STEP_OUTPUTS, depth, truth))
    return cases


def act_cases(model: HRM, batch_size: int | None) -> list[Case]:
    """`@step`'s cases, then `@initial_carry` and `@act` (2 steps, no Q-halting)."""
    import torch

    from hrm_mlir.exporter.inputs import random_step_inputs

    cases = step_cases(model, batch_size)
    twin = float32_twin(model)
    for b in batch_sizes(batch_size):
        _, _, inputs, ids = random_step_inputs(model.config, b, seed=0)
        with torch.no_grad():
            carry = model.inner.initial_carry(b)
            out = model.act(inputs, ids, max_steps=ACT_STEPS, q_halt=False)
            truth = None if twin is None else twin.act(inputs, ids, ACT_STEPS, q_halt=False)
        depth = step_depth(model.config)
        cases.append(_case("initial_carry", (ids,), carry, ("z_H", "z_L"), depth))
        steps, q_halt = (
            torch.tensor(ACT_STEPS, dtype=torch.int32),
            torch.tensor(0, dtype=torch.int32),
        )
        result = (out.logits, out.q_halt_logits, out.q_continue_logits, out.steps)
        true = None if truth is None else (
            truth.logits, truth.q_halt_logits, truth.q_continue_logits, truth.steps
        )  # fmt: skip
        cases.append(_case("act", (inputs, ids, steps, q_halt), result, ACT_NAMES, depth, true))
    return cases


def attach(module: Any, cases: Sequence[Case]) -> None:
    """Record `cases` in `module` (torch-mlir's IR), replacing any recorded before."""
    from torch_mlir import ir

    def strings(xs: Sequence[str]) -> Any:
        return ir.ArrayAttr.get([ir.StringAttr.get(x) for x in xs])

    def tensors(arrays: Sequence[np.ndarray]) -> Any:
        return ir.ArrayAttr.get([ir.DenseElementsAttr.get(np.array(a, order="C")) for a in arrays])

    with module.context, ir.Location.unknown():
        entries = [
            ir.DictAttr.get(
                {
                    "function": ir.StringAttr.get(c.function),
                    "inputs": tensors(c.inputs),
                    "outputs": tensors(c.outputs),
                    "names": strings(c.names),
                    "input_dtypes": strings(c.input_dtypes),
                    "output_dtypes": strings(c.output_dtypes),
                    "depth": ir.IntegerAttr.get(ir.IntegerType.get_signless(64), c.depth),
                    **({} if c.truth is None else {"truth": tensors(c.truth)}),
                }
            )
            for c in cases
        ]
        module.operation.attributes[REFERENCE_ATTR] = ir.ArrayAttr.get(entries)


def detach(module: Any) -> list[Case]:
    """The cases recorded in `module` (IREE's IR), removed from it ([] where there are none)."""
    from iree.compiler import ir

    attributes = module.operation.attributes
    if REFERENCE_ATTR not in attributes:
        return []
    cases = []
    for entry in ir.ArrayAttr(attributes[REFERENCE_ATTR]):
        d = ir.DictAttr(entry)

        def strings(key: str, d=d) -> tuple[str, ...]:
            return tuple(ir.StringAttr(x).value for x in ir.ArrayAttr(d[key]))

        def arrays(key: str, dtypes: tuple[str, ...], d=d) -> tuple[np.ndarray, ...]:
            values = [np.array(ir.DenseElementsAttr(x)) for x in ir.ArrayAttr(d[key])]
            return tuple(_as(v, dt) for v, dt in zip(values, dtypes, strict=True))

        in_dtypes, out_dtypes = strings("input_dtypes"), strings("output_dtypes")
        cases.append(
            Case(
                ir.StringAttr(d["function"]).value,
                arrays("inputs", in_dtypes),
                arrays("outputs", out_dtypes),
                strings("names"),
                in_dtypes,
                out_dtypes,
                ir.IntegerAttr(d["depth"]).value if "depth" in d else 0,
                _truth(d),
            )
        )
    del attributes[REFERENCE_ATTR]
    return cases


def _truth(d: Any) -> tuple[np.ndarray, ...] | None:
    from iree.compiler import ir

    if "truth" not in d:
        return None
    return tuple(
        np.array(ir.DenseElementsAttr(x)).astype(np.float32, copy=False)
        for x in ir.ArrayAttr(d["truth"])
    )


def _as(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return values.astype(ml_dtypes.bfloat16)
    return values.astype(np.dtype(dtype), copy=False)
