"""Scale-out on Ray: a split cut into shards, each evaluated by a Ray actor that loaded the
compiled `@act` once, and the shards' answers merged into the `Evaluation` the local engine
gives (`hrm-mlir evaluate --engine ray`).

- The driver compiles once (or reads the .vmfb) and puts the artifact's bytes in Ray's object
  store, so no node needs a shared copy of it. A parameter archive is passed by its path, and
  the dataset directory too: every node must read them at the same path (a shared filesystem,
  or the same files copied to each node). A checkpoint's external parameters compiled here go
  through the object store with the artifact.
- A shard is a contiguous range of the split's examples, whole batches of the compiled batch
  size (`plan_shards`). Each actor takes one CPU (`num_cpus=1`) and runs IREE on one worker
  thread, not pinned to a core, shard after shard, with continuous batching under Q-halting as
  the local engine does (`engine.evaluate_split` over the shard's range).
- The driver writes each shard's answers as it gets them, one file per shard in the output
  directory, atomically, beside a `manifest.json` that names the run (the artifact's digest,
  the dataset's, the split, the range, max_steps, Q-halting, batch, what is kept, the shard
  ranges). `resume` keeps the shards already there and runs the rest; the results of another
  run are refused in one line.
- A killed actor is restarted by Ray (`max_restarts`), which reruns the shard it had
  (`max_task_retries`); a worker that stays dead hands its shard to the others. A shard's
  answers are written once, by the driver, so none is lost or counted twice.
- The merge walks the split as the local engine does, batch by batch, with the shards'
  answers: the metrics, per-example arrays and predictions are the local engine's, to the bit.

Ray is an optional extra (`pip install 'hrm-mlir[ray]'`), imported only inside functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hrm_mlir.core.errors import HrmMlirError, first_line
from hrm_mlir.core.fileio import write_atomic
from hrm_mlir.evaluation.dataset import FIELDS, Split, load_split
from hrm_mlir.evaluation.engine import Evaluation
from hrm_mlir.evaluation.metrics import Metrics

if TYPE_CHECKING:
    import torch

    from hrm_mlir.checkpoint.load import Checkpoint
    from hrm_mlir.compiler.options import CompileOptions
    from hrm_mlir.core.types import DType
    from hrm_mlir.exporter.params import Params
    from hrm_mlir.models.config import ReasoningConfig
    from hrm_mlir.runner import CompiledACT

FORMAT = "hrm-mlir-shards/1"
MANIFEST = "manifest.json"
SHARDS_PER_WORKER = 4  # the default --shards: a few per worker, for balance and for --resume
MAX_RESTARTS = 3  # Ray restarts a dead actor this often, rerunning the shard it had
MAX_ATTEMPTS = 3  # a shard whose worker died for good goes to another this often
NEEDS_RAY = "--engine ray needs Ray: pip install 'hrm-mlir[ray]'"


def require_ray() -> None:
    """Refuse, in one line, to go on without Ray installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise HrmMlirError(NEEDS_RAY) from None


