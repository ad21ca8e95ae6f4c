"""The model families, by upstream's `arch.name` (`<module>@<class>` in `all_config.yaml`).

A family is added here, in one place: its name, its typed config and its model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hrm_mlir.models.config import HRMConfig, HRMCopyConfig, ReasoningConfig, TRMConfig
from hrm_mlir.models.hrm import HRM
from hrm_mlir.models.trm import TRM


@dataclass(frozen=True)
class Family:
    arch_name: str  # upstream's: "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"
    config: type[ReasoningConfig]
    model: type[HRM]
    title: str  # in a few words, for `info`

    @property
    def key(self) -> str:
        return self.config.FAMILY

    @property
    def module(self) -> str:
        """Upstream's module, as users know it: "hrm.hrm_act_v1"."""
        return self.arch_name.partition("@")[0]


FAMILIES = (
    Family("hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1", HRMConfig, HRM, "HRM ACT-v1"),
    # TRM's copy of HRM: the same model and state dict (its code adds only `mlp_t` and
    # `pos_encodings: none`), so it is HRM's model under the copy's config.
    Family(
        "recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1",
        HRMCopyConfig,
        HRM,
        "HRM ACT-v1 (TRM's copy)",
    ),
    Family(
        "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
        TRMConfig,
        TRM,
        "TRM ACT-v1 (Tiny Recursive Model)",
    ),
)


def family_of(arch_name: str) -> Family | None:
    """The family an `arch.name` names (upstream's `<module>@<class>`, or the module alone);
    an empty name (configs that leave it out) is HRM's."""
    if not arch_name:
        return FAMILIES[0]
    for f in FAMILIES:
        if arch_name == f.arch_name or arch_name.partition("@")[0] == f.module:
            return f
    return None


def family_by_key(key: str) -> Family:
    """The family a config's `family` field names."""
    for f in FAMILIES:
        if f.key == key:
            return f
    raise ValueError(f"unknown model family {key!r}")


def family_for(config: ReasoningConfig) -> Family:
    return family_by_key(config.FAMILY)


def config_from_json(text: str) -> ReasoningConfig:
    """The config an artifact recorded (`ReasoningConfig.model_dump_json`); artifacts from
    before the families name none, and are HRM's."""
    key = json.loads(text).get("family", HRMConfig.FAMILY)
    return family_by_key(key).config.model_validate_json(text)


def model_class(config: ReasoningConfig) -> type[HRM]:
    return family_for(config).model


def supported() -> str:
    """The supported `arch.name`s, for errors."""
    return ", ".join(f.arch_name for f in FAMILIES)
