"""``ostransfer batch``: many stylisations in one command, resumable, each failure kept to its
own job, with a summary at the end (a table, or ``--json``)."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.table import Table

from ..run import batch as bt
from ..run.batch_api import InProcess, batch_device, local_workers, pool_runner
from ..run.stylizer import Interrupted
from .common import DEVICE_HELP, StopSignals, UsageError, clear_errors, err, parse_budgets, say
from .outputs import save_result
from .progress import BatchDisplay, ProgressDisplay

app = typer.Typer()


def _jobs(jobs_file: Optional[Path], contents: Optional[str], styles: Optional[str]):
    if jobs_file is not None and (contents or styles):
        raise UsageError("give a JOBS file or --contents and --styles, not both")
    if jobs_file is not None:
        return bt.read_jobs(jobs_file)
    if not (contents and styles):
        raise UsageError("give a JOBS file (CSV or JSON Lines), or --contents GLOB and "
                         "--styles GLOB")
    return bt.cross_jobs(contents, styles)


def _summary(outcomes: list[bt.Outcome]) -> None:
    table = Table(title="batch")
    for column in ("job", "status", "seconds", "output or reason"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(o.job.line, o.status, f"{o.seconds:.1f}" if o.status == "done" else "",
                      o.error or o.output.name)
    err.print(table)
    counts = bt.describe(outcomes)
    say(", ".join(f"{n} {status}" for status, n in counts.items()))


@contextlib.contextmanager
def _terminating() -> Iterator[None]:
    """SIGTERM as Ctrl-C while workers run, so that they are terminated with this process
    instead of left running."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command(no_args_is_help=True)
def batch(
    jobs_file: Optional[Path] = typer.Argument(
        None, metavar="JOBS", show_default=False,
        help="CSV (header: content, style or styles, option columns) or JSON Lines file"),
    outdir: Path = typer.Option(..., "-o", "--output-dir", metavar="OUTDIR",
                                help="folder for the results (made if needed)"),
    contents: Optional[str] = typer.Option(None, metavar="GLOB",
                                           help="with --styles: every content x every style"),
    styles: Optional[str] = typer.Option(None, metavar="GLOB"),
    size: Optional[int] = typer.Option(None, help="shared: long side of the output, px (512)"),
    preset: Optional[str] = typer.Option(None, help="shared: paper or strotss"),
    content_weight: Optional[float] = typer.Option(None, help="shared: content weight"),
    seed: Optional[int] = typer.Option(None, help="shared: random seed"),
    evaluations: Optional[str] = typer.Option(None, help="shared: evaluations per scale"),
    learning_rate: Optional[float] = typer.Option(None, help="shared: RMSprop's step size"),
    image_format: str = typer.Option("png", "--format", help="png, jpg or webp (jpg and webp "
                                                             "keep the recipe in a sidecar)"),
    as_json: bool = typer.Option(False, "--json", help="the summary as JSON on stdout"),
    workers: Optional[int] = typer.Option(
        None, min=1, show_default=False,
        help="worker processes, each loading the model once (1: this process, with every "
             "core; default: one per core, no more than the jobs and the memory allow)"),
    threads: Optional[int] = typer.Option(None, min=1, help="threads per worker (default: the "
                                                            "cores shared out)"),
    cluster: Optional[str] = typer.Option(
        None, metavar="ADDRESS", help="run on Ray: ray://HOST:PORT, or auto for a running local "
                                      "Ray (one actor per --workers, --threads CPUs each)"),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress display"),
) -> None:
    """Stylise many pairs: one result per job in OUTDIR, named for its pair and options,
    carrying its recipe. A job whose result is there with the same recipe is skipped (a
    rerun continues a stopped batch); a job that fails is reported and the others go on.
    Per-job values override the shared options."""
    with clear_errors():
        jobs = _jobs(jobs_file, contents, styles)
        shared = bt.shared_options(dict(size=size, preset=preset, content_weight=content_weight,
                                        seed=seed, evaluations=parse_budgets(evaluations),
                                        learning_rate=learning_rate))
        suffix = bt.result_suffix(image_format, "--format")
        if outdir.exists() and not outdir.is_dir():
            raise UsageError(f"-o {outdir}: is a file, not a folder")
        planned = bt.plan_batch(jobs, shared, outdir, suffix)
        outdir.mkdir(parents=True, exist_ok=True)
        device = batch_device(device, cluster)
        workers = local_workers(workers, cluster, planned, threads, device)

    def save_one(result, out: Path, recipe: dict) -> None:
        """Write one result with its recipe (temp file, then rename); OSError if it fails."""
        _, problem = save_result(result, out, True, recipe)
        if problem is not None:
            raise OSError(problem)

    @contextlib.contextmanager
    def watch(plan) -> Iterator[Any]:
        """A job's progress display; Ctrl-C stops it at its next evaluation."""
        display = ProgressDisplay(plan, err, enabled=not quiet)
        with display.bar:
            yield signals.watching(display)

    def announce(index: int, job: bt.BatchJob) -> None:
        say(f"[{index + 1}/{len(planned)}] {job.line}")

    outcomes: list[bt.Outcome] = []
    interrupted = False
    # one process: Ctrl-C stops the current job at its next evaluation (StopSignals); with
    # workers, at once (KeyboardInterrupt here; the workers ignore it and are terminated)
    many = cluster is not None or workers > 1
    board = BatchDisplay(len(planned), err, enabled=many and not quiet)
    with _terminating() if many else StopSignals() as signals, board.bar:
        stream = bt.run_batch_pool(planned, save_one, pool_runner(
            cluster, workers, device, threads, None if quiet else board.job_progress)) if many \
            else bt.run_batch(planned, InProcess(device, threads, save_one, watch),
                              None if quiet else announce)
        try:
            for outcome in stream:
                outcomes.append(outcome)
                if many:
                    board.job_done(outcome.job.line, outcome.status)
                    if not quiet:
                        say(f"[{len(outcomes)}/{len(planned)}] {outcome.job.line}: "
                            f"{outcome.status}")
        except (Interrupted, KeyboardInterrupt):
            interrupted = True
            stream.close()
    if as_json:
        print(json.dumps({"jobs": [o.as_dict() for o in outcomes], **bt.describe(outcomes),
                          "interrupted": interrupted}))
    else:
        _summary(outcomes)
    if interrupted:
        say(f"interrupted after {len(outcomes)} of {len(planned)} jobs; run the same command "
            f"again to continue")
        raise typer.Exit(130)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)
