"""The model families by upstream's `arch.name`, and configs recorded in artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hrm_mlir.models import HRM, TRM, HRMConfig, TRMConfig, config_from_json, family_of
from tests.conftest import tiny_config, tiny_trm_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(("example", "model"), [("sudoku6x6", HRM), ("trm-sudoku6x6", TRM)])
def test_the_bundled_checkpoints_arch_names_name_their_families(example, model):
    name = yaml.safe_load((EXAMPLES / example / "all_config.yaml").read_text())["arch"]["name"]
    family = family_of(name)
    assert family is not None and family.model is model


def test_a_config_without_a_name_is_hrm_and_other_names_are_none():
    assert family_of("") is not None and family_of("").model is HRM
    assert family_of("hrm.hrm_act_v1") is not None  # the module alone
    assert family_of("recursive_reasoning.trm_singlez@TinyRecursiveReasoningModel_ACTV1") is None


def test_recorded_configs_come_back_as_their_family():
    trm = tiny_trm_config(mlp_t=True, pos_encodings="none", puzzle_emb_len=0, puzzle_emb_ndim=80)
    back = config_from_json(trm.model_dump_json())
    assert isinstance(back, TRMConfig) and back == trm and back.puzzle_emb_len == 2
    hrm = tiny_config()
    assert isinstance(config_from_json(hrm.model_dump_json()), HRMConfig)
    legacy = hrm.model_dump_json(exclude={"family"})  # artifacts from before the families
    assert config_from_json(legacy) == hrm
