"""The package's layout: layers that import one way, no private names across modules, and the
stages that need no torch importing none."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "hrm_mlir"


def test_import_contracts_hold():
    """pyproject.toml's import-linter contracts: the layers, the independent kernel generators."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (make venv installs it)")
    result = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken" in result.stdout, result.stdout[-2000:]


def _private_imports(path: Path, root: Path = ROOT) -> list[str]:
    """`from hrm_mlir.x import _name` in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hrm_mlir"):
            found += [
                f"{path.relative_to(root)}:{node.lineno}: {node.module}.{alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
    return found


def test_no_private_name_is_imported_across_modules():
    found = [f for path in sorted(SRC.rglob("*.py")) for f in _private_imports(path)]
    assert not found, "\n".join(found)


def test_the_private_import_check_sees_one(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from hrm_mlir.compiler.kernels.gemm import _maps, GemmShape\n")
    assert _private_imports(sample, tmp_path) == [
        "sample.py:1: hrm_mlir.compiler.kernels.gemm._maps"
    ]


def test_compiling_and_running_a_file_imports_no_torch():
    """`hrm-mlir compile` and `run model.vmfb` start without torch (0.8 s of import): the
    compiler, the runtime, the exporter's ABI and references, the command line, the API."""
    imports = (
        "import hrm_mlir, hrm_mlir.cli, hrm_mlir.compiler, hrm_mlir.runtime, "
        "hrm_mlir.exporter.abi, hrm_mlir.exporter.reference, hrm_mlir.cli.app; "
        "hrm_mlir.cli.app.build_parser()"
    )
    assert _imported(imports, "m.split('.')[0] in ('torch', 'torch_mlir')") == "[]"


def test_running_a_kit_imports_no_compiler():
    """`hrm-mlir kit run` runs where only IREE's runtime and torch are: the run side and the
    kit format import neither torch-mlir nor the IREE compiler, directly or through another."""
    imports = "import hrm_mlir.bench.kit_run, hrm_mlir.bench.kit_format, hrm_mlir.bench.timing"
    found = _imported(imports, "m.split('.')[0] == 'torch_mlir' or m.startswith('iree.compiler')")
    assert found == "[]"


def _imported(imports: str, condition: str) -> str:
    """The modules, by `condition` on a name `m`, that a fresh interpreter has after `imports`."""
    code = f"import sys; {imports}; print(sorted(m for m in sys.modules if {condition}))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout.strip()


def test_the_api_functions_are_the_package_names():
    """`hrm_mlir.compile` stays the function after the compiler package is imported."""
    import hrm_mlir
    import hrm_mlir.compiler.driver
    import hrm_mlir.exporter.step
    import hrm_mlir.verification
    from hrm_mlir import api

    assert (hrm_mlir.export, hrm_mlir.compile, hrm_mlir.verify, hrm_mlir.run) == (
        api.export,
        api.compile,
        api.verify,
        api.run,
    )
