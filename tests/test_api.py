"""The Python API (`hrm_mlir.export`, `.compile`, `.verify`, `.run`), as the README shows it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hrm_mlir
from hrm_mlir.core import HrmMlirError
from hrm_mlir.exporter.abi import parse_step_signature, read_functions
from hrm_mlir.runtime import CompiledModule

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sudoku6x6"


def test_export_compile_verify_a_symbolic_batch(tiny_checkpoint: Path, tmp_path: Path):
    exported = hrm_mlir.export(tiny_checkpoint, tmp_path / "step.mlir", batch_size=None)
    assert exported.path.is_file() and exported.archive is None
    assert parse_step_signature(read_functions(exported.path)["step"])[0] is None

    compiled = hrm_mlir.compile(exported.path, tmp_path / "step.vmfb")
    assert compiled.path.stat().st_size == compiled.size > 0
    assert compiled.stats["checked"] == "@step at batch 1, 3"  # the self-check ran
    assert "step" in CompiledModule(compiled.path).function_names

    checked = hrm_mlir.verify(tiny_checkpoint, mlir=exported.path)
    assert checked.passed and not checked.failures
    assert [b for b, _ in checked.reports] == [1, 3, 16]
    assert checked.as_dict()["passed"] is True


def test_verify_reports_each_batch_as_it_goes(tiny_checkpoint: Path):
    seen: list[str] = []
    checked = hrm_mlir.verify(
        tiny_checkpoint, batch_size=2, on_report=lambda title, report: seen.append(title)
    )
    assert checked.passed
    assert len(seen) == 1 and seen[0].endswith("batch 2)")


def test_external_parameters_go_to_their_archive(tiny_checkpoint: Path, tmp_path: Path):
    archive = tmp_path / "weights.irpa"
    exported = hrm_mlir.export(tiny_checkpoint, tmp_path / "s.mlir", params_file=archive)
    assert exported.archive == archive and archive.stat().st_size > 0
    compiled = hrm_mlir.compile(exported.path, tmp_path / "s.vmfb", params=archive)
    assert compiled.parameters_checked == len(exported.module.parameters) > 0


def test_mistakes_are_one_line_errors_naming_the_file(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(HrmMlirError, match="no such MLIR file"):
        hrm_mlir.compile(out / "missing.mlir", out / "x.vmfb")
    with pytest.raises(HrmMlirError, match="--params_file needs external parameters"):
        hrm_mlir.export(tiny_checkpoint, out / "x.mlir", params="inline", params_file=out / "w")
    with pytest.raises(ValueError, match="valid values"):
        hrm_mlir.export(tiny_checkpoint, out / "x.mlir", output_type="llvm")
    assert not list(out.iterdir())  # nothing left behind


def test_run_solves_the_bundled_puzzles():
    solved = hrm_mlir.run(EXAMPLE, EXAMPLE / "puzzles.txt", q_halt=True, compare_pytorch=True)
    assert solved.solved == len(solved.solutions) == len(solved.puzzles) > 0
    assert all(s.steps <= solved.max_steps for s in solved.solutions)
    assert solved.agreement is not None
    assert solved.agreement["answers"] == len(solved.solutions)
    assert np.isfinite(solved.agreement["max_q_halt_diff"])


def test_run_checks_the_puzzles_before_it_compiles(tmp_path: Path, monkeypatch):
    """A 9x9 Sudoku for the 6x6 model, or a missing file: one line, and no compile started."""
    from hrm_mlir.runner import CompiledACT

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before the puzzles were checked")

    monkeypatch.setattr(CompiledACT, "from_checkpoint", no_compile)
    nine = tmp_path / "nine_by_nine.txt"
    nine.write_text("." * 81 + "\n")
    with pytest.raises(HrmMlirError, match="seq_len is 36"):
        hrm_mlir.run(EXAMPLE, nine)
    with pytest.raises(HrmMlirError, match=r"missing\.txt"):
        hrm_mlir.run(EXAMPLE, tmp_path / "missing.txt")
