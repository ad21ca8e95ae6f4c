"""`python -m hrm_mlir` runs the `hrm-mlir` command line."""

from hrm_mlir.cli.app import entry

entry()
