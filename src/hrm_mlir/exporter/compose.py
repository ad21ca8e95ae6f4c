"""`@step` built in MLIR from parts that torch.export traces once each.

torch.export traces Python by running it, so a whole step is traced with every loop unrolled:
the 27M model (H_cycles = L_cycles = 2, 4 + 4 layers) calls its transformer block 24 times,
about 1,500 nodes at ~4 ms a node. Here each distinct computation is traced once:

    @embed(inputs, puzzle_identifiers) -> x         `HRMInner.input_embeddings`
    @add(a, b) -> a + b                              a level's injection
    @block(h, *weights) -> h                         one `Block`, its weights as arguments
    @heads(z_H) -> (logits, q_halt, q_continue)      `HRMInner.heads`

and `@step` calls them in `level_schedule` order, passing each layer's weights as literals
(`torch.vtensor.literal`, the same resources the import gives any weight). The parts are lowered
with the step, then inlined into it (`inline_parts`): the module keeps one function, `@step`,
with the same ops a trace of the whole step gives, in a different order. A level is what
`HRMInner.run_levels` computes: L adds z_H + x to z_L, H adds z_L to z_H, then the layers run
(TRM's H update runs the L network's blocks, `HRMInner.levels`, with the same weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn
from torch_mlir import ir
from torch_mlir.dialects import func
from torch_mlir.extras.fx_importer import FxImporter

from hrm_mlir.exporter.inputs import example_step_args
from hrm_mlir.exporter.trace import (
    ZeroCopyLiterals,
    batch_dims,
    run_passes,
    trace_batch,
)
from hrm_mlir.models.hrm import Block, HRMInner, ReasoningModule, level_schedule

EMBED, ADD, BLOCK, HEADS = "embed", "add", "block", "heads"
PARTS = (EMBED, ADD, BLOCK, HEADS)
# after lowering: every call of a part is inlined (no canonicalization of the callers), then
# the unused private parts are dropped
INLINE_PARTS = "builtin.module(inline{default-pipeline=}, symbol-dce, cse)"


class _Embed(nn.Module):
    def __init__(self, inner: HRMInner) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor) -> torch.Tensor:
        return self.inner.input_embeddings(inputs, puzzle_identifiers)


class _Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class _Block(nn.Module):
    """One `Block` of `inner` with its weights (in `weight_names` order) as arguments."""

    def __init__(self, inner: HRMInner, block: Block, weight_names: Sequence[str]) -> None:
        super().__init__()
        self.inner = inner  # only for the RoPE tables, traced as constants
        self.block = block
        self.weight_names = tuple(weight_names)

    def forward(self, h: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        params = dict(zip(self.weight_names, weights, strict=True))
        return torch.func.functional_call(self.block, params, (h, self.inner.cos_sin()))


class _Heads(nn.Module):
    def __init__(self, inner: HRMInner) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, z_H: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.inner.heads(z_H)


def block_weights(block: Block) -> dict[str, torch.Tensor]:
    """A block's weights by name, in the order `@block` takes them."""
    return {**dict(block.named_parameters()), **dict(block.named_buffers())}


def import_step(
    importer: FxImporter,
    hooks: ZeroCopyLiterals,
    inner: HRMInner,
    batch_size: int | None,
    name: str = "step",
) -> None:
    """Trace the parts of `inner`'s step and add them, private, and `@name` to
    `importer.module` (torch dialect as imported, before any lowering).

    Run it under `torch.no_grad()` and `export_attention`; lower the module, then call
    `inline_parts`. `batch_size` None gives every part a symbolic batch dimension.
    """
    z_H, z_L, inputs, ids = example_step_args(inner.config, trace_batch(batch_size))
    layers = {name: _blocks(level) for name, level in inner.levels.items()}  # TRM: one net
    template = layers["L"][0]
    weights = block_weights(template)
    parts = [
        (EMBED, _Embed(inner), (inputs, ids)),
        (ADD, _Add(), (z_H, z_L)),  # distinct tensors: torch.export merges one passed twice
        (BLOCK, _Block(inner, template, list(weights)), (z_H, *weights.values())),
        (HEADS, _Heads(inner), (z_H,)),
    ]
    for part, module, args in parts:
        dynamic = None
        if batch_size is None:  # dim 0 of the activations; `*weights` have no batch
            dynamic = (
                (*batch_dims(args[:1]), (None,) * (len(args) - 1))
                if part == BLOCK
                else batch_dims(args)
            )
        # no `run_decompositions`: torch-mlir takes HRM's ops as torch.export writes them (the
        # re-trace cost 4-9 s of a whole-step export and changed neither errors nor speed)
        program = torch.export.export(module, args, dynamic_shapes=dynamic, strict=False)
        importer.import_frozen_program(program, func_name=part, func_visibility="private")

    module = importer.module
    with module.context, ir.Location.unknown():
        _add_step(module, hooks, inner, layers, name)


def _add_step(
    module: ir.Module,
    hooks: ZeroCopyLiterals,
    inner: HRMInner,
    layers: dict[str, list[Block]],
    name: str,
) -> None:
    """Append `@name`, calling the imported parts, to `module` (in its context)."""
    funcs = {
        op.attributes["sym_name"].value: op.operation.opview
        for op in module.body.operations
        if op.attributes["sym_name"].value in PARTS
    }
    t_h = funcs[BLOCK].type.inputs[0]  # z_H, z_L and every level's state
    weight_types = funcs[BLOCK].type.inputs[1:]
    inputs = [t_h, t_h, *funcs[EMBED].type.inputs]
    step = func.FuncOp(name, ir.FunctionType.get(inputs, [t_h, t_h, *funcs[HEADS].type.results]))
    module.body.append(step)
    with ir.InsertionPoint(step.add_entry_block()):
        z_H, z_L, tokens, ids = step.arguments
        literals: dict[int, ir.Value] = {}  # id(weight) -> its literal

        def literal(tensor: torch.Tensor, vtype: ir.Type) -> ir.Value:
            if id(tensor) not in literals:
                literals[id(tensor)] = ir.Operation.create(
                    "torch.vtensor.literal",
                    results=[vtype],
                    attributes={"value": hooks.attribute(tensor)},
                ).result
            return literals[id(tensor)]

        def call(part: str, *operands: ir.Value) -> list[ir.Value]:
            return list(func.CallOp(funcs[part], list(operands)).results)

        def level(blocks: list[Block], h: ir.Value, injection: ir.Value) -> ir.Value:
            (h,) = call(ADD, h, injection)
            for block in blocks:
                weights = block_weights(block).values()
                (h,) = call(BLOCK, h, *map(literal, weights, weight_types))
            return h

        (x,) = call(EMBED, tokens, ids)
        for lv in level_schedule(inner.config):
            if lv == "L":
                (injection,) = call(ADD, z_H, x)
                z_L = level(layers["L"], z_L, injection)
            else:
                z_H = level(layers["H"], z_H, z_L)
        func.ReturnOp([z_H, z_L, *call(HEADS, z_H)])


def _blocks(level: ReasoningModule) -> list[Block]:
    return [cast(Block, layer) for layer in level.layers]


def inline_parts(module: ir.Module) -> None:
    """Inline every call of a part (after lowering) and drop the parts."""
    run_passes(module, INLINE_PARTS)
