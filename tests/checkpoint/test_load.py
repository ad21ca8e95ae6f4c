"""Checkpoint loading: every accepted layout, and each bad input with its expected message."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import yaml

from hrm_mlir.checkpoint.load import load_checkpoint
from hrm_mlir.core.errors import CheckpointError
from tests.conftest import random_model, write_checkpoint


def _same_weights(ck, model) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(ck.state_dict[key], value), key


def test_upstream_layout_loads_and_infers_dims(tiny_checkpoint: Path, tiny_model):
    ck = load_checkpoint(tiny_checkpoint)
    assert (ck.config.vocab_size, ck.config.num_puzzle_identifiers) == (11, 5)
    assert ck.config.seq_len == 16
    assert ck.seq_len_source.endswith(os.path.join("data", "tiny", "train", "dataset.json"))
    _same_weights(ck, tiny_model)
    model = ck.build_model()
    assert model.inner.config.forward_dtype.value == "float32"


def test_highest_step_wins_and_is_reported(tmp_path: Path):
    old, new = random_model(seed=1), random_model(seed=2)
    write_checkpoint(tmp_path, old, weights_name="step_900", dataset_seq_len=16)
    write_checkpoint(tmp_path, new, weights_name="step_1200", dataset_seq_len=16)
    torch.save({}, tmp_path / "step_1200_all_preds.0")  # upstream's eval dump, not weights
    ck = load_checkpoint(tmp_path)
    assert ck.weights_path.name == "step_1200"
    assert ck.notes == ["using step_1200, the highest of 2 step_<N> files"]
    _same_weights(ck, new)


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("checkpoint", "_orig_mod.model."),  # the published HRM checkpoints
        ("model.pt", "model."),  # trained with DISABLE_COMPILE
        ("weights.pth", ""),  # the ACT module's own state dict
        ("model.safetensors", "_orig_mod.model."),
    ],
)
def test_weights_file_names_and_prefixes(tmp_path: Path, tiny_model, name, prefix):
    write_checkpoint(tmp_path, tiny_model, weights_name=name, prefix=prefix, dataset_seq_len=16)
    ck = load_checkpoint(tmp_path)
    assert ck.weights_path.name == name
    _same_weights(ck, tiny_model)


def test_bare_inner_state_dict_loads(tmp_path: Path, tiny_model):
    write_checkpoint(tmp_path, tiny_model, dataset_seq_len=16)
    inner = {k.removeprefix("inner."): v for k, v in tiny_model.state_dict().items()}
    torch.save(inner, tmp_path / "step_100")
    _same_weights(load_checkpoint(tmp_path), tiny_model)


def test_path_to_weights_file(tmp_path: Path, tiny_model):
    write_checkpoint(tmp_path, tiny_model, weights_name="step_5", dataset_seq_len=16)
    write_checkpoint(tmp_path, random_model(seed=9), weights_name="step_7")
    ck = load_checkpoint(tmp_path / "step_5")
    assert ck.weights_path.name == "step_5"
    _same_weights(ck, tiny_model)


def test_seq_len_from_learned_positions(tmp_path: Path):
    model = random_model(pos_encodings="learned")
    write_checkpoint(tmp_path, model, data_path=None)
    ck = load_checkpoint(tmp_path)
    assert ck.config.seq_len == 16
    assert ck.seq_len_source == "learned position embeddings"
    with pytest.raises(CheckpointError, match="--seq_len 20 does not match the learned position"):
        load_checkpoint(tmp_path, seq_len=20)


def test_seq_len_from_dataset_json_relative_to_cwd(tmp_path: Path, tiny_model, monkeypatch):
    write_checkpoint(tmp_path / "ck", tiny_model, data_path="data/sudoku")
    meta = tmp_path / "work" / "data" / "sudoku" / "train"
    meta.mkdir(parents=True)
    (meta / "dataset.json").write_text('{"seq_len": 16, "vocab_size": 11}')
    monkeypatch.chdir(tmp_path / "work")
    assert load_checkpoint(tmp_path / "ck").config.seq_len == 16


def test_seq_len_flag_and_its_missing_error(tmp_path: Path, tiny_model):
    write_checkpoint(tmp_path, tiny_model, data_path="nowhere")
    assert load_checkpoint(tmp_path, seq_len=16).seq_len_source == "--seq_len"
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path)
    assert "pass --seq_len (81 for Sudoku 9x9, 900 for 30x30 mazes and ARC)" in str(e.value)


def test_refuses_pickles_that_need_code(tmp_path: Path, tiny_model):
    write_checkpoint(tmp_path, tiny_model, dataset_seq_len=16)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with (tmp_path / "step_100").open("wb") as f:
        pickle.dump({"inner.H_init": Evil()}, f)
    with pytest.raises(CheckpointError, match=r"refused to load: the pickle needs more"):
        load_checkpoint(tmp_path)


def test_reports_every_missing_unexpected_and_misshaped_key_together(tmp_path: Path, tiny_model):
    state = {f"_orig_mod.model.{k}": v for k, v in tiny_model.state_dict().items()}
    del state["_orig_mod.model.inner.lm_head.weight"]
    state["_orig_mod.model.inner.extra.bias"] = torch.zeros(3)
    state["_orig_mod.model.inner.H_level.layers.0.self_attn.o_proj.weight"] = torch.zeros(64, 32)
    for i in range(12):
        state[f"_orig_mod.model.inner.junk{i}"] = torch.zeros(1)
    write_checkpoint(tmp_path, tiny_model, dataset_seq_len=16)
    torch.save(state, tmp_path / "step_100")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path)
    msg = str(e.value)
    assert "1 missing: inner.lm_head.weight" in msg
    assert "13 unexpected: inner.extra.bias" in msg and "... and 3 more" in msg
    assert "1 mis-shaped: inner.H_level.layers.0.self_attn.o_proj.weight (64, 32)" in msg
    assert "(expected (64, 64))" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "no such file or directory"),
        (lambda d: d.mkdir(), "no all_config.yaml in the checkpoint directory"),
        (lambda d: _config_only(d), "no weights file (looked for step_<N>, checkpoint"),
        (lambda d: _config_only(d, text="arch: [1, 2\n"), "not valid YAML"),
        (lambda d: _config_only(d, text="data_path: x\n"), "no 'arch:' section"),
        (
            lambda d: _config_only(d, arch={"name": "transformer@Baseline"}),
            "arch.name is 'transformer@Baseline'; the supported ones are "
            "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1, "
            "recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1, "
            "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
        ),
        (lambda d: _two_pt(d), "several weights files (a.pt, b.pt); pass the one to use"),
        (lambda d: _garbage_weights(d), "step_1: not a PyTorch checkpoint"),
        (
            lambda d: _bad_arch_value(d),
            "invalid arch config: arch: hidden_size 64 is not divisible by num_heads 3",
        ),
    ],
    ids=[
        "missing",
        "no-yaml",
        "no-weights",
        "bad-yaml",
        "no-arch",
        "other-arch",
        "two-pt",
        "garbage",
        "bad-value",
    ],
)
def test_bad_inputs_get_one_clear_line(tmp_path: Path, setup, message):
    d = tmp_path / "ck"
    setup(d)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d, seq_len=16)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def _config_only(d: Path, text: str | None = None, arch: dict | None = None) -> None:
    d.mkdir()
    doc = {"arch": arch or {"name": "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"}}
    (d / "all_config.yaml").write_text(text if text is not None else yaml.safe_dump(doc))


def _two_pt(d: Path) -> None:
    _config_only(d)
    for name in ("a.pt", "b.pt"):
        torch.save({}, d / name)


def _garbage_weights(d: Path) -> None:
    _config_only(d)
    (d / "step_1").write_bytes(b"this is not a checkpoint")


def _bad_arch_value(d: Path) -> None:
    write_checkpoint(d, random_model())
    doc = yaml.safe_load((d / "all_config.yaml").read_text())
    doc["arch"]["num_heads"] = 3  # 64 is not divisible by 3
    (d / "all_config.yaml").write_text(yaml.safe_dump(doc))
