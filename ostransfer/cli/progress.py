"""The progress display of a run: one rich bar over all scales, weighted by their cost."""

from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..run.plan import Scale
from ..run.stylizer import Progress


class ProgressDisplay:
    """A rich progress bar over the whole run, weighted by the cost of each scale."""

    def __init__(self, plan: Sequence[Scale], console: Console, enabled: bool = True):
        sides, budgets = [s.side for s in plan], [s.budget for s in plan]
        # one evaluation costs roughly a constant (the losses) plus VGG work per pixel
        self.cost = [1.0 + (side / 180.0) ** 2 for side in sides]
        self.done_before = [sum(b * c for b, c in zip(budgets[:i], self.cost[:i]))
                            for i in range(len(sides))]
        total = sum(b * c for b, c in zip(budgets, self.cost))
        self.bar = RichProgress(
            TextColumn("{task.fields[scale]}"), BarColumn(), TextColumn("{task.fields[evals]}"),
            TextColumn("{task.fields[terms]}"), TimeElapsedColumn(), TextColumn("left"),
            TimeRemainingColumn(), console=console, disable=not enabled, transient=False,
        )
        self.task = self.bar.add_task("stylize", total=total, scale="", evals="", terms="")

    def __call__(self, p: Progress) -> None:
        terms = " ".join(f"{name[:4]} {value:.3g}" for name, value in p.terms.items())
        self.bar.update(
            self.task, completed=self.done_before[p.scale] + p.evaluation * self.cost[p.scale],
            scale=f"scale {p.scale + 1}/{p.scales} {p.side}px",
            evals=f"{p.evaluation}/{p.budget} evals", terms=f"loss {p.loss:.4g} ({terms})",
        )
