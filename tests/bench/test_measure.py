"""The benchmark harness: exact FLOP count, verified-before-timed runtimes, JSON and plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hrm_mlir.bench import measure as bench
from hrm_mlir.bench import peers
from hrm_mlir.cli.app import main
from hrm_mlir.compiler.options import CompileOptions
from tests.conftest import random_model, write_checkpoint


@pytest.mark.parametrize("overrides", [{}, {"puzzle_emb_ndim": 0, "H_cycles": 3}])
def test_step_flops_equal_torch_flop_counter(overrides):
    model = random_model(**overrides)
    args = bench.random_step_inputs(model.config, 3)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.inner(*args)
    assert bench.step_flops(model.config, 3) == counter.get_total_flops()


def test_bench_command_times_verified_runtimes(tmp_path: Path, capsys):
    ckpt = write_checkpoint(tmp_path / "ck", random_model(), dataset_seq_len=16)
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    argv = ["bench", str(ckpt), "--batch_sizes", "1,2", "--runtimes", "eager,iree,iree-dynamic"]
    argv += ["--iterations", "3", "--warmup", "1", "--act-steps", "2", "--threads", "1"]
    assert main([*argv, "--json", str(out_json), "--plot", str(out_png)]) == 0
    doc = json.loads(out_json.read_text())
    rows = {(r["runtime"], r["batch_size"]): r for r in doc["results"]}
    assert set(rows) == {(r, b) for r in ("eager", "iree", "iree-dynamic") for b in (1, 2)}
    assert all(len(r["samples_ms"]) == 3 and r["median_ms"] > 0 for r in rows.values())
    assert rows["iree", 1]["verified"].startswith("max rel-L2")
    assert rows["iree-dynamic", 2]["verified"].startswith("max rel-L2")  # one artifact, 2 sizes
    assert rows["eager", 2]["vs_eager"] == 1.0
    assert doc["threads"] == 1 and doc["peak_gflops"] > 0
    assert [a["steps"] for a in doc["act"]] == [2, 2]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "x onnxruntime" in capsys.readouterr().out


def test_a_peer_that_fails_to_compile_is_noted_not_fatal(monkeypatch):
    def broken_compile(fn):
        def run(*args):
            raise RuntimeError("inductor lowering failed\nmore detail")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    notes: list[str] = []
    model = random_model()
    runners = bench._runners(model, 1, ["eager", "compile"], 1, CompileOptions(), None, None, notes)
    assert list(runners) == ["eager"]
    assert notes == ["torch.compile failed at batch 1, not timed: inductor lowering failed"]


def test_each_timed_call_follows_a_call_of_the_same_runtime(monkeypatch):
    calls: list[str] = []
    runners = {name: (lambda name=name: calls.append(name), "ok") for name in ("eager", "iree")}
    monkeypatch.setattr(bench, "_runners", lambda *a, **k: runners)
    monkeypatch.setattr(bench, "measure_peak_gflops", lambda threads: 1.0)
    monkeypatch.setattr(bench.PeakProbe, "__call__", lambda self: 1.0)
    report = bench.bench(
        random_model(), batch_sizes=[1], runtimes=["eager"], threads=1, iterations=3, warmup=0,
        act_steps=0,
    )  # fmt: skip
    # rounds rotate the order; within a round each runtime runs twice in a row (untimed, timed)
    assert calls == ["eager"] * 2 + ["iree"] * 4 + ["eager"] * 4 + ["iree"] * 2
    assert [len(r.samples_ms) for r in report.results] == [3, 3]


def test_openvino_is_verified_then_timed_in_float32(tmp_path: Path):
    pytest.importorskip("openvino")
    ckpt = write_checkpoint(tmp_path / "ck", random_model(), dataset_seq_len=16)
    out_json = tmp_path / "b.json"
    argv = ["bench", str(ckpt), "--batch_sizes", "2", "--runtimes", "eager,onnx,openvino"]
    argv += ["--iterations", "3", "--warmup", "1", "--act-steps", "0", "--threads", "1"]
    assert main([*argv, "--json", str(out_json)]) == 0
    rows = {r["runtime"]: r for r in json.loads(out_json.read_text())["results"]}
    ov = rows["openvino"]
    assert ov["verified"].startswith("max rel-L2")  # checked against eager before timing
    assert ov["precision"] == "f32"  # not bf16 on AMX / AVX512_BF16 CPUs
    assert len(ov["samples_ms"]) == 3 and ov["median_ms"] > 0
    assert ov["vs_eager"] > 0


def test_a_missing_openvino_is_skipped_without_exporting(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    monkeypatch.setattr(peers.OnnxExport, "path", lambda self: pytest.fail("exported ONNX"))
    model = random_model()
    runners = bench._runners(model, 1, ["eager", "openvino"], 1, CompileOptions(), None, None, [])
    assert list(runners) == ["eager"]
    assert "openvino is not installed" in capsys.readouterr().out


def test_an_unknown_runtime_is_refused_before_anything_loads(tmp_path, capsys):
    """A typo would time nothing after minutes of compiling; the checkpoint path is not even
    read (it does not exist)."""
    from hrm_mlir.cli import main

    missing = tmp_path / "no-checkpoint"
    assert main(["bench", str(missing), "--runtimes", "eager,onnxrt"]) == 2
    err = capsys.readouterr().err
    assert "--runtimes: unknown onnxrt; known: eager,compile,onnx,openvino,iree" in err
    assert str(missing) not in err


def test_bf16_bench_times_each_runtime_against_the_float32_truth(tmp_path: Path, capsys):
    """The bf16 step, its promoted artifact and the float32 artifact in one run; each runtime
    judged against the float32 model on the same inputs over >= 32 rows before it is timed."""
    model = random_model(forward_dtype="bfloat16")
    ckpt = write_checkpoint(tmp_path / "ck", model, dataset_seq_len=16)
    out_json = tmp_path / "b.json"
    argv = ["bench", str(ckpt), "--dtype", "bfloat16", "--batch_sizes", "2", "--threads", "1"]
    argv += ["--runtimes", "eager,iree-bf16,iree-f32", "--iterations", "2", "--warmup", "1"]
    assert main([*argv, "--act-steps", "0", "--json", str(out_json)]) == 0
    doc = json.loads(out_json.read_text())
    assert doc["dtype"] == "bfloat16" and doc["machine"]["cpu"]
    rows = {r["runtime"]: r for r in doc["results"]}
    assert list(rows) == ["eager", "iree-bf16", "iree-f32"]
    assert all(len(r["samples_ms"]) == 2 and r["median_ms"] > 0 for r in rows.values())
    assert {r: rows[r]["precision"] for r in rows} == {
        "eager": "bf16",
        "iree-bf16": "f32 (bf16 I/O)",  # the default compile promotes
        "iree-f32": "f32",
    }
    for r in rows.values():
        truth = r["truth"]
        assert truth["passed"] and truth["rows"] == 32  # batch 2 x 16 draws
        assert set(truth["rel_l2"]) == set(bench.STEP_OUTPUTS)
        assert r["verified"].startswith("max rel-L2")
        assert r["vs_eager"] > 0 and r["vs_iree_f32"] > 0
    eager, f32 = rows["eager"]["truth"]["rel_l2"], rows["iree-f32"]["truth"]["rel_l2"]
    assert eager == rows["eager"]["truth"]["pytorch_bf16_rel_l2"]  # the yardstick itself
    assert max(f32.values()) < 1e-4 < max(eager.values())  # float32 is the truth, bf16 is not
    assert rows["iree-f32"]["vs_iree_f32"] == 1.0
    assert any(
        n.startswith("iree-bf16, batch 2: bfloat16 computed in float32") for n in doc["notes"]
    )
    printed = capsys.readouterr().out
    assert "bfloat16" in printed and "x iree-f32" in printed and doc["machine"]["cpu"] in printed


def test_a_bf16_runtime_far_from_the_float32_truth_is_reported_failing():
    model = random_model(forward_dtype="bfloat16")
    twin = bench.float32_twin(model)
    draws = [bench.random_step_inputs(model.config, 8, seed=d) for d in range(4)]
    with torch.no_grad():
        ref = [model.inner(*a) for a in draws]
        truth = [twin.inner(*bench.upcast(a)) for a in draws]
    assert bench._judged(ref, ref, truth, model.config, strict=False)["passed"]
    off = [(d[0], 2 * d[1], *d[2:]) for d in ref]  # z_L doubled
    verdict = bench._judged(off, ref, truth, model.config, strict=False)
    assert not verdict["passed"] and verdict["problems"][0].startswith("z_L: ")
    assert bench._truth_text(verdict).startswith("FAILS: z_L: ")
    # a float32 runtime is also held to the float32 tolerance: PyTorch bf16's outputs fail it
    assert not bench._judged(ref, ref, truth, model.config, strict=True)["passed"]


def test_a_runtime_unknown_for_the_dtype_is_refused_before_anything_loads(tmp_path, capsys):
    missing = tmp_path / "no-checkpoint"
    argv = ["bench", str(missing), "--dtype", "bfloat16", "--runtimes", "eager,iree"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "--runtimes: unknown iree for --dtype bfloat16; "
        "known: eager,compile,onnx,openvino,iree-bf16,iree-f32"
    )
    assert len(err.splitlines()) == 1 and str(missing) not in err
