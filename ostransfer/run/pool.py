"""A local pool of worker processes for a batch: each loads the model once and runs ONNX
Runtime with an explicit thread count, so that workers x threads = the cores (left to
itself, every process would start a thread per core); a run's bytes do not depend on its
threads (``method.products``), so the results are a single process's. Results come
back as arrays and the caller writes them; the workers' progress comes back through a
queue that a thread of the caller's process reads."""

from __future__ import annotations

import multiprocessing
import queue as queues
import signal
import threading
from typing import Any, Callable, Iterator, Sequence

from ..nets.runtime import usable_cores
from .batch import Task
from .options import Options
from .plan import available_memory, estimate_memory, plan_scales
from .stylizer import Stylizer
from .worker import run_one_job

_STYLIZER: Stylizer | None = None
_REPORTS: Any = None  # the queue of the workers' progress reports, or None

# what the caller hears of a job's progress: (index, job's label, share of its work done,
# where it is: "scale 2/4 128px, 30/74 evals")
Listener = Callable[[int, str, float, str], None]


def split_cores(workers: int, cores: int | None = None) -> int:
    """Threads per worker: the cores shared out (at least one each)."""
    cores = cores or usable_cores()
    return max(1, cores // max(1, workers))


def job_memory(options: Options) -> int:
    """Estimated peak bytes of one job on the CPU, its images taken square at its size (the
    most pixels a long side allows)."""
    square = (options.size, options.size)
    return estimate_memory(plan_scales(square, square, options), options)


def auto_workers(options: Sequence[Options], threads: int | None = None,
                 cores: int | None = None, available: int | None = None) -> int:
    """Workers for a batch that names none, given its jobs' options: one per core (per
    ``threads`` cores), no more than the jobs, and no more than the memory holds
    (``available`` bytes, default what the machine has; each job as ``job_memory``). On two
    cores, 2 workers x 1 thread made 1.18-1.22x the images per hour of 1 x 2 (README)."""
    cores = cores or usable_cores()
    count = min(max(1, cores // (threads or 1)), len(options))
    available = available_memory() if available is None else available
    if available is not None and options:
        count = min(count, available // max(job_memory(o) for o in options))
    return max(1, count)


def _start(device: str, threads: int, reports: Any) -> None:
    """A worker's start: Ctrl-C is the parent's to handle; the model loaded once."""
    global _STYLIZER, _REPORTS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _REPORTS = reports
    _STYLIZER = Stylizer(device=device, threads=threads)


Finished = tuple[int, Any, str, float, "int | None"]  # index, result (H, W, 3) or None,
# error, seconds, the tile core the run read with (None: whole images)


def _run(task: tuple[int, Any, Options, str]) -> Finished:
    """(index, result or None, one-line error, seconds, tile core) of one job."""
    index, job, options, device = task

    def report(share: float, p) -> None:
        _REPORTS.put((index, job.line, share, f"scale {p.scale + 1}/{p.scales} {p.side}px, "
                                              f"{p.evaluation}/{p.budget} evals"))
    return index, *run_one_job(_STYLIZER, job.content, job.styles, options, device, job.names,
                               report if _REPORTS is not None else None)


def _relay(reports: Any, listener: Listener, stop: threading.Event) -> None:
    """Pass the workers' progress reports to ``listener`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            item = reports.get(timeout=0.2)
        except (queues.Empty, OSError, EOFError, ValueError):
            continue
        listener(*item)


def run_pool(tasks: Sequence[Task], workers: int, device: str = "cpu",
             threads: int | None = None, listener: Listener | None = None
             ) -> Iterator[Finished]:
    """Run a batch's Tasks on ``workers`` processes; yields (index into tasks, result
    (H, W, 3) float32 or None, error, seconds, tile core or None) as each finishes. ``listener`` hears of every
    evaluation of every job, in a thread of this process. Closing the iterator (or a Ctrl-C
    in the caller) terminates the workers."""
    threads = threads or split_cores(workers)
    context = multiprocessing.get_context("spawn")
    reports = context.Queue() if listener is not None else None
    stop = threading.Event()
    relay = threading.Thread(target=_relay, args=(reports, listener, stop), daemon=True) \
        if reports is not None else None
    pool = context.Pool(workers, _start, (device, threads, reports))
    if relay is not None:
        relay.start()
    try:
        yield from pool.imap_unordered(
            _run, [(i, job, options, device) for i, (job, options, *_) in enumerate(tasks)])
        pool.close()
    finally:
        pool.terminate()
        pool.join()
        stop.set()
        if relay is not None:
            relay.join()
            reports.cancel_join_thread()
            reports.close()
