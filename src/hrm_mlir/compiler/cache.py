"""A cache of compiled `@act` artifacts, so that `run` and `evaluate` of a checkpoint pay its
export and compile once (torch.compile's cache, ONNX Runtime's saved optimized models and
OpenVINO's CACHE_DIR keep compiled work the same way).

An entry is keyed by the sha256 of everything that changes the artifact (`act_key`): the
weights file's bytes, the model config as the checkpoint loader gives it (seq_len included), the
dtype, the entry, the batch, the params mode, the export and compile options with the target CPU
resolved (its LLVM name, triple and features, never the word "host"), the versions of torch,
torch-mlir, IREE's compiler and runtime and hrm-mlir, and a digest of hrm-mlir's own source (an
editable install changes its code without changing its version). Under the cache directory
(`cache_dir`) an entry is two files:

    <key>.json                 the sidecar: the key fields, the artifact's file name, its sha256,
                               size and creation time, and its external parameters' names
    <key>.<sha256[:16]>.vmfb   the artifact, named by its content

Both are written atomically (a temporary file in the same directory, then `os.replace`), the
artifact first, so processes can share the directory: a reader sees the old entry or the new
one, never half of one, and an artifact's name never holds other bytes. An entry whose sidecar
is unreadable or names other fields, whose artifact is missing or has another sha256, or that
IREE refuses to load is rebuilt, with a one-line note; it is never trusted.

External parameters served from memory are the checkpoint's own tensors by their state-dict
names (`hrm_mlir.exporter.archive.parameter_tensors`): on a hit they are looked up again in the
model built from the checkpoint, without an export. An artifact is stored only where that
lookup gives exactly the tensors the export used (compared at store time).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrm_mlir.core.errors import HrmMlirError, RuntimeFailure, first_line
from hrm_mlir.core.fileio import write_atomic

if TYPE_CHECKING:
    import torch

    from hrm_mlir.checkpoint.load import Checkpoint
    from hrm_mlir.compiler.options import CompileOptions
    from hrm_mlir.core.types import DType
    from hrm_mlir.exporter.params import Params
    from hrm_mlir.models.config import ReasoningConfig
    from hrm_mlir.models.hrm import HRM
    from hrm_mlir.runtime.module import CompiledModule

FORMAT = "hrm-mlir-cache/1"
ENV = "HRM_MLIR_CACHE"
_SIDECAR = re.compile(r"^[0-9a-f]{64}\.json$")
_ARTIFACT = re.compile(r"^([0-9a-f]{64})\.[0-9a-f]{16}\.vmfb$")
_TEMPORARY = re.compile(r"^\.[0-9a-f]{64}\..*\.tmp$")  # `core.fileio.atomic_path`'s, left by a kill
# The packages whose versions change what an export and compile produce.
_VERSIONED = ("hrm-mlir", "torch", "torch-mlir", "iree-base-compiler", "iree-base-runtime")


def cache_dir() -> Path:
    """Where the cache lives: `HRM_MLIR_CACHE`, else `$XDG_CACHE_HOME/hrm-mlir`, else
    `~/.cache/hrm-mlir` (an XDG_CACHE_HOME that is not absolute is ignored, as the XDG spec
    says)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "hrm-mlir"


class Damaged(HrmMlirError):
    """A cache entry that cannot be trusted; the message says why."""


@dataclass(frozen=True)
class CacheEntry:
    """One cache entry as its sidecar describes it."""

    key: str
    sidecar: Path
    doc: dict[str, Any]

    @property
    def artifact(self) -> Path:
        return self.sidecar.parent / str(self.doc["file"])

    @property
    def size(self) -> int:
        return int(self.doc["bytes"])

    def summary(self) -> dict[str, Any]:
        """`cache info --json`: what the entry is, in a few fields."""
        f = self.doc["fields"]
        compiled = f.get("compile", {})
        return {
            "key": self.key,
            "checkpoint": self.doc.get("checkpoint"),
            "dtype": f.get("dtype"),
            "batch": f.get("batch"),
            "params": f.get("params"),
            "target": compiled.get("target_cpu", {}).get("name", compiled.get("target")),
            "bytes": self.size,
            "created": self.doc["created"],
        }


