"""`evaluate --engine ray` with 1 and 2 workers, and the local engine for reference: puzzles per
second on the bundled example's held-out split repeated `--repeat` times (so that the shards
are long enough for Ray's per-shard costs not to dominate), interleaved rounds.

    .venv/bin/python benchmarks/ray_scaling.py [--repeat 8] [--rounds 3] [--q_halt] [--json R]

One `@act` compiled at `--batch_size` (50); one local Ray with this machine's CPUs for every
round. Each Ray run starts its own workers (each loads the artifact) and writes its shards to a
fresh directory. "evaluation" is what `evaluate` reports (the workers ready to the last shard
written; the local engine's loop), "end to end" the whole call (the dataset's digest, the
workers' start and the merge included). A Ray worker runs IREE on one thread; the local engine
runs IREE's default, one thread per core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import hrm_mlir
from hrm_mlir.evaluation import load_split, write_split
from hrm_mlir.runtime.host import cpu_line

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sudoku6x6"


def repeated(out: Path, times: int) -> Path:
    """The example's held-out split `times` over, as a dataset of its own."""
    s = load_split(EXAMPLE / "data").sets[0]
    inputs = np.tile(np.asarray(s.inputs), (times, 1))
    labels = np.tile(np.asarray(s.labels), (times, 1))
    write_split(out, inputs, labels, vocab_size=8)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch_size", type=int, default=50)
    p.add_argument("--repeat", type=int, default=8, help="the 500 puzzles this many times over")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--q_halt", action="store_true", help="Q-halting, continuous batching")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    import ray

    modes = {"local": None, "ray, 1 worker": 1, "ray, 2 workers": 2}
    rates: dict[str, list[float]] = {m: [] for m in modes}
    walls: dict[str, list[float]] = {m: [] for m in modes}
    metrics = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        exported = hrm_mlir.export(
            EXAMPLE, root / "act.mlirbc", entry="act", output_type="linalg-on-tensors",
            dtype="float32", batch_size=args.batch_size,
        )  # fmt: skip
        vmfb = hrm_mlir.compile(exported.path, root / "act.vmfb").path
        data = repeated(root / "data", args.repeat)
        ray.init(include_dashboard=False, logging_level="ERROR")
        cpus = int(ray.cluster_resources()["CPU"])
        hrm_mlir.evaluate(vmfb, data, q_halt=args.q_halt, limit=500)  # warm-up
        run = 0
        for _ in range(args.rounds):
            for mode, workers in modes.items():
                run += 1
                ray_options = {}
                if workers is not None:
                    ray_options = {"engine": "ray", "workers": workers, "out": root / f"s{run}"}
                start = time.perf_counter()
                evaluated = hrm_mlir.evaluate(vmfb, data, q_halt=args.q_halt, **ray_options)
                walls[mode].append(evaluated.result.examples / (time.perf_counter() - start))
                rates[mode].append(evaluated.result.puzzles_per_second)
                metrics[mode] = evaluated.result.metrics
        ray.shutdown()
    examples = 500 * args.repeat
    assert all(m == metrics["local"] for m in metrics.values()), metrics
    median = {m: statistics.median(r) for m, r in rates.items()}
    steps = "Q-halting, continuous batching" if args.q_halt else "fixed 8 steps"
    t = Table(title=f"{examples} puzzles ({args.repeat} x the held-out split), {steps}, batch "
                    f"{args.batch_size}, {args.rounds} interleaved rounds; {cpu_line()}; "
                    f"{cpus} CPUs")  # fmt: skip
    for col in ("engine", "evaluation puzzles/s (median)", "min", "max", "end to end (median)"):
        t.add_column(col, justify="left" if col == "engine" else "right")
    for mode, r in rates.items():
        t.add_row(mode, f"{median[mode]:.1f}", f"{min(r):.1f}", f"{max(r):.1f}",
                  f"{statistics.median(walls[mode]):.1f}")  # fmt: skip
    console = Console(highlight=False)
    console.print(t)
    scaling = median["ray, 2 workers"] / median["ray, 1 worker"]
    console.print(f"2 workers / 1 worker: {scaling:.2f}x; 2 workers / local: "
                  f"{median['ray, 2 workers'] / median['local']:.2f}x; the metrics of every run "
                  "equal the local engine's")  # fmt: skip
    if args.json is not None:
        doc = {"cpu": cpu_line(), "cpus": cpus, "examples": examples, "q_halt": args.q_halt,
               "batch_size": args.batch_size, "rounds": args.rounds, "evaluation": rates,
               "end_to_end": walls, "scaling": scaling, "metrics": metrics["local"]}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
