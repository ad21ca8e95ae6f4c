"""The interleaved timing loop of `hrm-mlir bench` (`hrm_mlir.bench.measure`) and of
`hrm-mlir kit run` (`hrm_mlir.bench.kit_run`).

Samples are interleaved: after warm-up, each round calls every runtime once, in an order that
rotates from round to round, so machine noise hits all of them alike. Each timed call follows an
untimed call of the same runtime, as in an ACT loop: timed right after another runtime, a call
pays for that runtime's worker threads still spinning and for the caches it left (IREE at
batch 1: 217 ms right after ONNX Runtime, 187 ms right after itself).

Needs neither torch nor the compiler.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

MIN_ROUNDS = 3  # timed rounds kept however short `time_limit_s` is


def interleaved(
    runtimes: Mapping[str, Callable[[], object]],
    *,
    iterations: int,
    warmup: int,
    time_limit_s: float | None = None,
    sync: Callable[[], object] | None = None,
    after_round: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Milliseconds of each timed call of every runtime, by name.

    Args:
        runtimes: name -> one call of the runtime (its result ready when it returns).
        iterations: timed rounds, each calling every runtime twice (untimed, then timed).
        warmup: untimed rounds before them, in the mapping's order.
        time_limit_s: rounds stop once this has passed since the first (after `MIN_ROUNDS`).
        sync: called between the untimed and the timed call (a device that queues work:
            `torch.cuda.synchronize`).
        after_round: called after each timed round (`bench`'s GEMM peak probe).
    """
    samples: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(warmup):
        for fn in runtimes.values():
            fn()
    names = list(runtimes)
    began = time.perf_counter()
    for i in range(iterations):
        over = time_limit_s is not None and time.perf_counter() - began > time_limit_s
        if over and i >= MIN_ROUNDS:
            break
        for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate the order
            runtimes[name]()
            if sync is not None:
                sync()
            start = time.perf_counter()
            runtimes[name]()
            samples[name].append(1e3 * (time.perf_counter() - start))
        if after_round is not None:
            after_round()
    return samples
