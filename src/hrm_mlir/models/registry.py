"""The model families, by upstream's `arch.name` (`<module>@<class>` in `all_config.yaml`).

HRM ACT-v1 is the one family so far; TRM, built on HRM's code and checkpoint format, is the next
(its own entry here, its config and module beside `hrm.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hrm_mlir.models.config import HRMConfig
from hrm_mlir.models.hrm import HRM


@dataclass(frozen=True)
class Family:
    key: (
        str  # what upstream's arch.name contains: "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"
    )
    module: str  # upstream's module, as users know it
    config: type[HRMConfig]
    model: type[HRM]


FAMILIES = (Family("hrm_act_v1", "hrm.hrm_act_v1", HRMConfig, HRM),)


def family_of(arch_name: str) -> Family | None:
    """The family an `arch.name` names; an empty name (configs that leave it out) is HRM's."""
    if not arch_name:
        return FAMILIES[0]
    return next((f for f in FAMILIES if f.key in arch_name), None)


def supported() -> str:
    """The families in a few words, for errors: "hrm.hrm_act_v1"."""
    return ", ".join(f.module for f in FAMILIES)
