"""The compiled-artifact cache: a hit skips the export and the compile and gives the same bytes,
every key field makes its own entry, a damaged entry is rebuilt with a note, `--no-cache` leaves
the cache alone, and `hrm-mlir cache info|clear` show and empty it.

Compiles are few and tiny: one inline artifact for the module, one with external parameters,
one rebuild of an entry IREE refuses, one `run --no-cache`. Elsewhere the compiler is replaced
by one that raises, so a test that reached it fails or stops there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import hrm_mlir.compiler.driver as driver
import hrm_mlir.exporter.act as act_mod
from hrm_mlir.checkpoint.load import Checkpoint, load_checkpoint
from hrm_mlir.cli.app import main
from hrm_mlir.compiler.cache import (
    ArtifactCache,
    CompiledAct,
    Damaged,
    act_key,
    cache_dir,
    compile_act,
)
from hrm_mlir.compiler.options import CompileOptions
from hrm_mlir.core.types import DType
from hrm_mlir.exporter.params import Params
from hrm_mlir.runner import CompiledACT
from tests.conftest import act_inputs, random_model, requires_x86, write_checkpoint

pytestmark = requires_x86

PUZZLES = "12..34....21..43\n.2.1...4.3...1.2\n"  # 4x4 Sudoku: the tiny model's 16 tokens


class Compiled(Exception):
    """The export or the compiler was reached."""


def _no_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export and compile raise `Compiled`: a test that reaches either stops there (at the
    export, which comes first and takes seconds too)."""

    def refuse(*args, **kwargs):
        raise Compiled

    monkeypatch.setattr(driver, "compile_module", refuse)
    monkeypatch.setattr(act_mod, "export_act", refuse)


def _counting_compiler(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = driver.compile_module

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(driver, "compile_module", counted)
    return calls


def _files(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.iterdir())}


