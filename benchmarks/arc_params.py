"""Export, compile and run an ARC-2-size HRM with external parameters; wall time and peak RSS.

Each phase runs as its own process under `/usr/bin/time -v`, as a user runs it:

1. `hrm-mlir export CKPT --params external` (MLIR + .irpa),
2. `hrm-mlir compile` of that MLIR,
3. `iree-run-module --parameters=model=X.irpa` of one `@step` on the last puzzle row,

then the run's outputs are compared with PyTorch. The checkpoint (27M weights + a
1,045,829 x 512 float32 puzzle table) is made by `scripts/make_arc_checkpoint.py` if absent.

    .venv/bin/python benchmarks/arc_params.py --checkpoint /tmp/hrm-arc2 --json arc_params.json
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGETS = {"export_s": 60.0, "export_rss_mib": 3 * 1024}  # the bounds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--checkpoint", type=Path, default=Path("/tmp/hrm-arc2"), help="(default: /tmp/hrm-arc2)"
    )
    p.add_argument("--rows", type=int, default=1_045_829, help="table rows if it is made")
    p.add_argument("--workdir", type=Path, default=None, help="(default: a temporary directory)")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    return p.parse_args(argv)


def timed(argv: list[str]) -> dict:
    """Run `argv` under /usr/bin/time -v: wall seconds and peak RSS (MiB)."""
    proc = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")
    wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    assert wall and rss, proc.stderr
    h, m, s = (float(g) if g else 0.0 for g in wall.groups())
    return {"wall_s": 3600 * h + 60 * m + s, "peak_rss_mib": int(rss.group(1)) / 1024}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ckpt = args.checkpoint
    if not (ckpt / "checkpoint").is_file():
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "make_arc_checkpoint.py"), "--out", str(ckpt),
             "--rows", str(args.rows)],
            check=True,
        )  # fmt: skip
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hrm-arc-"))
    work.mkdir(parents=True, exist_ok=True)
    mlir, irpa, vmfb = work / "step.mlirbc", work / "step.irpa", work / "step.vmfb"
    hrm = str(BIN / "hrm-mlir")
    phases = {
        "export": timed([hrm, "export", str(ckpt), "-o", str(mlir), "--params", "external",
                         "--dtype", "float32"]),
        "compile": timed([hrm, "compile", str(mlir), "-o", str(vmfb), "--params", str(irpa)]),
    }  # fmt: skip

    from hrm_mlir.checkpoint.load import load_checkpoint
    from hrm_mlir.core.types import DType
    from hrm_mlir.exporter.inputs import random_step_inputs
    from hrm_mlir.verification import STEP_OUTPUTS, compare

    ck = load_checkpoint(ckpt)
    cfg = ck.config
    z_H, z_L, inputs, _ = random_step_inputs(ck.config_for(DType.FLOAT32), 1)
    ids = torch.tensor([cfg.num_puzzle_identifiers - 1], dtype=torch.int32)  # the last row
    files = []
    for i, a in enumerate((z_H, z_L, inputs, ids)):
        files.append(work / f"in{i}.npy")
        np.save(files[-1], a.numpy())
    outs = [work / f"out{i}.npy" for i in range(len(STEP_OUTPUTS))]
    tool = shutil.which("iree-run-module") or str(BIN / "iree-run-module")
    phases["run"] = timed([
        tool, f"--module={vmfb}", f"--parameters=model={irpa}", "--function=step",
        *(f"--input=@{f}" for f in files), *(f"--output=@{f}" for f in outs),
    ])  # fmt: skip
    with torch.no_grad():
        ref = ck.build_model(DType.FLOAT32).inner(z_H, z_L, inputs, ids)
    report = compare(STEP_OUTPUTS, [torch.from_numpy(np.load(f)) for f in outs], ref, DType.FLOAT32)

    params_mib = irpa.stat().st_size / 2**20
    doc = {
        "checkpoint": str(ckpt),
        "checkpoint_mib": (ckpt / "checkpoint").stat().st_size / 2**20,
        "puzzle_rows": cfg.num_puzzle_identifiers,
        "mlir_bytes": mlir.stat().st_size,
        "params_mib": params_mib,
        "phases": phases,
        "run_rss_over_params_mib": phases["run"]["peak_rss_mib"] - params_mib,
        "verified": report.passed,
        "max_rel_l2": max(o.rel_l2 for o in report.outputs),
        "within_targets": phases["export"]["wall_s"] <= TARGETS["export_s"]
        and phases["export"]["peak_rss_mib"] <= TARGETS["export_rss_mib"],
    }
    table = Table(title=f"{cfg.num_puzzle_identifiers:,}-row puzzle table, external parameters")
    for col in ("phase", "wall s", "peak RSS MiB"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for name, phase in phases.items():
        table.add_row(name, f"{phase['wall_s']:.1f}", f"{phase['peak_rss_mib']:.0f}")
    console = Console()
    console.print(table)
    console.print(
        f"MLIR {doc['mlir_bytes'] / 1024:.0f} KiB, archive {params_mib:.0f} MiB; run RSS - "
        f"archive = {doc['run_rss_over_params_mib']:.0f} MiB; outputs vs PyTorch: "
        f"{'passed' if report.passed else 'FAILED'} (max rel-L2 {doc['max_rel_l2']:.1e})"
    )
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    if not report.passed:
        raise SystemExit("the compiled model does not match PyTorch")


if __name__ == "__main__":
    main()
