"""Sparse sums of rows: the one scatter-add that the Array API standard lacks.

``SegmentSum(ids, num_segments, weights, sources)(values)[u]`` is the sum over entries k
with ``ids[k] == u`` of ``weights[k] * values[sources[k]]``: a (num_segments x len(values))
sparse matrix applied to ``values``. NumPy uses a SciPy CSR product, CuPy a cupyx CSR
product, and any other Array API namespace (array_api_strict in the tests) a dense one-hot
product, which is exact but only fit for small inputs.
"""

from __future__ import annotations

from array_api_compat import is_cupy_array, is_numpy_array

from ..arrays import Array, array_namespace


class SegmentSum:
    """A fixed sparse summing operator; build it once, apply it many times.

    ids: (K,) integer segment of each entry; weights: (K,) or None for ones; sources: (K,)
    row of ``values`` each entry reads, or None for ``arange(K)``; num_sources: the number
    of rows of ``values`` (K when sources is None). Applied to values (num_sources, C) it
    returns (num_segments, C) in the dtype of ``values``.
    """

    def __init__(self, ids: Array, num_segments: int, weights: Array | None = None,
                 sources: Array | None = None, num_sources: int | None = None):
        xp = array_namespace(ids)
        k = ids.shape[0]
        if weights is None:
            weights = xp.ones(k, dtype=xp.float64)
        if sources is None:
            sources, num_sources = xp.arange(k, dtype=ids.dtype), k
        shape = (num_segments, num_sources if num_sources is not None else k)
        self._sparse = is_numpy_array(ids) or is_cupy_array(ids)
        if is_numpy_array(ids):
            import scipy.sparse as sp

            self._op = sp.csr_matrix((weights, (ids, sources)), shape=shape)
        elif is_cupy_array(ids):
            import cupyx.scipy.sparse as csp

            self._op = csp.coo_matrix((weights, (ids, sources)), shape=shape).tocsr()
        else:
            onehot = xp.astype(xp.arange(num_segments, dtype=ids.dtype)[:, None] == ids[None, :],
                               weights.dtype) * weights[None, :]
            picks = xp.astype(sources[:, None] == xp.arange(shape[1], dtype=ids.dtype)[None, :],
                              weights.dtype)
            self._op = xp.matmul(onehot, picks)
        self._cast: dict = {}

    def __call__(self, values: Array) -> Array:
        xp = None if self._sparse else array_namespace(values)  # the dense product's
        op = self._cast.get(values.dtype)
        if op is None:
            op = self._cast.setdefault(values.dtype, self._astype(values.dtype, xp=xp))
        if self._sparse:
            return op @ values
        return xp.matmul(op, values)

    def _astype(self, dtype, *, xp):
        """The operator in ``dtype``: a SciPy / cupyx matrix (xp None) or an xp array."""
        if self._sparse:
            return self._op.astype(dtype)
        return xp.astype(self._op, dtype)
