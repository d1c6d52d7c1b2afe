"""The progress displays: one rich bar over a run's scales, weighted by their cost; for a
batch on many workers, a bar over the jobs and one per running job."""

from __future__ import annotations

import threading
from typing import Sequence

from rich.console import Console
from rich.progress import (BarColumn, Progress as RichProgress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from ..run.plan import Scale, work_done
from ..run.stylizer import Progress


class ProgressDisplay:
    """A rich progress bar over the whole run, weighted by the cost of each scale."""

    def __init__(self, plan: Sequence[Scale], console: Console, enabled: bool = True):
        self.plan = plan
        self.bar = RichProgress(
            TextColumn("{task.fields[scale]}"), BarColumn(), TextColumn("{task.fields[evals]}"),
            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[terms]}"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console,
            disable=not enabled, transient=False,
        )
        self.task = self.bar.add_task("stylize", total=1.0, scale="", evals="", rate="",
                                      terms="")
        self._since: tuple[int, float, int] | None = None  # (scale, elapsed, evaluation)

    def rate(self, p: Progress) -> str:
        """Evaluations per minute at this scale and the seconds its budget still needs,
        measured from the scale's first evaluation (empty until there is a second)."""
        if self._since is None or self._since[0] != p.scale:
            self._since = (p.scale, p.elapsed, p.evaluation)
        _, start, first = self._since
        if p.evaluation <= first or p.elapsed <= start:
            return ""
        per_minute = (p.evaluation - first) / (p.elapsed - start) * 60.0
        left = (p.budget - p.evaluation) / per_minute * 60.0
        return f"{per_minute:.3g} evals/min, scale {left:.0f} s left"

    def __call__(self, p: Progress) -> None:
        terms = " ".join(f"{name[:4]} {value:.3g}" for name, value in p.terms.items())
        self.bar.update(
            self.task, completed=work_done(self.plan, p.scale, p.evaluation),
            scale=f"scale {p.scale + 1}/{p.scales} {p.side}px",
            evals=f"{p.evaluation}/{p.budget} evals", rate=self.rate(p),
            terms=f"loss {p.loss:.4g} ({terms})",
        )


class BatchDisplay:
    """The progress of a batch on many workers: a bar over the jobs, and one bar for each
    job a worker is running (its share of the work, from the workers' reports)."""

    def __init__(self, jobs: int, console: Console, enabled: bool = True):
        self.bar = RichProgress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(), console=console, disable=not enabled, transient=False,
        )
        self.jobs = jobs
        self.counts: dict[str, int] = {}
        self.task = self.bar.add_task("jobs", total=jobs, note=f"0/{jobs}")
        self.running: dict[str, TaskID] = {}
        self.finished: set[str] = set()
        self.lock = threading.Lock()  # reports come from the pool's relay thread

    def job_progress(self, index: int, label: str, share: float, where: str) -> None:
        """A worker's report: job ``label`` has done ``share`` of its work."""
        with self.lock:
            if label in self.finished:
                return
            if label not in self.running:
                self.running[label] = self.bar.add_task(f"  {label}", total=1.0, note="")
            self.bar.update(self.running[label], completed=share, note=where)

    def job_done(self, label: str, status: str) -> None:
        """Job ``label`` is done, skipped or failed."""
        with self.lock:
            self.finished.add(label)
            if label in self.running:
                self.bar.remove_task(self.running.pop(label))
            self.counts[status] = self.counts.get(status, 0) + 1
            done = sum(self.counts.values())
            note = ", ".join(f"{n} {s}" for s, n in self.counts.items())
            self.bar.update(self.task, completed=done, note=f"{done}/{self.jobs} ({note})")
