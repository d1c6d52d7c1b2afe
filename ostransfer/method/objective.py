"""The STROTSS objective at one scale: image -> (loss, dloss/dimage, per-term values).

``Objective`` holds what is fixed for a scale (the engine, the content image, the style
target, the preset and content weight, the dense gradient maps) and for a sample set (the
output/content locations and the content's self-similarity). One evaluation is: engine
forward, gather, losses, scatter, engine backward. The optimiser calls it thousands of times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import Array, array_namespace
from ..nets.engine import VGGFeatures
from ..nets.vgg16 import hypercolumn_layers, hypercolumn_rgb, map_shape
from . import losses
from .sampling import Hypercolumns, grid_locations, uniform_locations
from .tiles import TiledColumns, Tile, halo, reads_whole, tile_grid


def tiles_for(height: int, width: int, preset: str, tile: int | None) -> list[Tile] | None:
    """The tiles of an (height, width) image for cores of ``tile`` px, or None when the
    image is read whole (no ``tile``, or a single core covers it)."""
    if reads_whole(height, width, tile):
        return None
    return tile_grid(height, width, tile, halo(hypercolumn_layers(preset)))


def style_hypercolumns(engine: VGGFeatures, style: Array, preset: str, m: int,
                       rng: np.random.Generator, mask: np.ndarray | None = None,
                       tile: int | None = None) -> Array:
    """M hypercolumns (M, D) drawn uniformly from a style image (H, W, 3), inside a boolean
    (H, W) mask if one is given, read in tiles of ``tile`` px if given. The result is a new
    array (not an engine buffer)."""
    style = engine.xp.asarray(style, dtype=engine.xp.float32)
    height, width = style.shape[:2]
    ys, xs = uniform_locations(height, width, m, rng, mask)
    tiles = tiles_for(height, width, preset, tile)
    if tiles is not None:
        return TiledColumns(engine, ys, xs, height, width, hypercolumn_layers(preset), tiles,
                            hypercolumn_rgb(preset)).gather(style)
    columns = Hypercolumns.for_preset(ys, xs, height, width, preset, xp=engine.xp)
    return columns.gather(style, engine.forward(style))


@dataclass(frozen=True)
class Region:
    """Output pixels inside ``mask`` (H, W) bool (None: the whole image) are compared with
    ``style``. A guided objective is the mean of its regions' losses."""

    style: losses.StyleTarget
    mask: np.ndarray | None = None


