"""The Python API of a batch, ``ostransfer.batch``, and the pieces the command line shares
with it: the jobs run in this process (``InProcess``), on a local pool of worker processes
or on a Ray cluster (``pool_runner``), each Outcome yielded as it is known (module
``batch`` has the jobs, their names, resume and isolation)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

import numpy as np

from ..arrays import resolve_device
from .batch import (BatchJob, Outcome, Runner, job_from_row, plan_batch, read_jobs,
                    result_suffix, run_batch, run_batch_pool)
from .cluster import ray_module, run_cluster
from .job import Names, prepare
from .options import InputError, Options
from .plan import Scale
from .pool import Listener, auto_workers, run_pool
from .recipe import read_with, save_with_recipe
from .stylizer import Progress, RunFailed, Stylizer

Save = Callable[[np.ndarray, Path, dict], Any]  # writes one result with its recipe
# a job's progress: given its plan, a context around its run that yields the callback
Watch = Callable[[Sequence[Scale]], ContextManager[Callable[[Progress], None] | None]]


def batch_device(device: str, cluster: str | None) -> str:
    """The device the jobs run on: ``device`` resolved here, or on a cluster the workers'
    ("cuda" or "cpu"; InputError now if Ray is missing)."""
    if cluster is None:
        return resolve_device(device)
    ray_module()
    return "cuda" if device == "cuda" else "cpu"


class InProcess:
    """``run_batch``'s ``run_one``: each job run in this process, the model loaded by the
    first, the result written by ``save``; ``watch`` (optional) shows a job's progress."""

    def __init__(self, device: str, threads: int | None, save: Save,
                 watch: Watch | None = None):
        self.device, self.threads, self.save, self.watch = device, threads, save, watch
        self.stylizer: Stylizer | None = None

    def __call__(self, job: BatchJob, options: Options, out: Path, recipe: dict) -> None:
        prepared = prepare(job.content, list(job.styles), options, device=self.device,
                           names=Names(images=job.names))
        if self.stylizer is None:
            self.stylizer = Stylizer(device=self.device, threads=self.threads)
        watching = self.watch(prepared.plan) if self.watch else contextlib.nullcontext()
        try:
            with watching as progress:
                result = self.stylizer.run_job(prepared, progress)
        except RunFailed as exc:
            raise RuntimeError(str(exc)) from None
        self.save(result, out, read_with(recipe, prepared.options.tile))


def local_workers(workers: int | None, cluster: str | None,
                  planned: Sequence[tuple[BatchJob, Options, Path]], threads: int | None,
                  device: str) -> int | None:
    """The worker processes of a batch here: ``workers`` as given; where none is given,
    ``pool.auto_workers`` on the CPU for the jobs whose result is not there yet (the others
    are most likely skipped: a rerun with one job left runs it in this process), 1 on a GPU;
    None on a cluster (its own count)."""
    if workers is not None or cluster is not None:
        return workers
    if device != "cpu":
        return 1
    return auto_workers([options for _, options, out in planned if not out.exists()], threads)


def pool_runner(cluster: str | None, workers: int | None, device: str, threads: int | None,
                listener: Listener | None = None) -> Runner:
    """``run_batch_pool``'s runner: the Ray cluster at ``cluster`` (one actor per ``workers``
    when more than 1, else per ``threads`` CPUs of it), or ``workers`` local processes (no
    more than the jobs to run)."""
    def run(tasks: list) -> Iterator[tuple[int, Any, str, float]]:
        if cluster is not None:
            return run_cluster(tasks, cluster, workers if workers and workers > 1 else None,
                               device, threads or 1)
        return run_pool(tasks, min(workers or 1, len(tasks)), device, threads,
                        listener=listener)
    return run


def _jobs(jobs: str | os.PathLike | Sequence[BatchJob | dict[str, Any]]) -> list[BatchJob]:
    """Jobs from a CSV / JSON Lines file, or from BatchJobs and dicts like a JSON Lines row
    ({"content": ..., "style" or "styles": ..., option: value}; paths relative to the
    current folder)."""
    if isinstance(jobs, (str, os.PathLike)):
        return read_jobs(Path(jobs))
    made = [job if isinstance(job, BatchJob)
            else job_from_row(dict(job), Path.cwd(), f"job {i + 1}") for i, job in enumerate(jobs)]
    if not made:
        raise InputError("no jobs given")
    return made


def batch(jobs: str | os.PathLike | Sequence[BatchJob | dict[str, Any]],
          outdir: str | os.PathLike, *, workers: int | None = None, cluster: str | None = None,
          threads: int | None = None, device: str = "auto", image_format: str = "png",
          **options: Any) -> Iterator[Outcome]:
    """Run many stylisations into ``outdir``, yielding each job's Outcome (``status`` done,
    skipped or failed with its one-line ``error``; ``output``, ``seconds``) as it is known:
    the skipped first, then each as it finishes. ``options``: shared ``Options`` fields, a
    job's own values win. ``workers`` > 1: that many processes (``threads`` each, default
    the cores shared out; 1: this process; None: one per core, as many as the jobs and the
    memory allow, ``pool.auto_workers``); ``cluster``: a Ray address ("auto",
    "ray://HOST:PORT", "local"). Results carry their recipes and a rerun skips what is done,
    as with the command line. InputError (one line) for jobs or options that cannot run."""
    outdir = Path(outdir)
    planned = plan_batch(_jobs(jobs), options, outdir, result_suffix(image_format))
    outdir.mkdir(parents=True, exist_ok=True)
    device = batch_device(device, cluster)
    workers = local_workers(workers, cluster, planned, threads, device)
    if cluster is not None or workers > 1:
        yield from run_batch_pool(planned, save_with_recipe,
                                  pool_runner(cluster, workers, device, threads))
    else:
        yield from run_batch(planned, InProcess(device, threads, save_with_recipe))
