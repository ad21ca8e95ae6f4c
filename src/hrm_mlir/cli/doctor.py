"""`hrm-mlir doctor`: versions, the CPU and its features, what this machine can compile for and
run, and the optional tools (`hrm_mlir.runtime.host`)."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from hrm_mlir.cli.common import out


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="versions, CPU features, targets and tools here")
    p.add_argument("--json", action="store_true", help="print JSON instead (default: a table)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrm_mlir.runtime.host import report

    doc = report()
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    t = Table(title="hrm-mlir doctor", show_header=False)
    t.add_column("what")
    t.add_column("value")
    for package, v in doc["versions"].items():
        t.add_row(package, v or "not installed")
    t.add_row("python", doc["python"])
    t.add_section()
    c = doc["cpu"]
    t.add_row("CPU", f"{c['model']} ({c['machine']}; LLVM: {c['llvm_cpu']}, {c['triple']})")
    t.add_row("vector ISA", ", ".join(c["feature_classes"]) or "none found")
    t.add_row("kernels for", c["vector_isa"])
    t.add_section()
    compiles = doc["targets"]["compile"]
    t.add_row("compiles for", compiles if isinstance(compiles, str) else ", ".join(compiles))
    for driver, devices in doc["targets"]["run"].items():
        shown = devices if isinstance(devices, str) else ", ".join(devices)
        t.add_row(f"runs on {driver}", shown)
    t.add_section()
    for tool, v in doc["tools"].items():
        t.add_row(tool, v or "not found")
    out.print(t)
    return 0
