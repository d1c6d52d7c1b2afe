"""Hypercolumn sampling (docs/algorithm.md §3): where to sample, the bilinear gather from the
layer maps, and its exact adjoint, the scatter of gradients back to the maps.

A hypercolumn at pixel (y, x) is the RGB there (raw, or normalised as the VGG16 input is:
see ``presets.PRESET_RGB``) followed by each layer's map read with bilinear
interpolation at ((y + 0.5) / 2**k - 0.5, (x + 0.5) / 2**k - 0.5), clamped to the map, for a
map pooled k times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..arrays import Array
from ..nets.vgg16 import Layer, hypercolumn_layers, hypercolumn_rgb
from .segments import SegmentSum


def grid_locations(height: int, width: int, n: int, rng: np.random.Generator,
                   mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """N distinct pixels from a randomly offset grid: (ys, xs) int64 arrays of length N.

    The stride is the largest that still leaves at least N grid points (every pixel when
    there are fewer than N); a random subset of N points is kept. With a boolean (H, W)
    mask, only pixels inside it count."""
    area = height * width if mask is None else int(np.count_nonzero(mask))
    if area == 0:
        raise ValueError("cannot sample an empty region")
    n = min(n, area)
    stride = max(1, int(math.sqrt(area / n)))
    while True:
        oy, ox = rng.integers(0, stride, size=2)
        ys, xs = np.meshgrid(np.arange(oy, height, stride), np.arange(ox, width, stride),
                             indexing="ij")
        ys, xs = ys.ravel(), xs.ravel()
        if mask is not None:
            inside = mask[ys, xs]
            ys, xs = ys[inside], xs[inside]
        if ys.size >= n or stride == 1:
            break
        stride -= 1
    keep = rng.choice(ys.size, size=n, replace=False)
    return ys[keep], xs[keep]


def uniform_locations(height: int, width: int, m: int, rng: np.random.Generator,
                      mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """M distinct pixels drawn uniformly (inside a boolean (H, W) mask if given); every
    pixel when there are fewer than M (a repeated pixel adds nothing but cost)."""
    pool = np.arange(height * width) if mask is None else np.flatnonzero(mask)
    if pool.size == 0:
        raise ValueError("cannot sample an empty region")
    flat = rng.choice(pool, size=min(m, pool.size), replace=False)
    return flat // width, flat % width


def _axis_taps(coords: np.ndarray, pools: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis: lower index, upper index, weight of the upper one."""
    u = np.clip((coords + 0.5) / (1 << pools) - 0.5, 0.0, size - 1)
    lo = np.floor(u).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    return lo, hi, u - lo


class Hypercolumns:
    """A fixed set of N pixel locations on an image of a given size, for given layers.

    ``gather(image, maps)`` reads the (N, D) hypercolumns; ``scatter(dX, grads)`` writes the
    adjoint into dense per-layer gradient maps, touching only the entries the gather reads,
    so that buffers can be reused across evaluations (``clear`` zeroes those entries again).
    """

    def __init__(self, ys: np.ndarray, xs: np.ndarray, height: int, width: int,
                 layers: tuple[Layer, ...], *, xp=np,
                 rgb: tuple[Sequence[float], Sequence[float]] | None = None):
        self.xp = xp
        self.layers = layers
        # the RGB channels as (rgb - mean) / std, or raw
        self._rgb = None if rgb is None else (xp.asarray(rgb[0], dtype=xp.float32),
                                              xp.asarray(rgb[1], dtype=xp.float32))
        self.n = len(ys)
        self.dim = 3 + sum(layer.channels for layer in layers)
        self.ys, self.xs = xp.asarray(ys), xp.asarray(xs)
        self.pixels = xp.asarray(ys * width + xs)  # flat pixel index of each sample
        self._taps = {}  # pools -> (flat map indices (4N,), weights (4N,), map width)
        self._adjoint = {}  # pools -> (touched flat indices (U,), SegmentSum U x N)
        for pools in sorted({layer.pools for layer in layers}):
            h, w = height >> pools, width >> pools
            y0, y1, fy = _axis_taps(ys, pools, h)
            x0, x1, fx = _axis_taps(xs, pools, w)
            index = np.concatenate([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1])
            weight = np.concatenate([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])
            self._taps[pools] = (xp.asarray(index), xp.asarray(weight.astype(np.float32)))
            touched, inverse = np.unique(index, return_inverse=True)
            source = np.tile(np.arange(self.n), 4)
            self._adjoint[pools] = (
                xp.asarray(touched),
                SegmentSum(xp.asarray(inverse.ravel()), len(touched), xp.asarray(weight),
                           xp.asarray(source), self.n),
            )

    @classmethod
    def for_preset(cls, ys: np.ndarray, xs: np.ndarray, height: int, width: int, preset: str,
                   *, xp=np) -> Hypercolumns:
        """Hypercolumns with a preset's layers and RGB normalisation."""
        return cls(ys, xs, height, width, hypercolumn_layers(preset), xp=xp,
                   rgb=hypercolumn_rgb(preset))

    def gather(self, image: Array, maps: dict[str, Array], out: Array | None = None) -> Array:
        """image (H, W, 3) and maps {name: (1, C, h, w)} -> hypercolumns (N, D) float32."""
        xp = self.xp
        if out is None:
            out = xp.empty((self.n, self.dim), dtype=xp.float32)
        out[:, :3] = xp.take(xp.reshape(image, (-1, 3)), self.pixels, axis=0)
        if self._rgb is not None:
            out[:, :3] = (out[:, :3] - self._rgb[0]) / self._rgb[1]
        col = 3
        for layer in self.layers:
            index, weight = self._taps[layer.pools]
            fmap = maps[layer.name]
            flat = xp.reshape(fmap, (layer.channels, -1))
            taps = xp.take(flat, index, axis=1) * weight  # (C, 4N)
            values = xp.sum(xp.reshape(taps, (layer.channels, 4, self.n)), axis=1)
            out[:, col:col + layer.channels] = values.T
            col += layer.channels
        return out

    def scatter(self, d_hyper: Array, grads: dict[str, Array]) -> Array:
        """Write dloss/dmaps for hypercolumn gradients d_hyper (N, D) into the dense maps
        ``grads`` {name: (1, C, h, w)} (only the touched entries are written); return the
        gradient of the raw RGB channels, (N, 3), for the caller to add at (ys, xs)."""
        xp = self.xp
        col = 3
        for layer in self.layers:
            touched, adjoint = self._adjoint[layer.pools]
            flat = xp.reshape(grads[layer.name], (layer.channels, -1))
            flat[:, touched] = adjoint(d_hyper[:, col:col + layer.channels]).T
            col += layer.channels
        return d_hyper[:, :3] if self._rgb is None else d_hyper[:, :3] / self._rgb[1]

    def clear(self, grads: dict[str, Array]) -> None:
        """Zero the entries ``scatter`` writes (before another sample set reuses the maps)."""
        for layer in self.layers:
            touched, _ = self._adjoint[layer.pools]
            self.xp.reshape(grads[layer.name], (layer.channels, -1))[:, touched] = 0