@dataclass(frozen=True)
class Artifact:
    """A compiled `@act` as the actors get it: its bytes, its model config, its batch size, and
    its external parameters (an archive's path every node reads, or tensors to ship)."""

    vmfb: bytes
    config: ReasoningConfig
    batch_size: int | None  # None: a symbolic batch
    parameters: Path | Mapping[str, torch.Tensor] | None = None

    @classmethod
    def from_vmfb(cls, path: str | Path, *, parameters: str | Path | None = None) -> Artifact:
        """Read an `@act` .vmfb (checked by loading it here once, as the local engine would)."""
        from hrm_mlir.runner import CompiledACT

        archive = None if parameters is None else Path(parameters).resolve()
        act = CompiledACT.from_vmfb(path, parameters=archive)
        return cls(Path(path).read_bytes(), act.config, act.batch_size, archive)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: Checkpoint,
        *,
        dtype: DType,
        batch_size: int,
        options: CompileOptions | None = None,
        params: Params | None = None,
        cache: bool = True,
        status: Callable[[str], None] | None = None,
    ) -> Artifact:
        """Export a checkpoint's `@act` and compile it for this machine, or read it from the
        cache, as `CompiledACT.from_checkpoint` does, keeping the bytes."""
        from hrm_mlir.compiler.cache import compile_act

        built = compile_act(
            checkpoint,
            dtype=dtype,
            batch_size=batch_size,
            options=options,
            params=params,
            cache=cache,
            status=status,
        )
        built.module.close()  # loaded here once as a check; the actors load their own copies
        return cls(built.vmfb, built.config, batch_size, built.parameters)

    def digest(self) -> str:
        """sha256 of the artifact's bytes and of its external parameters."""
        h = hashlib.sha256(self.vmfb)
        if isinstance(self.parameters, Path):
            with self.parameters.open("rb") as f:
                while block := f.read(1 << 24):
                    h.update(block)
        elif self.parameters is not None:
            from hrm_mlir.exporter.archive import host_bytes

            for name in sorted(self.parameters):
                h.update(name.encode())
                h.update(host_bytes(self.parameters[name]).tobytes())
        return h.hexdigest()

    def load(self) -> CompiledACT:
        """The artifact loaded in this process (an actor's copy)."""
        from hrm_mlir.runner import CompiledACT
        from hrm_mlir.runtime.module import CompiledModule

        module = CompiledModule(self.vmfb, parameters=self.parameters)
        return CompiledACT(module, self.config, self.batch_size)


@dataclass(frozen=True)
class Shard:
    """Examples `start` to `stop` (exclusive) of the split, in its order."""

    index: int
    start: int
    stop: int

    @property
    def examples(self) -> int:
        return self.stop - self.start

    @property
    def file(self) -> str:
        return f"shard-{self.index:05d}.npz"

    def __str__(self) -> str:
        return f"shard {self.index} (examples {self.start}..{self.stop})"


