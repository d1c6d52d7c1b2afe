"""The Python API of a batch, ``ostransfer.batch``: the jobs of ``ostransfer batch`` run in
this process, on a local pool of worker processes or on a Ray cluster, each Outcome yielded
as it is known (module ``batch`` has the jobs, their names, resume and isolation)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..arrays import resolve_device
from .batch import (BatchJob, Outcome, job_from_row, plan_batch, read_jobs, run_batch,
                    run_batch_pool)
from .cluster import run_cluster
from .job import Names, prepare
from .options import InputError
from .pool import run_pool
from .recipe import save_with_recipe
from .stylizer import RunFailed, Stylizer


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
          outdir: str | os.PathLike, *, workers: int = 1, cluster: str | None = None,
          threads: int | None = None, device: str = "auto", image_format: str = "png",
          **options: Any) -> Iterator[Outcome]:
    """Run many stylisations into ``outdir``, yielding each job's Outcome (``status`` done,
    skipped or failed with its one-line ``error``; ``output``, ``seconds``) as it is known:
    the skipped first, then each as it finishes. ``options``: shared ``Options`` fields, a
    job's own values win. ``workers`` > 1: that many processes (``threads`` each, default
    the cores shared out; 1: this process); ``cluster``: a Ray address ("auto", "ray://HOST:PORT", "local").
    Results carry their recipes and a rerun skips what is done, as with the command line.
    InputError (one line) for jobs or options that cannot run."""
    suffix = "." + image_format.lower().lstrip(".")
    if suffix not in (".png", ".jpg", ".jpeg", ".webp"):
        raise InputError(f"image format {image_format!r}: use png, jpg or webp")
    outdir = Path(outdir)
    planned = plan_batch(_jobs(jobs), options, outdir, suffix)
    outdir.mkdir(parents=True, exist_ok=True)
    if cluster is not None or workers > 1:
        where = ("cuda" if device == "cuda" else "cpu") if cluster is not None \
            else resolve_device(device)

        def pooled(tasks: list) -> Iterator[tuple[int, Any, str, float]]:
            if cluster is not None:
                return run_cluster(tasks, cluster, workers if workers > 1 else None, where,
                                   threads or 1)
            return run_pool(tasks, workers, where, threads)
        yield from run_batch_pool(planned, save_with_recipe, pooled)
        return
    device = resolve_device(device)
    stylizer: list[Stylizer] = []  # loaded when the first job runs

    def run_one(job: BatchJob, job_options, out: Path, recipe: dict) -> None:
        prepared = prepare(job.content, list(job.styles), job_options, device=device,
                           names=Names(images=[str(job.content), *map(str, job.styles)]))
        if not stylizer:
            stylizer.append(Stylizer(device=device, threads=threads))
        try:
            result = stylizer[0].run_job(prepared)
        except RunFailed as exc:
            raise RuntimeError(str(exc)) from None
        save_with_recipe(result, out, recipe)

    yield from run_batch(planned, run_one)
