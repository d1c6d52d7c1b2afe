"""Tiled hypercolumns (docs/algorithm.md §3.1): the VGG16 forward and VJP run on overlapping
windows of a large image, so that no layer map of the whole image is ever held.

Cores of ``core`` px (a multiple of 16) partition the image; a tile's window is its core
grown by the halo on every side and cut at the image's edges. Window origins are multiples
of 16, so the four 2x2 max-pools of a window line up with the image's, and a window that
reaches an edge of the image pads there with zeros as the image does. Every sample belongs
to the core that holds its pixel and is read from that tile's maps alone.

The halo: a map value at position q of a layer pooled k times, with r the sum of the
strides of the convolutions up to it, depends on the pixels [2^k q - r, 2^k q + 2^k - 1 + r]
(r = 90 for relu5_3, 58 for relu5_1). A core's edges are multiples of 16, so the bilinear
taps of its first row of samples start at map row cy0 / 2^k - 1 and those of its last end
at cy1 / 2^k: the samples of a core read pixels up to 2^k + r beyond it (106 px for relu5_3,
74 for relu5_1). (The last core of a row or column ends at the image's edge, not at a multiple
of 16; its window ends there too, so nothing is cut.) With that margin inside the window, every map value the loss reads,
every activation (ReLU mask, pooling arg-max) on the way back from it, and so every
gradient the VJP returns for it, is what the whole image gives; the VJP is linear in the
upstream gradients, so the tiles' image gradients add up to the whole image's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..arrays import Array
from ..nets.engine import VGGFeatures
from ..nets.vgg16 import LAYERS, Layer, map_shape
from .sampling import Hypercolumns

ALIGN = 16  # 2**4: the four max-pools of VGG16 up to relu5_3


def reach(layer: Layer) -> int:
    """Pixels beyond a core (edges at multiples of 16) that its samples' bilinear taps in
    ``layer`` depend on: 2^k + r (module docstring)."""
    r = sum(1 << lay.pools for lay in LAYERS[:layer.conv + 1])
    return (1 << layer.pools) + r


def halo(layers: Sequence[Layer]) -> int:
    """The halo (px, a multiple of 16) that makes a tile exact for these layers."""
    need = max(reach(layer) for layer in layers)
    return -(-need // ALIGN) * ALIGN


@dataclass(frozen=True)
class Tile:
    """A core [cy0, cy1) x [cx0, cx1) and its window [y0, y1) x [x0, x1), image pixels."""

    cy0: int
    cy1: int
    cx0: int
    cx1: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def reads_whole(height: int, width: int, core: int | None) -> bool:
    """Whether an (height, width) image is read whole: no tiles, or one core covers it."""
    return core is None or (height <= core and width <= core)


def window_pixels(height: int, width: int, core: int | None, margin: int) -> int:
    """Pixels of the largest window the engine holds maps for (the image, read whole)."""
    if reads_whole(height, width, core):
        return height * width
    return min(height, core + 2 * margin) * min(width, core + 2 * margin)


def tile_grid(height: int, width: int, core: int, margin: int) -> list[Tile]:
    """Tiles whose cores of ``core`` px (a multiple of 16) cover an image of (height, width),
    windows grown by ``margin`` (a multiple of 16); ordered by window shape, then position."""
    if core <= 0 or core % ALIGN or margin % ALIGN:
        raise ValueError(f"tile core ({core}) and halo ({margin}) must be multiples of {ALIGN}")
    tiles = [Tile(cy, min(cy + core, height), cx, min(cx + core, width),
                  max(cy - margin, 0), min(cy + core + margin, height),
                  max(cx - margin, 0), min(cx + core + margin, width))
             for cy in range(0, height, core) for cx in range(0, width, core)]
    return sorted(tiles, key=lambda t: (t.shape, t.cy0, t.cx0))


class TiledColumns:
    """N hypercolumns at (ys, xs), (N,) int NumPy arrays, of an (height, width) image read
    tile by tile.

    ``gather(image)`` runs the forward on each window that holds samples and reads its
    samples; ``image_gradient(image, d_hyper)`` runs, window by window, the forward again
    (not for the window whose maps the engine still holds from ``gather``) and the VJP of
    that tile's samples, and adds the windows' gradients up. Peak memory: the engine's
    buffers for one window, and one window's gradient maps.
    """

    def __init__(self, engine: VGGFeatures, ys: np.ndarray, xs: np.ndarray, height: int,
                 width: int, layers: tuple[Layer, ...], tiles: list[Tile],
                 rgb: tuple[Sequence[float], Sequence[float]] | None = None):
        self.engine, self.layers = engine, layers
        xp = engine.xp
        self.height, self.width = height, width
        self.n = len(ys)
        self.dim = 3 + sum(layer.channels for layer in layers)
        self.parts: list[tuple[Tile, Array, Hypercolumns]] = []
        for tile in tiles:
            inside = (ys >= tile.cy0) & (ys < tile.cy1) & (xs >= tile.cx0) & (xs < tile.cx1)
            rows = np.flatnonzero(inside)
            if rows.size:
                h, w = tile.shape
                local = Hypercolumns(ys[rows] - tile.y0, xs[rows] - tile.x0, h, w, layers,
                                     xp=xp, rgb=rgb)
                self.parts.append((tile, xp.asarray(rows), local))
        # after gather: (part index, engine.forwards, the image) of the window still in the engine
        self._warm: tuple[int, int, Array] | None = None

    def _window(self, image: Array, tile: Tile) -> Array:
        return image[tile.y0:tile.y1, tile.x0:tile.x1]

    def gather(self, image: Array, out: Array | None = None) -> Array:
        """image (H, W, 3) -> hypercolumns (N, D) float32."""
        xp = self.engine.xp
        if out is None:
            out = xp.empty((self.n, self.dim), dtype=xp.float32)
        for index, (tile, rows, local) in enumerate(self.parts):
            window = self._window(image, tile)
            out[rows] = local.gather(window, self.engine.forward(window))
            self._warm = (index, self.engine.forwards, image)
        return out

    def image_gradient(self, image: Array, d_hyper: Array) -> Array:
        """dloss/dimage (H, W, 3) for hypercolumn gradients d_hyper (N, D) at ``image``
        (the image of the last ``gather``), the RGB channels' part included."""
        xp = self.engine.xp
        grad = xp.zeros((self.height, self.width, 3), dtype=xp.float32)
        grads: dict[str, Array] = {}
        # backwards through gather's order: the first window may still be in the engine
        warm = self._warm is not None and self._warm[1] == self.engine.forwards \
            and self._warm[2] is image
        for index in reversed(range(len(self.parts))):
            tile, rows, local = self.parts[index]
            window = self._window(image, tile)
            if not (warm and index == self._warm[0]):
                self.engine.forward(window)
            h, w = tile.shape
            shapes = {layer.name: map_shape(h, w, layer.channels, layer.pools)
                      for layer in self.layers}
            # one window shape's gradient maps at a time (at most four shapes, grouped):
            # made again at each evaluation rather than kept, to hold one window's worth
            if not grads or any(grads[name].shape != shape for name, shape in shapes.items()):
                grads = {name: xp.zeros(shape, dtype=xp.float32) for name, shape in shapes.items()}
            d_rgb = local.scatter(d_hyper[rows], grads)
            grad[tile.y0:tile.y1, tile.x0:tile.x1] += self.engine.backward(grads)
            local.clear(grads)
            grad[local.ys + tile.y0, local.xs + tile.x0] += d_rgb  # distinct pixels
        self._warm = None
        return grad
