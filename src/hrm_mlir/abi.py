"""The exported `@step` ABI read back from an MLIR function type (no torch needed)."""

from __future__ import annotations

import re

from hrm_mlir.config import DType
from hrm_mlir.errors import ExportError

# The scope external parameters are named in and served under: `--parameters=model=FILE.irpa`.
PARAMETER_SCOPE = "model"
# The module attribute that holds the reference cases `export` records (`hrm_mlir.reference`).
REFERENCE_ATTR = "hrm_mlir.reference"


def parse_step_signature(function_type: str) -> tuple[int | None, DType]:
    """(batch size or None if symbolic, forward dtype) from the MLIR type of `@step`."""
    m = re.match(r"\(!torch\.vtensor<\[(-?\d+|\?),\d+,\d+\],(\w+)>", function_type) or re.match(
        r"\(tensor<(\d+|\?)x\d+x\d+x(\w+)>", function_type
    )
    dtypes = {d.mlir: d for d in DType}
    if m is None or m.group(2) not in dtypes:
        raise ExportError(f"@step does not have the documented ABI: {function_type[:200]}")
    batch = m.group(1)
    return (int(batch) if batch.isdigit() else None), dtypes[m.group(2)]
