"""`hrm-mlir evaluate --engine ray`: the bundled example's held-out split sharded over the actors
of a local Ray with 2 CPUs, against the local engine; resume, a killed worker, another run's
results. The tests that need Ray are skipped where it is not installed."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import hrm_mlir
from hrm_mlir.cli import main
from hrm_mlir.core import HrmMlirError
from hrm_mlir.evaluation import load_split
from hrm_mlir.evaluation.distributed import (
    MANIFEST,
    Artifact,
    ShardWorker,
    evaluate_on_ray,
    plan_shards,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "sudoku6x6"
DATA = EXAMPLE / "data"  # its held-out split, test: 500 puzzles


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 2 CPUs for this module, shut down after it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local(act_vmfb: Path, tmp_path_factory) -> dict:
    """The local engine's results, fixed steps and Q-halting (continuous batching), with their
    predictions (argmax) saved as `local-<q_halt>.pt`."""
    out = tmp_path_factory.mktemp("local")
    return {
        q: hrm_mlir.evaluate(
            act_vmfb, DATA, q_halt=q, predictions=out / f"local-{q}.pt", keep="preds"
        )
        for q in (False, True)
    }


def _same(got, want) -> None:
    assert got.metrics == want.metrics  # to the bit: the same sums in the same order
    assert (got.count, got.examples) == (want.count, want.examples) == (500, 500)
    assert got.exact.tolist() == want.exact.tolist()
    assert got.steps.tolist() == want.steps.tolist()
    assert (got.continuous, got.batch_size, got.max_steps) == (
        want.continuous,
        want.batch_size,
        want.max_steps,
    )


def _shard_files(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(out.glob("shard-*.npz"))}


def _meta(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return json.loads(str(f["meta"]))


@pytest.mark.parametrize("q_halt", [False, True], ids=["fixed-steps", "q-halt"])
def test_ray_gives_the_local_engines_metrics_and_answers(
    ray_cluster, act_vmfb, local, tmp_path, q_halt
):
    evaluated = hrm_mlir.evaluate(
        act_vmfb, DATA, q_halt=q_halt, engine="ray", workers=2, shards=4, out=tmp_path / "s",
        predictions=tmp_path / "ray.pt", keep="preds",
    )  # fmt: skip
    _same(evaluated.result, local[q_halt].result)
    assert local[q_halt].predictions is not None
    ours = torch.load(tmp_path / "ray.pt", weights_only=True)
    theirs = torch.load(local[q_halt].predictions, weights_only=True)
    assert set(ours) == set(theirs) and "preds" in ours
    for key, tensor in theirs.items():  # upstream's predictions file, the same to the bit
        assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), key
    assert evaluated.result.continuous is q_halt  # continuous batching per shard, as local
    ran = evaluated.sharded
    assert ran is not None and evaluated.engine == "ray"
    assert (ran.workers, len(ran.shards), ran.resumed, ran.retried) == (2, 4, [], [])
    assert [(s.start, s.stop) for s in ran.shards] == [(0, 150), (150, 300), (300, 400),
                                                       (400, 500)]  # fmt: skip
    assert list(_shard_files(tmp_path / "s")) == [f"shard-0000{i}.npz" for i in range(4)]
    assert json.loads((tmp_path / "s" / MANIFEST).read_text())["q_halt"] is q_halt


def test_resume_reruns_only_the_missing_shard(ray_cluster, act_vmfb, local, tmp_path):
    """Through the command line: a first run, one shard's file deleted, `--resume` recomputes
    that shard alone; then everything is read back without a worker; without `--resume` the
    results are refused."""
    out, report = tmp_path / "shards", tmp_path / "r.json"
    argv = ["evaluate", str(act_vmfb), "--data", str(DATA), "--engine", "ray", "--workers", "2",
            "--shards", "4", "--out", str(out), "--json", str(report)]  # fmt: skip
    assert main(argv) == 0
    first = _shard_files(out)
    (out / "shard-00002.npz").unlink()
    time.sleep(0.01)  # a rewritten file's mtime differs
    assert main([*argv, "--resume"]) == 0
    again = _shard_files(out)
    assert set(again) == set(first)
    changed = [name for name in again if again[name] != first[name]]
    assert changed == ["shard-00002.npz"]
    doc = json.loads(report.read_text())
    assert doc["engine"] == "ray" and doc["ray"]["resumed"] == [0, 1, 3]
    assert doc["ray"]["examples_run"] == 100 and doc["metrics"] == local[False].result.metrics
    resumed = hrm_mlir.evaluate(act_vmfb, DATA, engine="ray", out=out, resume=True)
    assert resumed.sharded is not None and resumed.sharded.workers == 0  # nothing left to run
    _same(resumed.result, local[False].result)
    assert _shard_files(out) == again
    with pytest.raises(HrmMlirError, match="holds the shards of an earlier run") as e:
        hrm_mlir.evaluate(act_vmfb, DATA, engine="ray", out=out)
    assert "\n" not in str(e.value)


def test_a_killed_worker_has_its_shard_rerun(ray_cluster, act_vmfb, local, tmp_path):
    """One actor killed (restartable) while its shard runs: Ray restarts it and reruns that
    shard; every example is counted once, and the metrics are the local engine's."""
    split = load_split(DATA)
    artifact = Artifact.from_vmfb(act_vmfb)
    killed: list[int] = []

    def kill_mid_shard(shard, actor) -> None:
        if shard.index == 2 and not killed:  # the second shard of a worker already warm
            killed.append(shard.index)
            time.sleep(0.15)  # into the shard (100 puzzles, 8 steps, one thread: ~0.5 s)
            ray_cluster.kill(actor, no_restart=False)

    result, ran = evaluate_on_ray(
        artifact, split, max_steps=8, q_halt=False, batch_size=50, out=tmp_path / "s",
        workers=2, shards=4, on_dispatch=kill_mid_shard,
    )  # fmt: skip
    assert killed == [2] and ran.retried == [2]
    rerun = _meta(tmp_path / "s" / "shard-00002.npz")
    assert rerun["rerun"] is True and rerun["seconds"] > 0.15  # it was killed inside the shard
    assert [_meta(p)["rerun"] for p in sorted((tmp_path / "s").glob("shard-*.npz"))] == [
        False, False, True, False,
    ]  # fmt: skip
    _same(result, local[False].result)


