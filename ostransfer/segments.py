"""Segment sums: the one scatter-add the Array API standard lacks.

``SegmentSum(ids, num_segments, weights)(values)[u] = sum over k with ids[k] == u of
weights[k] * values[k]``. NumPy uses a SciPy CSR product, CuPy a cupyx CSR product, and any
other Array API namespace (array_api_strict in the tests) a dense one-hot product, which is
exact but only fit for small inputs.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, is_cupy_array, is_numpy_array

Array = Any


class SegmentSum:
    """A fixed (num_segments x K) summing operator; build it once, apply it many times.

    ids: (K,) integer segment of each row; weights: (K,) or None for ones.
    Applied to values (K, C) it returns (num_segments, C) in the dtype of ``values``.
    """

    def __init__(self, ids: Array, num_segments: int, weights: Array | None = None):
        xp = array_namespace(ids)
        self.num_segments = num_segments
        k = ids.shape[0]
        if weights is None:
            weights = xp.ones(k, dtype=xp.float64)
        if is_numpy_array(ids):
            import numpy as np
            import scipy.sparse as sp

            self._op = sp.csr_matrix(
                (np.asarray(weights), (np.asarray(ids), np.arange(k))), shape=(num_segments, k)
            )
        elif is_cupy_array(ids):
            import cupy as cp
            import cupyx.scipy.sparse as csp

            self._op = csp.csr_matrix(
                (cp.asarray(weights), (ids, cp.arange(k))), shape=(num_segments, k)
            )
        else:
            segments = xp.arange(num_segments, dtype=ids.dtype)
            onehot = xp.astype(segments[:, None] == ids[None, :], weights.dtype)
            self._op = onehot * weights[None, :]
        self._dense = not (is_numpy_array(ids) or is_cupy_array(ids))

    def __call__(self, values: Array) -> Array:
        xp = array_namespace(values)
        if self._dense:
            return xp.matmul(xp.astype(self._op, values.dtype), values)
        op = self._op if self._op.dtype == values.dtype else self._op.astype(values.dtype)
        return op @ values
