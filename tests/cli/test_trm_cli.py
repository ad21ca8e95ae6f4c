"""A TRM checkpoint in upstream's format through every command: info, the seed entry point,
export, compile, verify, run and bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hrm_mlir.cli.app import main
from hrm_mlir.exporter.abi import read_functions
from tests.conftest import random_trm, write_checkpoint

REPO = Path(__file__).resolve().parents[2]
TRM_NAME = "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"


@pytest.fixture(scope="module")
def trm_checkpoint(tmp_path_factory) -> Path:
    """A tiny mlp_t TRM saved as TRM's pretrain.py saves an EMA run: `data_paths` (a list),
    `ema: True`, the averaged weights under the usual `_orig_mod.model.` names."""
    model = random_trm(seed=3, mlp_t=True, pos_encodings="none")
    directory = write_checkpoint(tmp_path_factory.mktemp("trm") / "ckpt", model, dataset_seq_len=16)
    doc = yaml.safe_load((directory / "all_config.yaml").read_text())
    doc["data_paths"] = [doc.pop("data_path")]
    doc.update(ema=True, ema_rate=0.999)
    (directory / "all_config.yaml").write_text(yaml.safe_dump(doc))
    return directory


def test_info_names_the_family_and_its_rule(trm_checkpoint, capsys):
    assert main(["info", str(trm_checkpoint), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["family"]["arch_name"] == TRM_NAME
    assert doc["config"]["puzzle_emb_len"] == 16 and doc["config"]["mlp_t"] is True
    assert doc["derived"]["total_seq_len"] == 32 and doc["derived"]["halt_rule"] == "q_halt > 0"
    assert doc["seq_len_source"].endswith("dataset.json")  # found through `data_paths`
    assert main(["info", str(trm_checkpoint)]) == 0
    assert "TRM ACT-v1" in capsys.readouterr().out


def test_seed_entry_point_exports_a_trm(trm_checkpoint, tmp_path):
    out = tmp_path / "trm.mlir"
    argv = ["generate_mlir.py", "--torch_checkpoint_dir", str(trm_checkpoint)]
    result = subprocess.run(
        [sys.executable, *argv, "--output_mlir_path", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "func.func @step(%arg0: !torch.vtensor<[1,32,64],f32>" in out.read_text()


def test_export_compile_verify_and_run_an_act_artifact(trm_checkpoint, tmp_path, capsys):
    mlir, vmfb = tmp_path / "act.mlirbc", tmp_path / "act.vmfb"
    argv = ["export", str(trm_checkpoint), "-o", str(mlir), "--entry", "act"]
    assert main([*argv, "--output_type", "linalg-on-tensors", "--batch_size", "dynamic"]) == 0
    assert sorted(read_functions(mlir)) == ["act", "initial_carry", "step"]
    assert main(["compile", str(mlir), "-o", str(vmfb)]) == 0
    assert "checked against PyTorch on this CPU: @step at batch 1, 3" in capsys.readouterr().out
    report = tmp_path / "r.json"
    argv = ["verify", str(trm_checkpoint), "--mlir", str(mlir), "--json", str(report)]
    assert main(argv) == 0
    doc = json.loads(report.read_text())
    assert doc["passed"] and [r["batch_size"] for r in doc["reports"]] == [1, 3, 16]


def test_bench_times_a_verified_trm_step(trm_checkpoint, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", str(trm_checkpoint), "--batch_sizes", "2", "--runtimes", "eager,iree"]
    assert main([*argv, "--iterations", "2", "--warmup", "1", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert {r["runtime"] for r in doc["results"]} == {"eager", "iree"}