@dataclass(frozen=True)
class CacheInfo:
    """`hrm-mlir cache info`: where the cache is, its entries and the bytes it takes."""

    location: Path
    entries: list[CacheEntry]
    bytes: int  # every file of the cache's, stray temporary files included

    def as_dict(self) -> dict[str, Any]:
        return {
            "location": str(self.location),
            "entries": len(self.entries),
            "bytes": self.bytes,
            "items": [e.summary() for e in self.entries],
        }


class ArtifactCache:
    """The cache directory: read, write, list and empty entries (`root` None: `cache_dir()`)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()

    def sidecar(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str, fields: Mapping[str, Any]) -> tuple[CacheEntry, bytes] | None:
        """The entry for `key` and its artifact's bytes; None where there is none.

        Raises:
            Damaged: the sidecar is unreadable or names other fields, or the artifact is
                missing or is not the bytes the sidecar names.
        """
        path = self.sidecar(key)
        for attempt in range(2):
            try:
                text = path.read_text()
            except FileNotFoundError:
                return None
            except (OSError, UnicodeDecodeError) as e:
                raise Damaged(f"its sidecar is unreadable: {first_line(e)}") from None
            entry = CacheEntry(key, path, _parse_sidecar(text, key, fields))
            try:
                data = entry.artifact.read_bytes()
            except FileNotFoundError:
                if attempt == 0:  # replaced by another process since: read its sidecar again
                    continue
                raise Damaged(f"its artifact {entry.artifact.name} is missing") from None
            except OSError as e:
                raise Damaged(f"its artifact is unreadable: {first_line(e)}") from None
            if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.doc["sha256"]:
                raise Damaged("its artifact's sha256 is not the one its sidecar records")
            return entry, data
        raise AssertionError("unreachable")

    def put(
        self, key: str, fields: Mapping[str, Any], vmfb: bytes, extra: Mapping[str, Any]
    ) -> CacheEntry:
        """Store an artifact under `key`, atomically: the artifact, then its sidecar.

        Raises:
            OSError: the directory cannot be created or written.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256(vmfb).hexdigest()
        name = f"{key}.{sha[:16]}.vmfb"
        write_atomic(self.root / name, vmfb)
        doc = {
            "format": FORMAT,
            "key": key,
            "fields": dict(fields),
            "file": name,
            "sha256": sha,
            "bytes": len(vmfb),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **extra,
        }
        path = write_atomic(self.sidecar(key), json.dumps(doc, indent=2).encode())
        for old in self.root.glob(f"{key}.*.vmfb"):  # a rebuilt entry's earlier artifact
            if old.name != name:
                old.unlink(missing_ok=True)
        return CacheEntry(key, path, doc)

    def remove(self, key: str) -> None:
        """Remove an entry's files (a damaged one's before it is rebuilt)."""
        for path in (self.sidecar(key), *self.root.glob(f"{key}.*.vmfb")):
            path.unlink(missing_ok=True)

    def info(self) -> CacheInfo:
        """The entries whose sidecars parse (sorted by creation), and the bytes of every file
        the cache owns."""
        entries: list[CacheEntry] = []
        total = 0
        for path in self._owned():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
            if _SIDECAR.match(path.name):
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError, Damaged):
                    doc = _parse_sidecar(path.read_text(), path.stem, None)
                    entries.append(CacheEntry(path.stem, path, doc))
        entries.sort(key=lambda e: (str(e.doc.get("created", "")), e.key))
        return CacheInfo(self.root, entries, total)

    def clear(self) -> CacheInfo:
        """Remove every file the cache owns (nothing else in its directory); returns what was
        there."""
        before = self.info()
        for path in self._owned():
            path.unlink(missing_ok=True)
        return before

    def _owned(self) -> list[Path]:
        """The cache's files: sidecars, artifacts and stray temporary files of either."""
        if not self.root.is_dir():
            return []
        names = (_SIDECAR, _ARTIFACT, _TEMPORARY)
        return sorted(
            p for p in self.root.iterdir() if p.is_file() and any(r.match(p.name) for r in names)
        )


