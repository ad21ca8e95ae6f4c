"""Shared fixtures: tiny random HRM and TRM configs with non-degenerate weights, saved as
upstream does."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from hrm_mlir.models.config import HRMConfig, TRMConfig
from hrm_mlir.models.hrm import HRM
from hrm_mlir.models.registry import family_for
from hrm_mlir.models.trm import TRM

# Tests of x86-64 code (the project's kernels, named x86 CPUs) run where x86-64 code runs; on
# another host they are skipped, not failed: what they check does not exist there.
requires_x86 = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="x86-64 targets and kernels: this host cannot run x86-64 code",
)

# The model settings as they appear under `arch:` in an upstream all_config.yaml.
TINY_ARCH: dict[str, Any] = {
    "H_cycles": 2,
    "L_cycles": 2,
    "H_layers": 1,
    "L_layers": 2,
    "hidden_size": 64,
    "expansion": 4,
    "num_heads": 2,
    "pos_encodings": "rope",
    "puzzle_emb_ndim": 80,  # not a multiple of hidden: exercises the zero padding
    "halt_max_steps": 4,
    "halt_exploration_prob": 0.1,
    "forward_dtype": "float32",
}
TINY_DIMS = {"vocab_size": 11, "seq_len": 16, "num_puzzle_identifiers": 5}

# Upstream's published Sudoku-extreme model (27,275,266 parameters).
SUDOKU_ARCH: dict[str, Any] = {
    **TINY_ARCH,
    "H_layers": 4,
    "L_layers": 4,
    "hidden_size": 512,
    "num_heads": 8,
    "puzzle_emb_ndim": 512,
    "halt_max_steps": 16,
    "forward_dtype": "bfloat16",
}


# A tiny TRM as upstream's `config/arch/trm.yaml` shapes it (H_layers 0, puzzle_emb_len 16),
# attention + RoPE; tests vary `mlp_t` and `pos_encodings`.
TINY_TRM_ARCH: dict[str, Any] = {
    **TINY_ARCH,
    "H_cycles": 2,
    "L_cycles": 3,
    "H_layers": 0,
    "puzzle_emb_ndim": 64,
    "puzzle_emb_len": 16,
    "mlp_t": False,
    "no_ACT_continue": True,
}


def tiny_config(**overrides: Any) -> HRMConfig:
    return HRMConfig(**{**TINY_ARCH, **TINY_DIMS, **overrides})


def tiny_trm_config(**overrides: Any) -> TRMConfig:
    return TRMConfig(**{**TINY_TRM_ARCH, **TINY_DIMS, **overrides})


def randomize(model: HRM, seed: int = 0) -> HRM:
    """Non-degenerate weights: upstream zero-inits q_head and the puzzle table, hiding bugs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.5 if "q_head" in name else p.shape[-1] ** -0.5
            p.copy_(torch.randn(p.shape, generator=g) * std)
        if hasattr(model.inner, "puzzle_emb"):
            w = model.inner.puzzle_emb.weights
            w.copy_(torch.randn(w.shape, generator=g))
    return model


def random_model(seed: int = 0, **overrides: Any) -> HRM:
    torch.manual_seed(seed)
    return randomize(HRM(tiny_config(**overrides)), seed).eval()


def random_trm(seed: int = 0, **overrides: Any) -> TRM:
    torch.manual_seed(seed)
    model = randomize(TRM(tiny_trm_config(**overrides)), seed)
    assert isinstance(model, TRM)
    return model.eval()