def _outputs(compiled: CompiledAct) -> tuple[torch.Tensor, ...]:
    inputs, ids = act_inputs(1)
    return CompiledACT(compiled.module, compiled.config, 1).act(inputs, ids, 3, False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    ckpt = write_checkpoint(tmp_path_factory.mktemp("ck"), random_model(), dataset_seq_len=16)
    return load_checkpoint(ckpt)


@pytest.fixture(scope="module")
def first(checkpoint, tmp_path_factory) -> tuple[Path, CompiledAct]:
    """The module's one inline compile: batch 1, float32, into a cache of its own."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HRM_MLIR_CACHE", str(root))
        built = compile_act(checkpoint, dtype=DType.FLOAT32, batch_size=1)
    return root, built


@pytest.fixture
def cache(first, tmp_path, monkeypatch) -> Path:
    """A copy of the first compile's cache, as HRM_MLIR_CACHE, for a test to change."""
    root = tmp_path / "cache"
    shutil.copytree(first[0], root)
    monkeypatch.setenv("HRM_MLIR_CACHE", str(root))
    return root


def test_a_miss_stores_one_entry_with_its_sidecar(first, checkpoint):
    root, built = first
    assert not built.hit and built.entry is not None
    sidecars, artifacts = sorted(root.glob("*.json")), sorted(root.glob("*.vmfb"))
    assert len(sidecars) == 1 and len(artifacts) == 1
    doc = json.loads(sidecars[0].read_text())
    assert artifacts[0].read_bytes() == built.vmfb and doc["bytes"] == len(built.vmfb)
    assert doc["file"] == artifacts[0].name and artifacts[0].name.startswith(doc["key"])
    fields = doc["fields"]
    assert fields["weights_sha256"] == act_key(
        checkpoint, dtype=DType.FLOAT32, batch_size=1, params=Params.INLINE,
        options=CompileOptions(),
    )[1]["weights_sha256"]  # fmt: skip
    assert fields["config"]["seq_len"] == 16 and fields["dtype"] == "float32"
    assert fields["batch"] == 1 and fields["entry"] == "act" and fields["params"] == "inline"
    target = fields["compile"]["target_cpu"]
    assert target["name"] != "host" and "sse2" in target["features"]  # resolved, not "host"
    assert set(fields["versions"]) >= {"hrm-mlir", "torch", "torch-mlir", "iree-base-compiler",
                                       "iree-base-runtime"}  # fmt: skip
    assert doc["parameters"] is None and doc["created"].endswith("Z")


def test_a_hit_skips_export_and_compile_and_gives_the_same_bytes(
    first, cache, checkpoint, monkeypatch
):
    _no_compiler(monkeypatch)
    lines: list[str] = []
    again = compile_act(checkpoint, dtype=DType.FLOAT32, batch_size=1, status=lines.append)
    assert again.hit and again.vmfb == first[1].vmfb
    assert again.config == first[1].config
    assert len(lines) == 1 and lines[0].startswith("using @act (float32, batch 1) from the cache")
    for got, want in zip(_outputs(again), _outputs(first[1]), strict=True):
        assert torch.equal(got, want)
    # the Ray engine's artifact reads the same entry
    from hrm_mlir.evaluation.distributed import Artifact

    artifact = Artifact.from_checkpoint(checkpoint, dtype=DType.FLOAT32, batch_size=1)
    assert artifact.vmfb == first[1].vmfb and artifact.parameters is None


def test_each_key_field_makes_its_own_entry(first, cache, checkpoint, tmp_path):
    base = {"dtype": DType.FLOAT32, "batch_size": 1, "params": Params.INLINE,
            "options": CompileOptions()}  # fmt: skip
    key, _ = act_key(checkpoint, **base)
    assert key == json.loads(next(cache.glob("*.json")).read_text())["key"]
    other = write_checkpoint(tmp_path / "other", random_model(seed=1), dataset_seq_len=16)
    changed = [
        act_key(load_checkpoint(other), **base),
        act_key(checkpoint, **{**base, "dtype": DType.BFLOAT16}),
        act_key(checkpoint, **{**base, "batch_size": 2}),
        act_key(checkpoint, **{**base, "batch_size": None}),
        act_key(checkpoint, **{**base, "params": Params.EXTERNAL}),
        act_key(checkpoint, **{**base, "options": CompileOptions(tuned=False)}),
        act_key(checkpoint, **{**base, "options": CompileOptions(cpu="x86-64")}),
    ]
    assert len({key, *(k for k, _ in changed)}) == len(changed) + 1
    store = ArtifactCache()
    assert all(store.get(k, f) is None for k, f in changed)


def test_changed_weights_go_to_the_compiler(cache, tmp_path, monkeypatch):
    _no_compiler(monkeypatch)
    other = write_checkpoint(tmp_path / "other", random_model(seed=1), dataset_seq_len=16)
    with pytest.raises(Compiled):
        compile_act(load_checkpoint(other), dtype=DType.FLOAT32, batch_size=1)


@pytest.mark.parametrize(
    "damage, why",
    [
        ("truncate", "sha256"),
        ("flip", "sha256"),
        ("sidecar", "not JSON"),
        ("missing", "missing"),
        ("other fields", "other key fields"),
    ],
)
def test_a_damaged_entry_is_not_trusted(cache, checkpoint, monkeypatch, damage, why):
    sidecar = next(cache.glob("*.json"))
    artifact = next(cache.glob("*.vmfb"))
    data = artifact.read_bytes()
    if damage == "truncate":
        artifact.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        artifact.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "sidecar":
        sidecar.write_text(sidecar.read_text()[:40])
    elif damage == "missing":
        artifact.unlink()
    else:
        doc = json.loads(sidecar.read_text())
        doc["fields"]["dtype"] = "bfloat16"
        sidecar.write_text(json.dumps(doc))
    _no_compiler(monkeypatch)
    lines: list[str] = []
    with pytest.raises(Compiled):  # rebuilt: the export and the compile run again
        compile_act(checkpoint, dtype=DType.FLOAT32, batch_size=1, status=lines.append)
    assert len(lines) == 2 and "is damaged" in lines[0] and why in lines[0]
    assert lines[1].startswith("compiling @act for this CPU")
    assert not sidecar.exists()  # the damaged entry is gone


def test_an_entry_iree_refuses_is_rebuilt_with_a_note(first, cache, checkpoint, monkeypatch,
                                                      capsys):  # fmt: skip
    store = ArtifactCache()
    entry = store.info().entries[0]
    garbage = b"not a flatbuffer" * 64  # the sidecar records it: only IREE can tell
    store.put(entry.key, entry.doc["fields"], garbage, {"parameters": None})
    calls = _counting_compiler(monkeypatch)
    rebuilt = compile_act(checkpoint, dtype=DType.FLOAT32, batch_size=1)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged (IREE refuses to load it" in err
    assert calls == [1] and not rebuilt.hit
    for got, want in zip(_outputs(rebuilt), _outputs(first[1]), strict=True):
        torch.testing.assert_close(got, want)
    _no_compiler(monkeypatch)
    assert compile_act(checkpoint, dtype=DType.FLOAT32, batch_size=1).hit
    assert len(list(cache.glob("*.vmfb"))) == 1  # the garbage's file was replaced


def test_external_parameters_are_served_from_the_checkpoint_on_a_hit(
    checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setenv("HRM_MLIR_CACHE", str(tmp_path))
    built = compile_act(checkpoint, dtype=DType.FLOAT32, batch_size=1, params=Params.EXTERNAL)
    assert built.parameters and not built.hit
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert doc["fields"]["params"] == "external"
    assert sorted(doc["parameters"]) == sorted(built.parameters)
    assert "inner.rope.cos" in doc["parameters"]
    _no_compiler(monkeypatch)
    again = compile_act(checkpoint, dtype=DType.FLOAT32, batch_size=1, params=Params.EXTERNAL)
    assert again.hit and again.vmfb == built.vmfb and again.parameters is not None
    assert again.parameters.keys() == built.parameters.keys()
    for name, tensor in built.parameters.items():
        assert torch.equal(again.parameters[name], tensor), name
    for got, want in zip(_outputs(again), _outputs(built), strict=True):
        assert torch.equal(got, want)


def test_no_cache_neither_reads_nor_writes(cache, checkpoint, tmp_path, monkeypatch, capsys):
    before = _files(cache)
    puzzles = tmp_path / "p.txt"
    puzzles.write_text(PUZZLES)
    argv = ["run", str(checkpoint.config_path.parent), "--puzzle", str(puzzles)]
    calls = _counting_compiler(monkeypatch)
    assert main([*argv, "--max_steps", "2", "--no-cache"]) == 0
    assert calls == [1]  # compiled though the cache holds this artifact
    assert "compiling @act for this CPU (float32, batch 1)" in capsys.readouterr().out
    assert _files(cache) == before
    _no_compiler(monkeypatch)  # and without --no-cache, the same run reads it
    assert main([*argv, "--max_steps", "2"]) == 0
    assert "using @act (float32, batch 1) from the cache" in capsys.readouterr().out
    assert _files(cache) == before


def test_cache_info_and_clear(first, cache, capsys):
    (cache / "notes.txt").write_text("not the cache's")
    (cache / f".{'0' * 64}.json.abc.tmp").write_bytes(b"x" * 10)  # a killed write's
    assert main(["cache", "info", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["location"] == str(cache) and doc["entries"] == 1
    assert doc["bytes"] == sum(p.stat().st_size for p in cache.iterdir() if p.suffix != ".txt")
    item = doc["items"][0]
    assert item["bytes"] == len(first[1].vmfb) and item["dtype"] == "float32"
    assert item["batch"] == 1 and item["target"] != "host"
    assert main(["cache", "info"]) == 0
    assert f"cache: {cache}; 1 entry" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "removed 1 entry" in capsys.readouterr().out
    assert [p.name for p in cache.iterdir()] == ["notes.txt"]
    assert main(["cache", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 0


def test_cache_info_of_a_directory_not_made_yet(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HRM_MLIR_CACHE", str(tmp_path / "none"))
    assert main(["cache", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 0
    assert main(["cache", "clear"]) == 0
    assert not (tmp_path / "none").exists()


def test_the_cache_directory_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HRM_MLIR_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "hrm-mlir"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "hrm-mlir"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # the XDG spec: ignored
    assert cache_dir() == tmp_path / "home" / ".cache" / "hrm-mlir"
    monkeypatch.setenv("HRM_MLIR_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert ArtifactCache().root == tmp_path / "mine"


def test_the_suite_uses_a_cache_of_its_own(artifact_cache):
    assert cache_dir() == artifact_cache and Path.home() not in artifact_cache.parents


def test_writes_replace_whole_files_and_leave_no_temporaries(first, cache):
    store = ArtifactCache()
    entry = store.info().entries[0]
    fields = entry.doc["fields"]
    store.put(entry.key, fields, b"one" * 100, {})
    store.put(entry.key, fields, b"two" * 100, {})  # another process's, say
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []
    assert len(list(cache.glob("*.vmfb"))) == 1
    got = store.get(entry.key, fields)
    assert got is not None and got[1] == b"two" * 100
    with pytest.raises(Damaged, match="other key fields"):
        store.get(entry.key, {**fields, "batch": 2})


def _recording(seen: dict):
    """A `CompiledACT.from_checkpoint` that records its keywords and stops."""

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise Compiled

    return record


def test_run_and_evaluate_pass_the_cache_switch_on(checkpoint, tmp_path, monkeypatch):
    import hrm_mlir

    seen: dict = {}
    monkeypatch.setattr(CompiledACT, "from_checkpoint", _recording(seen))
    puzzles = tmp_path / "p.txt"
    puzzles.write_text(PUZZLES)
    model = checkpoint.config_path.parent
    for cache in (True, False):
        with pytest.raises(Compiled):
            hrm_mlir.run(model, puzzles, cache=cache)
        assert seen.pop("cache") is cache
    example = Path(__file__).resolve().parents[2] / "examples" / "sudoku6x6"
    argv = ["evaluate", str(example), "--data", str(example / "data"), "--limit", "2"]
    for flags, cache in (([], True), (["--no-cache"], False)):
        with pytest.raises(Compiled):
            main([*argv, *flags])
        assert seen.pop("cache") is cache
