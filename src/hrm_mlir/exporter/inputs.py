"""The `@step` arguments: their ABI dtypes, zeros to trace with, and valid random ones to check
with. Torch only, no torch-mlir: a machine with IREE's runtime alone checks artifacts with them
(`hrm_mlir.bench.kit_run`)."""

from __future__ import annotations

import torch

from hrm_mlir.models.config import ReasoningConfig

INDEX_DTYPE = torch.int32  # dtype of `inputs` and `puzzle_identifiers` at the ABI


def example_step_args(config: ReasoningConfig, batch_size: int) -> tuple[torch.Tensor, ...]:
    """Arguments of `@step` with the ABI's shapes and dtypes (zeros)."""
    dt = config.forward_dtype.torch
    shape = (batch_size, config.total_seq_len, config.hidden_size)
    return (
        torch.zeros(shape, dtype=dt),
        torch.zeros(shape, dtype=dt),
        torch.zeros(batch_size, config.seq_len, dtype=INDEX_DTYPE),
        torch.zeros(batch_size, dtype=INDEX_DTYPE),
    )


def random_step_inputs(config, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Valid random `@step` arguments: post-norm-scaled carries, in-range tokens and ids."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch_size, config.total_seq_len, config.hidden_size)
    dt = config.forward_dtype.torch
    z_H = torch.randn(shape, generator=g).to(dt)
    z_L = torch.randn(shape, generator=g).to(dt)
    inputs = torch.randint(0, config.vocab_size, (batch_size, config.seq_len), generator=g)
    ids = torch.randint(0, max(config.num_puzzle_identifiers, 1), (batch_size,), generator=g)
    return z_H, z_L, inputs.to(INDEX_DTYPE), ids.to(INDEX_DTYPE)


__all__ = ["INDEX_DTYPE", "example_step_args", "random_step_inputs"]
