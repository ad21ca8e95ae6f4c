"""`python -m hrm_mlir` runs the `hrm-mlir` command line."""

import sys

from hrm_mlir.cli import main

sys.exit(main())
