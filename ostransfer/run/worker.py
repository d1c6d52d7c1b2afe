"""One job of a batch as a worker runs it, on a local pool process or a Ray actor: the run,
its time, and a failure kept to one line instead of raised. A worker's results are a single
run's bytes whatever its share of the cores (``method.products``)."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from .batch import one_line
from .job import Names, prepare
from .options import Options
from .plan import work_done
from .stylizer import Progress, RunFailed, Stylizer

Report = Callable[[float, Progress], None]  # (share of the job's work done, the evaluation)


def run_one_job(stylizer: Stylizer, content: Any, styles: Sequence[Any], options: Options,
                device: str, names: Sequence[str], report: Report | None = None
                ) -> tuple[np.ndarray | None, str, float, int | None]:
    """(result (H, W, 3) float32 in [0, 1] or None, one-line error or "", seconds, the tile
    core the run read with or None) of one job; ``content`` and ``styles`` are paths or
    pixel arrays, ``names`` how errors name them; ``report`` hears of every evaluation."""
    start = time.perf_counter()
    try:
        job = prepare(content, list(styles), options, device=device, names=Names(images=names))
        progress = None if report is None else \
            (lambda p: report(work_done(job.plan, p.scale, p.evaluation), p))
        result = stylizer.run_job(job, progress)
        return result, "", time.perf_counter() - start, job.options.tile
    except (ValueError, RuntimeError, OSError, MemoryError, RunFailed) as exc:
        return None, one_line(exc), time.perf_counter() - start, None
