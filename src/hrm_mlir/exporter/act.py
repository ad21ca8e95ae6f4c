"""The whole ACT inference loop in one MLIR module.

torch.export traces Python loops by unrolling them, and torch-mlir 20261001 cannot lower
`torch._higher_order_ops.while_loop` (its `torch.prim.Loop` carries the lifted weights: "region
branch point has 5 operands, but region successor needs 2 inputs"). So the loop is built in MLIR:

- `@step` (built by `hrm_mlir.exporter.compose`), `@initial_carry` and two private helpers
  (`@act_init`, `@act_update`) are exported from PyTorch into one module and lowered to
  linalg-on-tensors;
- `@act` is an `scf.while` around `func.call @step` and `func.call @act_update`, with the step
  budget `max_steps` a runtime value. A compiler keeps it as a loop; nothing is unrolled.

    act(inputs [B,seq_len] i32, puzzle_identifiers [B] i32, max_steps i32, q_halt i32)
      -> (logits [B,seq_len,V], q_halt_logits [B] f32, q_continue_logits [B] f32, steps [B] i32)
    initial_carry(puzzle_identifiers [B] i32) -> (z_H [B,S,D], z_L [B,S,D])

`B` is static, or symbolic (`batch_size=None`): then the step is inlined into the loop body,
because iree-compile 3.13 fails on the dynamically shaped call (see `export_act`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch_mlir import ir
from torch_mlir.extras.fx_decomp_util import get_decomposition_table
from torch_mlir.passmanager import PassManager

from hrm_mlir.checkpoint.load import Checkpoint
from hrm_mlir.core.errors import ExportError
from hrm_mlir.core.types import Entry, HaltRule, OutputType
from hrm_mlir.exporter.compose import import_step, inline_parts
from hrm_mlir.exporter.inputs import INDEX_DTYPE, example_step_args
from hrm_mlir.exporter.module import (
    ExportedModule,
    ExportOptions,
    externalize_if,
    prepare_model,
    resolve_options,
)
from hrm_mlir.exporter.params import Params
from hrm_mlir.exporter.reference import act_cases, attach
from hrm_mlir.exporter.trace import (
    ZeroCopyLiterals,
    batch_dims,
    export_errors,
    lower,
    new_importer,
    quiet_export,
    trace_batch,
)
from hrm_mlir.models.hrm import HRM, HRMInner, export_attention, float32_inits

# Dialects whose @act is built; the loop is written with scf/arith/tensor ops around calls.
ACT_DIALECTS = (OutputType.LINALG_ON_TENSORS,)
DYNAMIC = "dynamic"  # `hrm.batch_size` of a symbolic-batch @act
INLINE_STEP = "builtin.module(func.func(lower-affine), inline, symbol-dce)"


class InitialCarry(nn.Module):
    """`@initial_carry`: the reset carry, H_init / L_init broadcast to [B, S, D].

    It takes the puzzle identifiers only for their batch size."""

    def __init__(self, inner: HRMInner) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, puzzle_identifiers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner.initial_carry(puzzle_identifiers.shape[0])


class ACTInit(nn.Module):
    """`@act_init`: the loop state before the first step (every row running, nothing decided)."""

    def __init__(self, inner: HRMInner) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, inputs: torch.Tensor):
        cfg = self.inner.config
        b = inputs.shape[0]
        z_H, z_L = self.inner.initial_carry(b)
        logits = torch.zeros(b, cfg.seq_len, cfg.vocab_size, dtype=z_H.dtype)
        q = torch.zeros(b, dtype=torch.float32)
        steps = torch.zeros(b, dtype=torch.int32)
        done = torch.zeros(b, dtype=torch.bool)
        return z_H, z_L, logits, q, q.clone(), steps, done, done.all()


class ACTUpdate(nn.Module):
    """`@act_update`: fold step `n`'s outputs into the loop state.

    Rows still running take the new outputs and step count; a row stops once the family's
    halting rule holds (HRM: q_halt_logits > q_continue_logits; TRM: q_halt_logits > 0), only
    when `q_halt` != 0. Returns the new state and whether every row has stopped.
    """

    def __init__(self, rule: HaltRule) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, logits, q_h, q_c, steps, done, new_logits, new_q_h, new_q_c, n, q_halt):
        run = ~done  # (B,)
        logits = torch.where(run[:, None, None], new_logits, logits)
        q_h = torch.where(run, new_q_h, q_h)
        q_c = torch.where(run, new_q_c, q_c)
        steps = torch.where(run, n, steps)
        done = done | (self.rule.halts(new_q_h, new_q_c) & (q_halt != 0))
        return logits, q_h, q_c, steps, done, done.all()


def export_act(source: Checkpoint | HRM, options: ExportOptions | None = None) -> ExportedModule:
    """Export `@act` (the whole ACT loop), `@step` and `@initial_carry` into one module.

    Raises:
        ExportError: for a dialect that cannot carry the loop, or a failed lowering.
    """
    options = options or ExportOptions(output_type=OutputType.LINALG_ON_TENSORS)
    if options.output_type not in ACT_DIALECTS:
        raise ExportError(
            f"--entry act is built for {', '.join(map(str, ACT_DIALECTS))}, not "
            f"{options.output_type}: its loop is scf.while around the linalg step"
        )
    model = prepare_model(source, options.dtype)
    cfg, b = model.config, options.batch_size
    options, notes = resolve_options(options, model, Entry.ACT)
    inner = model.inner

    step_args = example_step_args(cfg, trace_batch(b))
    inputs, ids = step_args[2], step_args[3]
    with torch.no_grad():
        new = inner(*step_args)
        state = ACTInit(inner)(inputs)
    # distinct tensors: torch.export would merge one tensor passed as two arguments
    n, q_halt = torch.ones((), dtype=torch.int32), torch.zeros((), dtype=torch.int32)
    update_args = (*state[2:7], *new[2:], n, q_halt)

    hooks = ZeroCopyLiterals(external=options.params == Params.EXTERNAL)
    importer = new_importer(hooks)
    programs = [
        ("initial_carry", InitialCarry(inner), (ids,)),
        ("act_init", ACTInit(inner), (inputs,)),
        ("act_update", ACTUpdate(cfg.halt_rule), update_args),
    ]
    with export_errors("export of @act"):
        with (
            torch.no_grad(),
            quiet_export(),
            export_attention(model, options.attention_pad),
            float32_inits(model),
        ):
            import_step(importer, hooks, inner, b, "step")
            for name, module, args in programs:
                dynamic = batch_dims(args) if b is None else None
                prog = torch.export.export(module, args, dynamic_shapes=dynamic, strict=False)
                # the small loop helpers use ops (i1 `&`) only the decompositions lower; the
                # step does not need them
                prog = prog.run_decompositions(get_decomposition_table())
                importer.import_frozen_program(prog, func_name=name)
        module = lower(importer.module, OutputType.LINALG_ON_TENSORS)
        inline_parts(module)  # before @act exists: only the step's parts are called

    with module.context, ir.Location.unknown():
        for op in module.body.operations:
            if op.operation.name == "func.func" and op.attributes["sym_name"].value in (
                "act_init",
                "act_update",
            ):
                op.attributes["sym_visibility"] = ir.StringAttr.get("private")
        types = _function_types(module)
        act = ir.Module.parse(_act_source(types))
        for op in list(act.body.operations):
            if op.attributes["sym_name"].value == "act":
                # IREE keeps `iree.reflection` in the .vmfb: `run model.vmfb` reads the config.
                meta = {
                    "hrm.config": cfg.model_dump_json(),
                    "hrm.batch_size": str(b or DYNAMIC),
                    "hrm.halt_rule": str(cfg.halt_rule),
                }
                op.attributes["iree.reflection"] = ir.DictAttr.get(
                    {k: ir.StringAttr.get(v) for k, v in meta.items()}
                )
                op.detach_from_parent()
                module.body.append(op)
        if b is None:
            # iree-compile 3.13 fails on a call of a dynamically shaped @step inside scf.while
            # (iree-util-ipo: "operation's operand is unlinked"); with the step inlined into
            # the loop body it compiles. affine.apply ops block inlining into scf regions, so
            # they are lowered to arith first. The public @step stays for callers.
            PassManager.parse(INLINE_STEP).run(module.operation)
    if options.reference:
        attach(module, act_cases(model, b))
    parameters = externalize_if(options, module, hooks, model)  # inlined ops are plain ops
    return ExportedModule(module, cfg, options, parameters, notes)


def _function_types(module: ir.Module) -> dict[str, tuple[list[str], list[str]]]:
    out = {}
    for op in module.body.operations:
        if "function_type" not in op.attributes:
            continue  # util.global of an external parameter
        ftype = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
        out[op.attributes["sym_name"].value] = (
            [str(t) for t in ftype.inputs],
            [str(t) for t in ftype.results],
        )
    return out


def _act_source(types: dict[str, tuple[list[str], list[str]]]) -> str:
    """MLIR of `@act`, with private declarations of the functions it calls."""
    step_in, step_out = types["step"]
    init_in, init_out = types["act_init"]
    upd_in, upd_out = types["act_update"]
    zh, zl, inp, ids = step_in
    logits, qh, qc, steps, done, all_done = init_out[2:]

    def decl(name: str) -> str:
        ins, outs = types[name]
        return f"func.func private @{name}({', '.join(ins)}) -> ({', '.join(outs)})"

    state = [zh, zl, logits, qh, qc, steps, done, all_done, "i32"]
    st = ", ".join(state)
    return f"""
