"""The command line, in-process through `main([...])`, and the seed's `generate_mlir.py`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hrm_mlir.cli.app import main
from hrm_mlir.exporter.abi import parse_step_signature, read_functions
from tests.conftest import write_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_info_prints_config_dims_and_count(tiny_checkpoint: Path, capsys):
    assert main(["info", str(tiny_checkpoint)]) == 0
    text = capsys.readouterr().out
    for fragment in ("vocab_size", "dataset.json", "[B, 18, 64]", "parameters", "float32 x"):
        assert fragment in text


def test_info_json_gives_initial_carry_vectors(tiny_checkpoint: Path, tiny_model, capsys):
    assert main(["info", str(tiny_checkpoint), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["vocab_size"] == 11 and doc["derived"]["total_seq_len"] == 18
    assert doc["parameter_count"] == sum(p.numel() for p in tiny_model.parameters())
    assert torch.equal(torch.tensor(doc["H_init"]), tiny_model.inner.H_init)
    assert torch.equal(torch.tensor(doc["L_init"]), tiny_model.inner.L_init)


def test_export_compile_verify_commands(tiny_checkpoint: Path, tmp_path: Path, capsys):
    mlir = tmp_path / "step.mlirbc"
    argv = ["export", str(tiny_checkpoint), "-o", str(mlir), "--batch_size", "2"]
    assert main([*argv, "--output_type", "stablehlo", "--dtype", "bfloat16"]) == 0
    assert parse_step_signature(read_functions(mlir)["step"])[0] == 2
    compiled = tmp_path / "compiled.json"
    assert (
        main(["compile", str(mlir), "-o", str(tmp_path / "m.vmfb"), "--json", str(compiled)]) == 0
    )
    vmfb = (tmp_path / "m.vmfb").read_bytes()
    facts = json.loads(compiled.read_text())
    assert facts["bytes"] == len(vmfb) and facts["sha256"] == hashlib.sha256(vmfb).hexdigest()
    assert facts["target"] == "llvm-cpu:host" and facts["stats"]["checked"]  # the self-check ran
    report = tmp_path / "report.json"
    assert main(["verify", str(tiny_checkpoint), "--mlir", str(mlir), "--json", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["passed"] and [r["batch_size"] for r in doc["reports"]] == [2]
    assert doc["reports"][0]["dtype"] == "bfloat16" and len(doc["reports"][0]["outputs"]) == 5
    assert "verification passed" in capsys.readouterr().out


def test_dynamic_batch_artifact_is_verified_at_several_sizes(tiny_checkpoint, tmp_path, capsys):
    mlir = tmp_path / "dyn.mlir"
    argv = ["export", str(tiny_checkpoint), "-o", str(mlir), "--batch_size", "dynamic"]
    assert main([*argv, "--output_type", "linalg-on-tensors"]) == 0
    assert "func.func @step(%arg0: tensor<?x18x64xf32>" in mlir.read_text()
    report = tmp_path / "r.json"
    assert main(["verify", str(tiny_checkpoint), "--mlir", str(mlir), "--json", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["passed"] and [r["batch_size"] for r in doc["reports"]] == [1, 3, 16]


def test_verify_fails_with_nonzero_exit_on_other_weights(tmp_path: Path, tiny_checkpoint, capsys):
    from tests.conftest import random_model

    other = write_checkpoint(tmp_path / "other", random_model(seed=4), dataset_seq_len=16)
    mlir = tmp_path / "step.mlir"
    assert main(["export", str(tiny_checkpoint), "-o", str(mlir)]) == 0
    assert main(["verify", str(other), "--mlir", str(mlir)]) == 1
    assert "verification failed: batch 1: z_H: rel-L2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "{missing}"], "no such file or directory"),
        (["export", "{ckpt}", "-o", "{tmp}/nodir/x.mlir"], "output directory"),
        (["compile", "{tmp}/none.mlir", "-o", "{tmp}/x.vmfb"], "no such MLIR file"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tiny_checkpoint, tmp_path, capsys, argv, message):
    fill = {"missing": tmp_path / "missing", "ckpt": tiny_checkpoint, "tmp": tmp_path}
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hrm-mlir: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "nodir").exists()


def test_bad_flag_value_lists_valid_choices(tiny_checkpoint, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", str(tiny_checkpoint), "-o", "x.mlir", "--output_type", "onnx"])
    assert e.value.code == 2
    assert "valid values: torch, linalg-on-tensors, tosa, stablehlo" in capsys.readouterr().err


def _run(*argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_seed_command_writes_torch_dialect_step(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "hrm_model.mlir"
    result = _run(
        "generate_mlir.py", "--torch_checkpoint_dir", str(tiny_checkpoint),
        "--output_mlir_path", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "func.func @step(%arg0: !torch.vtensor<[1,18,64],f32>" in text
    assert "dense_resource" in text  # the checkpoint's weights are in the module
    dynamic = tmp_path / "dynamic.mlir"
    result = _run(
        "generate_mlir.py", "--torch_checkpoint_dir", str(tiny_checkpoint),
        "--output_mlir_path", str(dynamic), "--batch_size", "dynamic",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "func.func @step(%arg0: !torch.vtensor<[?,18,64],f32>" in dynamic.read_text()
    bad = _run("generate_mlir.py", "--torch_checkpoint_dir", str(tmp_path / "nope"))
    assert bad.returncode == 2 and bad.stderr.startswith("hrm-mlir: error:")
    assert "Traceback" not in bad.stderr


def test_python_dash_m_entry_point(tiny_checkpoint: Path):
    result = _run("-m", "hrm_mlir", "info", str(tiny_checkpoint), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["config"]["seq_len"] == 16


def _stderr_on_a_terminal(*argv: str) -> bytes:
    """What `hrm-mlir ARGV` writes to stderr when stderr is a terminal (a pseudo-terminal)."""
    import os
    import pty

    master, slave = pty.openpty()
    child = subprocess.Popen([sys.executable, "-m", "hrm_mlir", *argv],
                             stdout=subprocess.DEVNULL, stderr=slave)  # fmt: skip
    os.close(slave)
    chunks = []
    # read while it runs: a progress display fills the terminal's small buffer, and a child
    # writing to a full terminal waits for it to be read
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert child.wait(timeout=300) == 0
    return b"".join(chunks)


def test_progress_shows_on_a_terminal_only_and_quiet_hides_it(tiny_checkpoint: Path, tmp_path):
    out = str(tmp_path / "step.mlir")
    shown = _stderr_on_a_terminal("export", str(tiny_checkpoint), "-o", out)
    assert b"exporting" in shown
    assert b"exporting" not in _stderr_on_a_terminal("--quiet", "export", str(tiny_checkpoint),
                                                     "-o", out)  # fmt: skip
    piped = subprocess.run([sys.executable, "-m", "hrm_mlir", "export", str(tiny_checkpoint),
                            "-o", out], capture_output=True, check=True, timeout=300)  # fmt: skip
    assert b"exporting" not in piped.stderr


def test_evaluates_progress_bar_follows_quiet_too():
    example = REPO / "examples" / "sudoku6x6"
    argv = ["evaluate", str(example), "--data", str(example / "data"), "--runtime", "pytorch"]
    argv += ["--limit", "40"]  # the bar shows from the first batch; all 500 took minutes here
    assert b"evaluating" in _stderr_on_a_terminal(*argv)
    assert b"evaluating" not in _stderr_on_a_terminal("--quiet", *argv)
