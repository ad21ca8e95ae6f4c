"""The model families by upstream's `arch.name`."""

from __future__ import annotations

from pathlib import Path

import yaml

from hrm_mlir.models import HRM, family_of

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "sudoku6x6" / "all_config.yaml"


def test_the_bundled_checkpoints_arch_name_is_hrm():
    name = yaml.safe_load(EXAMPLE_CONFIG.read_text())["arch"]["name"]
    family = family_of(name)
    assert family is not None and family.model is HRM


def test_a_config_without_a_name_is_hrm_and_other_names_are_none():
    assert family_of("") is not None and family_of("").model is HRM
    assert family_of("recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1") is None