module {{
  {decl("step")}
  {decl("act_init")}
  {decl("act_update")}
  func.func @act(%inputs: {inp}, %ids: {ids}, %max_steps: tensor<i32>, %q_halt: tensor<i32>)
      -> ({logits}, {qh}, {qc}, {steps}) {{
    %c0 = arith.constant 0 : i32
    %c1 = arith.constant 1 : i32
    %true = arith.constant true
    %limit = tensor.extract %max_steps[] : tensor<i32>
    %s:8 = func.call @act_init(%inputs) : ({init_in[0]}) -> ({", ".join(init_out)})
    %r:9 = scf.while (%zh = %s#0, %zl = %s#1, %lg = %s#2, %qh = %s#3, %qc = %s#4, %st = %s#5,
                      %dn = %s#6, %all = %s#7, %n = %c0) : ({st}) -> ({st}) {{
      %below = arith.cmpi slt, %n, %limit : i32
      %all_b = tensor.extract %all[] : {all_done}
      %open = arith.xori %all_b, %true : i1
      %go = arith.andi %below, %open : i1
      scf.condition(%go) %zh, %zl, %lg, %qh, %qc, %st, %dn, %all, %n : {st}
    }} do {{
    ^bb0(%zh: {zh}, %zl: {zl}, %lg: {logits}, %qh: {qh}, %qc: {qc}, %st: {steps},
         %dn: {done}, %all: {all_done}, %n: i32):
      %o:5 = func.call @step(%zh, %zl, %inputs, %ids)
          : ({", ".join(step_in)}) -> ({", ".join(step_out)})
      %n1 = arith.addi %n, %c1 : i32
      %nt = tensor.from_elements %n1 : tensor<i32>
      %u:6 = func.call @act_update(%lg, %qh, %qc, %st, %dn, %o#2, %o#3, %o#4, %nt, %q_halt)
          : ({", ".join(upd_in)}) -> ({", ".join(upd_out)})
      scf.yield %o#0, %o#1, %u#0, %u#1, %u#2, %u#3, %u#4, %u#5, %n1 : {st}
    }}
    return %r#2, %r#3, %r#4, %r#5 : {logits}, {qh}, {qc}, {steps}
  }}
}}
"""


__all__ = ["ACT_DIALECTS", "INDEX_DTYPE", "export_act"]