class Objective:
    """STROTSS loss of an output image against a content image and style targets.

    content: (H, W, 3) float32 in [0, 1], the size of the output; style: a StyleTarget (the
    style's hypercolumns at this scale) or a list of Regions (guided transfer). Call
    ``resample`` to draw a sample set before evaluating; the objective is deterministic
    between two resamples. Each region gets a share of the N samples in proportion to its
    area (at least ``MIN_REGION_SAMPLES``).

    ``keep_content_maps``: the content's hypercolumn-layer maps are computed once and kept
    (about 1 KB per pixel) instead of by a VGG16 forward at every sample set; the
    hypercolumns, and so every result, are the same either way. ``tile``: read the maps in
    tiles with cores of this many px (a multiple of 16; method/tiles.py), never holding a map
    of the whole image; the content's maps are then not kept.
    """

    MIN_REGION_SAMPLES = 64

    def __init__(self, engine: VGGFeatures, content: Array,
                 style: losses.StyleTarget | list[Region], preset: str, content_weight: float,
                 samples: int = 1024, palette_weight: float | None = None,
                 keep_content_maps: bool = True, tile: int | None = None,
                 color_weight: float = 0.0):
        xp = engine.xp
        self.engine, self.preset, self.content_weight = engine, preset, float(content_weight)
        self.palette_weight, self.color_weight = palette_weight, float(color_weight)
        self.content_image = xp.asarray(content, dtype=xp.float32)
        self.regions = [Region(style)] if isinstance(style, losses.StyleTarget) else list(style)
        self.samples = samples
        self.layers = hypercolumn_layers(preset)
        self.height, self.width = content.shape[:2]
        self.tiles = tiles_for(self.height, self.width, preset, tile)
        # the dense gradient maps of a whole-image read (tiles have their own)
        self.grads = {} if self.tiles else {
            layer.name: xp.zeros(map_shape(self.height, self.width, layer.channels,
                                           layer.pools), dtype=xp.float32)
            for layer in self.layers}
        self.columns: Hypercolumns | TiledColumns | None = None
        self.rows: list[slice] = []  # rows of the sample set that belong to each region
        self.contents: list[losses.ContentTarget] = []
        self._hyper: Array | None = None
        self.keep_content_maps = keep_content_maps and self.tiles is None
        self._content_maps: dict[str, Array] | None = None

    def _region_samples(self) -> list[int]:
        areas = [self.height * self.width if r.mask is None else int(np.count_nonzero(r.mask))
                 for r in self.regions]
        total = sum(areas)
        return [min(area, max(self.MIN_REGION_SAMPLES, round(self.samples * area / total)))
                for area in areas]

    def resample(self, rng: np.random.Generator) -> None:
        """Draw a new output/content sample set and compute the content's self-similarity."""
        drawn = [grid_locations(self.height, self.width, n, rng, region.mask)
                 for region, n in zip(self.regions, self._region_samples())]
        self.set_locations([ys for ys, _ in drawn], [xs for _, xs in drawn])

    def set_locations(self, ys: np.ndarray | list[np.ndarray], xs: np.ndarray | list[np.ndarray]) -> None:
        """Use given output/content pixel locations as the sample set: (N,) arrays, or one
        pair of arrays per region. Locations must be distinct."""
        ys_list = [ys] if isinstance(ys, np.ndarray) else list(ys)
        xs_list = [xs] if isinstance(xs, np.ndarray) else list(xs)
        if len(ys_list) != len(self.regions):
            raise ValueError(f"{len(ys_list)} location sets for {len(self.regions)} regions")
        if isinstance(self.columns, Hypercolumns):
            self.columns.clear(self.grads)
        xp = self.engine.xp
        bounds = np.cumsum([0] + [len(y) for y in ys_list])
        self.rows = [slice(int(a), int(b)) for a, b in zip(bounds, bounds[1:])]
        ys_all, xs_all = np.concatenate(ys_list), np.concatenate(xs_list)
        if self.tiles is None:
            self.columns = Hypercolumns.for_preset(ys_all, xs_all, self.height, self.width,
                                                   self.preset, xp=xp)
            content = self.columns.gather(self.content_image, self._content_features())
        else:
            self.columns = TiledColumns(self.engine, ys_all, xs_all, self.height, self.width,
                                        self.layers, self.tiles, hypercolumn_rgb(self.preset))
            content = self.columns.gather(self.content_image)
        self.contents = [losses.content_target(content[rows]) for rows in self.rows]
        self._hyper = xp.empty((self.columns.n, self.columns.dim), dtype=xp.float32)

    def _content_features(self) -> dict[str, Array]:
        """The content's maps {layer: (1, C, h, w)}: the kept copies of the hypercolumn
        layers, made at the first call, or the engine's buffers of a new forward."""
        if self._content_maps is not None:
            return self._content_maps
        maps = self.engine.forward(self.content_image)
        if not self.keep_content_maps:
            return maps
        self._content_maps = {layer.name: maps[layer.name].copy() for layer in self.layers}
        return self._content_maps

    def hypercolumns(self, image: Array) -> Array:
        """The output's hypercolumns (N, D) at the current sample set (keeps maps for backward)."""
        image = self.engine.xp.asarray(image, dtype=self.engine.xp.float32)
        if isinstance(self.columns, TiledColumns):
            return self.columns.gather(image, out=self._hyper)
        return self.columns.gather(image, self.engine.forward(image), out=self._hyper)

    def __call__(self, image: Array) -> tuple[float, Array, dict[str, float]]:
        """image (H, W, 3) -> (loss, dloss/dimage (H, W, 3) float32, {term: value}).

        With several regions the loss, its gradient and each term are region means."""
        if self.columns is None:
            raise RuntimeError("call resample() before evaluating the objective")
        image = self.engine.xp.asarray(image, dtype=self.engine.xp.float32)
        hyper = self.hypercolumns(image)
        share = 1.0 / len(self.regions)
        value, parts, terms = 0.0, [], {}
        for region, rows, content in zip(self.regions, self.rows, self.contents):
            v, d, t = losses.total_loss(hyper[rows], content, region.style, self.preset,
                                        self.content_weight, self.palette_weight,
                                        self.color_weight)
            value += float(v) * share
            parts.append(d * share if len(self.regions) > 1 else d)
            for name, term in t.items():
                terms[name] = terms.get(name, 0.0) + term * share
        d_hyper = parts[0] if len(parts) == 1 else array_namespace(*parts).concat(parts, axis=0)
        if isinstance(self.columns, TiledColumns):
            return value, self.columns.image_gradient(image, d_hyper), terms
        d_rgb = self.columns.scatter(d_hyper, self.grads)
        grad = self.engine.backward(self.grads)
        grad[self.columns.ys, self.columns.xs] += d_rgb  # sample pixels are distinct
        return value, grad, terms
