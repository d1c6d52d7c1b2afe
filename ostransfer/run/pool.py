"""A local pool of worker processes for a batch: each loads the model once and runs with an
explicit thread count (ONNX Runtime's intra-op threads and the BLAS threads), so that
workers x threads = the cores; left to themselves, every process would start a thread per
core. Results come back as arrays and the caller writes them."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any, Iterator, Sequence

from .batch import one_line
from .job import Names, prepare
from .options import Options
from .stylizer import RunFailed, Stylizer

_STYLIZER: Stylizer | None = None


def split_cores(workers: int, cores: int | None = None) -> int:
    """Threads per worker: the cores shared out (at least one each)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def _start(device: str, threads: int) -> None:
    """A worker's start: Ctrl-C is the parent's to handle; the model loaded once."""
    global _STYLIZER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    _STYLIZER = Stylizer(device=device, threads=threads)


Finished = tuple[int, Any, str, float]  # index, result (H, W, 3) or None, error, seconds


def _run(task: tuple[int, Any, Options, str]) -> Finished:
    """(index, result or None, one-line error, seconds) of one job."""
    index, job, options, device = task
    start = time.perf_counter()
    try:
        prepared = prepare(job.content, list(job.styles), options, device=device,
                           names=Names(images=[str(job.content), *map(str, job.styles)]))
        return index, _STYLIZER.run_job(prepared), "", time.perf_counter() - start
    except (ValueError, RuntimeError, OSError, MemoryError, RunFailed) as exc:
        error = one_line(exc)
        return index, None, error, time.perf_counter() - start


def run_pool(tasks: Sequence[tuple[Any, Options]], workers: int, device: str = "cpu",
             threads: int | None = None) -> Iterator[Finished]:
    """Run (job, options) pairs on ``workers`` processes; yields (index into tasks, result
    (H, W, 3) float32 or None, error, seconds) as each finishes. Closing the iterator (or a Ctrl-C in
    the caller) terminates the workers."""
    threads = threads or split_cores(workers)
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(workers, _start, (device, threads))
    try:
        yield from pool.imap_unordered(
            _run, [(i, job, options, device) for i, (job, options) in enumerate(tasks)])
        pool.close()
    finally:
        pool.terminate()
        pool.join()