def _parse_sidecar(text: str, key: str, fields: Mapping[str, Any] | None) -> dict[str, Any]:
    """The sidecar's document, checked to be an entry of this format for `key` (and `fields`
    where given)."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise Damaged(f"its sidecar is not JSON: {first_line(e)}") from None
    needed = ("format", "key", "fields", "file", "sha256", "bytes", "created")
    if not isinstance(doc, dict) or any(k not in doc for k in needed):
        raise Damaged("its sidecar lacks fields of an entry")
    if doc["format"] != FORMAT or doc["key"] != key or not _ARTIFACT.match(str(doc["file"])):
        raise Damaged("its sidecar is not this entry's")
    if not isinstance(doc["fields"], dict) or not isinstance(doc["bytes"], int):
        raise Damaged("its sidecar's fields are malformed")
    if fields is not None and doc["fields"] != fields:
        raise Damaged("its sidecar records other key fields")
    return doc


# --------------------------------------------------------------------------------------------
# The key


def act_key(
    checkpoint: Checkpoint,
    *,
    dtype: DType,
    batch_size: int | None,
    params: Params,
    options: CompileOptions,
) -> tuple[str, dict[str, Any]]:
    """The key of a checkpoint's `@act` compiled so, and the fields it is the sha256 of.

    Args:
        checkpoint: the checkpoint (its weights file is hashed).
        dtype: the forward dtype.
        batch_size: the static batch, or None for a symbolic one.
        params: the params mode, resolved (inline or external).
        options: the compile options.
    """
    from hrm_mlir.core.types import Entry, OutputType
    from hrm_mlir.exporter.act import DYNAMIC

    fields = {
        "format": FORMAT,
        "weights_sha256": _file_sha256(checkpoint.weights_path),
        "config": json.loads(checkpoint.config_for(dtype).model_dump_json()),
        "dtype": str(dtype),
        "entry": str(Entry.ACT),
        "batch": DYNAMIC if batch_size is None else batch_size,
        "params": str(params),
        "output_type": str(OutputType.LINALG_ON_TENSORS),
        "compile": _compile_fields(options, dtype, external=str(params) == "external"),
        "versions": _versions(),
        "hrm_mlir_source": _source_digest(),
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest(), fields


def _compile_fields(options: CompileOptions, dtype: DType, *, external: bool) -> dict[str, Any]:
    """The compile options as JSON values, with the llvm-cpu target CPU as LLVM resolves it,
    and the iree-compile flags they give (fast, then the fallback) with the kernels' use."""
    from hrm_mlir.compiler.options import Target

    out: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        out[f.name] = (
            value.value if isinstance(value, Enum) else list(value) if isinstance(value, tuple)
            else value
        )  # fmt: skip
    if options.target == Target.LLVM_CPU:
        cpu = options.cpu_target()
        out["target_cpu"] = {
            "name": cpu.name,
            "triple": cpu.triple,
            "features": sorted(cpu.features),
        }
    out["flags"] = options.flags(dtype, external_parameters=external)
    out["fallback_flags"] = options.flags(dtype, external_parameters=external, fast=False)
    out["project_kernels"] = options.use_gemm_kernels()
    return out


@functools.cache
def _versions() -> dict[str, str | None]:
    from hrm_mlir.runtime.host import version

    return {p: version(p) for p in _VERSIONED}


