"""The `hrm-mlir` command line: a thin layer over the library (`hrm_mlir.api`).

Every verb, one module each here, parses its flags, calls the library and prints what it did.
User mistakes end in one line on stderr naming the file and the problem (exit 2); `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from hrm_mlir.cli import (
    bench,
    cache,
    common,
    compile,
    doctor,
    evaluate,
    export,
    info,
    kit,
    run,
    verify,
)
from hrm_mlir.cli.common import EXIT_USER_ERROR
from hrm_mlir.core.errors import HrmMlirError, first_line

VERBS = (
    info,
    export,
    compile,
    verify,
    run,
    evaluate,
    bench,
    kit,
    doctor,
    cache,
)  # in the order `--help` lists them


class _Version(argparse.Action):
    """`--version`, computed only when asked (it reads the installed packages' metadata)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from hrm_mlir.runtime.host import version_line

        print(version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrm-mlir",
        description="Export, compile, run and verify HRM checkpoints with torch-mlir and IREE.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks (default: off)")
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="print the versions in one line and exit"
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress display on the terminal (default: shown on a terminal only)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for verb in VERBS:
        verb.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `hrm-mlir` command line on `argv`; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    common.QUIET = args.quiet
    try:
        return int(args.func(args))
    except HrmMlirError as e:
        if args.debug:
            raise
        print(f"hrm-mlir: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:  # a path the library did not check: missing, unreadable, unwritable
        if args.debug or e.filename is None:
            raise  # not about a file: a bug to see in full
        print(f"hrm-mlir: error: {e.filename}: {e.strerror or first_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("hrm-mlir: interrupted", file=sys.stderr)
        return 130


def entry(argv: Sequence[str] | None = None) -> None:
    """The `hrm-mlir` console script, `python -m hrm_mlir` and `generate_mlir.py`: `main`, then
    exit at once.

    Interpreter teardown after torch, torch.export and torch-mlir have been imported takes
    1.3-1.7 s on a 2-core machine (0.8 s for `import torch` alone), 10-15% of a 27M export. By
    then every command has finished its work: outputs are written atomically and fsynced,
    temporary directories are closed. So the streams are flushed and the process ends with
    `os._exit`, skipping that teardown.
    """
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
