"""Kits (`hrm_mlir.bench.kit_build`, `kit_format`, `kit_run`): built here, then run as a
runtime-only machine would run them.

The GPU half cannot run here (no CUDA device); what runs is the same code on this CPU
(llvm-cpu artifacts, IREE's local-task driver, torch on the CPU), and a CUDA kit is built and
refused here with one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hrm_mlir.bench.kit_build import parse_shape
from hrm_mlir.bench.kit_format import KIT_FILE, read_kit
from hrm_mlir.checkpoint.synthetic import random_state
from hrm_mlir.cli.app import main
from hrm_mlir.core.errors import HrmMlirError
from hrm_mlir.runtime.target import cpuinfo_features
from tests.conftest import TINY_DIMS, tiny_config

SEQ = TINY_DIMS["seq_len"]


@pytest.fixture(scope="module")
def kit(tmp_path_factory, request) -> Path:
    """A float32 and a bfloat16 kit of the tiny checkpoint, at two batch sizes each."""
    from tests.conftest import random_model, write_checkpoint

    root = tmp_path_factory.mktemp("kits")
    ck = write_checkpoint(root / "ckpt", random_model(), dataset_seq_len=SEQ)
    for dtype in ("float32", "bfloat16"):
        argv = ["kit", "build", str(ck), "-o", str(root / dtype), "--shape", f"{SEQ}:1,3"]
        assert main([*argv, "--dtype", dtype]) == 0
    return root


def _copy(kit: Path, to: Path) -> Path:
    shutil.copytree(kit, to)
    return to


def test_build_writes_artifacts_and_their_description(kit: Path):
    kit_dir, doc = read_kit(kit / "bfloat16")
    assert doc["dtype"] == "bfloat16" and doc["target"] == "llvm-cpu:host"
    tokens = tiny_config().total_seq_len  # the puzzle and its puzzle-embedding prefix
    assert [(a["tokens"], a["batch"]) for a in doc["artifacts"]] == [(tokens, 1), (tokens, 3)]
    assert doc["weights"] == {"source": "random", "seed": 0}
    assert all((kit_dir / a["file"]).stat().st_size == a["bytes"] for a in doc["artifacts"])
    assert doc["configs"][str(SEQ)]["seq_len"] == SEQ


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_run_checks_every_artifact_then_times_it(kit: Path, dtype: str, tmp_path: Path):
    report_path = tmp_path / "report.json"
    argv = ["kit", "run", str(kit / dtype), "--iterations", "3", "--warmup", "1"]
    assert main([*argv, "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["machine"]["driver"] == "local-task"
    assert [r["batch"] for r in report["results"]] == [1, 3]
    for r in report["results"]:
        assert r["passed"]
        timings = {t["runtime"]: t for t in r["timings"]}
        assert set(timings) == {"torch-eager", "iree"}
        assert all(len(t["samples_ms"]) == 3 and t["median_ms"] > 0 for t in timings.values())
        outputs = r["verified"]["outputs"]
        assert [o["name"] for o in outputs][:2] == ["z_H", "z_L"]
        judged = r["verified"]["against_float32_truth"]
        if dtype == "bfloat16":  # judged against float32 PyTorch, over at least 32 rows
            assert set(r["vs_float32_max_rel_l2"]) == {"iree", "torch-eager"}
            assert r["verified"]["rows"] >= 32 and judged is not None
            assert {j["name"] for j in judged if "name" in j} >= {"z_H", "q_halt_logits"}
        else:
            assert judged is None
            assert max(o["rel_l2"] for o in outputs) < 1e-4


def test_a_kit_carries_a_checkpoints_own_weights(tmp_path: Path):
    """The bundled TRM example (trained weights, TRM's family) in a kit of its own weights."""
    out = tmp_path / "trm-kit"
    example = Path(__file__).parents[2] / "examples" / "trm-sudoku6x6"
    argv = ["kit", "build", str(example), "-o", str(out), "--weights", "checkpoint"]
    assert main([*argv, "--dtype", "float32", "--shape", "36:2"]) == 0
    _, doc = read_kit(out)
    assert doc["family"] == "trm" and doc["weights"]["file"] == "weights.safetensors"
    report_path = tmp_path / "report.json"
    assert main(["kit", "run", str(out), "--iterations", "2", "--json", str(report_path)]) == 0
    (result,) = json.loads(report_path.read_text())["results"]
    assert result["passed"] and max(o["rel_l2"] for o in result["verified"]["outputs"]) < 1e-4
    (out / "weights.safetensors").unlink()
    with pytest.raises(HrmMlirError, match=r"weights\.safetensors: missing"):
        read_kit(out)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_run_fails_where_the_artifact_computes_another_model(
    kit: Path, tmp_path: Path, capsys, dtype: str
):
    """The description says 3 H cycles where the artifacts were built with 2: the same
    parameters, another computation, which the check must catch (and nothing is timed); in
    bfloat16 too, judged against float32 relative to PyTorch's own bf16 error."""
    wrong = _copy(kit / dtype, tmp_path / "wrong")
    doc = json.loads((wrong / KIT_FILE).read_text())
    config = doc["configs"][str(SEQ)]
    assert config["H_cycles"] == 2
    config["H_cycles"] = 3
    (wrong / KIT_FILE).write_text(json.dumps(doc))
    report_path = tmp_path / "report.json"
    assert main(["kit", "run", str(wrong), "--iterations", "2", "--json", str(report_path)]) == 1
    report = json.loads(report_path.read_text())
    assert not report["passed"]
    assert all(not r["passed"] and not r["timings"] for r in report["results"])
    assert "kit check failed" in capsys.readouterr().err


def test_run_refuses_a_damaged_artifact_in_one_line(kit: Path, tmp_path: Path, capsys):
    damaged = _copy(kit / "float32", tmp_path / "damaged")
    first = json.loads((damaged / KIT_FILE).read_text())["artifacts"][0]["file"]
    data = bytearray((damaged / first).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / first).write_bytes(bytes(data))
    assert main(["kit", "run", str(damaged)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and first in err and "sha256" in err


def test_run_needs_only_the_runtime_and_torch(kit: Path):
    """torch-mlir and the IREE compiler made unimportable, as on a GPU machine that has
    neither: the kit still runs and passes."""
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'torch_mlir' or name.startswith('iree.compiler'):\n"
        "            raise ImportError(f'{name} is not installed here')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from hrm_mlir.cli.app import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["kit", "run", str(kit / "float32"), "--iterations", "2", "--warmup", "0"]
    done = subprocess.run(
        [sys.executable, "-c", blocker, *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "every artifact matches PyTorch" in done.stdout
    assert "no iree-compile here" in done.stdout  # the CPU was read from /proc/cpuinfo
    done = subprocess.run(
        [sys.executable, "-c", blocker, "doctor"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "unavailable: iree-base-compiler is not installed" in done.stdout


def test_cuda_kit_builds_here_and_says_why_it_cannot_run_here(tmp_path: Path, capsys):
    from tests.conftest import random_model, write_checkpoint

    ck = write_checkpoint(tmp_path / "ckpt", random_model(), dataset_seq_len=SEQ)
    out = tmp_path / "cuda-kit"
    assert main(["kit", "build", str(ck), "-o", str(out), "--target", "cuda"]) == 0
    _, doc = read_kit(out)
    assert doc["target"] == "cuda:sm_80" and "--iree-cuda-target=sm_80" in doc["flags"]
    assert b"cuda-nvptx-fb" in (out / doc["artifacts"][0]["file"]).read_bytes()
    capsys.readouterr()
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the refusal below is for machines without")
    assert main(["kit", "run", str(out)]) == 2
    assert "torch sees no CUDA device here" in capsys.readouterr().err


def test_build_leaves_no_partial_kit_when_a_compile_fails(tmp_path: Path, capsys, monkeypatch):
    """No kit directory, half-written or not; only the compiler's input, kept where the
    one-line error says, to reproduce the failure with."""
    from tests.conftest import random_model, write_checkpoint

    monkeypatch.chdir(tmp_path)
    ck = write_checkpoint(tmp_path / "ckpt", random_model(), dataset_seq_len=SEQ)
    out = tmp_path / "kit"
    argv = ["kit", "build", str(ck), "-o", str(out), "--iree-flag=--no-such-flag"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--no-such-flag" in err
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["ckpt", "stamped.mlirbc"] and f"input kept at {tmp_path}/stamped" in err
    out.mkdir()
    (out / "something").write_text("")
    assert main(["kit", "build", str(ck), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["81", "81:", "x:1", "81:0", "81:1,a", ":4"])
def test_bad_shapes_are_refused(text: str):
    with pytest.raises(HrmMlirError, match="SEQ_LEN:BATCH"):
        parse_shape(text)


def test_parse_shape():
    assert parse_shape("81:1,64,256") == (81, [1, 64, 256])


def test_random_state_is_seeded_and_non_degenerate():
    config = tiny_config()
    a, b, c = random_state(config, 0), random_state(config, 0), random_state(config, 1)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a)
    assert a["inner.q_head.weight"].abs().min() > 0  # upstream zero-inits it
    assert a["inner.puzzle_emb.weights"].std() > 0.5


def test_cpuinfo_features_in_llvm_names():
    have, told = cpuinfo_features("processor : 0\nflags : fpu sse4_2 avx2 fma avx512_bf16\n")
    assert have == {"sse4.2", "avx2", "fma", "avx512bf16"}
    assert {"avx512f", "avx512bf16", "amx-tile"} <= told
    assert cpuinfo_features("Features : fp asimd\n") == (frozenset(), frozenset())


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(kit=99), "kit format 99"),
        (lambda d: d.update(target="tpu:v5"), "not one kits run on"),
        (lambda d: d["configs"].clear(), "not a readable kit description"),
        (lambda d: d.pop("artifacts"), "not a readable kit description"),
    ],
    ids=["format", "target", "no-config", "no-artifacts"],
)
def test_a_bad_description_is_one_line(kit: Path, tmp_path: Path, capsys, edit, expected):
    bad = _copy(kit / "float32", tmp_path / "bad")
    doc = json.loads((bad / KIT_FILE).read_text())
    edit(doc)
    (bad / KIT_FILE).write_text(json.dumps(doc))
    assert main(["kit", "run", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expected in err and KIT_FILE in err


def _thread_cpu_s() -> dict[str, float]:
    """CPU seconds by thread of this process (utime + stime of /proc/self/task/*/stat)."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[task.name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def test_a_vulkan_kit_runs_on_lavapipe_and_leaves_no_thread_spinning(tmp_path: Path, capsys):
    """A Vulkan kit runs in process on lavapipe (a staging copy reads results back, where IREE
    3.13's `to_host` imported a misaligned numpy allocation and failed), matches PyTorch, and
    releases its device: IREE cached it for the life of the process, and lavapipe's threads then
    spun two cores until exit, slowing every test after this one (and the Ray tests 10x)."""
    import time

    from hrm_mlir.runtime.tool import vulkan_devices
    from tests.conftest import random_model, write_checkpoint

    devices = vulkan_devices()
    if not devices or "llvmpipe" not in devices[0]:
        pytest.skip("needs lavapipe (scripts/system_packages.sh)")
    ck = write_checkpoint(tmp_path / "ckpt", random_model(), dataset_seq_len=SEQ)
    out = tmp_path / "vk"
    argv = ["kit", "build", str(ck), "-o", str(out), "--target", "vulkan", "--dtype", "float32"]
    assert main(argv) == 0  # bfloat16 does not compile for Vulkan (docs/known-issues.md)
    before = set(_thread_cpu_s())
    capsys.readouterr()
    assert main(["kit", "run", str(out), "--iterations", "2", "--warmup", "1"]) == 0
    assert "every artifact matches PyTorch" in capsys.readouterr().out
    started = {t: s for t, s in _thread_cpu_s().items() if t not in before}
    time.sleep(1.0)
    burnt = {t: s - started[t] for t, s in _thread_cpu_s().items() if t in started}
    assert sum(burnt.values()) < 0.1, f"threads the Vulkan run left burn CPU: {burnt}"
