"""`hrm-mlir evaluate`: upstream's datasets, upstream's metrics, the bundled example's accuracy."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import hrm_mlir
from hrm_mlir.cli import main
from hrm_mlir.core import HrmMlirError
from hrm_mlir.evaluation import IGNORE_LABEL_ID, Metrics, load_split, write_split
from hrm_mlir.runner import CompiledACT

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "sudoku6x6"


def _documented() -> tuple[int, int]:
    """(solved, puzzles) as the README states them for the bundled checkpoint."""
    m = re.search(r"\*\*[\d.]+%\*\* \((\d+) of (\d+) puzzles", (REPO / "README.md").read_text())
    assert m, "README must state the bundled checkpoint's held-out accuracy"
    return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="module")
def compiled_and_pytorch():
    """The bundled example's held-out split, evaluated compiled and in PyTorch."""
    compiled = hrm_mlir.evaluate(EXAMPLE, EXAMPLE / "data", batch_size=50)  # act_vmfb's
    reference = hrm_mlir.evaluate(EXAMPLE, EXAMPLE / "data", runtime="pytorch", batch_size=100)
    return compiled, reference


def test_the_bundled_example_scores_its_documented_accuracy(compiled_and_pytorch):
    compiled, _ = compiled_and_pytorch
    solved, puzzles = _documented()
    r = compiled.result
    assert r.count == r.examples == puzzles
    assert int(r.exact.sum()) >= solved
    assert r.metrics["exact_accuracy"] == pytest.approx(r.exact.sum() / puzzles)
    assert r.metrics["steps"] == 8.0  # upstream's evaluation: every row runs halt_max_steps
    assert r.metrics["exact_accuracy"] <= r.metrics["accuracy"] <= 1.0
    assert 0.5 < r.metrics["q_halt_accuracy"] <= 1.0
    assert r.puzzles_per_second > 0


def test_compiled_and_pytorch_solve_the_same_puzzles(compiled_and_pytorch):
    """Upstream's loop (the PyTorch port) and the compiled one: the same exact count, and the
    same puzzles; a difference would be listed puzzle by puzzle."""
    compiled, reference = compiled_and_pytorch
    differ = np.flatnonzero(compiled.result.exact != reference.result.exact)
    assert differ.size == 0, f"puzzles solved by one runtime only: {differ.tolist()}"
    assert compiled.result.metrics["exact_accuracy"] == reference.result.metrics["exact_accuracy"]


def test_metrics_follow_upstreams_definitions():
    """Against a row-by-row reading of `ACTLossHead`: rows without labels do not count."""
    rng = np.random.default_rng(0)
    labels = rng.integers(1, 5, (6, 10)).astype(np.int32)
    labels[1, :3] = IGNORE_LABEL_ID
    labels[4] = IGNORE_LABEL_ID  # a padded row
    preds = labels.copy()
    preds[2, 5] = 0  # one wrong token
    preds[3] = 0  # all wrong
    preds[1, :3] = 0  # wrong only where ignored: still exact
    q_halt = np.array([1.0, -1.0, -0.5, -2.0, 3.0, 0.0], np.float32)
    steps = np.array([8, 8, 3, 8, 1, 5], np.int32)
    m = Metrics()
    exact = m.add(preds, labels, q_halt, steps)
    assert exact.tolist() == [True, True, False, False, False, True]
    assert m.count == 5
    got = m.result()
    assert got["exact_accuracy"] == pytest.approx(3 / 5)
    assert got["accuracy"] == pytest.approx((1 + 1 + 9 / 10 + 0 + 1) / 5)
    # q_halt >= 0 <-> exact: rows 0 (yes, yes), 1 (no, yes), 2 (no, no), 3 (no, no), 5 (yes, yes)
    assert got["q_halt_accuracy"] == pytest.approx(4 / 5)
    assert got["steps"] == pytest.approx((8 + 8 + 3 + 8 + 5) / 5)


def _dataset(tmp_path: Path, rows: int = 30) -> Path:
    """The first `rows` held-out puzzles of the example as a dataset of their own."""
    split = load_split(EXAMPLE / "data")
    s = split.sets[0]
    out = tmp_path / "data"
    write_split(out, np.asarray(s.inputs[:rows]), np.asarray(s.labels[:rows]), vocab_size=8)
    return out


def test_predictions_are_written_as_upstream_saves_them(tmp_path: Path):
    data = _dataset(tmp_path, rows=30)
    logits_file, preds_file, report = tmp_path / "p.pt", tmp_path / "q.pt", tmp_path / "m.json"
    argv = ["evaluate", str(EXAMPLE), "--data", str(data), "--runtime", "pytorch"]
    assert main([*argv, "--batch_size", "16", "--save-predictions", str(logits_file)]) == 0
    saved = torch.load(logits_file, weights_only=True)
    assert set(saved) == {"inputs", "labels", "puzzle_identifiers", "logits", "q_halt_logits",
                          "q_continue_logits", "steps"}  # fmt: skip
    assert saved["logits"].shape == (30, 36, 8) and saved["inputs"].shape == (30, 36)
    assert main([*argv, "--save-predictions", str(preds_file), "--predictions-argmax",
                 "--json", str(report), "--q_halt"]) == 0  # fmt: skip
    argmax = torch.load(preds_file, weights_only=True)
    assert "logits" not in argmax and argmax["preds"].shape == (30, 36)
    doc = json.loads(report.read_text())
    assert doc["count"] == 30 and doc["q_halt"] is True
    assert set(doc["metrics"]) == {"accuracy", "exact_accuracy", "q_halt_accuracy", "steps"}
    assert doc["metrics"]["steps"] < 8  # Q-halting stops easy puzzles early
    assert doc["puzzles_per_second"] > 0


