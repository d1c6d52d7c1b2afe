"""Matrix products whose bytes do not depend on how many threads compute them.

OpenBLAS rounds a product differently on one thread and on two (a 1024 x 2179 x 4096
sgemm: entries of magnitude ~50 move by up to 1e-4), and so the losses' gradients, and some
pixels of a result by one level: a recipe rerun with another ``--threads``, on a machine
with another core count, or in a pool worker given a share of the cores would not give the
same bytes. ONNX Runtime's VGG16 gives identical bytes on any number of threads, so the
products are the one place where the thread count shows.

Within ``thread_invariant(threads)`` (a run holds it, ``run.stylizer``) NumPy's BLAS runs
on one thread and ``matmul`` splits each large product into blocks of ``BLOCK_ROWS`` rows
of its left factor, each a one-thread product, spread over ``threads`` threads: the blocks,
and so the bytes, are the same whatever the count. Outside it, and for any namespace but
NumPy (CuPy, array_api_strict), ``matmul`` is ``xp.matmul``.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Iterator

import numpy as np
from array_api_compat import is_numpy_array

from ..arrays import Array

BLOCK_ROWS = 128  # rows of the left factor per one-thread product: fixed, never the threads'

_WORKERS: ContextVar[ThreadPoolExecutor | None] = ContextVar("ostransfer_products",
                                                             default=None)


@contextlib.contextmanager
def thread_invariant(threads: int) -> Iterator[None]:
    """Within: BLAS on one thread, ``matmul``'s blocks over ``threads`` threads (>= 1).

    The BLAS limit is the process's (threadpoolctl): while a run holds it, every thread's
    products are one-thread ones, and two runs at once in two threads of one process would
    share it (the first to end lifts it); a process runs one at a time (the batch workers do)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"), \
            ThreadPoolExecutor(max(1, threads), thread_name_prefix="ostransfer-product") as pool:
        token = _WORKERS.set(pool)
        try:
            yield
        finally:
            _WORKERS.reset(token)


def matmul(a: Array, b: Array, *, xp) -> Array:
    """``xp.matmul(a, b)``; inside ``thread_invariant``, a NumPy product of 2-D a (M, K)
    and b (K, N) with M > BLOCK_ROWS in fixed row blocks (see the module)."""
    pool = _WORKERS.get()
    if (pool is None or not (is_numpy_array(a) and is_numpy_array(b)) or a.ndim != 2
            or b.ndim != 2 or a.shape[0] <= BLOCK_ROWS):
        return xp.matmul(a, b)
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))

    def block(start: int) -> None:
        np.matmul(a[start:start + BLOCK_ROWS], b, out=out[start:start + BLOCK_ROWS])

    list(pool.map(block, range(0, a.shape[0], BLOCK_ROWS)))  # re-raises a block's error
    return out