def plan_shards(first: int, end: int, count: int, batch_size: int) -> list[Shard]:
    """`count` contiguous shards of examples `first`..`end`, each of whole batches (the last
    batch of the range excepted), their sizes within one batch of each other; fewer when the
    range has fewer batches."""
    batches = -(-(end - first) // batch_size)
    count = max(min(count, batches), 0)
    shards, at = [], 0
    for i in range(count):
        size = batches // count + (i < batches % count)
        lo, hi = first + at * batch_size, min(first + (at + size) * batch_size, end)
        shards.append(Shard(i, lo, hi))
        at += size
    return shards


@dataclass
class ShardedRun:
    """How the Ray engine ran: where the shards are, and what this run computed."""

    out: Path
    workers: int  # actors started (0: every shard was read back from `out`)
    shards: list[Shard]
    resumed: list[int] = field(default_factory=list)  # shards read back from `out`
    retried: list[int] = field(default_factory=list)  # shards rerun after their worker died
    seconds: float = 0.0  # the shards run now: from the workers' being ready to the last one

    @property
    def examples_run(self) -> int:
        """Examples evaluated by this run (not read back)."""
        done = set(self.resumed)
        return sum(s.examples for s in self.shards if s.index not in done)

    def as_dict(self) -> dict:
        return {
            "out": str(self.out),
            "workers": self.workers,
            "shards": len(self.shards),
            "resumed": self.resumed,
            "retried": self.retried,
            "examples_run": self.examples_run,
            "seconds": round(self.seconds, 3),
        }


def evaluate_on_ray(
    artifact: Artifact | Callable[[], Artifact],
    split: Split,
    *,
    max_steps: int,
    q_halt: bool,
    batch_size: int,
    out: str | Path,
    limit: int | None = None,
    keep: str | None = None,
    continuous: bool = False,
    resume: bool = False,
    address: str | None = None,
    workers: int | None = None,
    shards: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    status: Callable[[str], None] | None = None,
    on_dispatch: Callable[[Shard, Any], None] | None = None,
) -> tuple[Evaluation, ShardedRun]:
    """Evaluate `split` (its first `limit` examples) on Ray actors, shard by shard, into `out`.

    `artifact`, or a function that makes it (a compile), which is called only after the
    arguments and `out` are checked. `batch_size`: rows per call (the artifact's own batch
    where it has one). `keep`, `continuous` and `progress` as in `engine.evaluate_split`
    (`progress` after each shard). `address`: a Ray cluster to join (default: the Ray this
    process is connected to, else `RAY_ADDRESS`, else a local Ray on this machine's CPUs);
    `workers`: actors, one CPU each (default: the cluster's CPUs); `shards` (default:
    `SHARDS_PER_WORKER` per worker, or with `resume` those of the run in `out`).
    `on_dispatch(shard, actor)` as each shard is handed to an actor (tests kill one there).
    Returns the merged `Evaluation` and how it ran.
    """
    if max_steps < 1:
        raise HrmMlirError(f"--max_steps must be >= 1, got {max_steps}")
    if continuous and not q_halt:
        raise HrmMlirError("--continuous needs the compiled @act and --q_halt")
    for name, value in (("--workers", workers), ("--shards", shards)):
        if value is not None and value < 1:
            raise HrmMlirError(f"{name} must be >= 1, got {value}")
    if keep not in (None, "logits", "preds"):
        raise HrmMlirError(f"predictions keep logits or preds, got {keep!r}")
    require_ray()
    check_address(address)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HrmMlirError(f"{out}: not a directory (--out names the shards' directory)")
    first, end = split.example_range(limit)
    old = _read_manifest(out)
    if old is not None and not resume:
        raise HrmMlirError(
            f"{out}: holds the shards of an earlier run ({MANIFEST}): --resume to finish or "
            "reuse them, or give another --out"
        )
    fields: dict[str, Any] = {
        "format": FORMAT,
        "model": None,
        "data": str(split.directory.parent.resolve()),
        "split": split.directory.name,
        "dataset": _split_digest(split),
        "examples": [first, end],
        "max_steps": max_steps,
        "q_halt": q_halt,
        "batch_size": batch_size,
        "continuous": continuous,
        "keep": keep,
    }
    if not isinstance(artifact, Artifact):
        if old is not None:  # refused before the compile
            _same_run(out, old, fields, skip=("model",))
        artifact = artifact()
    b = artifact.batch_size or batch_size
    fields.update(model=artifact.digest(), batch_size=b)
    planned = None
    if old is not None:
        _same_run(out, old, fields)
        if shards is not None and len(old["shards"]) != shards:
            raise HrmMlirError(
                f"{out}/{MANIFEST}: results of another run ({len(old['shards'])} shards there, "
                f"--shards {shards} now): --shards {len(old['shards'])}, or give another --out"
            )
        planned = [Shard(i, lo, hi) for i, (lo, hi) in enumerate(old["shards"])]
    out.mkdir(parents=True, exist_ok=True)

    import ray

    joined = False
    actors: list[Any] = []
    try:
        manifest = old
        if manifest is None or planned is None:
            joined = _connect(address, status)
            workers = _workers(workers)
            planned = plan_shards(first, end, shards or SHARDS_PER_WORKER * workers, b)
            manifest = {**fields, "shards": [[s.start, s.stop] for s in planned]}
            write_atomic(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        run_id = _run_id(manifest)
        results: dict[int, dict[str, np.ndarray]] = {}
        for s in planned:
            kept = _read_shard(out / s.file, s, run_id)
            if kept is not None:
                results[s.index] = kept
        report = ShardedRun(out, 0, planned, resumed=sorted(results))
        todo = [s for s in planned if s.index not in results]
        if progress is not None:
            progress(sum(planned[i].examples for i in results), end - first)
        if todo:
            joined = _connect(address, status) or joined
            shipped = ray.put(artifact)  # once into the object store, held until the end
            actors = _start_workers(shipped, split, min(_workers(workers), len(todo)), status)
            report.workers = len(actors)
            if status is not None:
                again = f", {len(results)} read back from {out}" if results else ""
                on = f"{len(actors)} Ray worker{'s' if len(actors) != 1 else ''}"
                status(f"evaluating {len(todo)} shards on {on}{again} ...")
            job = {"max_steps": max_steps, "q_halt": q_halt, "batch_size": b,
                   "continuous": continuous, "keep": keep}  # fmt: skip
            began = time.perf_counter()
            for shard, answer in _schedule(todo, actors, shipped, job, report, on_dispatch):
                meta = {**answer["meta"], "run": run_id, "index": shard.index}
                _write_shard(out / shard.file, answer["arrays"], shard, meta)
                results[shard.index] = answer["arrays"]
                if meta["rerun"] and shard.index not in report.retried:
                    report.retried.append(shard.index)
                if progress is not None:
                    progress(sum(planned[i].examples for i in results), end - first)
            report.seconds = time.perf_counter() - began
    finally:
        for actor in actors:
            ray.kill(actor)
        if joined:
            ray.shutdown()
    report.retried.sort()
    evaluation = _merge(split, planned, results, out, limit=limit, batch_size=b, keep=keep)
    evaluation.max_steps, evaluation.q_halt, evaluation.continuous = max_steps, q_halt, continuous
    evaluation.seconds = report.seconds
    return evaluation, report


class ShardWorker:
    """A Ray actor: the artifact loaded once (IREE on `threads` worker threads), the split
    memory-mapped, and shard after shard evaluated by `engine.evaluate_split`.

    The artifact comes with each call, as a reference to it in the object store inside a list
    (`shipped`), and is fetched and loaded by the first: a restarted actor, whose retried call
    comes first, loads it again. (Creation arguments in the object store are what Ray warns
    about for restartable actors.)
    """

    def __init__(self, data: str, split: str, threads: int = 1) -> None:
        import warnings

        import ray

        self.data, self.split_name, self.threads = data, split, threads
        self.runner: Any = None
        self.error: str | None = None
        self.runs = 0
        with warnings.catch_warnings():  # Ray 2.60 warns of its own use of a deprecated name
            warnings.simplefilter("ignore", DeprecationWarning)
            self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)

    def _load(self, shipped: list[Any]) -> None:
        import ray

        if self.runner is not None or self.error is not None:
            return
        try:
            from iree import runtime as rt

            # Before this process's first IREE device: `threads` worker threads, unpinned.
            # (--task_topology_max_group_count=1 would pin the one worker to the first core:
            # every actor of a node on CPU 0, two workers no faster than one.)
            rt.flags.parse_flags(f"--task_topology_group_count={self.threads}")
            from hrm_mlir.evaluation.engine import CompiledRunner

            artifact: Artifact = ray.get(shipped[0])
            self.split = load_split(self.data, self.split_name)
            self.runner = CompiledRunner(artifact.load())
        except HrmMlirError as e:
            self.error = f"{e} (on the Ray worker at {socket.gethostname()})"

    def ready(self, shipped: list[Any]) -> dict:
        """Load the artifact: the error that stopped it, or None; the process, its IREE worker
        threads, and how many of them are pinned to fewer CPUs than the process has."""
        self._load(shipped)
        tasks = Path("/proc/self/task")
        threads = [int(t.name) for t in tasks.glob("*") if _comm(t).startswith("iree-worker")]
        everywhere = _affinity(0)
        pinned = [t for t in threads if _affinity(t) not in (None, everywhere)]
        return {"error": self.error, "pid": os.getpid(), "iree_threads": len(threads),
                "iree_threads_pinned": len(pinned)}  # fmt: skip

    def run(self, shipped: list[Any], start: int, stop: int, job: dict) -> dict:
        """Evaluate examples `start`..`stop`: their answers, for the driver to write."""
        from hrm_mlir.evaluation.engine import evaluate_split

        self._load(shipped)
        if self.error is not None:
            raise HrmMlirError(self.error)
        self.runs += 1
        keep = "logits" if job["keep"] == "logits" else "preds"
        r = evaluate_split(
            self.runner, self.split, max_steps=job["max_steps"], q_halt=job["q_halt"],
            batch_size=job["batch_size"], keep=keep, continuous=job["continuous"],
            start=start, stop=stop,
        )  # fmt: skip
        p = r.predictions
        preds = p["preds"] if keep == "preds" else p["logits"].argmax(-1)
        vocab = self.split.metadata.vocab_size
        arrays = {
            "preds": preds.astype(np.uint8 if vocab <= 256 else np.int32),
            "q_halt_logits": p["q_halt_logits"],
            "q_continue_logits": p["q_continue_logits"],
            "steps": p["steps"],
            "exact": r.exact,
        }
        if keep == "logits":
            arrays["logits"] = p["logits"]
        meta = {
            "count": r.count,
            "metrics": r.metrics,
            "seconds": r.seconds,
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            # A restarted actor's first shard is the one it was killed in: one is in flight.
            "rerun": self.restarted and self.runs == 1,
        }
        return {"arrays": arrays, "meta": meta}


def _comm(task: Path) -> str:
    """A thread's name (Linux; empty elsewhere)."""
    try:
        return (task / "comm").read_text().strip()
    except OSError:
        return ""


def _affinity(thread: int) -> set[int] | None:
    """The CPUs a thread (0: this one) may run on (Linux; None elsewhere)."""
    try:
        return os.sched_getaffinity(thread)
    except (OSError, AttributeError):
        return None


_ADDRESS = re.compile(r"(?:ray://)?\[?([^\[\]/]+?)\]?:(\d+)")
ADDRESS_TIMEOUT_S = 5.0


def check_address(address: str | None) -> None:
    """Refuse in one line a Ray address (`--address`, else `RAY_ADDRESS`) that nothing answers
    at: `ray.init` waits for such a cluster without end (seen: over 5 minutes, logging a retry
    every 5 s). Only HOST:PORT and ray://HOST:PORT are checked; `auto` and `local` are Ray's."""
    address = address or os.environ.get("RAY_ADDRESS")
    m = _ADDRESS.fullmatch(address or "")
    if address is None or m is None:
        return
    try:
        with socket.create_connection((m.group(1), int(m.group(2))), ADDRESS_TIMEOUT_S):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise HrmMlirError(
            f"--address {address}: nothing answers there ({why}): start the cluster's head "
            "(`ray start --head`) and give the address it prints"
        ) from None


def _connect(address: str | None, status: Callable[[str], None] | None) -> bool:
    """Join `address`, or start a local Ray; True when this call started or joined one."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    if status is not None:
        where = f"the Ray cluster at {address}" if address else "Ray"
        status(f"starting {where} ...")
    try:
        if address is None:  # RAY_ADDRESS if set, else a new local Ray
            ray.init(include_dashboard=False, logging_level=logging.ERROR)
        else:
            ray.init(address=address, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as e:
        shown = address or os.environ.get("RAY_ADDRESS") or "a local Ray"
        raise HrmMlirError(f"--address {shown}: cannot start Ray there: {first_line(e)}") from None
    return True


def _workers(workers: int | None) -> int:
    """`workers`, or one per CPU of the cluster; refused when the cluster has too few."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 0))
    if workers is None:
        return max(cpus, 1)
    if workers > cpus:
        raise HrmMlirError(
            f"--workers {workers}: the Ray cluster has {cpus} CPUs (each worker takes one)"
        )
    return workers


def _start_workers(
    shipped: Any, split: Split, workers: int, status: Callable[[str], None] | None
) -> list[Any]:
    """`workers` actors, each with the artifact (`shipped`: its reference in the object store)
    loaded; the first one's error in one line."""
    import ray

    if status is not None:
        status(f"starting {workers} Ray worker{'s' if workers != 1 else ''} (each loads the "
               "artifact once) ...")  # fmt: skip
    remote: Any = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)
    remote = remote(ShardWorker)
    data = str(split.directory.parent.resolve())
    actors = [remote.remote(data, split.directory.name) for _ in range(workers)]
    try:
        states = ray.get([a.ready.remote([shipped]) for a in actors])
        error = next((s["error"] for s in states if s["error"] is not None), None)
    except ray.exceptions.RayTaskError as e:  # not one of ours: its type and first line
        error = f"a Ray worker could not start: {type(e.cause).__name__}: {first_line(e.cause)}"
    except ray.exceptions.RayError as e:
        error = f"a Ray worker could not start: {first_line(e)}"
    if error is not None:
        for a in actors:
            ray.kill(a)
        raise HrmMlirError(error)
    return actors