def test_a_short_last_batch_is_padded_and_not_counted(tmp_path: Path):
    data = _dataset(tmp_path, rows=30)
    whole = hrm_mlir.evaluate(EXAMPLE, data, runtime="pytorch", batch_size=30).result
    padded = hrm_mlir.evaluate(EXAMPLE, data, runtime="pytorch", batch_size=16).result
    assert padded.count == whole.count == 30
    assert padded.exact.tolist() == whole.exact.tolist()
    assert hrm_mlir.evaluate(EXAMPLE, data, runtime="pytorch", limit=7).result.count == 7


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "test" / "all__labels.npy").unlink(), "all__labels.npy: missing"),
        (lambda d: shutil.rmtree(d / "test"), "missing (is"),
        (
            lambda d: (d / "test" / "dataset.json").write_text('{"seq_len": 36}'),
            "not upstream's dataset.json",
        ),
        (
            lambda d: np.save(d / "test" / "all__inputs.npy", np.zeros((30, 81), np.uint8)),
            "expected integer [examples, 36]",
        ),
        (lambda d: _nine_by_nine(d), "seq_len 81, but"),
        (lambda d: _set_meta(d, vocab_size=11), "vocab_size 11, but"),
        (lambda d: _identifiers(d, 2, 3), "identifiers.json: 2 names, but dataset.json has 3"),
    ],
)
def test_a_bad_dataset_is_one_line_before_any_compile(tmp_path, monkeypatch, damage, message):
    data = _dataset(tmp_path, rows=30)
    damage(data)

    def no_compile(*args, **kwargs):
        raise AssertionError("compiled before the dataset was checked")

    monkeypatch.setattr(CompiledACT, "from_checkpoint", no_compile)
    with pytest.raises(HrmMlirError, match=re.escape(message)) as e:
        hrm_mlir.evaluate(EXAMPLE, data)
    assert "\n" not in str(e.value)


def _nine_by_nine(data: Path) -> None:
    """A consistent dataset of another size: 81 tokens a puzzle."""
    for field in ("inputs", "labels"):
        np.save(data / "test" / f"all__{field}.npy", np.ones((30, 81), np.uint8))
    _set_meta(data, seq_len=81)


def _identifiers(data: Path, names: int, table: int) -> None:
    (data / "identifiers.json").write_text(json.dumps(["<blank>"] + ["x"] * (names - 1)))
    _set_meta(data, num_puzzle_identifiers=table)


def _set_meta(data: Path, **fields) -> None:
    path = data / "test" / "dataset.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_the_command_line_names_the_bad_file_and_exits_2(tmp_path: Path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["evaluate", str(EXAMPLE), "--data", str(missing)]) == 2
    assert f"{missing}: no such dataset directory" in capsys.readouterr().err


def test_an_arc_build_is_scored_by_voting_and_its_prediction_file_scores_the_same(tmp_path):
    """evaluate on an ARC build (the one of test_arc.py) votes as `--predictions FILE` does on
    the file it saved; the submission names every original task."""
    from tests.conftest import random_model, write_checkpoint
    from tests.evaluation.test_arc import TASKS, build

    data = build(tmp_path / "arc")
    names = json.loads((data / "identifiers.json").read_text())
    model = random_model(vocab_size=12, seq_len=900, num_puzzle_identifiers=len(names))
    ckpt = write_checkpoint(tmp_path / "ckpt", model, dataset_seq_len=900)
    saved, submission = tmp_path / "preds.pt", tmp_path / "submission.json"
    evaluated = hrm_mlir.evaluate(
        ckpt, data, runtime="pytorch", max_steps=2, predictions=saved, keep="preds",
        submission=submission,
    )  # fmt: skip
    assert evaluated.arc is not None
    assert evaluated.arc.rows == evaluated.result.examples == len(TASKS) * 6 + 2 * 6
    assert set(json.loads(submission.read_text())) == set(TASKS)
    report = tmp_path / "arc.json"
    assert main(["evaluate", "--data", str(data), "--predictions", str(saved),
                 "--json", str(report)]) == 0  # fmt: skip
    rescored = json.loads(report.read_text())["arc"]
    assert rescored == evaluated.arc.summary()


def test_continuous_batching_gives_each_puzzle_what_it_gets_alone(act_vmfb: Path):
    """Slots refilled as rows halt: the same answers and step counts as whole batches under
    Q-halting (rows do not interact), in fewer calls of @step."""
    data = EXAMPLE / "data"
    continuous = hrm_mlir.evaluate(act_vmfb, data, q_halt=True).result
    whole = hrm_mlir.evaluate(act_vmfb, data, q_halt=True, continuous=False).result
    assert continuous.continuous and not whole.continuous
    assert continuous.steps.tolist() == whole.steps.tolist()
    assert continuous.exact.tolist() == whole.exact.tolist()
    assert continuous.metrics == whole.metrics
    assert 1 <= continuous.metrics["steps"] < 8  # Q-halting stops easy puzzles early
    with pytest.raises(HrmMlirError, match="--continuous needs"):
        hrm_mlir.evaluate(act_vmfb, data, q_halt=False, continuous=True, limit=10)
