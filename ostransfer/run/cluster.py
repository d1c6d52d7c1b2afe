"""A batch on a Ray cluster: one actor per worker, each holding a ``Stylizer`` (the model
loaded once per actor, ONNX Runtime's threads = the actor's CPUs; one GPU per actor with
``device="cuda"``). The driver reads the inputs and sends them as pixel arrays, and gets the
results back encoded (PNG with its recipe, JPEG, ...) and writes them itself: no shared file
system is needed.
Ray is optional (``pip install 'ostransfer[cluster]'``)."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from ..imaging.io import Encoded, load_pil
from .batch import Task
from .options import InputError, Options
from .recipe import encode_with_recipe, read_with
from .stylizer import Stylizer
from .worker import run_one_job


def ray_module():
    try:
        import ray
    except ImportError:
        raise InputError("--cluster needs Ray: pip install 'ostransfer[cluster]'") from None
    return ray


class _Worker:
    """A Ray actor's body: one Stylizer for all its jobs."""

    def __init__(self, device: str, threads: int):
        self.device = device
        self.stylizer = Stylizer(device=device, threads=threads)

    def run(self, index: int, content: np.ndarray, styles: list[np.ndarray], options: Options,
            names: list[str], suffix: str, recipe: dict
            ) -> tuple[int, Encoded | None, str, float, int | None]:
        """One job; its result encoded for a file ending in ``suffix``, carrying ``recipe``
        (with the tile core it read with) as the driver's own save would."""
        result, error, seconds, tile = run_one_job(self.stylizer, content, styles, options,
                                                   self.device, names)
        encoded = None if result is None else \
            encode_with_recipe(result, suffix, read_with(recipe, tile))
        return index, encoded, error, seconds, tile


def run_cluster(tasks: Sequence[Task], address: str, workers: int | None = None,
                device: str = "cpu", cpus: int = 1
                ) -> Iterator[tuple[int, Encoded | None, str, float, int | None]]:
    """Run a batch's Tasks on Ray actors; yields (index, result encoded or None, error,
    seconds, tile core or None) as each finishes. ``address``: "auto" (a running local Ray),
    "ray://HOST:PORT", or "local" (Ray already initialised by the caller, or a new local
    one). ``workers``: actors (default: the cluster's CPUs // cpus), no more than the tasks."""
    ray = ray_module()
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, log_to_driver=False)
    gpus = 1 if device == "cuda" else 0
    count = min(workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus),
                max(1, len(tasks)))
    actor = ray.remote(num_cpus=cpus, num_gpus=gpus)(_Worker)
    actors = [actor.remote(device, cpus) for _ in range(count)]
    pending, free, queue = {}, list(actors), list(enumerate(tasks))
    try:
        while queue or pending:
            while queue and free:
                index, (job, options, suffix, recipe) = queue.pop(0)
                try:
                    content = np.asarray(load_pil(job.content))
                    styles = [np.asarray(load_pil(s)) for s in job.styles]
                except ValueError as exc:
                    yield index, None, str(exc), 0.0, None
                    continue
                worker = free.pop()
                pending[worker.run.remote(index, content, styles, options, job.names, suffix,
                                          recipe)] = worker
            if not pending:
                continue
            done, _ = ray.wait(list(pending), num_returns=1)
            worker = pending.pop(done[0])
            free.append(worker)
            yield ray.get(done[0])
    finally:
        for a in actors:
            ray.kill(a)
