"""Building a kit, here: `@step` artifacts compiled on this machine, to be checked and timed on
another that has only IREE's runtime and PyTorch, such as a GPU machine
(`hrm_mlir.bench.kit_run`).

A GPU machine may have neither torch-mlir nor the IREE compiler, and may not be able to install
them: the lent GPU machines of this project reach no package registry, the compiler wheel is
84 MB and torch-mlir is built against one torch. So the work splits in two: `build_kit` exports
`@step` at each (puzzle length, batch) shape with external parameters, compiles each for the
target, and writes the artifacts and `kit.json` (`hrm_mlir.bench.kit_format`).

Weights: `random` draws non-degenerate weights from the recorded seed on both machines
(`hrm_mlir.checkpoint.synthetic`), so nothing large travels; `checkpoint` copies the
checkpoint's own into the kit as safetensors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hrm_mlir.bench.kit_format import (
    DRIVERS,
    KIT_FILE,
    WEIGHTS_FILE,
    Weights,
    artifact_entry,
    describe,
)
from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.core.types import DType


def parse_shape(text: str) -> tuple[int, list[int]]:
    """`SEQ_LEN:B1,B2,...` -> (seq_len, batches); e.g. `81:1,64,256`."""
    seq, sep, batches = text.partition(":")
    try:
        seq_len, sizes = int(seq), [int(b) for b in batches.split(",")]
    except ValueError:
        sizes, seq_len = [], 0
    if not sep or seq_len < 1 or not sizes or min(sizes) < 1:
        raise HrmMlirError(
            f"--shape {text!r}: expected SEQ_LEN:BATCH[,BATCH...] with positive integers, "
            "e.g. 81:1,64,256"
        )
    return seq_len, sizes


def build_kit(
    checkpoint: str | Path,
    out: str | Path,
    *,
    shapes: Mapping[int | None, list[int]],
    dtype: DType,
    options,
    weights: Weights = Weights.RANDOM,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Export and compile `@step` at every shape into the directory `out` (written whole or
    not at all); returns `kit.json`'s content.

    Args:
        checkpoint: the checkpoint whose architecture (and, with `Weights.CHECKPOINT`,
            weights) the kit carries.
        shapes: puzzle length (None: the checkpoint's) -> the static batch sizes to build.
        options: the `CompileOptions` of every artifact (their target decides where it runs).
        weights: `random` (drawn from `seed` where it runs) or the checkpoint's own.
    """
    from safetensors.torch import save_file

    from hrm_mlir.checkpoint.load import Checkpoint, build_model, load_checkpoint
    from hrm_mlir.checkpoint.synthetic import random_state
    from hrm_mlir.compiler.driver import compile_module
    from hrm_mlir.core.fileio import atomic_dir, check_writable
    from hrm_mlir.core.types import OutputType
    from hrm_mlir.exporter.module import ExportOptions
    from hrm_mlir.exporter.params import Params
    from hrm_mlir.exporter.step import export_step
    from hrm_mlir.runtime.host import cpu_line, version_line

    if options.target.value not in DRIVERS:
        raise HrmMlirError(f"kits run on {', '.join(DRIVERS)} targets, not {options.target}")
    out = Path(out)
    check_writable(out, directory=True)  # before the checkpoints load
    loaded: dict[
        int, tuple[Checkpoint, list[int]]
    ] = {}  # every checkpoint read and validated first
    for seq, batches in shapes.items():
        ck = load_checkpoint(checkpoint, seq_len=seq)
        known = loaded.setdefault(ck.config.seq_len, (ck, []))[1]
        known += [b for b in batches if b not in known]
    artifacts: list[dict[str, Any]] = []
    configs: dict[str, Any] = {}
    notes: list[str] = []
    with atomic_dir(out) as tmp:
        for ck, batches in loaded.values():
            config = ck.config.model_copy(update={"forward_dtype": dtype})
            state = random_state(config, seed) if weights == Weights.RANDOM else ck.state_dict
            model = build_model(config, state)
            configs[str(config.seq_len)] = json.loads(config.model_dump_json())
            for batch in batches:
                name = f"step-{config.total_seq_len}x{batch}.vmfb"
                if progress is not None:
                    progress(f"{name}: exporting and compiling for {options.target_name()}")
                export_options = ExportOptions(
                    output_type=OutputType.LINALG_ON_TENSORS,
                    dtype=dtype,
                    batch_size=batch,
                    params=Params.EXTERNAL,
                    reference=False,  # run_kit checks it where it runs
                )
                exported = export_step(model, export_options)
                vmfb = compile_module(exported, options=options, notes=notes, check=False)
                (tmp / name).write_bytes(vmfb)
                artifacts.append(
                    artifact_entry(name, config.seq_len, config.total_seq_len, batch, vmfb)
                )
        if weights == Weights.CHECKPOINT:  # the same tensors at every puzzle length
            state = next(iter(loaded.values()))[0].state_dict
            save_file({k: v.contiguous() for k, v in state.items()}, tmp / WEIGHTS_FILE)
            (tmp / WEIGHTS_FILE).chmod(0o644)  # safetensors writes it 0600
        doc = describe(
            built_with=version_line(),
            built_on=cpu_line(),
            built_from=str(checkpoint),
            family=config.family,
            dtype=dtype,
            target=options.target_name(),
            flags=options.flags(dtype, external_parameters=True),
            weights=weights,
            seed=seed,
            configs=configs,
            artifacts=artifacts,
            notes=notes,
        )
        (tmp / KIT_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    return doc