def test_each_worker_runs_iree_on_one_unpinned_thread(ray_cluster, act_vmfb):
    worker = ray_cluster.remote(num_cpus=1)(ShardWorker).remote(str(DATA), "test")
    try:
        shipped = ray_cluster.put(Artifact.from_vmfb(act_vmfb))
        state = ray_cluster.get(worker.ready.remote([shipped]))
    finally:
        ray_cluster.kill(worker)
    assert state["error"] is None and state["iree_threads"] == 1
    assert state["iree_threads_pinned"] == 0  # not every actor of a node on the first core


def test_a_resume_of_another_runs_results_is_refused(ray_cluster, act_vmfb, tmp_path, monkeypatch):
    out = tmp_path / "s"
    hrm_mlir.evaluate(act_vmfb, DATA, engine="ray", out=out, limit=100, shards=2)
    for change, message in [
        ({"max_steps": 4}, "max_steps 8 there, 4 now"),
        ({"q_halt": True}, "q_halt False there, True now"),
        ({"limit": 50}, "examples [0, 100] there, [0, 50] now"),
        ({"shards": 3}, "2 shards there, --shards 3 now"),
    ]:
        with pytest.raises(HrmMlirError, match=re.escape(message)) as e:
            hrm_mlir.evaluate(
                act_vmfb, DATA, engine="ray", out=out, resume=True, **{"limit": 100, **change}
            )
        assert "results of another run" in str(e.value) and "\n" not in str(e.value)

    class Compiling(Exception):
        pass

    def compile_reached(*args, **kwargs):
        raise Compiling

    # A checkpoint: refused before its compile, by the batch it would be compiled at
    # (min(--batch_size, examples): 100 here), and compiled when the run is the same.
    monkeypatch.setattr(Artifact, "from_checkpoint", compile_reached)
    with pytest.raises(HrmMlirError, match=re.escape("batch_size 50 there, 100 now")):
        hrm_mlir.evaluate(EXAMPLE, DATA, engine="ray", out=out, resume=True, limit=100,
                          batch_size=128)  # fmt: skip
    with pytest.raises(Compiling):
        hrm_mlir.evaluate(EXAMPLE, DATA, engine="ray", out=out, resume=True, limit=100,
                          batch_size=50)  # fmt: skip


def test_plan_shards_cuts_whole_batches_that_cover_the_range():
    shards = plan_shards(0, 500, 8, 50)
    assert [(s.start, s.stop) for s in shards] == [
        (0, 100), (100, 200), (200, 250), (250, 300), (300, 350), (350, 400), (400, 450),
        (450, 500),
    ]  # fmt: skip
    assert [(s.start, s.stop) for s in plan_shards(10, 75, 9, 16)] == [
        (10, 26), (26, 42), (42, 58), (58, 74), (74, 75),
    ]  # fmt: skip
    assert plan_shards(0, 0, 4, 50) == []


def test_a_range_of_the_split_is_a_slice_of_its_batches():
    split = load_split(DATA)
    whole = np.concatenate([x[:n] for x, _, _, n in split.batches(16)])
    parts = [split.batches(16, start=lo, stop=hi) for lo, hi in [(0, 37), (37, 300), (300, 999)]]
    assert np.array_equal(np.concatenate([x[:n] for p in parts for x, _, _, n in p]), whole)
    assert split.example_range(100, start=40, stop=250) == (40, 100)
    with pytest.raises(HrmMlirError, match="expected 0 <= start <= stop"):
        split.example_range(start=5, stop=2)


def test_without_ray_the_ray_engine_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as when not installed
    with pytest.raises(HrmMlirError, match=re.escape("pip install 'hrm-mlir[ray]'")) as e:
        hrm_mlir.evaluate(EXAMPLE, DATA, engine="ray", out=tmp_path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"out": "x"}, "--out: only with --engine ray"),
        ({"workers": 2, "resume": True}, "--workers, --resume: only with --engine ray"),
        ({"engine": "ray"}, "give --out DIR"),
        ({"engine": "ray", "out": "x", "runtime": "pytorch"}, "not with --runtime pytorch"),
        ({"engine": "spark"}, "--engine: expected local or ray"),
    ],
)
def test_the_engines_options_are_checked_first(kwargs, message):
    with pytest.raises(HrmMlirError, match=re.escape(message)):
        hrm_mlir.evaluate(EXAMPLE, DATA, **kwargs)


def test_an_address_nothing_answers_at_is_one_line_at_once(monkeypatch, tmp_path):
    """ray.init would wait for it without end; refused before anything compiles."""
    import socket

    pytest.importorskip("ray")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    began = time.perf_counter()
    for address, env in ((f"127.0.0.1:{port}", None), (None, f"ray://127.0.0.1:{port}")):
        if env is not None:
            monkeypatch.setenv("RAY_ADDRESS", env)
        with pytest.raises(HrmMlirError, match="nothing answers there") as e:
            hrm_mlir.evaluate(EXAMPLE, DATA, engine="ray", out=tmp_path / "out", address=address)
        assert "\n" not in str(e.value) and str(port) in str(e.value)
    assert time.perf_counter() - began < 30
    assert not (tmp_path / "out").exists()