def write_checkpoint(
    directory: Path,
    model: HRM,
    *,
    weights_name: str = "step_100",
    prefix: str = "_orig_mod.model.",
    data_path: str | None = "data/tiny",
    dataset_seq_len: int | None = None,
) -> Path:
    """Write `model` as upstream's pretrain.py would: all_config.yaml + a torch.save'd state dict.

    With `dataset_seq_len`, also writes `<dir>/<data_path>/train/dataset.json`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    keys = TINY_TRM_ARCH if isinstance(cfg, TRMConfig) else TINY_ARCH
    arch = {k: getattr(cfg, k) for k in keys if k != "puzzle_emb_len"}
    if isinstance(cfg, TRMConfig):
        arch["puzzle_emb_len"] = cfg.puzzle_emb_len_setting
    arch["forward_dtype"] = cfg.forward_dtype.value
    doc = {
        "arch": {
            "name": family_for(cfg).arch_name,
            "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
            **arch,
        },
        "data_path": data_path,
        "global_batch_size": 768,
        "epochs": 20000,
        "lr": 1e-4,
    }
    (directory / "all_config.yaml").write_text(yaml.safe_dump(doc))
    state = {prefix + k: v for k, v in model.state_dict().items()}
    if weights_name.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, directory / weights_name)
    else:
        torch.save(state, directory / weights_name)
    if dataset_seq_len is not None and data_path is not None:
        meta_dir = directory / data_path / "train"
        meta_dir.mkdir(parents=True, exist_ok=True)
        meta = {"seq_len": dataset_seq_len, "vocab_size": cfg.vocab_size, "pad_id": 0}
        (meta_dir / "dataset.json").write_text(json.dumps(meta))
    return directory


@pytest.fixture(scope="session", autouse=True)
def artifact_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One compiled-artifact cache for the session (`hrm_mlir.compiler.cache`): the suite never
    writes to the user's, and tests that compile the same model share the artifact."""
    root = tmp_path_factory.mktemp("artifact-cache")
    before = os.environ.get("HRM_MLIR_CACHE")
    os.environ["HRM_MLIR_CACHE"] = str(root)
    yield root
    if before is None:
        os.environ.pop("HRM_MLIR_CACHE", None)
    else:
        os.environ["HRM_MLIR_CACHE"] = before


@pytest.fixture
def tiny_model() -> HRM:
    return random_model()


@pytest.fixture
def tiny_checkpoint(tmp_path: Path, tiny_model: HRM) -> Path:
    """A tiny upstream-format checkpoint whose seq_len comes from its dataset.json."""
    return write_checkpoint(tmp_path / "ckpt", tiny_model, dataset_seq_len=TINY_DIMS["seq_len"])


# Tolerance of outputs after several ACT steps, as hrm_mlir.numerics.LOOP_TOLERANCES (float32
# 1e-3) for compile's self-check of @act; an override of the per-dtype step table
# (hrm_mlir.numerics.TOLERANCES, float32 1e-4): each step's rounding differences (fusion,
# FMA contraction, reduction order: they differ between AVX2 and AVX-512 code) feed the next
# step's input, so they grow with the steps; the models in these tests keep that growth small
# (`act_model`), and 1e-3 still catches a wrong step or a wrong halt.
LOOP_TOL = {"rtol": 1e-3, "atol": 1e-3}


def act_model(seed: int = 0, scale: float = 0.5, **overrides: Any) -> HRM:
    """A random model whose ACT loop is not chaotic (residual branches scaled down), so compiled
    and PyTorch loops stay close over many steps, and whose Q head halts rows at different steps
    (seed 0: steps 8, 1, 1, 3, 1, 8, 8, 4 on `act_inputs()` with max_steps 8)."""
    model = random_model(seed=seed, **overrides)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "o_proj" in name or "down_proj" in name:
                p.mul_(scale)
    return model


def step_inputs(cfg, b: int = 3, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """Random `@step` arguments for the float64 references: unit-normal carries (not the
    reset carry), tokens and identifiers in range."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, b, cfg.total_seq_len, cfg.hidden_size, generator=g)
    inputs = torch.randint(0, cfg.vocab_size, (b, cfg.seq_len), generator=g, dtype=torch.int32)
    ids = torch.randint(0, cfg.num_puzzle_identifiers, (b,), generator=g, dtype=torch.int32)
    return z[0], z[1], inputs, ids


def act_inputs(batch: int = 8, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, TINY_DIMS["vocab_size"], (batch, TINY_DIMS["seq_len"]), generator=g)
    ids = torch.randint(0, TINY_DIMS["num_puzzle_identifiers"], (batch,), generator=g)
    return inputs.to(torch.int32), ids.to(torch.int32)


# The integration tier (`make test` runs it, `make test-fast` leaves it out): what compiles with
# IREE (a tiny model's compile is 5-40 s on 2 cores), starts Ray or qemu, walks a whole dataset or
# times runtimes. By node id prefix; the durations CI prints show what to move here next.
INTEGRATION = (
    "tests/bench/",
    "tests/compiler/",
    "tests/exporter/",
    "tests/evaluation/test_distributed.py",
    "tests/evaluation/test_evaluate.py",
    "tests/runtime/test_portability.py",
    "tests/cli/test_cli.py",
    "tests/cli/test_trm_cli.py",
    "tests/test_api.py",
    "tests/test_example.py",
    "tests/test_runner.py",
    "tests/models/test_hrm.py::test_torch_compile_runs_the_step_like_eager",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(INTEGRATION):
            item.add_marker(pytest.mark.integration)
