"""Checkpoints by Hub id, from a Hugging Face cache laid out by hand: no network (offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hrm_mlir.checkpoint.hub import parse
from hrm_mlir.core.errors import CheckpointError
from tests.conftest import TINY_DIMS, write_checkpoint

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_home(tmp_path: Path, tiny_model) -> Path:
    """HF_HOME with hub/models--hrm-test--tiny/{refs/main, snapshots/COMMIT/...}."""
    home = tmp_path / "hf"
    repo = home / "hub" / "models--hrm-test--tiny"
    write_checkpoint(repo / "snapshots" / COMMIT, tiny_model,
                     dataset_seq_len=TINY_DIMS["seq_len"])  # fmt: skip
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return home


def _hrm(home: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "hrm_mlir", *argv], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_info_reads_a_hub_checkpoint_from_the_cache_and_says_where_from(hf_home: Path):
    for given in ("hf://hrm-test/tiny", f"hf://hrm-test/tiny@{COMMIT}"):
        result = _hrm(hf_home, "info", given, "--json")
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["source"] == f"hf://hrm-test/tiny at revision {COMMIT}"
        assert Path(doc["config_path"]).parent.name == COMMIT
        assert doc["config"]["vocab_size"] == TINY_DIMS["vocab_size"]


def test_export_takes_a_hub_id(hf_home: Path, tmp_path: Path):
    out = tmp_path / "step.mlir"
    result = _hrm(hf_home, "export", "hf://hrm-test/tiny", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "func.func @step" in out.read_text()


def test_a_checkpoint_missing_offline_is_one_line(hf_home: Path):
    result = _hrm(hf_home, "info", "hf://hrm-test/absent")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "hf://hrm-test/absent: not in the Hugging Face cache" in line


def test_hub_ids_parse_and_bad_ones_are_refused():
    assert parse("hf://sapientinc/HRM-checkpoint-ARC-2") == (
        "sapientinc/HRM-checkpoint-ARC-2",
        None,
        None,
    )
    assert parse("hf://a/b@v1.0/step_5") == ("a/b", "v1.0", "step_5")
    with pytest.raises(CheckpointError, match="not a Hub id"):
        parse("hf://just-a-name")
