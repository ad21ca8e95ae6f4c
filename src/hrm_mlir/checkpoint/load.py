"""Find, load and validate a trained HRM or TRM checkpoint directory.

A checkpoint is what upstream `pretrain.py` (HRM's and TRM's alike) writes: `all_config.yaml`
(the training config, the model settings under `arch:`) beside a weights file. The weights file
may be `step_<N>` (highest N wins), `checkpoint` (the published HRM checkpoints), `*.pt` /
`*.pth` or `*.safetensors`. TRM's EMA checkpoints (`ema: True`) hold the averaged weights under
the usual names, and load as any other.
Weights are only ever read with `torch.load(..., weights_only=True)` or safetensors.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ValidationError

from hrm_mlir.checkpoint.hub import fetch, is_hub_id
from hrm_mlir.core.errors import CheckpointError, first_line
from hrm_mlir.core.types import DType
from hrm_mlir.models.config import ReasoningConfig
from hrm_mlir.models.hrm import HRM
from hrm_mlir.models.registry import Family, family_for, family_of, model_class, supported

CONFIG_NAME = "all_config.yaml"
_STEP_RE = re.compile(r"^step_(\d+)$")
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
# Keys of the inner module that size the config, and the derived-from-data fields.
_VOCAB_KEY = "inner.embed_tokens.embedding_weight"
_PUZZLE_KEY = "inner.puzzle_emb.weights"
_POS_KEY = "inner.embed_pos.embedding_weight"
PUBLISHED_SEQ_LENS = "81 for Sudoku 9x9, 900 for 30x30 mazes and ARC"
_REPORT_LIMIT = 10


@dataclass
class Checkpoint:
    """A validated checkpoint: its config (with inferred dimensions) and its weights.

    `state_dict` holds the model's keys (prefixes `_orig_mod.` and `model.` stripped) and the
    tensors as stored (float32 weights; `H_init` / `L_init` in the training dtype).
    """

    config_path: Path
    weights_path: Path
    config: ReasoningConfig
    state_dict: dict[str, torch.Tensor]
    seq_len_source: str
    notes: list[str] = field(default_factory=list)
    source: str | None = None  # a Hub checkpoint: "hf://OWNER/NAME at revision <commit>"

    def build_model(self, dtype: DType | str | None = None) -> HRM:
        """The PyTorch model in eval mode, computing in `dtype` (default: `forward_dtype`)."""
        return build_model(self.config_for(dtype), self.state_dict)

    @property
    def family(self) -> Family:
        return family_for(self.config)

    def config_for(self, dtype: DType | str | None) -> ReasoningConfig:
        if dtype is None:
            return self.config
        return self.config.model_copy(update={"forward_dtype": DType.parse(dtype)})

    def initial_carry_vectors(self, dtype: DType | str | None = None) -> tuple:
        """(H_init, L_init): the [hidden] vectors a reset carry is filled with."""
        want = self.config_for(dtype).forward_dtype.torch
        return tuple(self.state_dict[f"inner.{n}"].to(want) for n in ("H_init", "L_init"))

    @property
    def parameter_count(self) -> int:
        """Trainable parameters as upstream counts them (puzzle table and inits excluded)."""
        buffers = {_PUZZLE_KEY, "inner.H_init", "inner.L_init"}
        return sum(t.numel() for k, t in self.state_dict.items() if k not in buffers)

    @property
    def dtypes(self) -> dict[str, int]:
        """Number of stored tensors per dtype."""
        counts: dict[str, int] = {}
        for t in self.state_dict.values():
            name = str(t.dtype).removeprefix("torch.")
            counts[name] = counts.get(name, 0) + 1
        return counts


def load_checkpoint(
    path: str | Path, *, seq_len: int | None = None, seq_len_fallback: int | None = None
) -> Checkpoint:
    """Load and validate a checkpoint directory (or a weights file with the YAML beside it).

    Args:
        path: the checkpoint directory, or its weights file, or a Hugging Face Hub id
            `hf://OWNER/NAME[@REVISION][/SUBDIR]` (`hrm_mlir.checkpoint.hub`).
        seq_len: puzzle length; needed only when neither the weights (learned positions) nor the
            dataset's `train/dataset.json` give it.
        seq_len_fallback: the puzzle length where nothing else gives it, and no override
            (`evaluate`: the evaluated dataset's).
    Returns:
        The validated `Checkpoint`.
    Raises:
        CheckpointError: with one message naming the file and every problem found.
    """
    notes: list[str] = []
    source = None
    if is_hub_id(path):  # hf://OWNER/NAME[@REVISION]: the Hub cache's snapshot
        hub = fetch(str(path))
        path, source = hub.path, hub.describe()
    path = Path(path)
    config_path = _config_path(path)
    raw = _read_yaml(config_path)
    family, arch = _arch_section(raw, config_path)
    weights_path = _weights_path(path, notes)
    state = _strip_prefixes(_read_weights(weights_path))

    puzzle_dim = int(arch.get("puzzle_emb_ndim", 0) or 0)
    dims: dict[str, Any] = {
        "vocab_size": _dim(state, _VOCAB_KEY, 0, weights_path),
        "num_puzzle_identifiers": _dim(state, _PUZZLE_KEY, 0, weights_path) if puzzle_dim else 0,
    }
    seq, seq_source = _infer_seq_len(
        family, arch, raw, state, config_path, seq_len, notes, seq_len_fallback
    )
    dims["seq_len"] = seq
    try:
        config = family.config(**{**arch, **dims})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'arch'}: "
            + err["msg"].removeprefix("Value error, ")
            for err in e.errors()
        )
        raise CheckpointError(f"{config_path}: invalid arch config: {problems}") from None
    _validate_state(state, config, weights_path)
    return Checkpoint(config_path, weights_path, config, state, seq_source, notes, source)


def _config_path(path: Path) -> Path:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    directory = path if path.is_dir() else path.parent
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"{directory}: no {CONFIG_NAME} in the checkpoint directory")
    return config_path


def _weights_path(path: Path, notes: list[str]) -> Path:
    if path.is_file():
        return path
    directory = path

    steps = sorted(
        ((int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_RE.match(p.name))),
        key=lambda item: item[0],
    )
    if steps:
        chosen = steps[-1][1]
        if len(steps) > 1:
            notes.append(f"using {chosen.name}, the highest of {len(steps)} step_<N> files")
        return chosen
    if (directory / "checkpoint").is_file():
        return directory / "checkpoint"
    found = sorted(p for p in directory.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(p.name for p in found)
        raise CheckpointError(
            f"{directory}: several weights files ({names}); pass the one to use as the path"
        )
    raise CheckpointError(
        f"{directory}: no weights file (looked for step_<N>, checkpoint, "
        f"*.safetensors, *.pt, *.pth)"
    )


def _read_yaml(config_path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(config_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        detail = str(e).replace("\n", " ")
        raise CheckpointError(f"{config_path}: not valid YAML: {detail}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{config_path}: expected a mapping at the top level")
    return raw


def _arch_section(raw: dict[str, Any], config_path: Path) -> tuple[Family, dict[str, Any]]:
    arch = raw.get("arch")
    if not isinstance(arch, dict):
        raise CheckpointError(f"{config_path}: no 'arch:' section with the model settings")
    name = str(arch.get("name", ""))
    family = family_of(name)
    if family is None:
        raise CheckpointError(
            f"{config_path}: arch.name is {name!r}; the supported ones are {supported()}"
        )
    return family, {k: v for k, v in arch.items() if k not in ("name", "loss", "family")}


def _read_weights(weights_path: Path) -> dict[str, torch.Tensor]:
    if weights_path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(weights_path)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{weights_path}: not a readable safetensors file: {e}") from None
    try:
        try:  # mmap keeps a 2 GB puzzle table out of RSS until it is used
            obj = torch.load(weights_path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(weights_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = first_line(e)
        raise CheckpointError(
            f"{weights_path}: refused to load: the pickle needs more than plain tensors "
            f"(weights_only=True): {first}"
        ) from None
    except Exception as e:  # torch.load raises many types on a non-checkpoint file
        first = first_line(e)
        raise CheckpointError(f"{weights_path}: not a PyTorch checkpoint: {first}") from None
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{weights_path}: expected a state dict of tensors")
    return dict(obj)


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`_orig_mod.model.inner.x` (torch.compile + loss head) -> `inner.x`."""
    out = {}
    for key, value in state.items():
        for prefix in ("_orig_mod.", "model."):
            key = key.removeprefix(prefix)
        out[key] = value
    if out and not any(k.startswith("inner.") for k in out):  # a bare inner-module state dict
        out = {f"inner.{k}": v for k, v in out.items()}
    return out


def _dim(state: dict[str, torch.Tensor], key: str, axis: int, weights_path: Path) -> int:
    if key not in state or state[key].dim() <= axis:
        raise CheckpointError(f"{weights_path}: missing {key}, cannot infer the model size")
    return int(state[key].shape[axis])


def _infer_seq_len(
    family: Family,
    arch: dict[str, Any],
    raw: dict[str, Any],
    state: dict[str, torch.Tensor],
    config_path: Path,
    requested: int | None,
    notes: list[str],
    fallback: int | None = None,
) -> tuple[int, str]:
    puzzle_len = family.config.prefix_len_of(arch)
    if arch.get("pos_encodings") == "learned" and _POS_KEY in state:
        from_weights = int(state[_POS_KEY].shape[0]) - puzzle_len
        if requested is not None and requested != from_weights:
            raise CheckpointError(
                f"{config_path.parent}: --seq_len {requested} does not match the learned "
                f"position table, which fixes seq_len = {from_weights}"
            )
        return from_weights, "learned position embeddings"
    dataset = _find_dataset_json(raw, config_path)
    if requested is not None:
        if requested <= 0:
            raise CheckpointError(f"--seq_len must be positive, got {requested}")
        if dataset is not None and dataset[0] != requested:
            notes.append(f"--seq_len {requested} overrides seq_len {dataset[0]} of {dataset[1]}")
        return requested, "--seq_len"
    if dataset is not None:
        return dataset[0], str(dataset[1])
    if fallback is not None:
        return fallback, "the evaluated dataset"
    raise CheckpointError(
        f"{config_path.parent}: cannot infer seq_len (RoPE model and no "
        f"<data_path>/train/dataset.json found); pass --seq_len ({PUBLISHED_SEQ_LENS})"
    )


def _find_dataset_json(raw: dict[str, Any], config_path: Path) -> tuple[int, Path] | None:
    """`seq_len` of the training set: HRM's `data_path`, or the first of TRM's `data_paths`."""
    data_path = raw.get("data_path")
    paths = raw.get("data_paths")
    if (not isinstance(data_path, str) or not data_path) and isinstance(paths, list) and paths:
        data_path = paths[0]
    if not isinstance(data_path, str) or not data_path:
        return None
    for base in (config_path.parent, Path.cwd()):
        candidate = base / data_path / "train" / "dataset.json"
        if candidate.is_file():
            try:
                meta = json.loads(candidate.read_text())
                return int(meta["seq_len"]), candidate
            except (ValueError, KeyError, TypeError) as e:
                raise CheckpointError(f"{candidate}: unreadable dataset metadata: {e!r}") from None
    return None


def _validate_state(state: dict[str, torch.Tensor], config: ReasoningConfig, path: Path) -> None:
    with torch.device("meta"):
        model = model_class(config)(config)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    not_float = [f"{k} ({state[k].dtype})" for k in state if not state[k].is_floating_point()]
    parts = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", misshaped),
        ("not floating point", not_float),
    ):
        if items:
            shown = ", ".join(items[:_REPORT_LIMIT])
            extra = len(items) - _REPORT_LIMIT
            more = f" ... and {extra} more" if extra > 0 else ""
            parts.append(f"{len(items)} {label}: {shown}{more}")
    if parts:
        raise CheckpointError(f"{path}: weights do not match the config: " + "; ".join(parts))


def build_model(config: ReasoningConfig, state: Mapping[str, torch.Tensor]) -> HRM:
    """An eval-mode model of `config`'s family (`HRM` or `TRM`) holding `state` (tensors
    shared, not copied).

    H_init / L_init are cast to the forward dtype, where upstream creates them.
    """
    dtype = config.forward_dtype.torch
    inits = ("inner.H_init", "inner.L_init")
    state = {k: v.to(dtype) if k in inits else v for k, v in state.items()}
    with torch.device("meta"):
        model = model_class(config)(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