def _schedule(
    todo: list[Shard],
    actors: list[Any],
    shipped: Any,
    job: dict,
    report: ShardedRun,
    on_dispatch: Callable[[Shard, Any], None] | None,
) -> Iterator[tuple[Shard, dict]]:
    """(shard, answer) as each finishes: one shard in flight per actor, the next to whichever
    is free. Ray reruns the shard of an actor it restarts; a shard whose actor died for good
    (its restarts spent) goes back to the queue for another."""
    import ray
    from ray.exceptions import ActorDiedError, RayActorError, RayTaskError

    queue = deque(todo)
    idle = list(actors)
    running: dict[Any, tuple[Shard, Any]] = {}
    attempts: dict[int, int] = {}
    while queue or running:
        while idle and queue:
            shard, actor = queue.popleft(), idle.pop(0)
            running[actor.run.remote([shipped], shard.start, shard.stop, job)] = (shard, actor)
            if on_dispatch is not None:
                on_dispatch(shard, actor)
        if not running:
            raise HrmMlirError(
                f"every Ray worker died; the finished shards are in {report.out}: --resume "
                "runs the rest"
            )
        (ref,), _ = ray.wait(list(running), num_returns=1)
        shard, actor = running.pop(ref)
        try:
            answer = ray.get(ref)
        except RayTaskError as e:
            cause = e.cause
            if isinstance(cause, HrmMlirError):
                raise type(cause)(str(cause)) from None
            raise HrmMlirError(f"{shard} failed on a Ray worker: {first_line(cause)}") from None
        except RayActorError as e:
            attempts[shard.index] = attempts.get(shard.index, 0) + 1
            if attempts[shard.index] >= MAX_ATTEMPTS:
                raise HrmMlirError(
                    f"{shard}: its Ray worker died {attempts[shard.index]} times "
                    f"({first_line(e)}); the finished shards are in {report.out}: --resume"
                ) from None
            if shard.index not in report.retried:
                report.retried.append(shard.index)
            queue.appendleft(shard)
            if not isinstance(e, ActorDiedError):
                idle.append(actor)  # unavailable for a while, not gone
            continue
        idle.append(actor)
        yield shard, answer


