"""IREE parameter archives (.irpa) and the tensors they hold, by the names an export gives them.

Torch and IREE's runtime only, no torch-mlir: a machine with the runtime alone serves a model's
weights to an artifact built with external parameters (`hrm_mlir.bench.kit_run`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from hrm_mlir.core.errors import HrmMlirError, first_line
from hrm_mlir.core.fileio import atomic_path


def parameter_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Name -> tensor of everything an export of `model` can read as a weight: its parameters
    and buffers by state-dict name, and each RoPE table as `<module>.rope.cos` / `.sin`.

    These are the keys of an external-parameter export's archive (`hrm_mlir.exporter.params`).
    """
    named = dict([*model.named_parameters(), *model.named_buffers()])
    for prefix, module in model.named_modules():
        rope = getattr(module, "_rope", None)
        if rope is not None:
            for part, t in zip(("cos", "sin"), rope, strict=True):
                named[f"{prefix}.rope.{part}".lstrip(".")] = t
    return named


def host_bytes(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's bytes as a flat uint8 array, without a copy for contiguous CPU tensors."""
    t = tensor.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().reshape(-1).view(np.uint8)


def save_archive(params: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Write `params` to an IREE parameter archive at `path`, atomically.

    The tensors are handed to IREE as views (a memory-mapped checkpoint stays mapped, not
    copied); IREE writes the archive.
    """
    from iree import runtime as rt

    index = rt.ParameterIndex()
    for name, tensor in params.items():
        index.add_buffer(name, host_bytes(tensor))
    with atomic_path(path) as tmp:
        try:
            index.create_archive_file(str(tmp))
        except (RuntimeError, ValueError) as e:
            raise HrmMlirError(f"{path}: cannot write the parameter archive: {e}") from None
    return Path(path)


def load_index(source: str | Path | Mapping[str, torch.Tensor]):
    """An IREE `ParameterIndex` over an archive file (.irpa, .safetensors, .gguf) or tensors."""
    from iree import runtime as rt

    index = rt.ParameterIndex()
    if isinstance(source, Mapping):
        for name, tensor in source.items():
            index.add_buffer(name, host_bytes(tensor))
        return index
    path = Path(source)
    if not path.is_file():
        raise HrmMlirError(f"{path}: no such parameter archive")
    try:
        index.load(str(path))
    except (RuntimeError, ValueError) as e:
        first = first_line(e, "unreadable")
        raise HrmMlirError(f"{path}: not a readable parameter archive: {first}") from None
    return index


def archive_sizes(path: str | Path) -> dict[str, int]:
    """Key -> byte length of every entry of a parameter archive."""
    return {key: int(entry.length) for key, entry in load_index(path).items()}


def check_archive(required: Mapping[str, int], path: str | Path) -> None:
    """Raise unless the archive at `path` holds every required key with the right size."""
    have = archive_sizes(path)
    missing = sorted(k for k in required if k not in have)
    wrong = sorted(
        f"{k} ({have[k]} B, expected {n})"
        for k, n in required.items()
        if k in have and have[k] != n
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {', '.join(missing[:10])}")
    if wrong:
        problems.append(f"{len(wrong)} of the wrong size: {', '.join(wrong[:10])}")
    if problems:
        raise HrmMlirError(f"{path}: does not match the module's parameters: {'; '.join(problems)}")
