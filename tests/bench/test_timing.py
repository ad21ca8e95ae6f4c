"""The interleaved timing loop shared by `bench` and `kit run` (`hrm_mlir.bench.timing`)."""

from __future__ import annotations

import time

from hrm_mlir.bench.timing import MIN_ROUNDS, interleaved


def test_rounds_rotate_and_each_timed_call_follows_an_untimed_one():
    calls: list[str] = []
    runtimes = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = interleaved(
        runtimes,
        iterations=3,
        warmup=1,
        sync=lambda: calls.append("sync"),
        after_round=lambda: calls.append("round"),
    )
    expected = list("abc")  # the warm-up, in the mapping's order
    for order in ("abc", "bca", "cab"):  # untimed, sync, timed; the order rotating by round
        expected += [x for name in order for x in (name, "sync", name)] + ["round"]
    assert calls == expected
    assert {name: len(s) for name, s in samples.items()} == {"a": 3, "b": 3, "c": 3}


def test_a_time_limit_keeps_the_minimum_of_rounds():
    samples = interleaved(
        {"slow": lambda: time.sleep(0.002)}, iterations=50, warmup=0, time_limit_s=0.0
    )
    assert len(samples["slow"]) == MIN_ROUNDS
    assert all(ms >= 2.0 for ms in samples["slow"])