def _merge(
    split: Split,
    shards: list[Shard],
    results: Mapping[int, Mapping[str, np.ndarray]],
    out: Path,
    *,
    limit: int | None,
    batch_size: int,
    keep: str | None,
) -> Evaluation:
    """The shards' answers through the local engine's loop (`engine.evaluate_split`): the
    split's batches in order, each counted by `Metrics` as there, so every sum is added in the
    same order and the metrics are the local engine's to the bit."""
    parts = [results[s.index] for s in shards]

    def joined(key: str, dtype=None) -> np.ndarray:
        arrays = [p[key] for p in parts]
        if not arrays:
            return np.zeros(0, dtype or np.float32)
        return np.concatenate(arrays).astype(dtype or arrays[0].dtype, copy=False)

    preds = joined("preds", np.int32)
    q_h, q_c = joined("q_halt_logits"), joined("q_continue_logits")
    steps, stored_exact = joined("steps", np.int32), joined("exact", bool)
    logits = joined("logits") if keep == "logits" else None
    metrics = Metrics()
    kept: dict[str, list[np.ndarray]] = {}
    exact: list[np.ndarray] = []
    offset = 0
    for inputs, labels, ids, n in split.batches(batch_size, limit):
        rows = slice(offset, offset + n)
        offset += n
        exact.append(metrics.add(preds[rows], labels[:n], q_h[rows], steps[rows]))
        if keep is not None:
            values = {
                "inputs": inputs[:n], "labels": labels[:n], "puzzle_identifiers": ids[:n],
                "q_halt_logits": q_h[rows], "q_continue_logits": q_c[rows], "steps": steps[rows],
                keep: logits[rows] if logits is not None else preds[rows],
            }  # fmt: skip
            for key, value in values.items():
                kept.setdefault(key, []).append(np.asarray(value))
    merged = np.concatenate(exact) if exact else np.zeros(0, bool)
    if offset != preds.shape[0] or not np.array_equal(merged, stored_exact):
        raise HrmMlirError(
            f"{out}: the shards' answers do not match {split.directory}'s labels (was the "
            "dataset rebuilt?): give another --out"
        )
    return Evaluation(
        metrics.result(), metrics.count, offset, 0.0, 0, False, batch_size, False,
        merged, steps, {k: np.concatenate(v) for k, v in kept.items()},
    )  # fmt: skip