@functools.cache
def _source_digest() -> str:
    """sha256 of hrm-mlir's Python source (each file's path in the package and its bytes)."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Export, compile, or read from the cache


@dataclass(frozen=True)
class CompiledAct:
    """A checkpoint's compiled `@act`, loaded here.

    `parameters` are its external parameters (the checkpoint's tensors by name), or None.
    `entry` is the cache entry it was read from or stored as, None where it was not cached.
    """

    vmfb: bytes
    module: CompiledModule
    config: ReasoningConfig
    parameters: Mapping[str, torch.Tensor] | None
    hit: bool
    entry: CacheEntry | None


def compile_act(
    checkpoint: Checkpoint,
    *,
    dtype: DType,
    batch_size: int | None,
    options: CompileOptions | None = None,
    params: Params | None = None,
    cache: bool = True,
    status: Callable[[str], None] | None = None,
    driver: str = "local-task",
) -> CompiledAct:
    """A checkpoint's `@act` compiled for `options`' target and loaded: read from the cache
    where it holds the same, else exported (linalg-on-tensors), compiled and stored there.

    Args:
        checkpoint: the checkpoint.
        dtype: the forward dtype.
        batch_size: the static batch, or None for a symbolic one.
        options: the compile options (default: this CPU's).
        params: inline or external weights; None chooses by size
            (`hrm_mlir.exporter.params.choose_params`).
        cache: read and write the cache (`cache_dir()`); False does neither.
        status: sees a line before a compile, on a cache hit, and for a damaged or unwritable
            cache entry; without it, only the last two go to stderr.
        driver: the IREE driver the artifact is loaded on.
    Returns:
        The artifact, its loaded module and config, and whether it came from the cache.
    Raises:
        ExportError, CompileError: as `export_act` and `compile_module` raise them.
    """
    from hrm_mlir.compiler.driver import compile_module
    from hrm_mlir.compiler.options import CompileOptions
    from hrm_mlir.core.types import OutputType
    from hrm_mlir.exporter.act import DYNAMIC, export_act
    from hrm_mlir.exporter.module import ExportOptions, weight_bytes
    from hrm_mlir.exporter.params import choose_params
    from hrm_mlir.runtime.module import CompiledModule

    options = options or CompileOptions()
    shown = DYNAMIC if batch_size is None else batch_size

    def note(text: str) -> None:
        if status is not None:
            status(text)
        else:
            print(f"hrm-mlir: {text}", file=sys.stderr)

    store = ArtifactCache() if cache else None
    key, key_fields = "", dict[str, Any]()  # the entry's, when the cache is used
    # the checkpoint's model, built once: its weights' size chooses the params mode of the key,
    # and its tensors are the external parameters a hit serves and a miss checks before storing
    model = checkpoint.build_model(dtype) if cache else None
    if store is not None and model is not None:
        mode, _ = choose_params(params, weight_bytes(model))
        key, key_fields = act_key(
            checkpoint, dtype=dtype, batch_size=batch_size, params=mode, options=options
        )
        try:
            found = store.get(key, key_fields)
            if found is not None:
                entry, vmfb = found
                tensors = _served(model, entry.doc.get("parameters"))
                try:
                    module = CompiledModule(vmfb, driver=driver, parameters=tensors)
                except RuntimeFailure as e:
                    raise Damaged(f"IREE refuses to load it: {e}") from None
                if status is not None:
                    status(f"using @act ({dtype}, batch {shown}) from the cache: {entry.artifact}")
                config = checkpoint.config_for(dtype)
                return CompiledAct(vmfb, module, config, tensors, True, entry)
        except Damaged as e:
            note(f"cache entry {key[:12]} is damaged ({e}): compiling it again")
            with contextlib.suppress(OSError):
                store.remove(key)

    if status is not None:
        status(f"compiling @act for this CPU ({dtype}, batch {shown}) ...")
    export_options = ExportOptions(
        output_type=OutputType.LINALG_ON_TENSORS, dtype=dtype, batch_size=batch_size, params=params
    )
    exported = export_act(checkpoint, export_options)
    vmfb = compile_module(exported, options=options)
    tensors = exported.parameters or None
    module = CompiledModule(vmfb, driver=driver, parameters=tensors)
    stored = None
    if store is not None and model is not None:
        names = _servable(model, exported.parameters)
        if str(exported.options.params) != key_fields["params"]:
            names = None  # the export chose otherwise than the key says: not this key's
        if names is None:
            note("not cached: the external parameters are not all the checkpoint's tensors")
        else:
            extra = {
                "checkpoint": str(checkpoint.weights_path.resolve()),
                "parameters": names or None,
            }
            try:
                stored = store.put(key, key_fields, vmfb, extra)
            except OSError as e:
                note(f"cannot write the cache at {store.root} ({first_line(e)}): not kept")
    return CompiledAct(vmfb, module, exported.config, tensors, False, stored)


def _servable(model: HRM, parameters: Mapping[str, torch.Tensor]) -> list[str] | None:
    """The names of the export's external parameters ([] for none), where the model built
    from the checkpoint gives exactly these tensors under them; None where it does not (a
    parameter the lowering made), and the artifact is then not cached."""
    if not parameters:
        return []
    import torch

    from hrm_mlir.exporter.archive import parameter_tensors

    rebuilt = parameter_tensors(model)
    for name, tensor in parameters.items():
        again = rebuilt.get(name)
        if again is None or again.dtype != tensor.dtype or not torch.equal(again, tensor):
            return None
    return sorted(parameters)


def _served(model: HRM, names: list[str] | None) -> dict[str, torch.Tensor] | None:
    """A cached artifact's external parameters, looked up again in the checkpoint's model."""
    if not names:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise Damaged("its sidecar's parameter names are malformed")
    from hrm_mlir.exporter.archive import parameter_tensors

    rebuilt = parameter_tensors(model)
    missing = [n for n in names if n not in rebuilt]
    if missing:
        raise Damaged(f"the checkpoint has no tensor {missing[0]} for its parameters")
    return {n: rebuilt[n] for n in names}
