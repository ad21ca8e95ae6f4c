"""`hrm-mlir cache info|clear`: show and empty the cache of compiled artifacts that `run` and
`evaluate` keep (`hrm_mlir.compiler.cache`)."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from hrm_mlir.cli.common import out


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "cache", help="show or empty the cache of compiled artifacts (run, evaluate)"
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = actions.add_parser(
        "info", help="the cache's location, entries and total size"
    )  # fmt: skip
    info.add_argument("--json", action="store_true", help="print JSON instead (default: a table)")
    info.set_defaults(func=show)
    clear = actions.add_parser("clear", help="remove every entry of the cache")
    clear.set_defaults(func=clear_all)


def show(args: argparse.Namespace) -> int:
    from hrm_mlir.compiler.cache import ArtifactCache

    info = ArtifactCache().info()
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
        return 0
    out.print(
        f"cache: {info.location}; {len(info.entries)} "
        f"entr{'y' if len(info.entries) == 1 else 'ies'}, {_size(info.bytes)}"
    )
    if info.entries:
        t = Table()
        for column in ("key", "checkpoint", "dtype", "batch", "params", "target", "size",
                       "created"):  # fmt: skip
            t.add_column(column)
        for entry in info.entries:
            s = entry.summary()
            t.add_row(
                s["key"][:12], str(s["checkpoint"]), str(s["dtype"]), str(s["batch"]),
                str(s["params"]), str(s["target"]), _size(s["bytes"]), s["created"],
            )  # fmt: skip
        out.print(t)
    return 0


def clear_all(args: argparse.Namespace) -> int:
    from hrm_mlir.compiler.cache import ArtifactCache

    removed = ArtifactCache().clear()
    n = len(removed.entries)
    out.print(
        f"removed {n} entr{'y' if n == 1 else 'ies'} ({_size(removed.bytes)}) from "
        f"{removed.location}"
    )
    return 0


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"