def _split_digest(split: Split) -> str:
    """sha256 of the split's files (dataset.json, each set's arrays, identifiers.json)."""
    h = hashlib.sha256()
    files = [split.directory / "dataset.json", split.directory.parent / "identifiers.json"]
    files += [split.directory / f"{s.name}__{f}.npy" for s in split.sets for f in FIELDS]
    for path in files:
        if path.is_file():
            h.update(path.name.encode())
            with path.open("rb") as f:
                while block := f.read(1 << 24):
                    h.update(block)
    return h.hexdigest()


def _same_run(out: Path, old: dict, new: dict, *, skip: tuple[str, ...] = ()) -> None:
    """Refuse, in one line, the shards of another run."""
    for key, value in new.items():
        if key in skip or old.get(key) == value:
            continue
        there, now = old.get(key), value
        if key in ("model", "dataset"):
            there, now = str(there)[:12], str(now)[:12]
        raise HrmMlirError(
            f"{out}/{MANIFEST}: results of another run ({key} {there} there, {now} now): "
            "give another --out, or remove it"
        )


def _read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise HrmMlirError(f"{path}: not JSON: {e.msg} (line {e.lineno})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise HrmMlirError(f"{path}: not a manifest of hrm-mlir's shards ({FORMAT})")
    return manifest


def _run_id(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def _write_shard(path: Path, arrays: Mapping[str, np.ndarray], shard: Shard, meta: dict) -> None:
    meta = {**meta, "start": shard.start, "stop": shard.stop}
    doc: dict[str, Any] = {**arrays, "meta": np.array(json.dumps(meta))}
    write_atomic(path, lambda f: np.savez(f, **doc))


def _read_shard(path: Path, shard: Shard, run_id: str) -> dict[str, np.ndarray] | None:
    """A shard's answers written by this run (its manifest), or None: run it (again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("run") != run_id or (meta.get("start"), meta.get("stop")) != (
        shard.start,
        shard.stop,
    ):
        return None
    if any(a.shape[0] != shard.examples for a in arrays.values()):
        return None
    return arrays
