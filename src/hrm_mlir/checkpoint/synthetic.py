"""Random weights of a model's shapes, for measuring and checking without a trained checkpoint.

Upstream zero-inits the Q head and the puzzle table. With those, every puzzle gets the same
embedding and q_halt / q_continue are constants, so a compiled step that got either wrong would
still match. The weights drawn here are non-degenerate: every tensor is random at a scale that
keeps the activations in range. The same `(config, seed)` gives the same tensors on any machine
(torch's CPU generator), so two machines can draw the same model instead of copying it
(`hrm_mlir.bench.kit_run`).
"""

from __future__ import annotations

import torch

from hrm_mlir.models.config import ReasoningConfig
from hrm_mlir.models.registry import model_class


def random_state(config: ReasoningConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for `config`'s model by state-dict name (float32 weights; the inits in
    the forward dtype, as upstream stores them).

    Scales: the Q head 0.5 (so q_halt and q_continue vary across inputs); the puzzle table 1.0;
    every other tensor fan_in ** -0.5 (its last dimension).
    """
    with torch.device("meta"):
        model = model_class(config)(config)
        shapes = {k: (v.shape, v.dtype) for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, (shape, dtype) in shapes.items():
        std = 0.5 if "q_head" in key else (1.0 if key.endswith("weights") else shape[-1] ** -0.5)
        state[key] = (torch.randn(shape, generator=g) * std).to(dtype)
    return state
