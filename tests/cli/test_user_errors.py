"""Every user mistake is one line on stderr naming the path, exit 2, no traceback, no partial
output, and found before the slow work (issue 28, item 4)."""

from __future__ import annotations

import errno
import importlib.util
import pathlib
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

import hrm_mlir
from hrm_mlir.cli.app import main
from hrm_mlir.core.errors import HrmMlirError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "sudoku6x6"
PUZZLES = EXAMPLE / "puzzles.txt"
DATA = EXAMPLE / "data"

# Where each verb's slow work starts: none of them may be reached before the checks.
SLOW = (
    "hrm_mlir.checkpoint.load.load_checkpoint",
    "hrm_mlir.evaluation.dataset.load_split",
    "hrm_mlir.exporter.step.export_step",
    "hrm_mlir.exporter.act.export_act",
    "hrm_mlir.compiler.driver.compile_module",
    "hrm_mlir.bench.kit_run.run_kit",
)


@pytest.fixture
def no_slow_work(monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("the slow work started before the user's mistake was found")

    for target in SLOW:
        monkeypatch.setattr(target, started)


def files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def one_line(capsys) -> str:
    """stderr, checked to be exactly one error line and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hrm-mlir: error: ")
    return lines[0].removeprefix("hrm-mlir: error: ")


@pytest.mark.parametrize("where", ["proc", "under a file", "read-only"])
def test_export_to_a_directory_that_refuses_files_fails_before_the_export(
    where, tmp_path, monkeypatch, no_slow_work, capsys
):
    if where == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    afile = tmp_path / "afile"
    afile.write_text("")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    parent = {"proc": Path("/proc"), "under a file": afile, "read-only": read_only}[where]
    output = parent / "x.mlir"
    problem = {
        "proc": "cannot write in /proc: it takes no new files",
        "under a file": f"{afile} is a file, not a directory",
        "read-only": f"cannot write in {read_only}: Permission denied",
    }[where]
    if where == "read-only":  # root writes into a chmod'ed directory: refuse its new files here
        mkstemp = tempfile.mkstemp

        def refuse(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == read_only:
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return mkstemp(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    before = files(tmp_path)
    assert main(["export", str(EXAMPLE), "-o", str(output), "--dtype", "float32"]) == 2
    assert one_line(capsys) == f"{output}: {problem}"
    assert files(tmp_path) == before and not output.exists()


def test_bench_phases_failure_is_one_line(monkeypatch, capsys):
    from hrm_mlir.bench import measure

    monkeypatch.setattr(measure, "bench", lambda ck, **kwargs: SimpleNamespace(phases={}))
    said = "Traceback (most recent call last):\n  ...\nhrm-mlir: error: /x/y.mlir: no such file\n"

    def failed(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 1, stdout="", stderr=said)

    monkeypatch.setattr(measure.subprocess, "run", failed)
    assert main(["bench", str(EXAMPLE), "--runtimes", "eager", "--phases"]) == 2
    assert one_line(capsys) == "bench --phases: hrm-mlir export failed: /x/y.mlir: no such file"


def test_vmfb_without_batch_size_reflection(tmp_path, monkeypatch, capsys):
    class Module:  # an @act module that records its config but not its batch size
        function_names = ("act",)

        def __init__(self, path, parameters=None) -> None:
            pass

        def reflection(self, name: str) -> dict[str, str]:
            return {"hrm.config": "{}"}

    monkeypatch.setattr("hrm_mlir.runner.CompiledModule", Module)
    vmfb = tmp_path / "old.vmfb"
    assert main(["run", str(vmfb), "--puzzle", str(PUZZLES)]) == 2
    assert one_line(capsys) == (
        f"{vmfb}: @act carries no hrm.batch_size (not built by hrm-mlir, or by an older one: "
        "export and compile it again)"
    )


def test_params_given_as_text_is_an_archive_path(tmp_path, monkeypatch):
    from hrm_mlir.runner import CompiledACT

    given = []

    def from_vmfb(path, *, parameters=None):
        given.append(parameters)
        raise HrmMlirError("stop here")

    monkeypatch.setattr(CompiledACT, "from_vmfb", from_vmfb)
    archive = str(tmp_path / "w.irpa")
    for call, inputs in ((hrm_mlir.run, PUZZLES), (hrm_mlir.evaluate, DATA)):
        with pytest.raises(HrmMlirError, match="stop here"):  # it was dropped
            call(tmp_path / "m.vmfb", inputs, params=archive)
        # with a checkpoint, an archive is refused in one line (it was a ValueError)
        with pytest.raises(HrmMlirError, match=r"--params FILE goes with a \.vmfb"):
            call(EXAMPLE, inputs, params=archive)
    assert given == [Path(archive)] * 2
    with pytest.raises(HrmMlirError, match="--params FILE goes with --mlir"):
        hrm_mlir.verify(EXAMPLE, params=archive)


_RAY = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed")


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "EXAMPLE", "-o", "BAD"],
        ["export", "EXAMPLE", "-o", "GOOD", "--params_file", "BAD"],
        ["compile", "MLIR", "-o", "BAD"],
        ["compile", "MLIR", "-o", "GOOD", "--json", "BAD"],
        ["verify", "EXAMPLE", "--json", "BAD"],
        ["run", "EXAMPLE", "--puzzle", "PUZZLES", "--json", "BAD"],
        ["evaluate", "EXAMPLE", "--data", "DATA", "--json", "BAD"],
        ["evaluate", "EXAMPLE", "--data", "DATA", "--save-predictions", "BAD"],
        ["evaluate", "EXAMPLE", "--data", "DATA", "--submission", "BAD"],
        ["evaluate", "EXAMPLE", "--data", "DATA", "--plot", "BAD"],
        pytest.param(
            ["evaluate", "EXAMPLE", "--data", "DATA", "--engine", "ray", "--out", "BAD"],
            marks=_RAY,
            id="evaluate-ray-out",
        ),
        ["bench", "EXAMPLE", "--runtimes", "eager", "--json", "BAD"],
        ["bench", "EXAMPLE", "--runtimes", "eager", "--plot", "BAD"],
        ["kit", "build", "EXAMPLE", "-o", "BAD"],
        ["kit", "run", "KIT", "--json", "BAD"],
    ],
    ids=lambda argv: "-".join(a.strip("-") for a in argv if not a.isupper()),
)
def test_every_output_is_checked_before_the_slow_work(argv, tmp_path, no_slow_work, capsys):
    bad = tmp_path / "afile" / "out"  # its directory is a regular file
    bad.parent.write_text("")
    mlir = tmp_path / "step.mlir"
    mlir.write_text("module {}\n")
    paths = {"EXAMPLE": EXAMPLE, "PUZZLES": PUZZLES, "DATA": DATA, "MLIR": mlir, "BAD": bad,
             "GOOD": tmp_path / "good", "KIT": tmp_path}  # fmt: skip
    before = files(tmp_path)
    assert main([str(paths.get(a, a)) for a in argv]) == 2
    assert one_line(capsys) == f"{bad}: {bad.parent} is a file, not a directory"
    assert files(tmp_path) == before  # nothing written, no temporary file left


def test_input_conversion_failure_is_a_note_that_says_what_failed(
    tiny_checkpoint, tmp_path, monkeypatch, capsys
):
    from iree.compiler import tools as iree_tools

    from hrm_mlir.compiler.options import CompileOptions

    if not CompileOptions().use_gemm_kernels():
        pytest.skip("the project's kernels are off on this CPU: no input conversion to fail")
    mlir, vmfb = tmp_path / "step.mlir", tmp_path / "step.vmfb"
    assert main(["export", str(tiny_checkpoint), "-o", str(mlir)]) == 0  # torch dialect
    compile_file = iree_tools.compile_file
    diagnostic = "step.mlir:3:5: error: failed to legalize operation 'torch.aten.foo'"

    def conversion_fails(*args, **kwargs):
        if "--compile-to=input" in kwargs.get("extra_args", []):
            stderr = f"{diagnostic}\nnote: see current operation\n".encode()
            raise iree_tools.CompilerToolError(
                subprocess.CompletedProcess(["iree-compile", "x"], 1, b"", stderr)
            )
        return compile_file(*args, **kwargs)

    monkeypatch.setattr(iree_tools, "compile_file", conversion_fails)
    capsys.readouterr()
    assert main(["compile", str(mlir), "-o", str(vmfb)]) == 0
    text = capsys.readouterr().out
    assert (
        f"note: IREE's input conversion failed ({diagnostic}): the project's kernels are off "
        "for this artifact"
    ) in text
    assert "no reference outputs" not in text and "checked against PyTorch" in text


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["info", "NOPE"], "NOPE: no such file or directory"),
        (
            ["compile", "NOPE.mlir", "-o", "GOOD", "--params", "MLIR"],
            "NOPE.mlir: no such MLIR file",
        ),
        (
            ["compile", "MLIR", "-o", "GOOD", "--params", "NOPE.irpa"],
            "NOPE.irpa: no such parameter archive",
        ),
        (["verify", "EXAMPLE", "--mlir", "NOPE.mlir"], "NOPE.mlir: no such MLIR file"),
        (
            ["run", "EXAMPLE", "--puzzle", "NOPE.txt"],
            "NOPE.txt: cannot read the puzzle file: No such file or directory",
        ),
        (["run", "NOPE.vmfb", "--puzzle", "PUZZLES"], "NOPE.vmfb: no such compiled module"),
        (["evaluate", "EXAMPLE", "--data", "NOPE"], "NOPE: no such dataset directory"),
        (["evaluate", "NOPE.vmfb", "--data", "DATA"], "NOPE.vmfb: no such compiled module"),
    ],
)
def test_missing_inputs_are_one_line_naming_the_path(argv, line, tmp_path, monkeypatch, capsys):
    def started(*args, **kwargs):
        raise AssertionError("compiled with a missing input")

    monkeypatch.setattr("hrm_mlir.compiler.driver.compile_module", started)
    mlir = tmp_path / "step.mlir"
    mlir.write_text("module {}\n")
    paths = {"EXAMPLE": EXAMPLE, "PUZZLES": PUZZLES, "DATA": DATA, "MLIR": mlir,
             "GOOD": tmp_path / "good", "NOPE": tmp_path / "nope"}  # fmt: skip

    def real(word: str) -> str:
        stem, dot, suffix = word.partition(".")
        return str(paths[stem]) + dot + suffix if stem in paths else word

    assert main([real(a) for a in argv]) == 2
    assert one_line(capsys) == real(line.split(":")[0]) + ":" + line.split(":", 1)[1]
    assert not (tmp_path / "good").exists()


def test_unreadable_input_is_one_line_and_debug_shows_the_trace(tmp_path, monkeypatch, capsys):
    """An OSError about a file that no check caught (here: all_config.yaml unreadable) is the
    last line of defence: one line with the path and the reason; --debug keeps the trace."""
    config = (EXAMPLE / "all_config.yaml").resolve()
    read_text = pathlib.Path.read_text

    def unreadable(self, *args, **kwargs):
        if self.resolve() == config:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", unreadable)
    assert main(["info", str(EXAMPLE)]) == 2
    assert one_line(capsys) == f"{EXAMPLE / 'all_config.yaml'}: Permission denied"
    with pytest.raises(PermissionError):
        main(["--debug", "info", str(EXAMPLE)])


def test_an_unwritable_output_is_also_an_oserror_for_best_effort_writers(tmp_path):
    """The artifact cache keeps going without a writable cache (it catches OSError)."""
    from hrm_mlir.core.fileio import write_atomic

    if not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    with pytest.raises(OSError, match=r"/proc/x\.vmfb: cannot write in /proc"):
        write_atomic("/proc/x.vmfb", b"")
