"""Continuous batching against whole batches, both under Q-halting: puzzles per second on the
bundled example's held-out split, one compiled @act, interleaved rounds in one process.

    .venv/bin/python benchmarks/continuous.py [--batch_size 50] [--rounds 5] [--json R]

The ideal ratio is max_steps / mean steps (8 / 5.62 = 1.42 on the example): whole batches run
until their slowest row halts, continuous batching refills each slot as its row halts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

import hrm_mlir
from hrm_mlir.runtime.host import cpu_line

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sudoku6x6"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch_size", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    data = EXAMPLE / "data"
    with tempfile.TemporaryDirectory() as tmp:
        exported = hrm_mlir.export(
            EXAMPLE, Path(tmp) / "act.mlirbc", entry="act", output_type="linalg-on-tensors",
            dtype="float32", batch_size=args.batch_size,
        )  # fmt: skip
        vmfb = hrm_mlir.compile(exported.path, Path(tmp) / "act.vmfb").path
        samples: dict[str, list[float]] = {"continuous": [], "whole batches": []}
        results = {}
        hrm_mlir.evaluate(vmfb, data, q_halt=True)  # warm-up
        for _ in range(args.rounds):
            for name, continuous in (("continuous", True), ("whole batches", False)):
                r = hrm_mlir.evaluate(vmfb, data, q_halt=True, continuous=continuous).result
                samples[name].append(r.puzzles_per_second)
                results[name] = r
    c, w = (statistics.median(samples[k]) for k in ("continuous", "whole batches"))
    mean_steps = results["continuous"].metrics["steps"]
    t = Table(title=f"Q-halting, batch {args.batch_size}, {results['continuous'].examples} "
                    f"puzzles, {args.rounds} interleaved rounds; {cpu_line()}")  # fmt: skip
    for col in ("batching", "median puzzles/s", "min", "max", "exact", "mean steps"):
        t.add_column(col, justify="left" if col == "batching" else "right")
    for name, s in samples.items():
        r = results[name]
        t.add_row(name, f"{statistics.median(s):.1f}", f"{min(s):.1f}", f"{max(s):.1f}",
                  f"{r.metrics['exact_accuracy']:.3f}", f"{r.metrics['steps']:.2f}")  # fmt: skip
    console = Console(highlight=False)
    console.print(t)
    ideal = results["continuous"].max_steps / mean_steps
    console.print(f"continuous / whole batches: {c / w:.2f}x (ideal max_steps / mean steps: "
                  f"{ideal:.2f}x)")  # fmt: skip
    if args.json is not None:
        doc = {"cpu": cpu_line(), "batch_size": args.batch_size, "samples": samples,
               "ratio": c / w, "ideal": ideal, "mean_steps": mean_steps}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
